//! `nst`: the command line over the nst crates. All the work is in the libraries; this parses
//! the options (`args.rs`), runs the command (`transfer_cmd.rs`, `batch_cmd.rs`, `eval_cmd.rs`,
//! `bench_cmd.rs`, `plot_cmd.rs`, sharing `setup.rs`) and turns the
//! result into an exit code: 0 done, 1 error, 2 bad usage (from clap), 130 or 143 stopped by
//! SIGINT or SIGTERM (best image written).

mod args;
mod batch_cmd;
mod bench_cmd;
mod error;
mod eval_cmd;
mod plot_cmd;
mod report;
mod setup;
mod transfer_cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // SAFETY: the first thing `main` does; no other thread exists yet.
    unsafe { nst_tensor::keep_freed_memory() };
    die_quietly_on_broken_pipe();
    let cli = args::Cli::parse();
    let result = check_environment().and_then(|()| match cli.command {
        args::Command::Transfer(a) => transfer_cmd::transfer(*a),
        args::Command::Eval(a) => eval_cmd::eval(*a).map(|()| transfer_cmd::Ended::Done),
        args::Command::Bench(a) => bench_cmd::bench(a).map(|()| transfer_cmd::Ended::Done),
        args::Command::Batch(a) => batch_cmd::batch(*a),
        args::Command::Plot(a) => plot_cmd::plot(a).map(|()| transfer_cmd::Ended::Done),
    });
    match result {
        Ok(transfer_cmd::Ended::Done) => ExitCode::SUCCESS,
        Ok(transfer_cmd::Ended::Interrupted(signal)) => ExitCode::from(128 + signal as u8),
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses an environment the engine would panic on: `NST_GEMM` naming no GEMM backend.
fn check_environment() -> Result<(), error::CliError> {
    nst_tensor::kernels::gemm::backend_from_env()
        .map(|_| ())
        .map_err(error::CliError::Invalid)
}

/// Restores the default action of SIGPIPE (Rust ignores it), so that `nst bench | head` ends
/// quietly when `head` closes the pipe, as any Unix tool does, instead of panicking on the
/// failed write.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn die_quietly_on_broken_pipe() {
    // SAFETY: setting a signal's disposition to its default is always valid, and is done before
    // any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn die_quietly_on_broken_pipe() {}

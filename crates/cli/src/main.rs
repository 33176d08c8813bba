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
    keep_freed_memory();
    die_quietly_on_broken_pipe();
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Transfer(a) => transfer_cmd::transfer(*a),
        args::Command::Eval(a) => eval_cmd::eval(*a).map(|()| transfer_cmd::Ended::Done),
        args::Command::Bench(a) => bench_cmd::bench(a).map(|()| transfer_cmd::Ended::Done),
        args::Command::Batch(a) => batch_cmd::batch(*a),
        args::Command::Plot(a) => plot_cmd::plot(a).map(|()| transfer_cmd::Ended::Done),
    };
    match result {
        Ok(transfer_cmd::Ended::Done) => ExitCode::SUCCESS,
        Ok(transfer_cmd::Ended::Interrupted(signal)) => ExitCode::from(128 + signal as u8),
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Tells glibc's allocator to keep freed memory for reuse instead of returning it to the system.
///
/// Every evaluation allocates and frees the same few hundred megabytes of feature maps and
/// gradients. By default glibc serves blocks over 32 MB with fresh `mmap`s and unmaps them on
/// free, so each evaluation page-faults all of it in again (and pays TLB shootdowns on unmap):
/// measured, 15% of an evaluation at 512×384. Serving everything from the heap and never trimming
/// it makes the second evaluation onwards reuse warm pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists, and both values are valid for these options.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

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

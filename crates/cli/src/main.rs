//! `nst`: the command line over the nst crates. All the work is in the libraries; this parses
//! the options (`args.rs`), runs the command (`transfer_cmd.rs`) and turns the result into an
//! exit code: 0 done, 1 error, 2 bad usage (from clap), 130 interrupted (best image written).

mod args;
mod transfer_cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Transfer(a) => transfer_cmd::transfer(a),
    };
    match result {
        Ok(transfer_cmd::Ended::Done) => ExitCode::SUCCESS,
        Ok(transfer_cmd::Ended::Interrupted) => ExitCode::from(130),
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

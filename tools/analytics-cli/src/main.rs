//! The command line: parse arguments, run, print the summary, map the exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use analytics_cli::cli::{Cli, Command, ImportArgs};
use analytics_cli::import::{self, Options};
use analytics_cli::progress::Progress;
use analytics_cli::report::default_path;
use analytics_cli::retry::Policy;
use analytics_cli::transport::Http;

/// Exit code for anything that stops the import (clap's usage errors are 2 as well).
const FATAL: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Import(args) => run_import(args),
    }
}

fn run_import(args: ImportArgs) -> ExitCode {
    let transport = match Http::new(&args.url, Duration::from_secs(args.timeout)) {
        Ok(t) => t.with_api_key(args.api_key.clone()),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(FATAL);
        }
    };
    let options = Options {
        file: args.file,
        format: args.format,
        batch_size: usize::from(args.batch_size),
        concurrency: usize::from(args.concurrency),
        report: args.report,
        policy: Policy::default(),
    };
    let mut progress = Progress::new(0, std::io::stderr().is_terminal());
    let summary = match import::run(&options, &transport, &mut progress) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(FATAL);
        }
    };
    println!("{}", summary.line());
    match &summary.report {
        Some(report) => println!("rejected rows: {}", report.display()),
        None => {
            let report = options.report.clone().unwrap_or_else(|| default_path(&options.file));
            if report.exists() {
                eprintln!("note: {} is from an earlier run (this run rejected nothing)", report.display());
            }
        }
    }
    if let Some(message) = &summary.fatal {
        eprintln!("error: {message}");
    }
    ExitCode::from(summary.exit_code())
}

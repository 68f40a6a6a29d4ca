//! The command line: parse arguments, run, print the summary, map the exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use analytics_cli::cli::{Cli, Command, ExportArgs, ImportArgs};
use analytics_cli::export::{self, ExportOptions, Walk};
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
        Command::Export(args) => run_export(args),
    }
}

fn fatal(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(FATAL)
}

fn run_import(args: ImportArgs) -> ExitCode {
    let options = Options {
        file: args.file,
        format: args.format,
        mapping: args.columns.mapping(),
        batch_size: usize::from(args.batch_size),
        concurrency: usize::from(args.concurrency),
        report: args.report,
        policy: Policy::default(),
    };
    if args.dry_run {
        return run_dry(&options);
    }
    let url = args.url.unwrap_or_default();
    let transport = match Http::new(&url, Duration::from_secs(args.timeout)) {
        Ok(t) => t.with_api_key(args.api_key.clone()),
        Err(message) => return fatal(message),
    };
    let mut progress = Progress::new(0, std::io::stderr().is_terminal());
    let summary = match import::run(&options, &transport, &mut progress) {
        Ok(s) => s,
        Err(e) => return fatal(format!("{e:#}")),
    };
    println!("{}", summary.line());
    if let Some(renamed) = &summary.renamed_types {
        println!("{renamed}");
    }
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

/// Exit 0 when every row would be sent, 1 when some would be refused.
fn run_dry(options: &Options) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match import::dry_run(options, &mut stdout) {
        Ok(found) => {
            println!(
                "dry run: {} rows make {} metrics; {} refused by the CLI (the server may refuse others); nothing was sent",
                found.rows, found.metrics, found.refused
            );
            ExitCode::from(u8::from(found.refused > 0))
        }
        Err(e) => fatal(format!("{e:#}")),
    }
}

fn run_export(args: ExportArgs) -> ExitCode {
    let source = match Http::new(&args.url, Duration::from_secs(args.timeout)) {
        Ok(t) => t.with_api_key(args.api_key.clone()),
        Err(message) => return fatal(message),
    };
    // The list API reads its bounds as RFC 3339 only; --from/--to also take Unix seconds.
    let bound = |name: &str, given: Option<String>| given.map(|t| export::instant(&t).map_err(|e| format!("--{name}: {e}"))).transpose();
    let (from, to) = match (bound("from", args.from), bound("to", args.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(message), _) | (_, Err(message)) => return fatal(message),
    };
    let options = ExportOptions {
        output: args.output,
        format: args.format,
        walk: Walk { types: args.types, from, to },
        page_size: args.page_size,
        policy: Policy::default(),
    };
    let mut progress = Progress::of("exported", 0, std::io::stderr().is_terminal());
    match export::run(&options, &source, &mut progress) {
        Ok(summary) => {
            println!("{}", summary.line(&options.output));
            ExitCode::SUCCESS
        }
        Err(e) => fatal(format!("{e:#} (run the same command again to go on)")),
    }
}

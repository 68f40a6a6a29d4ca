//! Project tasks, run as `cargo xtask <task>`: everything a newcomer needs,
//! with nothing to install by hand beyond the Rust toolchain (`test` installs
//! the Debian packages its tests need, or says which to install).
//!
//! - `up [ARGS]`: build the components and the host, then serve `spin.toml`.
//! - `test [ARGS]`: check the machine has what the tests need (installing it when running as root or with
//!   passwordless sudo, see [`prerequisites`]), build the components, then run every test, the deployment
//!   files' check and the OpenAPI document's check against the live API.
//! - `build`: build the components and test fixtures (`wasm32-wasip2`, release).
//! - `bench [--quick]`: build everything in release mode, then run `bench/` (results in `bench/results/`);
//!   `bench --crash [N]`: the crash-recovery test with N crash points per store kind (default 40).
//! - `fuzz [SECONDS]`: every cargo-fuzz target in `fuzz/` for SECONDS each (default 60); installs the
//!   nightly toolchain and cargo-fuzz when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod prerequisites;

const WASM_TARGET: &str = "wasm32-wasip2";

/// Test-only components under `tests/fixtures/`, built along with `components/`.
const FIXTURES: &[&str] = &["probe", "unsupported"];

fn root() -> PathBuf {
    // `cargo run` sets this at run time too; prefer it, so a binary built in
    // another checkout sharing the target directory still finds this one.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    Path::new(&manifest_dir)
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(mut command: Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

/// Installs the WebAssembly target with rustup when it is missing.
fn ensure_wasm_target() -> Result<(), String> {
    if prerequisites::wasm_target_installed(WASM_TARGET) {
        return Ok(());
    }
    eprintln!("installing the {WASM_TARGET} target with rustup");
    let mut command = Command::new("rustup");
    command.args(["target", "add", WASM_TARGET]);
    run(command)
}

/// Every crate under `components/`.
fn component_packages() -> Result<Vec<String>, String> {
    let dir = root().join("components");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.join("Cargo.toml").exists() {
            names.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Builds the components, and the test fixtures with them if asked.
fn build_components_and(fixtures: &[&str]) -> Result<(), String> {
    ensure_wasm_target()?;
    let mut command = cargo();
    command.args(["build", "--release", "--target", WASM_TARGET]);
    for name in component_packages()? {
        command.args(["-p", &name]);
    }
    for name in fixtures {
        command.args(["-p", name]);
    }
    run(command)
}

fn build_components() -> Result<(), String> {
    build_components_and(FIXTURES)
}

/// The release binary `name` of this workspace.
fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    target.join("release").join(name)
}

/// Builds the components and the host, then becomes the host (on Unix the
/// process is replaced, so SIGTERM and SIGINT reach the host itself, which
/// drains its requests, and the exit status is the host's).
fn up(args: &[String]) -> Result<(), String> {
    build_components_and(&[])?;
    let mut command = cargo();
    command.args(["build", "--release", "-p", "spin-host"]);
    run(command)?;
    let auth_given = std::env::var("SPIN_VARIABLE_AUTH").is_ok() || args.iter().any(|a| a.starts_with("auth="));
    if !auth_given {
        eprintln!("note: auth is open: anyone who can reach the port may write and read the default project (--variable auth=required --variable admin_token=...)");
    }
    let mut host = Command::new(release_binary("spin-host"));
    host.arg("up").args(args).current_dir(root());
    become_process(host)
}

#[cfg(unix)]
fn become_process(mut command: Command) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let shown = format!("{command:?}");
    // Returns only if it failed.
    Err(format!("cannot run {shown}: {}", command.exec()))
}

#[cfg(not(unix))]
fn become_process(command: Command) -> Result<(), String> {
    run(command)
}

fn test(args: &[String]) -> Result<(), String> {
    // Before any build: a missing tool should cost seconds, not a build and a test run.
    prerequisites::ensure(WASM_TARGET)?;
    build_components()?;
    // Tests that start hosts as processes (replicas, logs, the CLI's import)
    // need the binary; the ecosystem check runs the CLI's.
    let mut command = cargo();
    command.args(["build", "--release", "-p", "spin-host", "-p", "analytics-cli"]);
    run(command)?;
    let mut command = cargo();
    command.args(["test", "--release"]);
    command.args(args);
    run(command)?;
    // The deployment files (docker-compose.yml, deploy/): schemas and wiring, offline; the alert
    // rules and their promtool tests, and the Grafana dashboard against the live host built above.
    let mut command = Command::new("bash");
    command.arg(root().join("deploy/check.sh")).current_dir(root());
    run(command)?;
    // The OpenAPI document against the live API (schemathesis; the host built above).
    let mut command = Command::new("bash");
    command.arg(root().join("openapi/check.sh")).current_dir(root());
    run(command)?;
    // Generated clients, public data sets imported, exports read by DuckDB.
    let mut command = Command::new("bash");
    command.arg(root().join("ecosystem/check.sh")).current_dir(root());
    run(command)
}

/// The crash-recovery test with many crash points (`CRASH_POINTS`).
fn crash_points(points: &str) -> Result<(), String> {
    build_components()?;
    let mut command = cargo();
    command.args(["build", "--release", "-p", "spin-host"]);
    run(command)?;
    let mut command = cargo();
    command.env("CRASH_POINTS", points).args(["test", "--release", "--test", "crash_recovery", "--", "--nocapture"]);
    run(command)
}

/// `cargo` through rustup with `toolchain`, whatever toolchain runs this task.
fn cargo_on(toolchain: &str) -> Command {
    let mut command = Command::new("cargo");
    command.arg(format!("+{toolchain}")).current_dir(root());
    for name in ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO_TARGET_DIR"] {
        command.env_remove(name);
    }
    command
}

/// Runs every fuzz target for `seconds` each, from the committed seeds and
/// the corpus earlier runs grew; stops at the first crash.
fn fuzz(seconds: &str) -> Result<(), String> {
    seconds.parse::<u64>().map_err(|_| format!("`{seconds}` is not a number of seconds"))?;
    let has_nightly = cargo_on("nightly").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_nightly {
        let mut command = Command::new("rustup");
        command.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        run(command)?;
    }
    let has_fuzz = cargo_on("nightly").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_fuzz {
        let mut command = cargo_on("nightly");
        command.args(["install", "cargo-fuzz", "--locked"]);
        run(command)?;
    }
    let dir = root().join("fuzz/fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    targets.sort();
    for target in targets {
        let corpus = root().join("fuzz/corpus").join(&target);
        let seeds = root().join("fuzz/seeds").join(&target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        eprintln!("fuzzing {target} for {seconds} s");
        let mut command = cargo_on("nightly");
        command.args(["fuzz", "run", "--release", &target]).arg(&corpus);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command.args(["--", &format!("-max_total_time={seconds}"), "-rss_limit_mb=2048", "-print_final_stats=1"]);
        run(command)?;
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--crash") {
        return crash_points(args.get(1).map_or("40", String::as_str));
    }
    build_components()?;
    // One build of both, so the benchmark runs the host built with it.
    let mut command = cargo();
    command.args(["build", "--release", "-p", "spin-host", "-p", "bench"]);
    run(command)?;
    let mut command = cargo();
    command.args(["run", "--release", "--quiet", "-p", "bench", "--"]);
    command.args(args);
    run(command)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("build") => build_components(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(args.get(1).map_or("60", String::as_str)),
        _ => Err("usage: cargo xtask <up|test|build|bench|fuzz> [ARGS]".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

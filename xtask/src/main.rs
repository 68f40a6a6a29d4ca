//! Project tasks, run as `cargo xtask <task>`: everything a newcomer needs,
//! with nothing to install beyond the Rust toolchain.
//!
//! - `up [ARGS]`: build the components and the host, then serve `spin.toml`.
//! - `test [ARGS]`: build the components, then run every test, the deployment files' check and the OpenAPI document's check against the live API.
//! - `build`: build the components and test fixtures (`wasm32-wasip2`, release).
//! - `bench [--quick]`: build everything in release mode, then run `bench/` (results in `bench/results/`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

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
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == WASM_TARGET))
        .unwrap_or(false);
    if installed {
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
    build_components()?;
    // Tests that start hosts as processes (replicas, logs, the CLI's import) need the binary.
    let mut command = cargo();
    command.args(["build", "--release", "-p", "spin-host"]);
    run(command)?;
    let mut command = cargo();
    command.args(["test", "--release"]);
    command.args(args);
    run(command)?;
    // The deployment files (docker-compose.yml, deploy/): schemas and wiring, offline.
    let mut command = Command::new("bash");
    command.arg(root().join("deploy/check.sh")).current_dir(root());
    run(command)?;
    // The OpenAPI document against the live API (schemathesis; the host built above).
    let mut command = Command::new("bash");
    command.arg(root().join("openapi/check.sh")).current_dir(root());
    run(command)
}

fn bench(args: &[String]) -> Result<(), String> {
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
        _ => Err("usage: cargo xtask <up|test|build|bench> [ARGS]".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

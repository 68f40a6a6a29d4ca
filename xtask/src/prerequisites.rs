//! What `cargo xtask test` needs on the machine, checked before anything is
//! built, and installed when this process may install it.
//!
//! Each tool is looked for the way its users look for it, so a pass here means
//! they find it:
//!
//! - `redis-server` on PATH (tests/support/redis_server.rs);
//! - `chromium` or `chromium-browser` on PATH, or the file `CHROMIUM` names
//!   (tests/dashboard.rs);
//! - `node` (18 or newer) and `npm` on PATH (ecosystem/check.sh);
//! - `$PYTHON` (default `python3`), 3.11 or newer, with `venv` and `ensurepip`
//!   (deploy/, openapi/ and ecosystem/check.sh make virtual environments);
//! - `initdb` on PATH or in `/usr/lib/postgresql/<version>/bin`, where Debian
//!   keeps the PostgreSQL server binaries (`initdb`, `postgres`, `pg_ctl`);
//! - `promtool` on PATH, or the file `PROMTOOL` names (deploy/check.sh);
//! - the `wasm32-wasip2` target, per `rustup target list --installed`.
//!
//! Missing tools come from Debian packages ([`source`]). When this process
//! runs as root, or `sudo -n true` works, it runs `apt-get update` once and
//! `apt-get install -y` with them; otherwise it stops before building, with the
//! one command to run. `XTASK_NO_INSTALL=1` makes it only report, never install.
//! The decision is the pure [`plan`]; [`ensure`] is the thin shell around it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian installs the PostgreSQL server binaries, one directory per major version.
const POSTGRES_LIB: &str = "/usr/lib/postgresql";
/// The oldest Python the check scripts accept (they test it themselves too).
const MIN_PYTHON: (u32, u32) = (3, 11);
/// The oldest Node.js ecosystem/check.sh supports.
const MIN_NODE: u32 = 18;

/// A tool `cargo xtask test` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `redis-server`.
    RedisServer,
    /// `chromium` (or `chromium-browser`).
    Chromium,
    /// `node`.
    Node,
    /// `npm`.
    Npm,
    /// `python3` (or `$PYTHON`) itself.
    Python,
    /// Python's `venv` with `ensurepip`, which Debian ships apart from `python3`.
    PythonVenv,
    /// The PostgreSQL server binaries, looked for as `initdb`.
    Postgres,
    /// Prometheus's `promtool`.
    Promtool,
    /// The `wasm32-wasip2` Rust target.
    WasmTarget,
}

impl Tool {
    /// Every tool, in the order they are checked and reported.
    pub const ALL: [Tool; 9] = [
        Tool::RedisServer,
        Tool::Chromium,
        Tool::Node,
        Tool::Npm,
        Tool::Python,
        Tool::PythonVenv,
        Tool::Postgres,
        Tool::Promtool,
        Tool::WasmTarget,
    ];

    /// The tool as messages name it: the command that runs it.
    pub fn name(self) -> &'static str {
        match self {
            Tool::RedisServer => "redis-server",
            Tool::Chromium => "chromium",
            Tool::Node => "node",
            Tool::Npm => "npm",
            Tool::Python => "python3",
            Tool::PythonVenv => "python3 -m venv",
            Tool::Postgres => "initdb",
            Tool::Promtool => "promtool",
            Tool::WasmTarget => "the wasm32-wasip2 target",
        }
    }

    /// What needs it, so a message says why it is installed.
    pub fn needed_by(self) -> &'static str {
        match self {
            Tool::RedisServer => "tests compare the embedded Redis with a real one and run the app against it",
            Tool::Chromium => "tests/dashboard.rs renders the dashboard in headless Chromium",
            Tool::Node => "ecosystem/check.sh runs the generated TypeScript client",
            Tool::Npm => "ecosystem/check.sh installs the TypeScript client generator",
            Tool::Python => "the deploy, OpenAPI and ecosystem checks run in Python",
            Tool::PythonVenv => "the deploy, OpenAPI and ecosystem checks install their pinned tools in a venv",
            Tool::Postgres => "the PostgreSQL store's tests start their own server",
            Tool::Promtool => "deploy/check.sh checks the alert rules, their unit tests and the dashboard's PromQL",
            Tool::WasmTarget => "the components are built for wasm32-wasip2",
        }
    }
}

/// How a missing tool gets installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This Debian package.
    Apt(&'static str),
    /// `rustup target add`, which needs no privileges.
    Rustup,
}

/// Where `tool` comes from when it is missing.
pub fn source(tool: Tool) -> Source {
    match tool {
        Tool::RedisServer => Source::Apt("redis-server"),
        Tool::Chromium => Source::Apt("chromium"),
        Tool::Node => Source::Apt("nodejs"),
        Tool::Npm => Source::Apt("npm"),
        Tool::Python => Source::Apt("python3"),
        Tool::PythonVenv => Source::Apt("python3-venv"),
        // The `postgresql` metapackage pulls in the current postgresql-<ver> server.
        Tool::Postgres => Source::Apt("postgresql"),
        // Debian ships promtool with the server, as /usr/bin/promtool.
        Tool::Promtool => Source::Apt("prometheus"),
        Tool::WasmTarget => Source::Rustup,
    }
}

/// What looking for one tool found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// There and usable.
    Found,
    /// Not there: installing its [`source`] fixes that.
    Missing,
    /// There (or configured) but unusable in a way no package fixes; the text says what to do.
    Unusable(String),
}

/// What this process may do about missing packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// It runs as root.
    pub root: bool,
    /// `sudo -n true` succeeds (only asked when not root).
    pub passwordless_sudo: bool,
    /// `apt-get` can run (a Debian-like system).
    pub apt: bool,
    /// Installing is allowed: `XTASK_NO_INSTALL` is not set.
    pub install_allowed: bool,
}

/// Packages to install, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    /// Debian packages, each once, in [`Tool::ALL`] order.
    pub packages: Vec<&'static str>,
    /// Run apt-get through `sudo -n` (not root, passwordless sudo).
    pub sudo: bool,
    /// Also `rustup target add wasm32-wasip2`.
    pub wasm_target: bool,
    /// The missing tools, for the announcement.
    pub missing: Vec<Tool>,
}

impl Installation {
    /// What is about to be installed and why, one line per tool.
    pub fn announcement(&self) -> String {
        let mut text = String::from("installing what `cargo xtask test` needs and this machine lacks:");
        for &tool in &self.missing {
            let how = match source(tool) {
                Source::Apt(package) => format!("apt package {package}"),
                Source::Rustup => "rustup".to_string(),
            };
            text.push_str(&format!("\n  {} ({how}): {}", tool.name(), tool.needed_by()));
        }
        text
    }
}

/// What to do about the tools' statuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Everything is there.
    Ready,
    /// Install these, then look again.
    Install(Installation),
    /// Stop before building anything, with this message.
    Stop(String),
}

/// Decides what to do: nothing, install, or stop with the command to run.
/// Pure, so every case is unit-tested; [`ensure`] does the looking and installing.
pub fn plan(statuses: &[(Tool, Status)], machine: &Machine) -> Plan {
    let missing: Vec<Tool> = statuses.iter().filter(|(_, s)| *s == Status::Missing).map(|(t, _)| *t).collect();
    let unusable: Vec<(Tool, &str)> = statuses
        .iter()
        .filter_map(|(t, s)| match s {
            Status::Unusable(why) => Some((*t, why.as_str())),
            _ => None,
        })
        .collect();
    let packages = packages_for(&missing);
    let wasm_target = missing.contains(&Tool::WasmTarget);
    if missing.is_empty() && unusable.is_empty() {
        return Plan::Ready;
    }
    let privileged = machine.root || machine.passwordless_sudo;
    let can_install = machine.apt && machine.install_allowed && privileged;
    if unusable.is_empty() && (packages.is_empty() || can_install) {
        return Plan::Install(Installation { packages, sudo: !machine.root, wasm_target, missing });
    }
    Plan::Stop(stop_message(&missing, &unusable, machine))
}

/// The Debian packages that provide `tools`, each once, in order.
pub fn packages_for(tools: &[Tool]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for &tool in Tool::ALL.iter().filter(|t| tools.contains(t)) {
        if let Source::Apt(package) = source(tool) {
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
    }
    packages
}

/// The message for a stop: what is missing and why, the one command that
/// installs it, and why xtask did not run that command itself.
fn stop_message(missing: &[Tool], unusable: &[(Tool, &str)], machine: &Machine) -> String {
    let mut text = String::from("`cargo xtask test` needs tools this machine lacks:");
    for &tool in missing {
        // The wasm target would be added with rustup anyway; listed so the picture is whole.
        let how = match source(tool) {
            Source::Apt(package) => format!("package {package}"),
            Source::Rustup => "xtask adds it with rustup".to_string(),
        };
        text.push_str(&format!("\n  {} ({how}): {}", tool.name(), tool.needed_by()));
    }
    for (tool, why) in unusable {
        text.push_str(&format!("\n  {}: {why}", tool.name()));
    }
    let packages = packages_for(missing);
    if !packages.is_empty() {
        let list = packages.join(" ");
        if machine.apt {
            let sudo = if machine.root { "" } else { "sudo " };
            text.push_str(&format!(
                "\nInstall them with:\n  {sudo}apt-get update && {sudo}apt-get install -y {list}\nthen run `cargo xtask test` again."
            ));
        } else {
            text.push_str(&format!(
                "\nInstall them with your package manager (on Debian: apt-get install -y {list}), then run `cargo xtask test` again."
            ));
        }
        let reason = if !machine.apt {
            Some("there is no apt-get")
        } else if !machine.install_allowed {
            Some("XTASK_NO_INSTALL is set")
        } else if !machine.root && !machine.passwordless_sudo {
            Some("it runs neither as root nor with passwordless sudo")
        } else {
            None // only the unusable tools stopped it
        };
        if let Some(reason) = reason {
            text.push_str(&format!("\n(xtask installs them itself as root or with passwordless sudo; not here: {reason}.)"));
        }
    }
    text
}

/// Python's status, and its `venv`'s, from running it with [`PYTHON_PROBE`]:
/// `None` if it could not be run, else whether it succeeded and what it
/// printed. `configured` is `$PYTHON` when set: that interpreter is the
/// user's choice, so no package can stand in for it.
pub fn python_status(run: Option<(bool, &str)>, configured: Option<&str>) -> (Status, Status) {
    let Some((success, stdout)) = run else {
        return match configured {
            Some(python) => (Status::Unusable(format!("PYTHON={python} cannot be run: unset PYTHON or fix it")), Status::Found),
            // Debian's python3 comes without venv: both packages are needed.
            None => (Status::Missing, Status::Missing),
        };
    };
    let name = configured.unwrap_or("python3");
    let Some(version) = parse_version(stdout.trim()) else {
        return (Status::Unusable(format!("{name} did not report its version ({:?})", stdout.trim())), Status::Found);
    };
    if (version.0, version.1) < MIN_PYTHON {
        let message = format!(
            "{name} is {}.{}; the checks need {}.{} or newer: set PYTHON=/path/to/python3.11+",
            version.0, version.1, MIN_PYTHON.0, MIN_PYTHON.1
        );
        return (Status::Unusable(message), Status::Found);
    }
    let venv = match (success, configured) {
        (true, _) => Status::Found,
        (false, None) => Status::Missing,
        (false, Some(python)) => Status::Unusable(format!("PYTHON={python} has no venv/ensurepip module")),
    };
    (Status::Found, venv)
}

/// Prints Python's version, then fails if `venv` or `ensurepip` is missing
/// (Debian's `python3-venv` provides ensurepip, without which `-m venv` fails).
pub const PYTHON_PROBE: &str = "import sys; print('%d.%d' % sys.version_info[:2]); sys.stdout.flush(); import venv, ensurepip";

/// Node's status from `node --version`'s output (`None`: it could not be run).
pub fn node_status(version: Option<&str>) -> Status {
    let Some(version) = version else { return Status::Missing };
    match parse_version(version.trim().trim_start_matches('v')) {
        Some((major, ..)) if major >= MIN_NODE => Status::Found,
        Some(_) => Status::Unusable(format!(
            "node is {}; ecosystem/check.sh needs Node.js {MIN_NODE} or newer",
            version.trim()
        )),
        None => Status::Unusable(format!("node did not report its version ({:?})", version.trim())),
    }
}

/// `major.minor[.patch]` → (major, minor, patch), missing parts as 0.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

// ---- the shell: looking and installing ----

/// The first of `names` that is a file in one of `dirs`.
fn find_in(dirs: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    dirs.iter().flat_map(|dir| names.iter().map(move |name| dir.join(name))).find(|path| path.is_file())
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default()
}

/// `/usr/lib/postgresql/<version>/bin` for every installed version.
fn postgres_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(POSTGRES_LIB) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect();
    dirs.sort();
    dirs
}

fn found_if(found: bool) -> Status {
    if found {
        Status::Found
    } else {
        Status::Missing
    }
}

/// Whether `program args` succeeded, and its standard output; `None` if it could not be run.
fn output_of(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let output = Command::new(program).args(args).output().ok()?;
    Some((output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// Looks for every tool.
pub fn look(wasm_target: &str) -> Vec<(Tool, Status)> {
    let path = path_dirs();
    let chromium = match std::env::var_os("CHROMIUM") {
        // The dashboard test runs whatever CHROMIUM names, without looking further.
        Some(file) if Path::new(&file).is_file() => Status::Found,
        Some(file) => Status::Unusable(format!("CHROMIUM={} is not a file: unset it or fix it", file.to_string_lossy())),
        None => found_if(find_in(&path, &["chromium", "chromium-browser"]).is_some()),
    };
    let node = node_status(output_of("node", &["--version"]).filter(|(ok, _)| *ok).map(|(_, out)| out).as_deref());
    let configured_python = std::env::var("PYTHON").ok().filter(|p| !p.is_empty());
    let python_run = output_of(configured_python.as_deref().unwrap_or("python3"), &["-c", PYTHON_PROBE]);
    let (python, venv) = python_status(python_run.as_ref().map(|(ok, out)| (*ok, out.as_str())), configured_python.as_deref());
    let postgres = find_in(&path, &["initdb"]).or_else(|| find_in(&postgres_bin_dirs(), &["initdb"]));
    let promtool = match std::env::var_os("PROMTOOL") {
        // deploy/check.sh runs whatever PROMTOOL names, without looking further.
        Some(file) if !file.is_empty() && Path::new(&file).is_file() => Status::Found,
        Some(file) if !file.is_empty() => Status::Unusable(format!("PROMTOOL={} is not a file: unset it or fix it", file.to_string_lossy())),
        _ => found_if(find_in(&path, &["promtool"]).is_some()),
    };
    vec![
        (Tool::RedisServer, found_if(find_in(&path, &["redis-server"]).is_some())),
        (Tool::Chromium, chromium),
        (Tool::Node, node),
        (Tool::Npm, found_if(find_in(&path, &["npm"]).is_some())),
        (Tool::Python, python),
        (Tool::PythonVenv, venv),
        (Tool::Postgres, found_if(postgres.is_some())),
        (Tool::Promtool, promtool),
        (Tool::WasmTarget, found_if(wasm_target_installed(wasm_target))),
    ]
}

/// Whether rustup lists `target` as installed (false when rustup cannot run).
pub fn wasm_target_installed(target: &str) -> bool {
    output_of("rustup", &["target", "list", "--installed"])
        .is_some_and(|(ok, out)| ok && out.lines().any(|line| line.trim() == target))
}

/// Who may install here.
fn machine() -> Machine {
    let root = output_of("id", &["-u"]).is_some_and(|(ok, out)| ok && out.trim() == "0");
    // `-n`: never prompt; a password prompt in the middle of a test run helps no one.
    let passwordless_sudo = !root && Command::new("sudo").args(["-n", "true"]).output().is_ok_and(|o| o.status.success());
    let apt = Command::new("apt-get").arg("--version").output().is_ok_and(|o| o.status.success());
    let install_allowed = std::env::var_os("XTASK_NO_INSTALL").is_none_or(|v| v.is_empty() || v == "0");
    Machine { root, passwordless_sudo, apt, install_allowed }
}

/// `apt-get args`, through `sudo -n` if asked, non-interactive.
fn apt_get(sudo: bool, args: &[&str]) -> Result<(), String> {
    let mut command = if sudo {
        // sudo resets the environment, so `env` sets DEBIAN_FRONTEND on its far side.
        let mut command = Command::new("sudo");
        command.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        command
    } else {
        let mut command = Command::new("apt-get");
        command.env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    command.args(args);
    crate::run(command)
}

/// Makes sure everything `cargo xtask test` needs is there: installs what is
/// missing when allowed, or fails with the command to run.
pub fn ensure(wasm_target: &str) -> Result<(), String> {
    let statuses = look(wasm_target);
    let machine = machine();
    let installation = match plan(&statuses, &machine) {
        Plan::Ready => {
            eprintln!("xtask: test prerequisites present: {}", found_names(&statuses));
            return Ok(());
        }
        Plan::Stop(message) => return Err(message),
        Plan::Install(installation) => installation,
    };
    eprintln!("xtask: {}", installation.announcement());
    if !installation.packages.is_empty() {
        apt_get(installation.sudo, &["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q"];
        args.extend(&installation.packages);
        apt_get(installation.sudo, &args)?;
    }
    if installation.wasm_target {
        crate::ensure_wasm_target()?;
    }
    // Look again: a package that installed without providing the command is a stop, not a later test failure.
    let statuses = look(wasm_target);
    match plan(&statuses, &Machine { install_allowed: false, ..machine }) {
        Plan::Ready => {
            eprintln!("xtask: test prerequisites present: {}", found_names(&statuses));
            Ok(())
        }
        Plan::Install(_) | Plan::Stop(_) => {
            let missing: Vec<&str> = statuses.iter().filter(|(_, s)| *s != Status::Found).map(|(t, _)| t.name()).collect();
            Err(format!("still missing after installing: {}", missing.join(", ")))
        }
    }
}

fn found_names(statuses: &[(Tool, Status)]) -> String {
    statuses.iter().filter(|(_, s)| *s == Status::Found).map(|(t, _)| t.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: Machine = Machine { root: true, passwordless_sudo: false, apt: true, install_allowed: true };
    const USER: Machine = Machine { root: false, passwordless_sudo: false, apt: true, install_allowed: true };
    const SUDOER: Machine = Machine { root: false, passwordless_sudo: true, apt: true, install_allowed: true };

    fn statuses(missing: &[Tool]) -> Vec<(Tool, Status)> {
        Tool::ALL
            .iter()
            .map(|&t| (t, if missing.contains(&t) { Status::Missing } else { Status::Found }))
            .collect()
    }

    #[test]
    fn every_tool_but_the_wasm_target_has_a_debian_package() {
        for tool in Tool::ALL {
            match source(tool) {
                Source::Rustup => assert_eq!(tool, Tool::WasmTarget),
                Source::Apt(package) => assert!(!package.is_empty()),
            }
        }
        assert_eq!(source(Tool::Node), Source::Apt("nodejs"));
        assert_eq!(source(Tool::Postgres), Source::Apt("postgresql"));
        assert_eq!(source(Tool::PythonVenv), Source::Apt("python3-venv"));
        assert_eq!(source(Tool::Promtool), Source::Apt("prometheus"));
    }

    #[test]
    fn packages_come_once_in_a_fixed_order() {
        let tools = [Tool::Promtool, Tool::Postgres, Tool::WasmTarget, Tool::RedisServer, Tool::Npm, Tool::Chromium, Tool::Node];
        assert_eq!(packages_for(&tools), ["redis-server", "chromium", "nodejs", "npm", "postgresql", "prometheus"]);
        assert!(packages_for(&[Tool::WasmTarget]).is_empty());
    }

    #[test]
    fn nothing_missing_is_ready_whoever_runs_it() {
        for machine in [ROOT, USER, SUDOER] {
            assert_eq!(plan(&statuses(&[]), &machine), Plan::Ready);
        }
    }

    #[test]
    fn root_installs_the_missing_packages_without_sudo() {
        let Plan::Install(installation) = plan(&statuses(&[Tool::Chromium, Tool::Postgres]), &ROOT) else {
            panic!("root should install")
        };
        assert_eq!(installation.packages, ["chromium", "postgresql"]);
        assert!(!installation.sudo);
        assert!(!installation.wasm_target);
        let text = installation.announcement();
        assert!(text.contains("chromium (apt package chromium): tests/dashboard.rs"), "{text}");
        assert!(text.contains("initdb (apt package postgresql)"), "{text}");
    }

    #[test]
    fn a_missing_promtool_installs_debians_prometheus() {
        let Plan::Install(installation) = plan(&statuses(&[Tool::Promtool]), &ROOT) else { panic!("root should install") };
        assert_eq!(installation.packages, ["prometheus"]);
        let text = installation.announcement();
        assert!(text.contains("promtool (apt package prometheus): deploy/check.sh checks the alert rules"), "{text}");
        let Plan::Stop(message) = plan(&statuses(&[Tool::Promtool]), &USER) else { panic!("a plain user cannot install") };
        assert!(message.contains("sudo apt-get install -y prometheus\n"), "{message}");
    }

    #[test]
    fn passwordless_sudo_installs_through_sudo() {
        let Plan::Install(installation) = plan(&statuses(&[Tool::RedisServer]), &SUDOER) else {
            panic!("a passwordless sudoer should install")
        };
        assert_eq!(installation.packages, ["redis-server"]);
        assert!(installation.sudo);
    }

    #[test]
    fn a_user_without_sudo_gets_one_command_to_run() {
        let missing = [Tool::RedisServer, Tool::Chromium, Tool::Node, Tool::Npm, Tool::Postgres];
        let Plan::Stop(message) = plan(&statuses(&missing), &USER) else { panic!("a plain user cannot install") };
        assert!(
            message.contains("\n  sudo apt-get update && sudo apt-get install -y redis-server chromium nodejs npm postgresql\n"),
            "{message}"
        );
        assert!(message.contains("neither as root nor with passwordless sudo"), "{message}");
        assert!(message.contains("redis-server (package redis-server): tests compare"), "{message}");
    }

    #[test]
    fn no_install_as_root_reports_a_command_without_sudo() {
        let machine = Machine { install_allowed: false, ..ROOT };
        let Plan::Stop(message) = plan(&statuses(&[Tool::Npm]), &machine) else { panic!("XTASK_NO_INSTALL stops") };
        assert!(message.contains("\n  apt-get update && apt-get install -y npm\n"), "{message}");
        assert!(message.contains("XTASK_NO_INSTALL is set"), "{message}");
    }

    #[test]
    fn without_apt_the_debian_names_are_a_hint() {
        let machine = Machine { apt: false, ..ROOT };
        let Plan::Stop(message) = plan(&statuses(&[Tool::Postgres]), &machine) else { panic!("no apt-get, no install") };
        assert!(message.contains("your package manager (on Debian: apt-get install -y postgresql)"), "{message}");
        assert!(message.contains("there is no apt-get"), "{message}");
    }

    #[test]
    fn a_missing_wasm_target_alone_needs_no_privileges() {
        for machine in [ROOT, USER, Machine { apt: false, install_allowed: false, ..USER }] {
            let Plan::Install(installation) = plan(&statuses(&[Tool::WasmTarget]), &machine) else {
                panic!("rustup needs no root")
            };
            assert!(installation.packages.is_empty());
            assert!(installation.wasm_target);
        }
    }

    #[test]
    fn an_unusable_tool_stops_even_root_and_says_why() {
        let mut all = statuses(&[Tool::Chromium]);
        all[4].1 = Status::Unusable("python3 is 3.9; the checks need 3.11 or newer".into());
        let Plan::Stop(message) = plan(&all, &ROOT) else { panic!("no package fixes an old Python") };
        assert!(message.contains("python3: python3 is 3.9"), "{message}");
        // The missing package is still named, with the command; root could have installed it.
        assert!(message.contains("apt-get install -y chromium"), "{message}");
        assert!(!message.contains("not here:"), "{message}");
    }

    #[test]
    fn python_statuses() {
        assert_eq!(python_status(None, None), (Status::Missing, Status::Missing));
        assert_eq!(python_status(Some((true, "3.11\n")), None), (Status::Found, Status::Found));
        assert_eq!(python_status(Some((true, "3.13\n")), None), (Status::Found, Status::Found));
        assert_eq!(python_status(Some((false, "3.11\n")), None), (Status::Found, Status::Missing));
        let (old, _) = python_status(Some((true, "3.9\n")), None);
        assert!(matches!(old, Status::Unusable(ref m) if m.contains("3.9") && m.contains("PYTHON=")), "{old:?}");
        // A configured interpreter is the user's to fix: no package for it.
        let (python, _) = python_status(None, Some("/opt/py/bin/python"));
        assert!(matches!(python, Status::Unusable(ref m) if m.contains("PYTHON=/opt/py/bin/python")), "{python:?}");
        let (_, venv) = python_status(Some((false, "3.12\n")), Some("/opt/py/bin/python"));
        assert!(matches!(venv, Status::Unusable(_)), "{venv:?}");
    }

    #[test]
    fn node_statuses() {
        assert_eq!(node_status(None), Status::Missing);
        assert_eq!(node_status(Some("v20.20.2\n")), Status::Found);
        assert_eq!(node_status(Some("v18.19.0")), Status::Found);
        assert!(matches!(node_status(Some("v12.22.12")), Status::Unusable(m) if m.contains("18 or newer")));
        assert!(matches!(node_status(Some("garbage")), Status::Unusable(_)));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("3.11"), Some((3, 11, 0)));
        assert_eq!(parse_version("20.20.2"), Some((20, 20, 2)));
        assert_eq!(parse_version("x.1"), None);
        assert_eq!(parse_version(""), None);
    }
}

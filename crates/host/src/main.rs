//! `spin-host`: build and serve a Spin application without the Spin CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spin_host::manifest::Manifest;
use spin_host::logging::LogFormat;
use spin_host::server::Drained;
use spin_host::{App, AppOptions, RedisMode, SpinRedisDefects, StoreMode};

// Requests allocate and free many small objects across two runtimes' threads;
// mimalloc's thread-local free lists beat glibc's arenas here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (libmimalloc-sys
/// names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed memory to the system at once rather than after mimalloc's
/// default second: the compile at start-up and bursts of large requests then
/// leave 20–40 MB less resident, at no measurable cost per request.
fn purge_freed_memory_at_once() {
    // SAFETY: setting an option is allowed at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

#[derive(Parser)]
#[command(name = "spin-host", version, about = "Runs a Spin app (spin.toml) on wasmtime, as `spin up` would")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run every component's build command, like `spin build`.
    Build {
        /// The application manifest.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// Serve the application over HTTP.
    Up {
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000", env = "SPIN_HTTP_LISTEN_ADDR")]
        listen: SocketAddr,
        /// Build the components first.
        #[arg(long)]
        build: bool,
        /// Runtime configuration (key-value stores, state directory).
        #[arg(long = "runtime-config-file")]
        runtime_config: Option<PathBuf>,
        /// Where the default key-value database lives (default: `.spin` next to the manifest;
        /// an empty value keeps it in memory).
        #[arg(long, value_parser = parse_path)]
        state_dir: Option<PathBuf>,
        /// Set an application variable, overriding SPIN_VARIABLE_<NAME> (repeatable).
        #[arg(long = "variable", value_parser = parse_variable)]
        variables: Vec<(String, String)>,
        /// Which Redis the guests reach.
        #[arg(long, value_enum, default_value = "auto", env = "SPIN_HOST_REDIS")]
        redis: RedisMode,
        /// `spin`: every key-value write is its own durable SQLite transaction and every
        /// guest Redis `open` a new connection, as under `spin up`, to see Spin's costs.
        #[arg(long, value_enum, default_value = "fast", env = "SPIN_HOST_STORE_MODE")]
        store_mode: StoreMode,
        /// Make Redis-backed key-value stores (runtime config `type = "redis"`) behave
        /// like Spin v4.0.2's: every swap reported as failed, `get-many` broken.
        #[arg(long, value_enum, default_value = "none", env = "SPIN_HOST_KV_REDIS_DEFECTS")]
        kv_redis_defects: SpinRedisDefects,
        /// Serve the host's own metrics (Prometheus text format) on this address.
        #[arg(long, env = "SPIN_HOST_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        /// The memory the host may use (bytes, or 512Mi, 2Gi...), exported as
        /// spin_host_memory_limit_bytes for the memory alert; default: the cgroup's limit.
        #[arg(long, value_name = "SIZE", value_parser = spin_host::memory::parse_size, env = "SPIN_HOST_MEMORY_LIMIT")]
        memory_limit: Option<u64>,
        /// Do not print a line per request.
        #[arg(long)]
        quiet: bool,
        /// `json`: one JSON object per line (request id, method, path, component, status,
        /// duration, client), guests' stderr lines tagged with the request id and component.
        /// `auto`: text on a terminal, JSON otherwise.
        #[arg(long, value_enum, default_value = "auto", env = "SPIN_HOST_LOG_FORMAT")]
        log_format: LogFormat,
        /// On SIGTERM or Ctrl-C, how long requests in flight may take to finish
        /// before the host exits anyway (new connections are refused at once).
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds, env = "SPIN_HOST_DRAIN_TIMEOUT")]
        drain_timeout: f64,
        /// In `--store-mode spin`, the CPU Spin's own request path, its reset of an
        /// instance's memory and its host calls take beyond this host's
        /// (calibrated against Spin 4.0.2; see the README).
        #[arg(long, value_name = "request=US,memory-page=US,host-call=US", value_parser = spin_host::spin_model::parse, env = "SPIN_HOST_SPIN_COSTS")]
        spin_costs: Option<spin_host::spin_model::SpinCosts>,
        /// Fault injection for crash tests: abort the process (as `kill -9` would)
        /// right after the N-th write, counted over every request, key-value store
        /// and guest Redis connection.
        #[arg(long, value_name = "N", env = "SPIN_HOST_CRASH_AFTER_KV_WRITES")]
        crash_after_kv_writes: Option<u64>,
    },
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds from 0 to 86400")),
    }
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

/// Any path, the empty one included (clap's own path parser refuses it).
fn parse_path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

fn build(manifest: &std::path::Path) -> anyhow::Result<()> {
    spin_host::build_components::build(&Manifest::load(manifest)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    purge_freed_memory_at_once();
    match Cli::parse().command {
        Commands::Build { manifest } => build(&manifest),
        Commands::Up {
            manifest,
            listen,
            build: also_build,
            runtime_config,
            state_dir,
            variables,
            redis,
            store_mode,
            kv_redis_defects,
            metrics_listen,
            memory_limit,
            quiet,
            log_format,
            crash_after_kv_writes,
            drain_timeout,
            spin_costs,
        } => {
            if also_build {
                build(&manifest)?;
            }
            let options = AppOptions {
                manifest,
                runtime_config,
                state_dir,
                variables: variables.into_iter().collect(),
                redis,
                store_mode,
                redis_defects: kv_redis_defects,
                log_requests: !quiet,
                log_format,
                crash_after_kv_writes,
                spin_costs: spin_costs.unwrap_or(spin_host::spin_model::SpinCosts::CALIBRATED),
            };
            let app = App::load(options).await?;
            spin_host::telemetry::metrics().set_memory_limit(memory_limit);
            if let Some(address) = metrics_listen {
                let listener = spin_host::telemetry::bind(address).await?;
                println!("Host metrics on http://{}/metrics", listener.local_addr().context("metrics listener has no address")?);
                tokio::spawn(spin_host::telemetry::serve(listener));
            }
            let listener = spin_host::server::bind(listen).await?;
            let address = listener.local_addr().context("listener has no address")?;
            let redis = match app.redis().embedded() {
                Some(_) => "embedded Redis".to_string(),
                None => "external Redis".to_string(),
            };
            println!("Serving http://{address} ({redis}); Ctrl-C to stop");
            let stopping = async {
                spin_host::server::shutdown_signal().await;
                println!("Stopping: no new connections; requests in flight may finish for up to {drain_timeout} s (signal again to stop now)");
                // A second signal ends the process at once.
                tokio::spawn(async {
                    spin_host::server::shutdown_signal().await;
                    eprintln!("Stopped without waiting for requests in flight.");
                    std::process::exit(130);
                });
            };
            let drain = std::time::Duration::from_secs_f64(drain_timeout);
            match spin_host::server::serve(app, listener, stopping, drain).await? {
                Drained::All => println!("Stopped."),
                Drained::TimedOut => println!("Stopped; requests still running after {drain_timeout} s were abandoned (none was answered)."),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_state_dir_is_accepted() {
        let cli = Cli::try_parse_from(["spin-host", "up", "--state-dir", ""]).expect("parses");
        let Commands::Up { state_dir, .. } = cli.command else { panic!("not up") };
        assert_eq!(state_dir, Some(PathBuf::new()));
    }

    #[test]
    fn a_memory_limit_takes_kubernetes_units() {
        let cli = Cli::try_parse_from(["spin-host", "up", "--memory-limit", "512Mi"]).expect("parses");
        let Commands::Up { memory_limit, .. } = cli.command else { panic!("not up") };
        assert_eq!(memory_limit, Some(512 << 20));
        assert!(Cli::try_parse_from(["spin-host", "up", "--memory-limit", "lots"]).is_err());
    }
}

//! `bench`: the API end to end through `spin-host`, scenario by scenario.
//! Run it as `cargo xtask bench [--quick]`, which builds everything in
//! release mode first.
//!
//! For each store mode (`fast`, and `spin`: Spin's SQLite costs, a durable
//! transaction per write and a Redis connection per open) and Redis kind
//! (embedded, a real `redis-server`):
//! 1. the floor: the trivial hello component (`tests/fixtures/hello`);
//! 2. with the cache on: ingest, the summary served from the cache, the
//!    first page of the list, and one write for every nine summaries of the
//!    same type (cache hit rate and upstream calls counted);
//! 3. with the cache off: the summary over the small and the large seeded
//!    type, then with the circuit breaker open.
//!
//! Then the replicas: one and two hosts sharing a key-value store on one
//! redis-server and their losable state on another (ingest and uncached
//! summary, with Redis round trips and connections per ingest).
//!
//! Each host gets its own temporary state directory holding a copy of the
//! seeded key-value file, and (for the real Redis) its own empty server.

mod disk;
mod host;
mod load;
mod report;
mod seed;
mod soak;
mod versus;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use clap::{Parser, ValueEnum};

use host::{Host, HostConfig, RedisKind, RedisServer};
use load::{Body, Expect, Plan};
use report::{Backend, Row, Run, Scenario, Section, Store, BATCH_SIZE};
use seed::Seed;

/// Concurrent keep-alive connections, in every scenario.
const CONNECTIONS: usize = 32;
/// Stored metrics of the small type (the cached summary, the uncached baseline).
const SMALL: u64 = 1_000;
/// Types the ingest scenario spreads its metrics over (one per connection, round robin).
const INGEST_TYPES: usize = 8;
/// Upper bound on requests per second of scenario, so a run is bounded in count too.
const MAX_REQUESTS_PER_SECOND: u64 = 200_000;
/// How often the host's memory is sampled.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Breaker open time for the breaker scenario: longer than any run.
const BREAKER_RESET_SECONDS: &str = "3600";
/// In the mixed scenario, one request in this many posts a metric.
const MIXED_WRITES_EVERY: u64 = 10;
/// The upstream context's TTL in the mixed scenario (the app's default).
const CONTEXT_TTL_SECONDS: f64 = 30.0;

#[derive(Parser)]
#[command(name = "bench", about = "Throughput, latency and memory of the API through spin-host (use `cargo xtask bench`)")]
struct Cli {
    /// 3 s per scenario instead of 10.
    #[arg(long)]
    quick: bool,
    /// Seconds per scenario (overrides --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Which Redis the app scenarios run against.
    #[arg(long, value_enum, default_value = "both")]
    redis: RedisChoice,
    /// Which runtimes to run: the host's `fast` and `spin` store modes
    /// (`spin`: Spin's costs), and `real` Spin (the `spin` CLI named by
    /// `--spin-bin`; in the `stores` part only). Default: all that can run.
    #[arg(long, value_enum, value_delimiter = ',')]
    store: Vec<StoreChoice>,
    /// The Spin CLI for the real-Spin rows (default: `SPIN_BIN`); build
    /// v4.0.2 with `../shared/tools/build-spin.sh`.
    #[arg(long, env = "SPIN_BIN")]
    spin_bin: Option<PathBuf>,
    /// Leave out the replica scenarios.
    #[arg(long)]
    no_replicas: bool,
    /// Instead of the scenarios: the soak, this many minutes of the mixed
    /// load per store mode, measured minute by minute.
    #[arg(long, value_name = "MINUTES")]
    soak: Option<usize>,
    /// Which parts to run: `api` (every scenario through the host on the
    /// SQLite store, seeded with a million metrics), `stores` (the floor,
    /// ingest, the cached summary and the mixed load on each of `--backends`)
    /// and `disk` (bytes per metric and the fold's cost, natively).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["api", "stores", "disk"])]
    parts: Vec<Part>,
    /// The stores of the `stores` part: `sqlite` (Spin's key-value store on
    /// SQLite), `kv-redis` (Spin's key-value store on Redis), `redis` (Redis
    /// spoken to directly, `store_backend = "redis"`), `postgres` (a private
    /// PostgreSQL with fsync on, `store_backend = "postgres"`).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["sqlite", "kv-redis", "redis", "postgres"])]
    backends: Vec<Backend>,
    /// Metrics of the large type (uncached summary, list); the targets assume 1 000 000.
    #[arg(long, default_value_t = 1_000_000)]
    large: u64,
    /// Spin's costs for `--store-mode spin` hosts (`request=US,host-call=US,store-op=US,connect=US`), to calibrate the model.
    #[arg(long)]
    spin_costs: Option<String>,
    /// Run the `stores` part's app hosts with `auth = "required"` and send an
    /// ingest+read key with every request (what checking a key costs).
    #[arg(long)]
    with_key: bool,
    /// Worker threads of the load generator (the machine's cores are shared with the host).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The spin-host binary (default: next to this one).
    #[arg(long)]
    host_bin: Option<PathBuf>,
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// The workspace root (default: where this crate was built from).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Where the JSON results go (default: <root>/bench/results).
    #[arg(long)]
    results_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RedisChoice {
    Embedded,
    External,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Api,
    Stores,
    Disk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreChoice {
    Fast,
    Spin,
    Real,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::spawn(stop_on_signal());
        run(cli).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C, SIGTERM or SIGHUP: stop every child, remove the temporary files, exit.
async fn stop_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("bench: cannot install signal handlers; children are still killed if the benchmark dies");
        return;
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
        _ = hup.recv() => {},
    }
    eprintln!("\nbench: interrupted; stopping the host and Redis");
    host::stop_everything();
    std::process::exit(130);
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Settings and paths shared by every scenario.
struct Bench {
    root: PathBuf,
    host_bin: PathBuf,
    redis_server: PathBuf,
    work: PathBuf,
    /// The seeded key-value file each app host starts from.
    template: PathBuf,
    duration: Duration,
    warmup: Duration,
    small_type: String,
    large_type: String,
    large: u64,
    seed_copy: Duration,
    host_logs: Vec<report::HostLog>,
    spin_costs: Option<String>,
    /// The Spin CLI, for the sections of [`Store::Real`].
    spin_bin: Option<PathBuf>,
    /// With `--with-key`: the key every scenario's requests carry.
    api_key: Option<String>,
    with_key: bool,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let root = match &cli.root {
        Some(root) => root.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("bench lives in the workspace")?.to_path_buf(),
    };
    let host_bin = match &cli.host_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("locating this binary")?.with_file_name("spin-host"),
    };
    ensure!(
        host_bin.is_file(),
        "{} does not exist; run the benchmark with `cargo xtask bench`, which builds it",
        host_bin.display()
    );
    ensure!(cli.large > SMALL, "--large must be more than {SMALL}");
    let seconds = cli.duration.unwrap_or(if cli.quick { 3.0 } else { 10.0 });
    ensure!(seconds > 0.0 && seconds <= 600.0, "--duration must be within (0, 600] seconds");
    let kinds = match cli.redis {
        RedisChoice::Embedded => vec![RedisKind::Embedded],
        RedisChoice::External => vec![RedisKind::External],
        RedisChoice::Both => vec![RedisKind::Embedded, RedisKind::External],
    };
    let wanted = if cli.store.is_empty() { vec![StoreChoice::Fast, StoreChoice::Spin, StoreChoice::Real] } else { cli.store.clone() };
    let spin_bin = match (&cli.spin_bin, wanted.contains(&StoreChoice::Real)) {
        (Some(path), true) => {
            ensure!(path.is_file(), "--spin-bin / SPIN_BIN: {} is not a file", path.display());
            Some(path.clone())
        }
        (None, true) if !cli.store.is_empty() => bail!("--store real needs the Spin CLI: set SPIN_BIN or --spin-bin"),
        _ => None,
    };
    let mut stores: Vec<Store> = wanted
        .iter()
        .filter_map(|s| match s {
            StoreChoice::Fast => Some(Store::Fast),
            StoreChoice::Spin => Some(Store::Spin),
            StoreChoice::Real => None,
        })
        .collect();
    if spin_bin.is_some() {
        stores.push(Store::Real);
    }

    let work = tempfile::Builder::new().prefix("spin-bench-").tempdir().context("creating a temporary directory")?;
    host::register_temp_dir(work.path());
    let unix_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    println!(
        "bench: {seconds} s per scenario after a warm-up, {CONNECTIONS} connections, {} load thread(s), {cpus} CPUs (load average {load_average}); host {}",
        cli.client_threads,
        host_bin.display()
    );

    let seeds = [
        Seed { metric_type: format!("bench_{SMALL}"), count: SMALL },
        Seed { metric_type: format!("bench_{}", cli.large), count: cli.large },
    ];
    if let Some(minutes) = cli.soak {
        stores.retain(|s| *s != Store::Real);
        return soak(&cli, &root, &host_bin, work.path(), &stores, minutes).await;
    }
    let template = work.path().join("seed.db");
    let api = cli.parts.contains(&Part::Api);
    let stats = if api {
        println!("bench: seeding {} + {} metrics over the last 30 days ...", SMALL, cli.large);
        seed::seed_file(&template, &seeds, now_ms())?
    } else {
        seed::SeedStats::default()
    };
    println!(
        "bench: seeded {} rows ({:.0} MB) in {:.1} s ({:.1} s computing, {:.1} s writing SQLite)",
        stats.rows,
        report::mb(stats.file_bytes),
        stats.compute_seconds + stats.write_seconds,
        stats.compute_seconds,
        stats.write_seconds
    );

    let mut bench = Bench {
        root: root.clone(),
        host_bin,
        redis_server: cli.redis_server.clone(),
        work: work.path().to_path_buf(),
        template,
        duration: Duration::from_secs_f64(seconds),
        warmup: Duration::from_secs_f64(if seconds < 5.0 { 0.5 } else { 1.0 }),
        small_type: seeds[0].metric_type.clone(),
        large_type: seeds[1].metric_type.clone(),
        large: cli.large,
        seed_copy: Duration::ZERO,
        host_logs: Vec::new(),
        spin_costs: cli.spin_costs.clone(),
        spin_bin,
        api_key: None,
        with_key: cli.with_key,
    };
    let mut rows = Vec::new();
    if api {
        for &store in stores.iter().filter(|s| **s != Store::Real) {
            for &kind in &kinds {
                rows.extend(section(&mut bench, Section { store, backend: Backend::Sqlite, redis: kind }).await?);
            }
        }
        if !cli.no_replicas {
            rows.extend(replicas(&mut bench).await?);
        }
    }
    if let (Ok(dir), Ok(python)) = (std::env::var("PEER_DIR"), std::env::var("PEER_PYTHON")) {
        rows.extend(peer(&mut bench, Path::new(&dir), Path::new(&python)).await?);
    } else {
        println!("\nbench: PEER_DIR and PEER_PYTHON are not set: the peer is left out (README, \"Performance\")");
    }
    if cli.parts.contains(&Part::Stores) {
        if bench.spin_bin.is_none() {
            println!(
                "\nbench: SPIN_BIN is not set: the real-Spin rows are missing. Build Spin v4.0.2 once with \
                 ../shared/tools/build-spin.sh (outside this repository, 30-45 min) and set SPIN_BIN to the binary it prints"
            );
        }
        for &store in &stores {
            for &backend in &cli.backends {
                rows.extend(on_store(&mut bench, Section { store, backend, redis: RedisKind::External }).await?);
            }
        }
    }
    let disk = if cli.parts.contains(&Part::Disk) {
        println!("\nbench: --- disk: the write path natively, into SQLite ---");
        disk::run(work.path(), now_ms())?
    } else {
        Vec::new()
    };

    let mut targets = report::targets(&rows, cli.large, SMALL);
    targets.extend(versus::targets(&rows));
    let run = Run {
        unix_time,
        git_commit: git_commit(&root),
        quick: cli.quick,
        seconds_per_scenario: seconds,
        warmup_seconds: bench.warmup.as_secs_f64(),
        connections: CONNECTIONS,
        client_threads: cli.client_threads,
        cpus,
        load_average_at_start: load_average,
        load_average_at_end: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string(),
        small_metrics: SMALL,
        large_metrics: cli.large,
        seeding: stats,
        seed_copy_seconds: bench.seed_copy.as_secs_f64(),
        rows,
        targets,
        disk,
        host_logs: bench.host_logs,
        notes: vec![
            format!("the load generator runs on the same {cpus} CPUs as the host (and redis-server): every figure is for a shared machine"),
            "req/s counts expected answers only; latencies are of every answer, closed loop (no coordinated-omission correction)".into(),
            "app hosts run with rate_limit_requests=4294967295 and the simulator at 0 ms latency and 0 failures (the breaker scenario sets failure_rate 1.0 at run time)".into(),
            format!("ingest spreads over {INGEST_TYPES} types with timestamp now; uncached summaries use period=monthly (the whole seeded span), the cached one period=daily (a trailing window: its cache entry is renewed once a second)"),
            "an uncached summary runs with the cache and the context cache off: it reads every bucket and calls the simulator (a second component instance, by service chaining) through the breaker, whose state is read and compare-and-set in Redis".into(),
            format!("mixed: each connection posts a metric of one type, then asks for its hourly summary {} times; every answer must count every acknowledged metric (the tests check that), so the cache serves an exact hit only until the next post", MIXED_WRITES_EVERY - 1),
            "store spin: every key-value write is its own SQLite transaction with the default rollback journal and full sync, on one locked connection, and every guest Redis open is a new connection, as under Spin 4; store fast: one shared transaction committed before each response, pooled connections".into(),
            "replicas: hosts in fast mode with the key-value store on one redis-server (runtime config type = \"redis\") and redis_url on another; connections are split evenly over the replicas; all of it shares the 2 cores".into(),
            "with the embedded Redis the host's RSS includes Redis' data (e.g. the rate-limit log of every ingest of the last 60 s); with redis-server it does not".into(),
        ],
    };
    print!("{}", report::render(&run));
    print!("{}", versus::render(&run.rows));
    let dir = cli.results_dir.clone().unwrap_or_else(|| root.join("bench").join("results"));
    let path = report::save(&run, &dir)?;
    println!("\nbench: results written to {}", path.display());
    drop(work);
    Ok(())
}

/// The soak of every store mode at once (the modes share the machine, and
/// the connections), each on its own redis-server, from an empty store.
async fn soak(cli: &Cli, root: &Path, host_bin: &Path, work: &Path, stores: &[Store], minutes: usize) -> anyhow::Result<()> {
    ensure!(minutes >= 2, "a soak needs at least 2 minutes (the first is the warm-up)");
    let connections = (CONNECTIONS / stores.len()).max(1);
    let mut running = Vec::new();
    for &store in stores {
        let section = Section { store, backend: Backend::Sqlite, redis: RedisKind::External };
        println!("bench: soak {} for {minutes} min over {connections} connections", section.name());
        let redis = RedisServer::start(&cli.redis_server, work).context("starting redis-server (apt-get install redis-server)")?;
        let state_dir = work.join(format!("soak-{}", section.name().replace('/', "-")));
        let log = work.join(format!("soak-{}.log", section.name().replace('/', "-")));
        let mut host = Host::start(&HostConfig {
            binary: host_bin,
            manifest: &root.join("spin.toml"),
            state_dir: &state_dir,
            redis: RedisKind::External,
            store_mode: if store == Store::Spin { "spin" } else { "fast" },
            runtime_config: None,
            variables: &app_variables(Some(&redis), &[]),
            log: &log,
            spin_costs: cli.spin_costs.as_deref(),
        })
        .await?;
        running.push(tokio::spawn(async move {
            let result = soak::run(&mut host, &section.name(), minutes, connections).await;
            let stopped = host.stop();
            let redis_stopped = redis.stop();
            let soak = result?;
            stopped?;
            redis_stopped?;
            anyhow::Ok(soak)
        }));
    }
    let mut soaks = Vec::new();
    for task in running {
        soaks.push(task.await.context("a soak task panicked")??);
    }
    print!("{}", soak::render(&soaks));
    let dir = cli.results_dir.clone().unwrap_or_else(|| root.join("bench").join("results"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("soak-{}.json", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())));
    std::fs::write(&path, serde_json::to_string_pretty(&serde_json::json!({"git_commit": git_commit(root), "minutes": minutes, "soaks": soaks}))?)?;
    println!("\nbench: soak results written to {}", path.display());
    Ok(())
}

fn git_commit(root: &Path) -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    match run(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{commit} (with uncommitted changes)"),
        _ => commit,
    }
}

/// Every scenario of one section.
async fn section(bench: &mut Bench, section: Section) -> anyhow::Result<Vec<Row>> {
    println!("\nbench: --- {} ---", section.name());
    let kind = section.redis;
    let mut rows = Vec::new();
    let template = bench.template.clone();

    // 1. The floor. It makes no Redis calls; it runs in each section so every
    //    ratio compares against a floor measured under the same conditions.
    let hello = bench.root.join("tests/fixtures/hello/spin.toml");
    let mut host = start(bench, section, "floor", &hello, &[], None, None).await?;
    let mut target = Target { hosts: vec![&mut host], section, redis: vec![] };
    rows.push(measure(bench, &mut target, Scenario::Floor, get("/".into(), Expect::status(200))).await?);
    finish(bench, section, "floor", host)?;

    // 2. Cache on: ingest, the cached summary, the list, the mixed load.
    let app = bench.root.join("spin.toml");
    let redis = start_redis(bench, kind)?;
    let mut host = start(bench, section, "cached", &app, &app_variables(redis.as_ref(), &[]), Some(&template), None).await?;
    verify_seed(bench, &host).await?;
    let mut target = Target { hosts: vec![&mut host], section, redis: redis.iter().collect() };
    let types = (0..INGEST_TYPES).map(|i| format!("bench_ingest_{i}")).collect();
    let ingest = Requests { method: "POST", path: "/api/metrics".into(), body: Body::Metric { types }, expect: Expect::status(201) };
    rows.push(measure(bench, &mut target, Scenario::Ingest, ingest).await?);

    let types: Vec<String> = (0..INGEST_TYPES).map(|i| format!("bench_batch_{i}")).collect();
    let batches = Requests { method: "POST", path: "/api/metrics/batch".into(), body: Body::Batch { types, size: BATCH_SIZE }, expect: Expect::status(200) };
    let mut row = measure(bench, &mut target, Scenario::IngestBatch, batches).await?;
    // Reported in metrics per second.
    row.extra.insert("batches_per_second".into(), row.requests_per_second);
    row.requests_per_second *= BATCH_SIZE as f64;
    row.ok *= BATCH_SIZE as u64;
    rows.push(row);

    let cached = format!("/api/metrics/summary?type={}&period=daily", bench.small_type);
    warm_cache(target.hosts[0], &cached, bench.api_key.as_deref()).await?;
    let mut row = measure(bench, &mut target, Scenario::SummaryCached, get(cached, Expect::status(200))).await?;
    row.extra.insert("cache_hit_rate".into(), hit_rate(&row));
    rows.push(row);

    let list = format!("/api/metrics/list?type={}&limit=100", bench.large_type);
    let (_, page) = load::expect_json(target.hosts[0].address(), "GET", &list, None, 200).await?;
    ensure!(page.as_array().map(Vec::len) == Some(100), "{list} did not give 100 metrics: {page}");
    rows.push(measure(bench, &mut target, Scenario::List, get(list, Expect::status(200))).await?);

    let mixed_type = "bench_mixed".to_string();
    let mixed = Requests {
        method: "GET",
        path: format!("/api/metrics/summary?type={mixed_type}&period=hourly"),
        body: Body::Mixed { metric_type: mixed_type, writes_every: MIXED_WRITES_EVERY },
        expect: Expect::success(),
    };
    let calls_before = simulator_calls(target.hosts[0]).await?;
    let mut row = measure(bench, &mut target, Scenario::Mixed, mixed).await?;
    let calls = simulator_calls(target.hosts[0]).await? - calls_before;
    let summaries = row.extra.get("summaries").copied().unwrap_or(0.0);
    let span = row.seconds + bench.warmup.as_secs_f64();
    row.extra.insert("cache_hit_rate".into(), hit_rate(&row));
    row.extra.insert("summaries_per_second".into(), summaries / row.seconds);
    row.extra.insert("upstream_calls".into(), calls);
    row.extra.insert("upstream_calls_allowed".into(), (span / CONTEXT_TTL_SECONDS).ceil());
    rows.push(row);
    finish(bench, section, "cached", host)?;
    stop_redis(redis)?;

    // 3. Cache off: summaries of the small and the large type, then with the breaker open.
    let redis = start_redis(bench, kind)?;
    let extra = [
        ("cache_ttl_seconds", "0"),
        ("external_context_ttl_seconds", "0"),
        ("circuit_breaker_reset_timeout_seconds", BREAKER_RESET_SECONDS),
    ];
    let mut host = start(bench, section, "uncached", &app, &app_variables(redis.as_ref(), &extra), Some(&template), None).await?;
    verify_seed(bench, &host).await?;
    let mut target = Target { hosts: vec![&mut host], section, redis: redis.iter().collect() };
    let bypass = Expect { header: Some(("x-cache", "BYPASS")), body_contains: Some(r#""status":"success""#), status: 200 };
    for (scenario, metric_type) in [
        (Scenario::SummaryUncachedSmall, &bench.small_type),
        (Scenario::SummaryUncachedLarge, &bench.large_type),
    ] {
        let path = format!("/api/metrics/summary?type={metric_type}&period=monthly");
        rows.push(measure(bench, &mut target, scenario, get(path, bypass.clone())).await?);
    }
    let summary = format!("/api/metrics/summary?type={}&period=daily", bench.small_type);
    open_breaker(target.hosts[0], &summary).await?;
    let open = Expect { body_contains: Some(r#""reason":"circuit_open""#), ..Expect::status(200) };
    rows.push(measure(bench, &mut target, Scenario::BreakerOpen, get(summary, open)).await?);
    finish(bench, section, "uncached", host)?;
    stop_redis(redis)?;
    Ok(rows)
}

/// Every host's counters, summed by name.
async fn counters(target: &Target<'_>) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    let mut all = std::collections::HashMap::new();
    for host in &target.hosts {
        for (name, value) in host.counters().await? {
            *all.entry(name).or_insert(0.0) += value;
        }
    }
    Ok(all)
}

/// Share of summaries answered from the cache (HIT or PARTIAL).
fn hit_rate(row: &Row) -> f64 {
    let count = |k: &str| row.extra.get(&format!("x_cache_{k}")).copied().unwrap_or(0.0);
    let all = count("hit") + count("partial") + count("miss") + count("bypass");
    if all == 0.0 { 0.0 } else { (count("hit") + count("partial")) / all }
}

async fn simulator_calls(host: &Host) -> anyhow::Result<f64> {
    let (_, body) = load::expect_json(host.address(), "GET", "/api/simulator/config", None, 200).await?;
    body["calls"].as_f64().context("the simulator reports no call count")
}

/// One and two replicas sharing a key-value store on a redis-server.
async fn replicas(bench: &mut Bench) -> anyhow::Result<Vec<Row>> {
    let section = Section { store: Store::RedisKv, backend: Backend::KvRedis, redis: RedisKind::External };
    println!("\nbench: --- {} (replicas) ---", section.name());
    let app = bench.root.join("spin.toml");
    let mut rows = Vec::new();
    let types: Vec<String> = (0..INGEST_TYPES).map(|i| format!("bench_ingest_{i}")).collect();
    for (count, ingest_scenario, summary_scenario) in [
        (1, Scenario::IngestOneReplica, Scenario::SummaryOneReplica),
        (2, Scenario::IngestTwoReplicas, Scenario::SummaryTwoReplicas),
    ] {
        let store = start_redis(bench, RedisKind::External)?.context("a redis-server for the store")?;
        let cache = start_redis(bench, RedisKind::External)?.context("a redis-server for the cache")?;
        let config = bench.work.join(format!("replicas-{count}.toml"));
        std::fs::write(&config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", store.url()))?;
        let variables = app_variables(Some(&cache), &[("cache_ttl_seconds", "0"), ("external_context_ttl_seconds", "0")]);
        let mut hosts = Vec::new();
        for i in 0..count {
            hosts.push(start(bench, section, &format!("replica-{count}-{i}"), &app, &variables, None, Some(&config)).await?);
        }
        let mut target = Target { hosts: hosts.iter_mut().collect(), section, redis: vec![&store, &cache] };
        let ingest = Requests { method: "POST", path: "/api/metrics".into(), body: Body::Metric { types: types.clone() }, expect: Expect::status(201) };
        let mut row = measure(bench, &mut target, ingest_scenario, ingest).await?;
        for (name, server) in [("store", &store), ("cache", &cache)] {
            let clients = server.info()?.get("connected_clients").and_then(|v| v.parse().ok()).unwrap_or(0.0);
            row.extra.insert(format!("{name}_redis_connected_clients"), clients);
        }
        rows.push(row);
        let summary = format!("/api/metrics/summary?type={}&period=hourly", types[0]);
        rows.push(measure(bench, &mut target, summary_scenario, get(summary, Expect::status(200))).await?);
        drop(target);
        for (i, host) in hosts.into_iter().enumerate() {
            finish(bench, section, &format!("replica-{count}-{i}"), host)?;
        }
        store.stop()?;
        cache.stop()?;
    }
    Ok(rows)
}

/// The rows that compare the stores (and the host with real Spin): the
/// floor, ingest, the cached summary of a type of 1 000 metrics, and the
/// mixed load, from an empty store, with the cache on a redis-server (and a
/// Redis-backed store on another, append-only, fsync every second).
async fn on_store(bench: &mut Bench, section: Section) -> anyhow::Result<Vec<Row>> {
    println!("\nbench: --- {} ---", section.name());
    let mut rows = Vec::new();
    let hello = bench.root.join("tests/fixtures/hello/spin.toml");
    let mut host = start(bench, section, "floor", &hello, &[], None, None).await?;
    let mut target = Target { hosts: vec![&mut host], section, redis: vec![] };
    rows.push(measure(bench, &mut target, Scenario::Floor, get("/".into(), Expect::status(200))).await?);
    finish(bench, section, "floor", host)?;

    let store = RedisServer::start_durable(&bench.redis_server, &bench.work).context("starting redis-server for the store")?;
    let cache = start_redis(bench, RedisKind::External)?.context("a redis-server for the cache")?;
    // Durable (fsync on, as a deployment runs it): commits are what a write costs.
    let postgres = (section.backend == Backend::Postgres).then(|| support::postgres_server::PostgresServer::start_with(true));
    let config = bench.work.join(format!("{}.toml", section.name().replace('/', "-")));
    // What one store call per request costs: a key-value write and read on
    // Spin's store, or a new Redis connection and one command on the Redis
    // spoken to directly (Spin opens a connection for every request).
    {
        let probe = bench.root.join("tests/fixtures/probe/spin.toml");
        let runtime_config = (section.backend == Backend::KvRedis).then(|| {
            std::fs::write(&config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", store.url())).map(|()| config.clone())
        });
        let runtime_config = runtime_config.transpose()?;
        let variables = [("token".to_string(), "bench".to_string())];
        let mut host = start(bench, section, "probe", &probe, &variables, None, runtime_config.as_deref()).await?;
        let mut target = Target { hosts: vec![&mut host], section, redis: vec![&store] };
        // A probe answers 200 with `{"error": ...}` when its call fails.
        let answered = Expect { body_contains: Some(r#""value""#), ..Expect::status(200) };
        let probes = if let Some(pg) = &postgres {
            let url = format!("postgres%3A%2F%2Fpostgres%40127.0.0.1%3A{}%2Fpostgres", pg.port());
            vec![
                (Scenario::PgUpsertProbe, format!("/probe/pg-upsert?url={url}&key=probe")),
                (Scenario::PgReadProbe, format!("/probe/pg-get?url={url}&key=probe")),
            ]
        } else if section.backend == Backend::Redis {
            let url = format!("redis%3A%2F%2F127.0.0.1%3A{}", store.port());
            vec![
                (Scenario::RedisWriteProbe, format!("/probe/redis-incr?url={url}&key=probe")),
                (Scenario::RedisReadProbe, format!("/probe/redis-get?url={url}&key=probe")),
            ]
        } else {
            vec![(Scenario::WriteProbe, "/probe/incr?key=probe".to_string()), (Scenario::ReadProbe, "/probe/get?key=probe".to_string())]
        };
        for (scenario, path) in probes {
            rows.push(measure(bench, &mut target, scenario, get(path, answered.clone())).await?);
        }
        finish(bench, section, "probe", host)?;
    }
    let (variables, runtime_config) = match section.backend {
        Backend::KvRedis => {
            std::fs::write(&config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", store.url()))?;
            (app_variables(Some(&cache), &[]), Some(config.as_path()))
        }
        Backend::Sqlite => (app_variables(Some(&cache), &[]), None),
        Backend::Redis => {
            let url = store.url();
            (app_variables(Some(&cache), &[("store_backend", "redis"), ("store_redis_url", &url)]), None)
        }
        Backend::Postgres => {
            let pg = postgres.as_ref().context("the store's PostgreSQL")?;
            let (url, allowed) = (pg.url("postgres"), format!("postgres://127.0.0.1:{}", pg.port()));
            let store = [("store_backend", "postgres"), ("store_postgres_url", url.as_str()), ("store_postgres_allowed_host", allowed.as_str())];
            (app_variables(Some(&cache), &store), None)
        }
    };
    let app = bench.root.join("spin.toml");
    let mut variables = variables;
    if bench.with_key {
        variables.extend([("auth".to_string(), "required".to_string()), ("admin_token".to_string(), BENCH_ADMIN_TOKEN.to_string())]);
    }
    let mut host = start(bench, section, "app", &app, &variables, None, runtime_config).await?;
    bench.api_key = if bench.with_key { Some(bench_key(&host).await?) } else { None };
    seed_through_api(&host, &bench.small_type, SMALL, bench.api_key.as_deref()).await?;
    let mut target = Target { hosts: vec![&mut host], section, redis: vec![&store, &cache] };
    let types = (0..INGEST_TYPES).map(|i| format!("bench_ingest_{i}")).collect();
    let ingest = Requests { method: "POST", path: "/api/metrics".into(), body: Body::Metric { types }, expect: Expect::status(201) };
    rows.push(measure(bench, &mut target, Scenario::Ingest, ingest).await?);
    let cached = format!("/api/metrics/summary?type={}&period=daily", bench.small_type);
    warm_cache(target.hosts[0], &cached, bench.api_key.as_deref()).await?;
    let mut row = measure(bench, &mut target, Scenario::SummaryCached, get(cached, Expect::status(200))).await?;
    row.extra.insert("cache_hit_rate".into(), hit_rate(&row));
    rows.push(row);
    let mixed_type = "bench_mixed".to_string();
    let mixed = Requests {
        method: "GET",
        path: format!("/api/metrics/summary?type={mixed_type}&period=hourly"),
        body: Body::Mixed { metric_type: mixed_type, writes_every: MIXED_WRITES_EVERY },
        expect: Expect::success(),
    };
    let mut row = measure(bench, &mut target, Scenario::Mixed, mixed).await?;
    row.extra.insert("cache_hit_rate".into(), hit_rate(&row));
    if let Some(pg) = &postgres {
        // Bytes on disk per folded metric: raw rows, rollups, other records.
        for (name, value) in pg_bytes_per_metric(pg).await? {
            println!("bench: {} {name}: {value:.0}", section.name());
            row.extra.insert(name.into(), value);
        }
    }
    rows.push(row);
    drop(target);
    finish(bench, section, "app", host)?;
    bench.api_key = None;
    store.stop()?;
    cache.stop()?;
    Ok(rows)
}

/// Bytes per folded metric of each table (with its indexes and TOAST),
/// after a section's load: `analytics_metrics` (raw), `analytics_rollups`,
/// and `analytics_kv` (journals, claims, the rest).
async fn pg_bytes_per_metric(pg: &support::postgres_server::PostgresServer) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let client = pg.client("postgres").await;
    let sql = "SELECT (SELECT count(*) FROM analytics_metrics)::float8, \
               (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i WHERE i.inhparent = 'analytics_metrics'::regclass)::float8, \
               pg_total_relation_size('analytics_rollups')::float8, pg_total_relation_size('analytics_kv')::float8";
    let row = client.query_one(sql, &[]).await.context("measuring the tables")?;
    let metrics: f64 = row.get::<_, f64>(0).max(1.0);
    Ok(vec![
        ("pg_folded_metrics", metrics),
        ("pg_raw_bytes_per_metric", row.get::<_, f64>(1) / metrics),
        ("pg_rollup_bytes_per_metric", row.get::<_, f64>(2) / metrics),
        ("pg_other_bytes_per_metric", row.get::<_, f64>(3) / metrics),
    ])
}

/// The peer's rows: ingest, the cached summary, the mixed load, each against
/// a fresh peer and redis-server (its metrics live in the process).
async fn peer(bench: &mut Bench, dir: &Path, python: &Path) -> anyhow::Result<Vec<Row>> {
    let section = Section { store: Store::Peer, backend: Backend::Sqlite, redis: RedisKind::External };
    println!("\nbench: --- the peer ({}) ---", dir.display());
    let mut rows = Vec::new();
    let types: Vec<String> = (0..INGEST_TYPES).map(|i| format!("bench_ingest_{i}")).collect();
    let mixed_type = "bench_mixed".to_string();
    let scenarios = [
        (Scenario::Ingest, Requests { method: "POST", path: "/api/metrics".into(), body: Body::Metric { types }, expect: Expect::status(201) }),
        (Scenario::SummaryCached, get(format!("/api/metrics/summary?type={}&period=daily", bench.small_type), Expect::status(200))),
        (
            Scenario::Mixed,
            Requests {
                method: "GET",
                path: format!("/api/metrics/summary?type={mixed_type}&period=hourly"),
                body: Body::Mixed { metric_type: mixed_type.clone(), writes_every: MIXED_WRITES_EVERY },
                expect: Expect::success(),
            },
        ),
    ];
    for (scenario, requests) in scenarios {
        let redis = start_redis(bench, RedisKind::External)?.context("a redis-server for the peer")?;
        let log = bench.work.join(format!("peer-{scenario:?}.log"));
        let mut host = Host::start_peer(&host::PeerConfig { python, dir, redis_port: redis.port(), log: &log }).await?;
        if scenario == Scenario::SummaryCached {
            // The peer has no batch endpoint: one post per metric.
            for i in 0..SMALL {
                let at = analytics_core::time::format_timestamp(now_ms() - (i as i64 % 3_600) * 1_000);
                let body = serde_json::json!({"type": bench.small_type, "value": (i % 100) as f64, "timestamp": at}).to_string();
                load::expect_json(host.address(), "POST", "/api/metrics", Some(&body), 201).await?;
            }
        }
        let mut target = Target { hosts: vec![&mut host], section, redis: vec![&redis] };
        rows.push(measure(bench, &mut target, scenario, requests).await?);
        drop(target);
        host.stop()?;
        redis.stop()?;
    }
    Ok(rows)
}

/// Stores `count` metrics of `metric_type` through the batch endpoint.
async fn seed_through_api(host: &Host, metric_type: &str, count: u64, key: Option<&str>) -> anyhow::Result<()> {
    let now = now_ms();
    for start in (0..count).step_by(BATCH_SIZE) {
        let items: Vec<serde_json::Value> = (start..count.min(start + BATCH_SIZE as u64))
            .map(|i| {
                let at = analytics_core::time::format_timestamp(now - (i as i64 % 3_600) * 1_000);
                serde_json::json!({"type": metric_type, "value": (i % 100) as f64, "timestamp": at})
            })
            .collect();
        let body = serde_json::Value::Array(items).to_string();
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let response = load::request_with(host.address(), "POST", "/api/metrics/batch", Some(&body), &headers).await?;
        ensure!(response.status == 200, "seeding: {} {}", response.status, String::from_utf8_lossy(&response.body));
    }
    Ok(())
}

/// Variables of every app host: the rate limit out of the way, and a
/// simulator that answers at once and never fails (the breaker scenario
/// changes that at run time), plus `extra`.
/// The admin token of `--with-key` runs.
const BENCH_ADMIN_TOKEN: &str = "bench-admin-token";

/// Creates the key `--with-key` runs send (ingest and read).
async fn bench_key(host: &Host) -> anyhow::Result<String> {
    let body = r#"{"name": "bench", "scopes": ["ingest", "read"]}"#;
    let path = "/api/keys";
    let response = load::request_with(host.address(), "POST", path, Some(body), &[("authorization", &format!("Bearer {BENCH_ADMIN_TOKEN}"))]).await?;
    ensure!(response.status == 201, "creating the bench's key: {} {}", response.status, String::from_utf8_lossy(&response.body));
    response.json()?["key"].as_str().map(str::to_string).context("the new key's secret")
}

fn app_variables(redis: Option<&RedisServer>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut variables = vec![
        ("rate_limit_requests".to_string(), u32::MAX.to_string()),
        ("external_service_latency_ms".to_string(), "0".to_string()),
        ("external_service_failure_rate".to_string(), "0".to_string()),
    ];
    if let Some(server) = redis {
        variables.push(("redis_url".to_string(), server.url()));
    }
    variables.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    variables
}

fn start_redis(bench: &Bench, kind: RedisKind) -> anyhow::Result<Option<RedisServer>> {
    match kind {
        RedisKind::Embedded => Ok(None),
        RedisKind::External => RedisServer::start(&bench.redis_server, &bench.work)
            .with_context(|| format!("starting {} (apt-get install redis-server)", bench.redis_server.display()))
            .map(Some),
    }
}

fn stop_redis(redis: Option<RedisServer>) -> anyhow::Result<()> {
    redis.map_or(Ok(()), RedisServer::stop)
}

/// Starts a host in a fresh state directory, holding a copy of `seeded` if given.
async fn start(
    bench: &mut Bench,
    section: Section,
    name: &str,
    manifest: &Path,
    variables: &[(String, String)],
    seeded: Option<&Path>,
    runtime_config: Option<&Path>,
) -> anyhow::Result<Host> {
    let kind = section.redis;
    let state_dir = bench.work.join(format!("{}-{name}", section.name().replace('/', "-")));
    std::fs::create_dir_all(&state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    if let Some(template) = seeded {
        let copy = Instant::now();
        let target = state_dir.join("sqlite_key_value.db");
        std::fs::copy(template, &target)
            .with_context(|| format!("copying {} to {}", template.display(), target.display()))?;
        bench.seed_copy += copy.elapsed();
    }
    let log = bench.work.join(format!("{}-{name}.log", section.name().replace('/', "-")));
    let started = Instant::now();
    let host = if section.store == Store::Real {
        let binary = bench.spin_bin.as_deref().context("a real-Spin section without SPIN_BIN")?;
        Host::start_spin(&host::SpinConfig { binary, manifest, state_dir: &state_dir, runtime_config, variables, log: &log }).await
    } else {
        Host::start(&HostConfig {
        binary: &bench.host_bin,
        manifest,
        state_dir: &state_dir,
        redis: kind,
        store_mode: if section.store == Store::Spin { "spin" } else { "fast" },
        runtime_config,
        variables,
        log: &log,
        spin_costs: bench.spin_costs.as_deref(),
        })
        .await
    }
    .with_context(|| format!("starting the {name} host ({})", section.name()))?;
    println!(
        "bench: {name} host up on {} (pid {}) in {:.1} s",
        host.address(),
        host.pid(),
        started.elapsed().as_secs_f64()
    );
    Ok(host)
}

/// Stops the host and keeps what its log says.
fn finish(bench: &mut Bench, section: Section, name: &str, host: Host) -> anyhow::Result<()> {
    let log = host.log().to_path_buf();
    let status = host.stop().with_context(|| format!("stopping the {name} host"))?;
    if let Some(status) = status.filter(|s| !s.success()) {
        eprintln!("bench: the {name} host exited with {status}");
    }
    let text = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    bench.host_logs.push(report::scan_log(section, name, &text));
    Ok(())
}

/// The seeded data is what the host serves: all-time counts of both types.
async fn verify_seed(bench: &Bench, host: &Host) -> anyhow::Result<()> {
    for (metric_type, count) in [(&bench.small_type, SMALL), (&bench.large_type, bench.large)] {
        let path = format!("/api/metrics/summary?type={metric_type}");
        let (_, body) = load::expect_json(host.address(), "GET", &path, None, 200).await?;
        ensure!(body["count"] == count, "{path} reports count {} instead of {count}", body["count"]);
    }
    println!("bench: the host reports {} and {} stored metrics, as seeded", SMALL, bench.large);
    Ok(())
}

/// Computes the summary, then insists that it comes from the cache (a
/// trailing window moves on each second, so a few tries may be needed).
async fn warm_cache(host: &Host, path: &str, key: Option<&str>) -> anyhow::Result<()> {
    let mut cache = String::new();
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
    for _ in 0..5 {
        load::request_with(host.address(), "GET", path, None, &headers).await?;
        let response = load::request_with(host.address(), "GET", path, None, &headers).await?;
        cache = response.header("x-cache").unwrap_or("(none)").to_string();
        if cache == "HIT" {
            return Ok(());
        }
    }
    bail!("{path} after warming answered X-Cache: {cache}, not HIT")
}

/// Makes the simulator fail and sends summaries until the breaker opens.
async fn open_breaker(host: &Host, summary: &str) -> anyhow::Result<()> {
    let address = host.address();
    load::expect_json(address, "PUT", "/api/simulator/config", Some(r#"{"failure_rate":1.0,"latency_ms":0}"#), 200).await?;
    for _ in 0..50 {
        let (_, body) = load::expect_json(address, "GET", summary, None, 200).await?;
        if body["external_data"]["reason"] == "circuit_open" {
            let (_, status) = load::expect_json(address, "GET", "/api/circuit-breaker/status", None, 200).await?;
            ensure!(status["state"] == "open", "the breaker answers circuit_open but reports {status}");
            return Ok(());
        }
    }
    bail!("the breaker did not open after 50 failing summaries")
}

/// One scenario's requests.
struct Requests {
    method: &'static str,
    path: String,
    body: Body,
    expect: Expect,
}

fn get(path: String, expect: Expect) -> Requests {
    Requests { method: "GET", path, body: Body::None, expect }
}

/// The hosts under test (replicas share the load) and the redis-servers they use.
struct Target<'a> {
    hosts: Vec<&'a mut Host>,
    section: Section,
    redis: Vec<&'a RedisServer>,
}

/// Warms up, then runs one scenario while sampling the hosts' memory and CPU.
async fn measure(bench: &Bench, target: &mut Target<'_>, scenario: Scenario, requests: Requests) -> anyhow::Result<Row> {
    let Requests { method, path, body, expect } = requests;
    let mut plan = Plan {
        addresses: target.hosts.iter().map(|h| h.address()).collect(),
        method,
        path: path.clone(),
        body,
        expect,
        connections: CONNECTIONS,
        duration: bench.warmup,
        max_requests: MAX_REQUESTS_PER_SECOND * bench.warmup.as_secs().max(1),
        api_key: bench.api_key.clone(),
    };
    load::run(&plan).await.context("warming up")?;
    for host in target.hosts.iter_mut() {
        host.check_alive()?;
    }
    plan.duration = bench.duration;
    plan.max_requests = (MAX_REQUESTS_PER_SECOND as f64 * bench.duration.as_secs_f64()).ceil() as u64;

    let pids: Vec<u32> = target.hosts.iter().map(|h| h.pid()).collect();
    let redis_pids: Vec<u32> = target.redis.iter().map(|r| r.pid()).collect();
    let cpu = |pids: &[u32]| -> anyhow::Result<Duration> {
        pids.iter().map(|p| host::cpu_time(&p.to_string())).sum::<anyhow::Result<Duration>>()
    };
    let counters_before = counters(target).await?;
    let cpu_before = (cpu(&pids)?, host::cpu_time("self")?, cpu(&redis_pids)?);
    let busy_before = host::machine_busy()?;
    let (stop_sampling, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampled = pids.clone();
    let sampler = tokio::spawn(async move {
        let mut max = 0u64;
        let mut ticks = tokio::time::interval(RSS_SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let mut total = 0;
                    for pid in &sampled {
                        total += host::proc_status(*pid)?.rss;
                    }
                    max = max.max(total);
                }
                _ = &mut stopped => return anyhow::Ok(max),
            }
        }
    });
    let outcome = load::run(&plan).await;
    let _ = stop_sampling.send(());
    let rss_max = sampler.await.context("the memory sampler panicked")??;
    let outcome = outcome.with_context(|| format!("{method} {path}"))?;
    let mut hwm = 0;
    for pid in &pids {
        hwm += host::proc_status(*pid)?.hwm;
    }
    let cpu_after = (cpu(&pids)?, host::cpu_time("self")?, cpu(&redis_pids)?);
    let counters_after = counters(target).await?;
    let busy_after = host::machine_busy()?;
    for host in target.hosts.iter_mut() {
        host.check_alive()?;
    }

    let seconds = outcome.elapsed.as_secs_f64();
    let percent = |before: Duration, after: Duration| (after - before).as_secs_f64() / seconds * 100.0;
    let latency_ms = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1_000.0;
    let mut extra: std::collections::BTreeMap<String, f64> =
        outcome.cache.iter().map(|(value, n)| (format!("x_cache_{}", value.to_ascii_lowercase()), *n as f64)).collect();
    // Redis round trips and connections the hosts made, per expected answer.
    for (name, after) in &counters_after {
        let Some(role) = name.strip_prefix("spin_host_redis_").and_then(|rest| {
            let (what, labels) = rest.split_once("_total{role=\"")?;
            Some(format!("{}_{what}", labels.trim_end_matches("\"}")))
        }) else {
            continue;
        };
        let delta = after - counters_before.get(name).copied().unwrap_or(0.0);
        extra.insert(format!("redis_{role}_per_request"), delta / outcome.ok.max(1) as f64);
    }
    if matches!(plan.body, Body::Mixed { .. }) {
        extra.insert("writes".into(), outcome.writes as f64);
        extra.insert("summaries".into(), (outcome.ok - outcome.writes) as f64);
        extra.insert("writes_per_second".into(), outcome.writes as f64 / seconds);
    }
    let row = Row {
        section: target.section,
        scenario,
        request: format!("{method} {path}"),
        seconds,
        ok: outcome.ok,
        requests_per_second: outcome.ok as f64 / seconds,
        p50_ms: latency_ms(0.50),
        p90_ms: latency_ms(0.90),
        p99_ms: latency_ms(0.99),
        max_ms: outcome.latency.max() as f64 / 1_000.0,
        errors: outcome.error_count(),
        error_kinds: outcome.errors.clone(),
        host_rss_max_mb: report::mb(rss_max),
        host_hwm_mb: report::mb(hwm),
        host_cpu_percent: percent(cpu_before.0, cpu_after.0),
        client_cpu_percent: percent(cpu_before.1, cpu_after.1),
        redis_server_cpu_percent: (!redis_pids.is_empty()).then(|| percent(cpu_before.2, cpu_after.2)),
        other_cpu_percent: 0.0,
        extra,
    };
    let ours = row.host_cpu_percent + row.client_cpu_percent + row.redis_server_cpu_percent.unwrap_or(0.0);
    let row = Row { other_cpu_percent: (percent(busy_before, busy_after) - ours).max(0.0), ..row };
    println!(
        "bench: {:<17} {:<28} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        row.section.name(),
        row.label(SMALL, bench.large),
        row.requests_per_second,
        row.p50_ms,
        row.p99_ms,
        row.errors
    );
    Ok(row)
}


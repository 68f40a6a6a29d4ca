//! The host's memory for its metrics: the resident set (RSS) and the limit
//! it must stay under, so an alert can compare the two. The limit is the one
//! given with `--memory-limit`, else the tightest cgroup limit above the
//! process (v2 `memory.max`, v1 `memory.limit_in_bytes`), else unknown.
//! Both are read at every scrape: a cgroup's limit can change at run time.
//! Linux only; elsewhere both are unknown and the metrics are left out.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Where cgroup file systems are mounted (the usual place; a host that
/// mounts them elsewhere just reports no limit).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// cgroup v1 writes "no limit" as a huge page-aligned number (2^63 rounded
/// down to a page); anything this large is no limit.
const UNLIMITED_FROM: u64 = 1 << 62;

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    // The kernel always writes kB (KiB).
    (words.next()? == "kB").then_some(value * 1024)
}

/// The process's resident set size, in bytes.
pub fn resident_bytes() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// A cgroup limit file's content: `max` (v2) or the v1 sentinel mean none.
pub fn parse_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&n| n > 0 && n < UNLIMITED_FROM)
}

/// The limit files that apply to the process, from `/proc/self/cgroup`:
/// its own cgroup's and every ancestor's up to `root` (a parent's limit
/// binds its children), for v2 (`0::/path`) and v1's memory controller.
pub fn limit_files(proc_cgroup: &str, root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let (dir, file) = if id == "0" && controllers.is_empty() {
            (root.to_path_buf(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        // Ancestors first would read the same; own first reads clearer in a test.
        let mut cgroup = PathBuf::from(path.trim_start_matches('/'));
        loop {
            files.push(dir.join(&cgroup).join(file));
            if !cgroup.pop() {
                break;
            }
        }
    }
    files
}

/// The tightest limit among `files`, read with `read` (missing files and
/// "no limit" skipped).
pub fn tightest(files: &[PathBuf], read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    files.iter().filter_map(|f| parse_limit(&read(f)?)).min()
}

/// The cgroup memory limit that applies to this process, if any.
pub fn cgroup_limit() -> Option<u64> {
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    tightest(&limit_files(&proc_cgroup, Path::new(CGROUP_ROOT)), |f| std::fs::read_to_string(f).ok())
}

/// `--memory-limit`: bytes, or a number with `Ki`, `Mi`, `Gi` or `Ti`
/// (`KiB`… too), as Kubernetes writes them.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let shift = match unit.strip_suffix('B').unwrap_or(unit) {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        _ => return Err(format!("`{text}` is not a size like 536870912, 512Mi or 2GiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{text}` is not a size like 536870912, 512Mi or 2GiB"))
}

/// Encodes `process_resident_memory_bytes` (the name every Prometheus
/// client library's process collector uses, so generic dashboards find it)
/// and `spin_host_memory_limit_bytes` at each scrape.
#[derive(Debug, Default)]
pub struct MemoryCollector {
    /// `--memory-limit` in bytes; 0 when not given.
    configured: AtomicU64,
}

impl MemoryCollector {
    pub fn set_configured_limit(&self, bytes: Option<u64>) {
        self.configured.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// The configured limit, else the cgroup's.
    pub fn limit(&self) -> Option<u64> {
        Some(self.configured.load(Ordering::Relaxed)).filter(|&n| n > 0).or_else(cgroup_limit)
    }
}

impl Collector for MemoryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory of the host process (RSS).", resident_bytes()),
            (
                "spin_host_memory_limit_bytes",
                "The memory the host may use: --memory-limit, else its cgroup's limit (absent when neither is set).",
                self.limit(),
            ),
        ];
        // Help texts end with the "." the registry adds to registered metrics' own.
        for (name, help, value) in gauges {
            // Absent rather than 0: a 0 limit would read as "full".
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn rss_from_proc_status() {
        let status = "Name:\tspin-host\nVmPeak:\t  900 kB\nVmRSS:\t    2196 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(2196 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t lots kB\n"), None);
        #[cfg(target_os = "linux")]
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn cgroup_limits_and_no_limit() {
        assert_eq!(parse_limit("536870912\n"), Some(536_870_912));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None, "cgroup v1's unlimited");
        assert_eq!(parse_limit("0"), None);
    }

    #[test]
    fn limit_files_walk_up_both_versions() {
        let root = Path::new("/cg");
        let v2 = limit_files("0::/kubepods/pod1/ctr\n", root);
        let v2: Vec<&str> = v2.iter().map(|p| p.to_str().unwrap_or_default()).collect();
        assert_eq!(v2, ["/cg/kubepods/pod1/ctr/memory.max", "/cg/kubepods/pod1/memory.max", "/cg/kubepods/memory.max", "/cg/memory.max"]);
        // This machine's shape: v1 memory controller, other controllers and an empty v2 line.
        let v1 = limit_files("9:name=systemd:/\n4:memory:/jobs/a\n3:cpuset:/\n0::/\n", root);
        let v1: Vec<&str> = v1.iter().map(|p| p.to_str().unwrap_or_default()).collect();
        assert_eq!(
            v1,
            ["/cg/memory/jobs/a/memory.limit_in_bytes", "/cg/memory/jobs/memory.limit_in_bytes", "/cg/memory/memory.limit_in_bytes", "/cg/memory.max"]
        );
        assert!(limit_files("garbage\n", root).is_empty());
    }

    #[test]
    fn the_tightest_limit_wins() {
        let files = limit_files("0::/a/b\n", Path::new("/cg"));
        let contents: HashMap<&str, &str> =
            HashMap::from([("/cg/a/b/memory.max", "max\n"), ("/cg/a/memory.max", "1073741824\n"), ("/cg/memory.max", "2147483648\n")]);
        let read = |p: &Path| contents.get(p.to_str()?).map(|s| s.to_string());
        assert_eq!(tightest(&files, read), Some(1 << 30));
        assert_eq!(tightest(&files, |_| None), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("536870912"), Ok(536_870_912));
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2Gi"), Ok(2 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("4096B"), Ok(4096));
        for bad in ["", "0", "12MB", "1.5Gi", "Gi", "-1", "99999999999Ti"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_configured_limit_comes_first() {
        let collector = MemoryCollector::default();
        collector.set_configured_limit(Some(1 << 30));
        assert_eq!(collector.limit(), Some(1 << 30));
        collector.set_configured_limit(None);
        assert_eq!(collector.limit(), cgroup_limit());
    }
}

//! The parts of `runtime-config.toml` this host reads: `state_dir` and
//! `[key_value_store.<label>]` stores of `type = "spin"` (SQLite, `path`)
//! and `type = "redis"` (`url`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::key_value::{CrashPoint, HookedStore, RedisStore, SpinCallCost, SpinRedisDefects, SpinRedisStore, SpinSqliteStore, SqliteStore, Store, StoreMode};
use crate::redis::external::ExternalRedis;

#[derive(Debug, Clone, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    key_value_store: BTreeMap<String, StoreConfig>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct StoreConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// Where one labelled store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backing {
    /// A SQLite file; `None` keeps the store in memory.
    Sqlite(Option<PathBuf>),
    /// A Redis server.
    Redis(String),
}

/// A parsed runtime config, with paths already resolved.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    state_dir: Option<PathBuf>,
    stores: BTreeMap<String, Backing>,
}

/// How stores behave beyond what the runtime config says.
#[derive(Clone)]
pub struct StoreOptions {
    pub mode: StoreMode,
    pub redis_defects: SpinRedisDefects,
    /// Fault injection: every store counts toward one crash point.
    pub crash_point: Option<Arc<CrashPoint>>,
    /// What each call costs in `StoreMode::Spin`.
    pub spin_costs: crate::spin_model::SpinCosts,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text).with_context(|| format!("{}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(key) = raw.other.keys().next() {
            bail!("{}: {key}: not supported by this host (it reads state_dir and key_value_store)", path.display());
        }
        let mut stores = BTreeMap::new();
        for (label, store) in raw.key_value_store {
            let key = format!("{}: key_value_store.{label}", path.display());
            if let Some(extra) = store.other.keys().next() {
                bail!("{key}.{extra}: unknown setting for a \"{}\" store", store.kind);
            }
            let backing = match (store.kind.as_str(), store.path, store.url) {
                ("spin", path, None) => Backing::Sqlite(path.map(|p| base.join(p))),
                ("redis", None, Some(url)) => Backing::Redis(url),
                ("spin", _, Some(_)) => bail!("{key}.url: a \"spin\" (SQLite) store takes `path`, not `url`"),
                ("redis", Some(_), _) => bail!("{key}.path: a \"redis\" store takes `url`, not `path`"),
                ("redis", None, None) => bail!("{key}: a \"redis\" store needs `url = \"redis://host:port\"`"),
                (other, _, _) => bail!(
                    "{key}: type `{other}` is not supported by this host; it runs \"spin\" (SQLite) and \"redis\" stores"
                ),
            };
            stores.insert(label, backing);
        }
        Ok(RuntimeConfig {
            state_dir: raw.state_dir.map(|d| base.join(d)),
            stores,
        })
    }

    /// Opens every store, adding `default` under the state directory unless
    /// configured; an empty state directory keeps `default` in memory.
    pub fn open_stores(&self, state_dir: &Path, options: &StoreOptions) -> anyhow::Result<HashMap<String, Arc<dyn Store>>> {
        let state_dir = self.state_dir.as_deref().unwrap_or(state_dir);
        let mut stores = self.stores.clone();
        stores.entry("default".to_string()).or_insert_with(|| {
            Backing::Sqlite((!state_dir.as_os_str().is_empty()).then(|| state_dir.join("sqlite_key_value.db")))
        });
        // One pool for every Redis-backed store of the app.
        let redis = Arc::new(ExternalRedis::new("kv"));
        stores
            .into_iter()
            .map(|(label, backing)| {
                let mut store: Arc<dyn Store> = match (backing, options.mode) {
                    (Backing::Sqlite(path), StoreMode::Fast) => Arc::new(SqliteStore::open(&label, path.as_deref())?),
                    (Backing::Sqlite(path), StoreMode::Spin) => {
                        Arc::new(SpinSqliteStore::open_with_cost(&label, path.as_deref(), options.spin_costs.store_op)?)
                    }
                    (Backing::Redis(url), StoreMode::Fast) => Arc::new(
                        RedisStore::new(&url, redis.clone(), options.redis_defects)
                            .with_context(|| format!("key_value_store.{label}.url"))?,
                    ),
                    (Backing::Redis(url), StoreMode::Spin) => Arc::new(
                        SpinRedisStore::new(&url, redis.clone(), options.spin_costs.connect)
                            .with_context(|| format!("key_value_store.{label}.url"))?,
                    ),
                };
                if options.mode == StoreMode::Spin {
                    store = Arc::new(HookedStore { inner: store, hook: Arc::new(SpinCallCost(options.spin_costs.host_call)) });
                }
                if let Some(point) = &options.crash_point {
                    store = Arc::new(HookedStore { inner: store, hook: point.clone() });
                }
                Ok((label, store))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_start_at_the_config_file() {
        let config = RuntimeConfig::parse(
            Path::new("deploy/runtime-config.toml"),
            "[key_value_store.default]\ntype = \"spin\"\npath = \"data/kv.db\"\n[key_value_store.scratch]\ntype = \"spin\"\n",
        )
        .unwrap();
        assert_eq!(config.stores["default"], Backing::Sqlite(Some(PathBuf::from("deploy/data/kv.db"))));
        assert_eq!(config.stores["scratch"], Backing::Sqlite(None));
    }

    #[test]
    fn redis_stores_take_a_url() {
        let config = RuntimeConfig::parse(
            Path::new("rc.toml"),
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://store:6379\"\n",
        )
        .unwrap();
        assert_eq!(config.stores["default"], Backing::Redis("redis://store:6379".into()));
        for (text, named) in [
            ("type = \"redis\"\n", "url"),
            ("type = \"redis\"\npath = \"x\"\n", "path"),
            ("type = \"azure_cosmos\"\n", "azure_cosmos"),
            ("type = \"redis\"\nurl = \"redis://x\"\ndatabase = 2\n", "database"),
        ] {
            let err = RuntimeConfig::parse(Path::new("rc.toml"), &format!("[key_value_store.default]\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("key_value_store.default") && err.contains(named), "{err}");
        }
    }
}

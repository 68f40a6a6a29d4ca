//! The parts of `runtime-config.toml` this host reads: `state_dir` and
//! `[key_value_store.<label>]` stores of `type = "spin"` (SQLite).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::key_value::SqliteStore;

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
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// A parsed runtime config, with paths already resolved.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    state_dir: Option<PathBuf>,
    /// Label to database file; `None` keeps the store in memory.
    stores: BTreeMap<String, Option<PathBuf>>,
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
            if store.kind != "spin" {
                bail!(
                    "{key}: type `{}` is for the Spin CLI; this host runs key-value stores of type \"spin\" (SQLite)",
                    store.kind
                );
            }
            if let Some(extra) = store.other.keys().next() {
                bail!("{key}.{extra}: unknown setting for a \"spin\" store");
            }
            stores.insert(label, store.path.map(|p| base.join(p)));
        }
        Ok(RuntimeConfig {
            state_dir: raw.state_dir.map(|d| base.join(d)),
            stores,
        })
    }

    /// Opens every store, adding `default` under the state directory unless
    /// configured; an empty state directory keeps `default` in memory.
    pub fn open_stores(&self, state_dir: &Path) -> anyhow::Result<HashMap<String, Arc<SqliteStore>>> {
        let state_dir = self.state_dir.as_deref().unwrap_or(state_dir);
        let mut stores = self.stores.clone();
        stores.entry("default".to_string()).or_insert_with(|| {
            (!state_dir.as_os_str().is_empty()).then(|| state_dir.join("sqlite_key_value.db"))
        });
        stores
            .into_iter()
            .map(|(label, path)| Ok((label.clone(), Arc::new(SqliteStore::open(&label, path.as_deref())?))))
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
        assert_eq!(config.stores["default"], Some(PathBuf::from("deploy/data/kv.db")));
        assert_eq!(config.stores["scratch"], None);
    }

    #[test]
    fn other_store_types_are_refused_by_name() {
        let err = RuntimeConfig::parse(
            Path::new("rc.toml"),
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("key_value_store.default") && err.contains("redis"), "{err}");
    }
}

//! Reading Spin variables into the core's typed configuration.

use analytics_core::config::Lookup;

/// Looks a variable up through the Spin runtime.
pub fn spin_lookup(name: &str) -> Result<String, String> {
    spin_sdk::variables::get(name).map_err(|e| format!("{e:?}"))
}

/// The lookup to hand to `analytics_core::config` functions.
pub fn lookup() -> Lookup<'static> {
    &spin_lookup
}

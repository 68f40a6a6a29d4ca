//! Reading Spin variables into the core's typed configuration.

use analytics_core::config::Lookup;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Variables already read by this instance. An instance serves one
    /// request, and under Spin each read is a host call that resolves the
    /// variable through its providers (about 10 µs), so a value is read once.
    static READ: RefCell<HashMap<String, Result<String, String>>> = RefCell::new(HashMap::new());
}

/// Looks a variable up through the Spin runtime (once per instance).
pub fn spin_lookup(name: &str) -> Result<String, String> {
    if let Some(known) = READ.with(|read| read.borrow().get(name).cloned()) {
        return known;
    }
    let value = spin_sdk::variables::get(name).map_err(|e| format!("{e:?}"));
    READ.with(|read| read.borrow_mut().insert(name.to_string(), value.clone()));
    value
}

/// The lookup to hand to `analytics_core::config` functions.
pub fn lookup() -> Lookup<'static> {
    &spin_lookup
}

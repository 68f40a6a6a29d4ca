//! Typed configuration from Spin variables. A value that does not parse is a
//! 500 whose message names the variable and the bad value.

use crate::api_error::ApiError;
use crate::breaker::Policy;
use crate::rate_limit::RateLimit;

/// Reads a variable's raw value; `Err` carries the runtime's message.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Result<String, String>;

fn raw(lookup: Lookup, name: &str) -> Result<String, ApiError> {
    lookup(name).map_err(|e| ApiError::configuration(format!("variable `{name}` cannot be read: {e}")))
}

fn bad(name: &str, value: &str, expected: &str) -> ApiError {
    ApiError::configuration(format!("variable `{name}` has the value `{value}`; expected {expected}"))
}

/// A whole number in `min..=max`.
pub fn whole(lookup: Lookup, name: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    let value = raw(lookup, name)?;
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(name, &value, &format!("a whole number from {min} to {max}"))),
    }
}

/// A decimal number in `min..=max`.
pub fn decimal(lookup: Lookup, name: &str, min: f64, max: f64) -> Result<f64, ApiError> {
    let value = raw(lookup, name)?;
    match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(name, &value, &format!("a number from {min} to {max}"))),
    }
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`).
pub fn boolean(lookup: Lookup, name: &str) -> Result<bool, ApiError> {
    let value = raw(lookup, name)?;
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad(name, &value, "true or false")),
    }
}

/// Any string.
pub fn text(lookup: Lookup, name: &str) -> Result<String, ApiError> {
    raw(lookup, name)
}

/// An absolute http(s) URL.
pub fn url(lookup: Lookup, name: &str) -> Result<String, ApiError> {
    let value = raw(lookup, name)?;
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value)
    } else {
        Err(bad(name, &value, "an http:// or https:// URL"))
    }
}

/// `rate_limit_requests` per `rate_limit_window_seconds`.
pub fn rate_limit(lookup: Lookup) -> Result<RateLimit, ApiError> {
    Ok(RateLimit {
        limit: whole(lookup, "rate_limit_requests", 1, u32::MAX as u64)? as u32,
        window_ms: whole(lookup, "rate_limit_window_seconds", 1, 86_400 * 365)? as i64 * 1_000,
    })
}

/// The breaker's policy; a probe holds its slot for its timeout plus a margin.
pub fn breaker(lookup: Lookup) -> Result<Policy, ApiError> {
    let timeout_ms = external_timeout_ms(lookup)?;
    Ok(Policy {
        failure_threshold: whole(lookup, "circuit_breaker_failure_threshold", 1, 1_000_000)? as u32,
        reset_timeout_ms: (decimal(lookup, "circuit_breaker_reset_timeout_seconds", 0.001, 86_400.0)? * 1_000.0).round() as i64,
        probe_lease_ms: timeout_ms as i64 + 1_000,
    })
}

/// `raw_retention_days`: how long raw metrics are kept (0: forever).
pub fn retention_days(lookup: Lookup) -> Result<u64, ApiError> {
    whole(lookup, "raw_retention_days", 0, 365 * 1_000)
}

/// `external_service_timeout_ms`.
pub fn external_timeout_ms(lookup: Lookup) -> Result<u64, ApiError> {
    whole(lookup, "external_service_timeout_ms", 1, 600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Result<String, String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| format!("no variable {name}"))
        }
    }

    #[test]
    fn parses_typed_values() {
        let l = lookup(&[("rate_limit_requests", "100"), ("rate_limit_window_seconds", "60"), ("flag", "TRUE")]);
        assert_eq!(rate_limit(&l).unwrap(), RateLimit { limit: 100, window_ms: 60_000 });
        assert!(boolean(&l, "flag").unwrap());
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_value() {
        let l = lookup(&[("rate_limit_requests", "lots"), ("rate_limit_window_seconds", "0")]);
        let err = rate_limit(&l).unwrap_err();
        assert_eq!(err.status, 500);
        assert!(err.message.contains("rate_limit_requests") && err.message.contains("lots"), "{}", err.message);
        let err = whole(&l, "rate_limit_window_seconds", 1, 10).unwrap_err();
        assert!(err.message.contains("`0`"), "{}", err.message);
        assert!(whole(&l, "missing", 0, 1).unwrap_err().message.contains("missing"));
    }

    #[test]
    fn fractional_reset_timeouts_are_allowed() {
        let l = lookup(&[
            ("external_service_timeout_ms", "250"),
            ("circuit_breaker_failure_threshold", "2"),
            ("circuit_breaker_reset_timeout_seconds", "0.5"),
        ]);
        assert_eq!(breaker(&l).unwrap(), Policy { failure_threshold: 2, reset_timeout_ms: 500, probe_lease_ms: 1_250 });
    }
}

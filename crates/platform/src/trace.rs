//! W3C trace context: a request's `traceparent` is passed on to the calls
//! it makes (the upstream's), as a child: the same trace id and flags, a
//! new parent id. Each instance serves one request, so the incoming header
//! is kept for the instance's lifetime.

use std::sync::OnceLock;

static INCOMING: OnceLock<Option<String>> = OnceLock::new();

/// Keeps the request's `traceparent` (once per instance).
pub fn remember(traceparent: Option<&str>) {
    let _ = INCOMING.set(traceparent.map(str::to_string));
}

/// The `traceparent` for an outgoing call, if the request carried a valid one.
pub fn outgoing() -> Option<String> {
    let incoming = INCOMING.get()?.as_deref()?;
    child(incoming, crate::clock::random_u128() as u64)
}

/// `traceparent` with a new parent id from `random` (never zero).
pub fn child(traceparent: &str, random: u64) -> Option<String> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match parts.as_slice() {
        [version, trace, parent, flags] if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2) => {
            (trace.bytes().any(|b| b != b'0')).then(|| format!("00-{trace}-{:016x}-{flags}", random.max(1)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_the_trace_and_flags_and_gets_a_new_parent() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(child(parent, 0xabc).as_deref(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"));
        assert_eq!(child("garbage", 1), None);
        assert_eq!(child("00-00000000000000000000000000000000-00f067aa0ba902b7-01", 1), None);
    }
}

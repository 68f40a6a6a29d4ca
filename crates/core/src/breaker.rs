//! The circuit breaker around the external service, as a state machine over
//! explicit time. Its state lives in Redis so every instance shares it; each
//! transition is stored with a compare-and-set, so concurrent requests agree
//! on one outcome (for example, exactly one half-open probe).

use serde::{Deserialize, Serialize};

/// Redis-side compare-and-set: `KEYS[1]` is replaced by `ARGV[2]` only if it
/// still holds `ARGV[1]` (an empty `ARGV[1]` means "absent"). Returns 1 or 0.
pub const COMPARE_AND_SET_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Where the shared state is kept.
pub const STATE_KEY: &str = "circuit_breaker:external_service";
/// Successful calls since the state last changed: a plain counter (`INCR`),
/// cleared on every transition, so a success never contends for `STATE_KEY`.
pub const SUCCESSES_KEY: &str = "circuit_breaker:external_service:successes";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// The knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe may go out.
    pub reset_timeout_ms: i64,
    /// How long a probe holds the half-open slot: after that (say, its
    /// instance died mid-call) another request may probe.
    pub probe_lease_ms: i64,
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call as usual.
    Call,
    /// Half-open: this request is the one probe. `token` identifies it.
    Probe { token: i64 },
    /// Open, or another probe is out: do not call.
    Reject,
}

/// The stored state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pub state: State,
    /// Consecutive failures while closed.
    pub failure_count: u32,
    pub opened_at_ms: Option<i64>,
    /// Start of the probe holding the half-open slot.
    pub probe_started_ms: Option<i64>,
}

impl Breaker {
    /// Decides for one request at `now`, and the state to store if it changes.
    pub fn admit(&self, policy: &Policy, now: i64) -> (Admission, Option<Breaker>) {
        match self.state {
            State::Closed => (Admission::Call, None),
            State::Open if now < self.opened_at_ms.unwrap_or(now) + policy.reset_timeout_ms => (Admission::Reject, None),
            State::HalfOpen if now < self.probe_started_ms.unwrap_or(now) + policy.probe_lease_ms => {
                (Admission::Reject, None)
            }
            State::Open | State::HalfOpen => (
                Admission::Probe { token: now },
                Some(Breaker {
                    state: State::HalfOpen,
                    probe_started_ms: Some(now),
                    ..self.clone()
                }),
            ),
        }
    }

    /// Records the outcome of a call admitted as `admission`; the state to store if it changes.
    /// Outcomes that no longer apply (a late result from before the circuit
    /// opened, a probe whose lease another probe took over) change nothing,
    /// and neither does a success while nothing has failed.
    pub fn record(&self, policy: &Policy, admission: Admission, success: bool, now: i64) -> Option<Breaker> {
        match (self.state, admission) {
            (State::Closed, Admission::Call) if success => {
                (self.failure_count > 0).then(|| Breaker { failure_count: 0, ..self.clone() })
            }
            (State::Closed, Admission::Call) => {
                let failures = self.failure_count.saturating_add(1);
                Some(if failures >= policy.failure_threshold {
                    Breaker::opened(failures, now)
                } else {
                    Breaker { failure_count: failures, ..self.clone() }
                })
            }
            (State::HalfOpen, Admission::Probe { token }) if self.probe_started_ms == Some(token) => Some(if success {
                Breaker::default()
            } else {
                Breaker::opened(self.failure_count, now)
            }),
            _ => None,
        }
    }

    fn opened(failure_count: u32, now: i64) -> Breaker {
        Breaker {
            state: State::Open,
            failure_count,
            opened_at_ms: Some(now),
            probe_started_ms: None,
        }
    }

    /// The state as a caller would experience it now: an open circuit whose
    /// timeout has passed lets the next request probe, so it reads as half-open.
    pub fn effective_state(&self, policy: &Policy, now: i64) -> State {
        match self.next_attempt_ms(policy) {
            Some(at) if self.state == State::Open && now >= at => State::HalfOpen,
            _ => self.state,
        }
    }

    /// When a probe may next go out, while not closed.
    pub fn next_attempt_ms(&self, policy: &Policy) -> Option<i64> {
        match self.state {
            State::Closed => None,
            State::Open => self.opened_at_ms.map(|t| t + policy.reset_timeout_ms),
            State::HalfOpen => self.probe_started_ms.map(|t| t + policy.probe_lease_ms),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A missing or unreadable state is a fresh, closed breaker.
    pub fn decode(text: Option<&[u8]>) -> Breaker {
        text.and_then(|t| serde_json::from_slice(t).ok()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy { failure_threshold: 3, reset_timeout_ms: 30_000, probe_lease_ms: 2_000 };

    /// Applies an admission's state change, as the compare-and-set would.
    fn admit(b: &mut Breaker, now: i64) -> Admission {
        let (admission, next) = b.admit(&POLICY, now);
        if let Some(next) = next {
            *b = next;
        }
        admission
    }

    fn record(b: &mut Breaker, admission: Admission, ok: bool, now: i64) {
        if let Some(next) = b.record(&POLICY, admission, ok, now) {
            *b = next;
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut b = Breaker::default();
        for _ in 0..2 {
            record(&mut b, Admission::Call, false, 0);
        }
        record(&mut b, Admission::Call, true, 0);
        assert_eq!((b.state, b.failure_count), (State::Closed, 0));
        // With nothing to reset, a success writes nothing.
        assert_eq!(b.record(&POLICY, Admission::Call, true, 1), None);
        for _ in 0..3 {
            let a = admit(&mut b, 10);
            record(&mut b, a, false, 10);
        }
        assert_eq!(b.state, State::Open);
        assert_eq!(b.opened_at_ms, Some(10));
        assert_eq!(admit(&mut b, 29_999), Admission::Reject);
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let mut b = Breaker::opened(3, 0);
        assert_eq!(b.effective_state(&POLICY, 30_000), State::HalfOpen);
        let probe = admit(&mut b, 30_000);
        assert_eq!(probe, Admission::Probe { token: 30_000 });
        // Everyone else, even a moment later, is turned away.
        assert_eq!(admit(&mut b, 30_001), Admission::Reject);
        assert_eq!(admit(&mut b, 31_999), Admission::Reject);
        record(&mut b, probe, true, 30_500);
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn a_failed_probe_reopens_and_restarts_the_timer() {
        let mut b = Breaker::opened(3, 0);
        let probe = admit(&mut b, 30_000);
        record(&mut b, probe, false, 30_100);
        assert_eq!((b.state, b.opened_at_ms), (State::Open, Some(30_100)));
        assert_eq!(admit(&mut b, 60_099), Admission::Reject);
        assert!(matches!(admit(&mut b, 60_100), Admission::Probe { .. }));
    }

    #[test]
    fn a_lost_probe_frees_its_slot_after_the_lease() {
        let mut b = Breaker::opened(3, 0);
        let lost = admit(&mut b, 30_000);
        let second = admit(&mut b, 32_000);
        assert_eq!(second, Admission::Probe { token: 32_000 });
        // The first probe's late answer no longer decides anything.
        assert_eq!(b.record(&POLICY, lost, true, 32_100), None);
        record(&mut b, second, true, 32_200);
        assert_eq!(b.state, State::Closed);
    }

    #[test]
    fn late_results_from_before_opening_are_ignored() {
        let b = Breaker::opened(3, 0);
        assert_eq!(b.record(&POLICY, Admission::Call, true, 1), None);
        assert_eq!(b.record(&POLICY, Admission::Call, false, 1), None);
    }

    #[test]
    fn concurrent_admissions_through_compare_and_set_yield_one_probe() {
        // Ten requests read the same open state; each tries to store its
        // transition against what it read. Only the first swap can succeed.
        let stored = Breaker::opened(3, 0);
        let mut current = stored.encode();
        let mut probes = 0;
        for i in 0..10 {
            let read = Breaker::decode(Some(stored.encode().as_bytes()));
            let (admission, next) = read.admit(&POLICY, 30_000 + i);
            if let (Admission::Probe { .. }, Some(next)) = (admission, next) {
                if current == read.encode() {
                    current = next.encode();
                    probes += 1;
                }
            }
        }
        assert_eq!(probes, 1);
        assert_eq!(Breaker::decode(Some(current.as_bytes())).state, State::HalfOpen);
    }

    #[test]
    fn unreadable_state_is_closed() {
        assert_eq!(Breaker::decode(Some(b"garbage")), Breaker::default());
        assert_eq!(Breaker::decode(None).state, State::Closed);
    }
}

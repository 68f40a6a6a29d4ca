//! Per-client sliding-window rate limiting.
//!
//! The decision is made inside Redis by one Lua script (one round trip, atomic
//! across every instance): it drops entries older than the window, counts the
//! rest, admits the request if the count is under the limit, and always
//! refreshes the key's expiry in the same step, so no key is left without one.
//! This module holds the script, its arguments, and the reading of its reply.

use std::net::{IpAddr, SocketAddr};

/// `KEYS[1]`: the client's log (a sorted set of request times); `KEYS[2]`
/// (optional): the application's counters, raised in the same step (see
/// [`crate::app_metrics`]).
/// `ARGV`: now (ms), window (ms), limit, a unique member for this request,
/// then counter field/delta pairs to add if the request is admitted.
/// Returns `{allowed (0|1), requests in window, oldest request time (ms)}`.
pub const SLIDING_WINDOW_SCRIPT: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  count = count + 1
  allowed = 1
end
local oldest = now
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if first[2] then oldest = tonumber(first[2]) end
if count > 0 then redis.call('PEXPIRE', key, window) end
if KEYS[2] then
  if allowed == 1 then
    for i = 5, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
  else
    redis.call('HINCRBY', KEYS[2], 'rejected|rate_limited', 1)
  end
end
return {allowed, count, oldest}
"#;

/// The outcome for one request, with what goes in the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until a request slot frees up.
    pub reset_seconds: u64,
    /// Set when refused: whole seconds (at least 1) until a request would be allowed.
    pub retry_after_seconds: Option<u64>,
}

/// The policy: `limit` requests per sliding `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window_ms: i64,
}

/// The script's reply did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected rate-limit script reply {0:?}")]
pub struct BadReply(pub Vec<i64>);

fn ceil_seconds(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000)
}

impl RateLimit {
    /// The Redis key of a client's log.
    pub fn key(client: &str) -> String {
        format!("ratelimit:{client}")
    }

    /// The script's `ARGV`.
    pub fn script_args(&self, now_ms: i64, member: &str) -> [String; 4] {
        [
            now_ms.to_string(),
            self.window_ms.to_string(),
            self.limit.to_string(),
            member.to_string(),
        ]
    }

    /// Reads the script's reply `[allowed, count, oldest_ms]`.
    pub fn decide(&self, reply: &[i64], now_ms: i64) -> Result<Decision, BadReply> {
        let &[allowed, count, oldest] = reply else {
            return Err(BadReply(reply.to_vec()));
        };
        let frees_in = oldest + self.window_ms - now_ms;
        let allowed = allowed == 1;
        Ok(Decision {
            allowed,
            limit: self.limit,
            remaining: (self.limit as i64 - count).clamp(0, self.limit as i64) as u32,
            reset_seconds: ceil_seconds(frees_in),
            retry_after_seconds: (!allowed).then(|| ceil_seconds(frees_in).max(1)),
        })
    }

    /// The decision when Redis cannot be reached: let the request through.
    pub fn fail_open(&self) -> Decision {
        Decision {
            allowed: true,
            limit: self.limit,
            remaining: self.limit,
            reset_seconds: ceil_seconds(self.window_ms),
            retry_after_seconds: None,
        }
    }
}

/// The client a request is counted against: the runtime's peer address, or
/// the first `X-Forwarded-For` entry when the deployment trusts its proxy.
pub fn client_id(peer: Option<&str>, forwarded_for: Option<&str>, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        if let Some(ip) = forwarded_for
            .and_then(|h| h.split(',').next())
            .and_then(|first| first.trim().parse::<IpAddr>().ok())
        {
            return ip.to_string();
        }
    }
    match peer {
        Some(addr) => addr
            .parse::<SocketAddr>()
            .map(|a| a.ip().to_string())
            .or_else(|_| addr.parse::<IpAddr>().map(|ip| ip.to_string()))
            .unwrap_or_else(|_| addr.to_string()),
        None => "unknown".to_string(),
    }
}

/// A plain model of the same algorithm, for checking the script against.
#[derive(Debug, Clone, Default)]
pub struct SlidingLog {
    times: Vec<i64>,
}

impl SlidingLog {
    pub fn check(&mut self, policy: RateLimit, now_ms: i64) -> Vec<i64> {
        self.times.retain(|&t| t > now_ms - policy.window_ms);
        let allowed = (self.times.len() as u32) < policy.limit;
        if allowed {
            self.times.push(now_ms);
            self.times.sort_unstable();
        }
        let oldest = self.times.first().copied().unwrap_or(now_ms);
        vec![allowed as i64, self.times.len() as i64, oldest]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RateLimit = RateLimit { limit: 5, window_ms: 60_000 };

    #[test]
    fn the_limit_passes_and_the_next_waits_for_the_oldest_to_leave() {
        let mut log = SlidingLog::default();
        for i in 0..5 {
            let d = POLICY.decide(&log.check(POLICY, 1_000 + i * 1_000), 1_000 + i * 1_000).unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 4 - i as u32);
        }
        let now = 10_500;
        let refused = POLICY.decide(&log.check(POLICY, now), now).unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // The first request (t=1000) leaves the window at 61000: 50.5 s away, so 51 s.
        assert_eq!(refused.retry_after_seconds, Some(51));
        assert!(POLICY.decide(&log.check(POLICY, 60_999), 60_999).map(|d| !d.allowed).unwrap());
        assert!(POLICY.decide(&log.check(POLICY, 61_000), 61_000).unwrap().allowed);
    }

    #[test]
    fn refused_requests_do_not_count() {
        let policy = RateLimit { limit: 1, window_ms: 1_000 };
        let mut log = SlidingLog::default();
        assert!(policy.decide(&log.check(policy, 0), 0).unwrap().allowed);
        for t in [100, 500, 999] {
            assert!(!policy.decide(&log.check(policy, t), t).unwrap().allowed);
        }
        assert!(policy.decide(&log.check(policy, 1_000), 1_000).unwrap().allowed);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let d = POLICY.decide(&[0, 5, 0], 59_999).unwrap();
        assert_eq!(d.retry_after_seconds, Some(1));
        assert!(POLICY.decide(&[1, 2], 0).is_err());
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted() {
        assert_eq!(client_id(Some("10.0.0.9:5123"), Some("1.2.3.4"), false), "10.0.0.9");
        assert_eq!(client_id(Some("10.0.0.9:5123"), Some(" 1.2.3.4 , 10.0.0.1"), true), "1.2.3.4");
        assert_eq!(client_id(Some("10.0.0.9:5123"), Some("not-an-ip"), true), "10.0.0.9");
        assert_eq!(client_id(Some("[::1]:80"), None, false), "::1");
        assert_eq!(client_id(None, None, false), "unknown");
    }
}

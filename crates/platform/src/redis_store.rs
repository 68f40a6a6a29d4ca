//! The durable store on a Redis server the app talks to directly (variable
//! `store_redis_url`), as the core's [`analytics_core::kv::Kv`].
//!
//! Spin's own Redis key-value store (v4.0.2) costs a new connection and
//! five to eight round trips per compare-and-swap, reports every swap as
//! failed, and cannot read several keys at once. Talking to the same server
//! through Spin's outbound Redis instead, a request opens one connection and
//! every operation is one round trip: `MGET` for reads, a short Lua script
//! for the compare-and-swap (atomic, and a failed one hands back the value
//! it found), `MSET`, `DEL`, `INCRBY`.

use analytics_core::kv::{Kv, Reader, StoreError, Swap};

use crate::redis::{Redis, ReplyItem};

/// `KEYS[1]`: the key. `ARGV[1]`: `1` if `ARGV[2]` is the value expected,
/// `0` if the key is expected to be missing; `ARGV[3]`: the new value.
/// Returns `1` if written, else `0` and the value found (nothing if missing).
const COMPARE_AND_SWAP: &str = r#"
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '1' and current == ARGV[2]) or (ARGV[1] == '0' and not current) then
  redis.call('SET', KEYS[1], ARGV[3])
  return {1}
end
if current then return {0, current} end
return {0}
"#;

/// `KEYS`: the keys; `ARGV[1]`: how many bytes of the first `ARGV[2]`
/// keys (journal headers without their items); the other keys whole.
/// Missing keys are nil.
const HEADS: &str = r#"
local out = {}
local heads = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local v
  if i <= heads then v = redis.call('GETRANGE', key, 0, tonumber(ARGV[1]) - 1) else v = redis.call('GET', key) end
  if not v or (v == '' and redis.call('EXISTS', key) == 0) then out[i] = false else out[i] = v end
end
return out
"#;

/// A connection to the store's Redis.
pub struct RedisStore {
    redis: Redis,
}

/// What a compare-and-swap compares against.
pub struct RedisCas {
    key: String,
    seen: Option<Vec<u8>>,
}

fn failed(e: String) -> StoreError {
    StoreError::Store(e)
}

impl RedisStore {
    /// Connects to `url` (one connection for the whole request).
    pub fn connect(url: &str) -> Result<RedisStore, String> {
        Redis::connect_to(url).map(|redis| RedisStore { redis })
    }
}

impl Reader for RedisStore {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.redis.mget(&keys).map_err(failed)
    }

    fn get_many_heads(&mut self, keys: &[String], heads: usize, bytes: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let reply = self.redis.eval(HEADS, &keys, &[bytes.to_string().as_bytes(), heads.to_string().as_bytes()]).map_err(failed)?;
        if reply.len() != keys.len() {
            return Err(failed(format!("redis: {} values for {} keys", reply.len(), keys.len())));
        }
        Ok(reply
            .into_iter()
            .map(|item| match item {
                ReplyItem::Bytes(b) => Some(b),
                _ => None,
            })
            .collect())
    }
}

impl Kv for RedisStore {
    type Cas = RedisCas;

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.redis.set(key, value).map_err(failed)
    }

    fn set_many(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let args: Vec<&[u8]> = entries.iter().flat_map(|(k, v)| [k.as_bytes(), v.as_slice()]).collect();
        self.redis.execute("MSET", &args).map(drop).map_err(failed)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let args: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        self.redis.execute("DEL", &args).map(drop).map_err(failed)
    }

    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self.redis.execute_items("INCRBY", &[key.as_bytes(), delta.to_string().as_bytes()]).map_err(failed)?.as_slice() {
            [ReplyItem::Int(n)] => Ok(*n),
            other => Err(failed(format!("redis: INCRBY answered {other:?}"))),
        }
    }

    fn watch(&mut self, key: &str) -> Result<(RedisCas, Option<Vec<u8>>), StoreError> {
        let seen = self.redis.get(key).map_err(failed)?;
        Ok((RedisCas { key: key.to_string(), seen: seen.clone() }, seen))
    }

    fn swap(&mut self, cas: RedisCas, value: &[u8]) -> Result<Swap<RedisCas>, StoreError> {
        let (flag, expected) = match &cas.seen {
            Some(seen) => (&b"1"[..], seen.as_slice()),
            None => (&b"0"[..], &b""[..]),
        };
        let reply = self.redis.eval(COMPARE_AND_SWAP, &[&cas.key], &[flag, expected, value]).map_err(failed)?;
        match reply.as_slice() {
            [ReplyItem::Int(1)] => Ok(Swap::Written),
            [ReplyItem::Int(0), rest @ ..] => {
                let current = match rest {
                    [ReplyItem::Bytes(b)] => Some(b.clone()),
                    _ => None,
                };
                Ok(Swap::Failed { cas: RedisCas { key: cas.key, seen: current.clone() }, current })
            }
            other => Err(failed(format!("redis: the compare-and-swap script answered {other:?}"))),
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        crate::clock::sleep_ms(ms);
    }

    /// A failed attempt here is one round trip on the request's own
    /// connection (not, as on Spin's Redis key-value store, a new
    /// connection and several round trips), so a hot key may take more.
    fn max_attempts(&self) -> usize {
        256
    }
}

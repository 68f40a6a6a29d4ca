//! A key-value store on a Redis server (runtime config `type = "redis"`),
//! with the commands Spin's `key-value-redis` uses, over the host's pooled
//! connections instead of one per operation.
//!
//! The compare-and-swap is one Lua script (compare the value `current` read,
//! then write), so it is atomic and reports failure only when it failed. With
//! [`SpinRedisDefects::V4_0_2`] the store also reproduces what Spin v4.0.2's
//! Redis store does wrong, so tests can prove the application survives it:
//! every swap is reported as failed, written or not (its `UNWATCH <key>` is
//! refused by Redis after `EXEC`), and `get-many` sends `KEYS k1 k2 ...`,
//! which finds nothing for one key and is an error for more.

use std::sync::Arc;

use crate::redis::external::ExternalRedis;
use crate::redis::Reply;

use super::{Found, KvError, KvResult, Session, Store};

/// Which Spin Redis key-value store to behave like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SpinRedisDefects {
    /// A correct store.
    #[default]
    None,
    /// Spin v4.0.2 (and its main branch as of this writing).
    #[value(name = "spin-v4.0.2")]
    V4_0_2,
}

/// `KEYS[1]`: the key. `ARGV[1]`: `1` if `ARGV[2]` is the value expected,
/// `0` if the key is expected to be missing. `ARGV[3]`: the new value.
const COMPARE_AND_SWAP: &str = r#"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"#;

/// What Spin v4.0.2's `get-many` answers for two keys or more.
const KEYS_ARGUMENTS_ERROR: &str =
    "An error was signalled by the server - ResponseError: wrong number of arguments for 'keys' command";

pub struct RedisStore {
    address: String,
    connections: Arc<ExternalRedis>,
    defects: SpinRedisDefects,
    script_sha: String,
}

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

fn unexpected(reply: Reply) -> KvError {
    KvError::Other(format!("unexpected reply from Redis: {reply:?}"))
}

fn bulk(key: &str) -> Vec<u8> {
    key.as_bytes().to_vec()
}

impl RedisStore {
    /// A store at `address` (`redis://host:port[/db]`); nothing connects until first use.
    pub fn new(address: &str, connections: Arc<ExternalRedis>, defects: SpinRedisDefects) -> anyhow::Result<Self> {
        if redis::parse_redis_url(address).is_none() {
            anyhow::bail!("`{address}` is not a redis:// URL");
        }
        Ok(RedisStore {
            address: address.to_string(),
            connections,
            defects,
            script_sha: sha1_smol::Sha1::from(COMPARE_AND_SWAP).digest().to_string(),
        })
    }

    async fn command(&self, args: Vec<Vec<u8>>) -> KvResult<Reply> {
        let mut connection = self.connections.connect(&self.address).await.map_err(other)?;
        match self.connections.execute(&self.address, &mut connection, &args).await.map_err(other)? {
            Reply::Error(e) => Err(KvError::Other(e)),
            reply => Ok(reply),
        }
    }

    async fn compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        let tail = |head: &[u8]| -> Vec<Vec<u8>> {
            vec![
                head.to_vec(),
                b"1".to_vec(),
                bulk(key),
                if expected.is_some() { b"1".to_vec() } else { b"0".to_vec() },
                expected.unwrap_or_default().to_vec(),
                new.to_vec(),
            ]
        };
        let mut args = tail(self.script_sha.as_bytes());
        args.insert(0, b"EVALSHA".to_vec());
        let reply = match self.command(args).await {
            Err(KvError::Other(e)) if e.starts_with("NOSCRIPT") => {
                let mut args = tail(COMPARE_AND_SWAP.as_bytes());
                args.insert(0, b"EVAL".to_vec());
                self.command(args).await?
            }
            other => other?,
        };
        match reply {
            Reply::Int(n) => Ok(n == 1),
            reply => Err(unexpected(reply)),
        }
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn get(&self, _: &Session, key: &str) -> KvResult<Option<Vec<u8>>> {
        match self.command(vec![b"GET".to_vec(), bulk(key)]).await? {
            Reply::Nil => Ok(None),
            Reply::Bulk(value) => Ok(Some(value)),
            reply => Err(unexpected(reply)),
        }
    }

    async fn set(&self, _: &Session, key: &str, value: &[u8]) -> KvResult<()> {
        self.command(vec![b"SET".to_vec(), bulk(key), value.to_vec()]).await.map(drop)
    }

    async fn delete(&self, _: &Session, key: &str) -> KvResult<()> {
        self.command(vec![b"DEL".to_vec(), bulk(key)]).await.map(drop)
    }

    async fn exists(&self, _: &Session, key: &str) -> KvResult<bool> {
        match self.command(vec![b"EXISTS".to_vec(), bulk(key)]).await? {
            Reply::Int(n) => Ok(n > 0),
            reply => Err(unexpected(reply)),
        }
    }

    async fn keys(&self, _: &Session) -> KvResult<Vec<String>> {
        match self.command(vec![b"KEYS".to_vec(), b"*".to_vec()]).await? {
            Reply::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(b) => String::from_utf8(b).map_err(other),
                    reply => Err(unexpected(reply)),
                })
                .collect(),
            reply => Err(unexpected(reply)),
        }
    }

    /// `INCRBY`: Redis keeps the counter as decimal text, as under Spin.
    async fn increment(&self, _: &Session, key: &str, delta: i64) -> KvResult<i64> {
        match self.command(vec![b"INCRBY".to_vec(), bulk(key), delta.to_string().into_bytes()]).await? {
            Reply::Int(n) => Ok(n),
            reply => Err(unexpected(reply)),
        }
    }

    async fn swap(&self, _: &Session, key: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        let swapped = self.compare_and_swap(key, expected, new).await?;
        Ok(match self.defects {
            SpinRedisDefects::None => swapped,
            SpinRedisDefects::V4_0_2 => false,
        })
    }

    /// `MGET`: one atomic read of every key.
    async fn get_many(&self, _: &Session, keys: &[String]) -> KvResult<Found> {
        match (self.defects, keys.len()) {
            (_, 0) => return Ok(Vec::new()),
            (SpinRedisDefects::V4_0_2, 1) => return Ok(Vec::new()),
            (SpinRedisDefects::V4_0_2, _) => return Err(KvError::Other(KEYS_ARGUMENTS_ERROR.into())),
            (SpinRedisDefects::None, _) => {}
        }
        let args = std::iter::once(b"MGET".to_vec()).chain(keys.iter().map(|k| bulk(k))).collect();
        match self.command(args).await? {
            Reply::Array(values) => Ok(keys
                .iter()
                .zip(values)
                .filter_map(|(key, value)| match value {
                    Reply::Bulk(v) => Some((key.clone(), v)),
                    _ => None,
                })
                .collect()),
            reply => Err(unexpected(reply)),
        }
    }

    /// `MSET`: all or nothing.
    async fn set_many(&self, _: &Session, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let args = std::iter::once(b"MSET".to_vec()).chain(entries.iter().flat_map(|(k, v)| [bulk(k), v.clone()])).collect();
        self.command(args).await.map(drop)
    }

    async fn delete_many(&self, _: &Session, keys: &[String]) -> KvResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let args = std::iter::once(b"DEL".to_vec()).chain(keys.iter().map(|k| bulk(k))).collect();
        self.command(args).await.map(drop)
    }
}

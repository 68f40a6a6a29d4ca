//! Redis through Spin's outbound Redis: connection, scripts and plain
//! commands. Every failure is returned, never hidden: callers decide how to
//! degrade (fail open, bypass the cache, ...).

use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// An open connection.
pub struct Redis {
    connection: Connection,
}

fn message(e: spin_sdk::redis::Error) -> String {
    format!("redis: {e:?}")
}

fn params(args: &[&[u8]]) -> Vec<RedisParameter> {
    args.iter().map(|a| RedisParameter::Binary(a.to_vec())).collect()
}

impl Redis {
    /// Connects to the `redis_url` variable's server.
    pub fn connect() -> Result<Redis, String> {
        let url = crate::config::spin_lookup("redis_url")?;
        Connection::open(&url).map(|connection| Redis { connection }).map_err(message)
    }

    pub fn execute(&self, command: &str, args: &[&[u8]]) -> Result<Vec<RedisResult>, String> {
        self.connection.execute(command, &params(args)).map_err(message)
    }

    /// `EVAL script numkeys keys... args...`, expecting integers back.
    pub fn eval_ints(&self, script: &str, keys: &[&str], args: &[&str]) -> Result<Vec<i64>, String> {
        let numkeys = keys.len().to_string();
        let mut all: Vec<&[u8]> = vec![script.as_bytes(), numkeys.as_bytes()];
        all.extend(keys.iter().map(|k| k.as_bytes()));
        all.extend(args.iter().map(|a| a.as_bytes()));
        self.execute("EVAL", &all)?
            .into_iter()
            .map(|r| match r {
                RedisResult::Int64(n) => Ok(n),
                other => Err(format!("redis: expected integers from script, got {other:?}")),
            })
            .collect()
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.connection.get(key).map_err(message)
    }

    /// `SET key value EX ttl`.
    pub fn set_ex(&self, key: &str, value: &[u8], ttl_seconds: u64) -> Result<(), String> {
        let ttl = ttl_seconds.to_string();
        self.execute("SET", &[key.as_bytes(), value, b"EX", ttl.as_bytes()]).map(drop)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.connection.set(key, value).map_err(message)
    }

    pub fn del(&self, key: &str) -> Result<(), String> {
        self.connection.del(&[key.to_string()]).map(drop).map_err(message)
    }

    pub fn incr(&self, key: &str) -> Result<i64, String> {
        self.connection.incr(key).map_err(message)
    }

    pub fn ping(&self) -> Result<(), String> {
        match self.execute("PING", &[])?.first() {
            Some(RedisResult::Status(s)) if s == "PONG" => Ok(()),
            other => Err(format!("redis: unexpected PING reply {other:?}")),
        }
    }
}

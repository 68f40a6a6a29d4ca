//! Redis through Spin's outbound Redis: connection, scripts and plain
//! commands. Every failure is returned, never hidden: callers decide how to
//! degrade (fail open, bypass the cache, ...).

use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// One item of a reply, flattened as Spin hands replies over.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyItem {
    Int(i64),
    Bytes(Vec<u8>),
    Nil,
}

impl From<RedisResult> for ReplyItem {
    fn from(r: RedisResult) -> Self {
        match r {
            RedisResult::Int64(n) => ReplyItem::Int(n),
            RedisResult::Binary(b) => ReplyItem::Bytes(b),
            RedisResult::Status(s) => ReplyItem::Bytes(s.into_bytes()),
            RedisResult::Nil => ReplyItem::Nil,
        }
    }
}

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
        Self::connect_to(&crate::config::spin_lookup("redis_url")?)
    }

    pub fn connect_to(url: &str) -> Result<Redis, String> {
        Connection::open(url).map(|connection| Redis { connection }).map_err(message)
    }

    pub fn execute(&self, command: &str, args: &[&[u8]]) -> Result<Vec<RedisResult>, String> {
        self.connection.execute(command, &params(args)).map_err(message)
    }

    /// Any command, the reply flattened as Spin does.
    pub fn execute_items(&self, command: &str, args: &[&[u8]]) -> Result<Vec<ReplyItem>, String> {
        Ok(self.execute(command, args)?.into_iter().map(ReplyItem::from).collect())
    }

    /// `EVAL script numkeys keys... args...`, the reply flattened as Spin does.
    pub fn eval(&self, script: &str, keys: &[&str], args: &[&[u8]]) -> Result<Vec<ReplyItem>, String> {
        let numkeys = keys.len().to_string();
        let mut all: Vec<&[u8]> = vec![script.as_bytes(), numkeys.as_bytes()];
        all.extend(keys.iter().map(|k| k.as_bytes()));
        all.extend(args.iter().copied());
        self.execute_items("EVAL", &all)
    }

    /// `EVAL script numkeys keys... args...`, expecting integers back.
    pub fn eval_ints(&self, script: &str, keys: &[&str], args: &[impl AsRef<[u8]>]) -> Result<Vec<i64>, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
        self.eval(script, keys, &args)?
            .into_iter()
            .map(|r| match r {
                ReplyItem::Int(n) => Ok(n),
                other => Err(format!("redis: expected integers from script, got {other:?}")),
            })
            .collect()
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.connection.get(key).map_err(message)
    }

    /// `MGET`: one value (or `None`) per key, in order.
    pub fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let args: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let reply = self.execute("MGET", &args)?;
        if reply.len() != keys.len() {
            return Err(format!("redis: MGET of {} keys answered {} values", keys.len(), reply.len()));
        }
        Ok(reply
            .into_iter()
            .map(|r| match r {
                RedisResult::Binary(b) => Some(b),
                _ => None,
            })
            .collect())
    }

    /// `SET key value EX ttl`.
    pub fn set_ex(&self, key: &str, value: &[u8], ttl_seconds: u64) -> Result<(), String> {
        let ttl = ttl_seconds.to_string();
        self.execute("SET", &[key.as_bytes(), value, b"EX", ttl.as_bytes()]).map(drop)
    }

    /// `SET key value NX PX ms`: whether the key was set.
    pub fn set_nx_px(&self, key: &str, value: &[u8], ms: u64) -> Result<bool, String> {
        let ms = ms.to_string();
        let reply = self.execute("SET", &[key.as_bytes(), value, b"NX", b"PX", ms.as_bytes()])?;
        Ok(!matches!(reply.first(), Some(RedisResult::Nil) | None))
    }

    /// `SET key value PX ms`.
    pub fn set_px(&self, key: &str, value: &[u8], ms: u64) -> Result<(), String> {
        let ms = ms.to_string();
        self.execute("SET", &[key.as_bytes(), value, b"PX", ms.as_bytes()]).map(drop)
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

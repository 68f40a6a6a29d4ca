//! `fermyon:spin/redis@2.0.0`: guests' outbound Redis, through [`RedisService`].

use wasmtime::component::Resource;

use crate::bindings::spin_redis::{self, Error as RedisError, RedisParameter, RedisResult};
use crate::redis::{Connection, Reply};
use crate::state::HostState;

/// Replies flattened depth-first, as Spin returns them from `execute`.
fn flatten(reply: Reply, out: &mut Vec<RedisResult>) -> Result<(), RedisError> {
    match reply {
        Reply::Nil => out.push(RedisResult::Nil),
        Reply::Status(s) => out.push(RedisResult::Status(s)),
        Reply::Int(n) => out.push(RedisResult::Int64(n)),
        Reply::Bulk(b) => out.push(RedisResult::Binary(b)),
        Reply::Array(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        Reply::Error(e) => return Err(RedisError::Other(e)),
    }
    Ok(())
}

impl HostState {
    async fn redis_command(&mut self, connection: &Resource<Connection>, args: Vec<Vec<u8>>) -> wasmtime::Result<Result<Reply, RedisError>> {
        let services = self.services.clone();
        let connection = self.table.get_mut(connection)?;
        Ok(match services.redis.execute(connection, &args).await {
            Ok(Reply::Error(e)) => Err(RedisError::Other(e)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(RedisError::Other(e)),
        })
    }
}

fn command(name: &str, args: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    std::iter::once(name.as_bytes().to_vec()).chain(args).collect()
}

fn unexpected(reply: Reply) -> RedisError {
    RedisError::Other(format!("unexpected reply {reply:?}"))
}

impl spin_redis::Host for HostState {}

impl spin_redis::HostConnection for HostState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<Connection>, RedisError>> {
        if !self.component.allowed_hosts.allows_url(&address) {
            eprintln!(
                "warning: component `{}` tried to open Redis at {address}, which its allowed_outbound_hosts does not list",
                self.component.id
            );
            return Ok(Err(RedisError::InvalidAddress));
        }
        if redis::parse_redis_url(&address).is_none() {
            return Ok(Err(RedisError::InvalidAddress));
        }
        match self.services.redis.open(&address).await {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(RedisError::Other(e))),
        }
    }

    async fn publish(&mut self, c: Resource<Connection>, channel: String, payload: Vec<u8>) -> wasmtime::Result<Result<(), RedisError>> {
        Ok(self.redis_command(&c, command("PUBLISH", [channel.into_bytes(), payload])).await?.map(drop))
    }

    async fn get(&mut self, c: Resource<Connection>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, RedisError>> {
        Ok(self.redis_command(&c, command("GET", [key.into_bytes()])).await?.and_then(|r| match r {
            Reply::Nil => Ok(None),
            Reply::Bulk(b) => Ok(Some(b)),
            other => Err(unexpected(other)),
        }))
    }

    async fn set(&mut self, c: Resource<Connection>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), RedisError>> {
        Ok(self.redis_command(&c, command("SET", [key.into_bytes(), value])).await?.map(drop))
    }

    async fn incr(&mut self, c: Resource<Connection>, key: String) -> wasmtime::Result<Result<i64, RedisError>> {
        Ok(self.redis_command(&c, command("INCRBY", [key.into_bytes(), b"1".to_vec()])).await?.and_then(|r| match r {
            Reply::Int(n) => Ok(n),
            other => Err(unexpected(other)),
        }))
    }

    async fn del(&mut self, c: Resource<Connection>, keys: Vec<String>) -> wasmtime::Result<Result<u32, RedisError>> {
        Ok(self.redis_command(&c, command("DEL", keys.into_iter().map(String::into_bytes))).await?.and_then(|r| match r {
            Reply::Int(n) => Ok(n as u32),
            other => Err(unexpected(other)),
        }))
    }

    async fn sadd(&mut self, c: Resource<Connection>, key: String, values: Vec<String>) -> wasmtime::Result<Result<u32, RedisError>> {
        let args = command("SADD", std::iter::once(key.into_bytes()).chain(values.into_iter().map(String::into_bytes)));
        Ok(self.redis_command(&c, args).await?.and_then(|r| match r {
            Reply::Int(n) => Ok(n as u32),
            other => Err(unexpected(other)),
        }).map_err(|e| match e {
            RedisError::Other(m) if m.starts_with("WRONGTYPE") => RedisError::TypeError,
            e => e,
        }))
    }

    async fn smembers(&mut self, c: Resource<Connection>, key: String) -> wasmtime::Result<Result<Vec<String>, RedisError>> {
        Ok(self.redis_command(&c, command("SMEMBERS", [key.into_bytes()])).await?.and_then(|r| match r {
            Reply::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Reply::Bulk(b) => String::from_utf8(b).map_err(|_| RedisError::TypeError),
                    other => Err(unexpected(other)),
                })
                .collect(),
            other => Err(unexpected(other)),
        }))
    }

    async fn srem(&mut self, c: Resource<Connection>, key: String, values: Vec<String>) -> wasmtime::Result<Result<u32, RedisError>> {
        let args = command("SREM", std::iter::once(key.into_bytes()).chain(values.into_iter().map(String::into_bytes)));
        Ok(self.redis_command(&c, args).await?.and_then(|r| match r {
            Reply::Int(n) => Ok(n as u32),
            other => Err(unexpected(other)),
        }))
    }

    async fn execute(
        &mut self,
        c: Resource<Connection>,
        name: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, RedisError>> {
        let args = command(
            &name,
            arguments.into_iter().map(|a| match a {
                RedisParameter::Int64(n) => n.to_string().into_bytes(),
                RedisParameter::Binary(b) => b,
            }),
        );
        Ok(self.redis_command(&c, args).await?.and_then(|reply| {
            let mut out = Vec::new();
            flatten(reply, &mut out)?;
            Ok(out)
        }))
    }

    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

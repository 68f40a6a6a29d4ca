//! Outbound Redis for guests (`fermyon:spin/redis@2.0.0`), backed by the
//! embedded server or a real one.

pub mod embedded;
pub mod external;
mod lua;
pub mod reply;

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use wasmtime::component::Resource;

use crate::bindings::spin_redis::{self, Error as RedisError, RedisParameter, RedisResult};
use crate::state::HostState;
use crate::variables::Variables;
pub use embedded::EmbeddedRedis;
pub use external::ExternalRedis;
pub use reply::Reply;

/// Which Redis serves the guests' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisMode {
    /// Embedded, unless a variable set through the environment (or
    /// `--variable`) holds a `redis://` URL: then that real server.
    Auto,
    /// Every Redis address is answered by the in-process server.
    Embedded,
    /// Connect to the addresses the guests open.
    External,
}

impl RedisMode {
    /// Whether guests get the embedded server, given the resolved variables.
    pub fn resolve(self, variables: &Variables) -> bool {
        match self {
            RedisMode::Embedded => true,
            RedisMode::External => false,
            RedisMode::Auto => !variables
                .from_environment()
                .any(|(_, v)| v.starts_with("redis://") || v.starts_with("rediss://")),
        }
    }
}

/// The Redis side of a running app.
pub struct RedisService {
    embedded: Option<Arc<EmbeddedRedis>>,
    external: ExternalRedis,
    /// Open a new connection for every guest `open`, as Spin does, instead of sharing one.
    connect_per_open: bool,
}

/// An open guest connection.
pub enum Connection {
    Embedded(Arc<EmbeddedRedis>),
    External { address: String, connection: MultiplexedConnection },
}

impl RedisService {
    pub fn new(use_embedded: bool, connect_per_open: bool) -> Self {
        RedisService {
            embedded: use_embedded.then(|| Arc::new(EmbeddedRedis::new())),
            external: ExternalRedis::new("guests"),
            connect_per_open,
        }
    }

    /// The embedded server, when guests use it.
    pub fn embedded(&self) -> Option<&Arc<EmbeddedRedis>> {
        self.embedded.as_ref()
    }

    pub async fn open(&self, address: &str) -> Result<Connection, String> {
        match &self.embedded {
            Some(server) if server.is_available() => Ok(Connection::Embedded(server.clone())),
            Some(_) => Err(embedded::UNAVAILABLE.to_string()),
            None => Ok(Connection::External {
                address: address.to_string(),
                connection: if self.connect_per_open {
                    self.external.connect_new(address).await?
                } else {
                    self.external.connect(address).await?
                },
            }),
        }
    }

    /// Runs one command; `Err` is a connection failure, `Ok(Reply::Error)` a server error.
    pub async fn execute(&self, connection: &mut Connection, args: &[Vec<u8>]) -> Result<Reply, String> {
        match connection {
            Connection::Embedded(server) => server.execute(args),
            Connection::External { address, connection } => self.external.execute(address, connection, args).await,
        }
    }
}

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

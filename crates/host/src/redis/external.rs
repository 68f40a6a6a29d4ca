//! A real Redis server, through the `redis` crate's multiplexed connection:
//! one shared connection per address and server thread, re-established after
//! a failure, labelled so an operator (or a test) can tell whose it is.

use std::collections::HashMap;
use std::thread::ThreadId;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Mutex;

use super::reply::Reply;

/// How long to wait for a connection or a reply before calling Redis unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Connections to real servers, by address and by the thread that opened
/// them: a connection's driver task runs on its opener's runtime, and the
/// server gives each core its own runtime, so sharing one connection across
/// them would cost a cross-core hop per command. A process therefore holds at
/// most one connection per address and worker thread (plus reconnections).
pub struct ExternalRedis {
    connections: Mutex<HashMap<(String, ThreadId), MultiplexedConnection>>,
    /// `CLIENT SETNAME` of every shared connection, as `CLIENT LIST` shows it.
    name: String,
    /// What the host's metrics count these connections and commands as.
    role: String,
}

fn key(address: &str) -> (String, ThreadId) {
    (address.to_string(), std::thread::current().id())
}

impl ExternalRedis {
    /// Connections labelled `spin-host:<pid>:<role>`.
    pub fn new(role: &str) -> Self {
        ExternalRedis {
            connections: Mutex::default(),
            name: format!("spin-host:{}:{role}", std::process::id()),
            role: role.to_string(),
        }
    }

    /// A connection to `address`, connecting now if there is none (as Spin connects on `open`).
    pub async fn connect(&self, address: &str) -> Result<MultiplexedConnection, String> {
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(&key(address)) {
            return Ok(connection.clone());
        }
        let mut connection = self.connect_new(address).await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.name)
            .exec_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        connections.insert(key(address), connection.clone());
        Ok(connection)
    }

    /// A new connection of its own, as Spin opens one for every guest `open`
    /// (and, like Spin's, unnamed: naming it would cost a round trip).
    pub async fn connect_new(&self, address: &str) -> Result<MultiplexedConnection, String> {
        let client = redis::Client::open(address).map_err(|e| e.to_string())?;
        crate::telemetry::metrics().redis_connection(&self.role);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| {
            crate::telemetry::metrics().redis_connection_failure(&self.role);
            e.to_string()
        })
    }

    /// Runs one command. A broken connection means the server went away, so
    /// every thread's connection to it is forgotten and the next `open` on
    /// each reconnects: a thread that sent nothing during an outage must not
    /// fail its first command after it on a connection to the old server.
    pub async fn execute(&self, address: &str, connection: &mut MultiplexedConnection, args: &[Vec<u8>]) -> Result<Reply, String> {
        let mut command = redis::cmd(&String::from_utf8_lossy(&args[0]));
        for arg in &args[1..] {
            command.arg(arg.as_slice());
        }
        crate::telemetry::metrics().redis_command(&self.role);
        match command.query_async::<redis::Value>(connection).await {
            Ok(value) => Ok(Reply::from(value)),
            Err(error) if matches!(error.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension) => {
                Ok(Reply::Error(server_error_text(&error)))
            }
            Err(error) => {
                crate::telemetry::metrics().redis_connection_failure(&self.role);
                self.connections.lock().await.retain(|(to, _), _| to != address);
                Err(error.to_string())
            }
        }
    }
}

/// `WRONGTYPE Operation against ...`, as the server wrote it.
fn server_error_text(error: &redis::RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => error.to_string(),
    }
}

//! Outbound Redis for guests (`fermyon:spin/redis@2.0.0`), backed by the
//! embedded server or a real one.

pub mod embedded;
pub mod external;
mod lua;
pub mod reply;

use std::sync::Arc;

use redis::aio::MultiplexedConnection;

use crate::key_value::CrashPoint;
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
    /// Spin's costs (`StoreMode::Spin`): a new connection for every guest
    /// `open` instead of a shared one, and CPU per call and per connection.
    spin_costs: Option<crate::spin_model::SpinCosts>,
    /// Fault injection: guests' Redis writes count toward the host's crash
    /// point, so a Redis the app stores in directly is crashed mid-write too.
    crash_point: Option<Arc<CrashPoint>>,
}

/// An open guest connection.
pub enum Connection {
    Embedded(Arc<EmbeddedRedis>),
    External { address: String, connection: MultiplexedConnection },
}

impl RedisService {
    pub fn new(use_embedded: bool, spin_costs: Option<crate::spin_model::SpinCosts>, crash_point: Option<Arc<CrashPoint>>) -> Self {
        RedisService {
            embedded: use_embedded.then(|| Arc::new(EmbeddedRedis::new())),
            external: ExternalRedis::new("guests"),
            spin_costs,
            crash_point,
        }
    }

    fn charge(&self) {
        if let Some(costs) = self.spin_costs {
            crate::spin_model::burn(costs.host_call);
        }
    }

    /// The embedded server, when guests use it.
    pub fn embedded(&self) -> Option<&Arc<EmbeddedRedis>> {
        self.embedded.as_ref()
    }

    pub async fn open(&self, address: &str) -> Result<Connection, String> {
        self.charge();
        if let Some(costs) = self.spin_costs {
            crate::spin_model::burn(costs.connect);
        }
        match &self.embedded {
            Some(server) if server.is_available() => Ok(Connection::Embedded(server.clone())),
            Some(_) => Err(embedded::UNAVAILABLE.to_string()),
            None => Ok(Connection::External {
                address: address.to_string(),
                connection: if self.spin_costs.is_some() {
                    self.external.connect_new(address).await?
                } else {
                    self.external.connect(address).await?
                },
            }),
        }
    }

    /// Runs one command; `Err` is a connection failure, `Ok(Reply::Error)` a server error.
    pub async fn execute(&self, connection: &mut Connection, args: &[Vec<u8>]) -> Result<Reply, String> {
        self.charge();
        let reply = match connection {
            Connection::Embedded(server) => server.execute(args),
            Connection::External { address, connection } => self.external.execute(address, connection, args).await,
        };
        if let Some(point) = &self.crash_point {
            if args.first().is_some_and(|name| !is_read_only(name)) {
                point.wrote();
            }
        }
        reply
    }
}

/// Commands that never change data (the ones guests send); every other
/// command counts as a write.
fn is_read_only(name: &[u8]) -> bool {
    const READS: [&str; 12] = ["GET", "MGET", "EXISTS", "KEYS", "SCAN", "SMEMBERS", "SISMEMBER", "SCARD", "TTL", "PTTL", "PING", "STRLEN"];
    READS.iter().any(|read| read.as_bytes().eq_ignore_ascii_case(name))
}

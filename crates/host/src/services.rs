//! What guests reach besides HTTP: the application's key-value stores by
//! label, and Redis. Shared by every request of one application.

use std::collections::HashMap;
use std::sync::Arc;

use crate::key_value::Store;
use crate::postgres::PostgresService;
use crate::redis::RedisService;

pub struct Services {
    pub key_value: HashMap<String, Arc<dyn Store>>,
    pub redis: RedisService,
    /// Guests' outbound PostgreSQL, pooled per address.
    pub postgres: PostgresService,
}

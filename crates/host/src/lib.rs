//! A small wasmtime host that runs a Spin application (`spin.toml`) the way
//! `spin up` does, for development and tests without the Spin CLI.
//!
//! Guests get WASI 0.2, `wasi:http` (outbound calls checked against
//! `allowed_outbound_hosts`, service chaining in-process), Spin variables,
//! key-value (`fermyon:spin/key-value` and `wasi:keyvalue`) on SQLite or a
//! Redis server, and Redis, either embedded in the process or a real server.

pub mod allowed_hosts;
pub mod app;
mod bindings;
pub mod build_components;
mod component;
pub mod event_stream;
mod guest;
mod imports;
pub mod key_value;
pub mod logging;
pub mod manifest;
pub mod memory;
mod outbound_http;
pub mod postgres;
pub mod redis;
pub mod router;
pub mod runtime_config;
pub mod server;
mod services;
pub mod spin_model;
mod state;
pub mod telemetry;
pub mod variables;

pub use app::{App, AppOptions};
pub use key_value::{SpinRedisDefects, StoreMode};
pub use redis::RedisMode;

//! The interfaces guests import, implemented on [`crate::state::HostState`]:
//! each translates guest calls into calls on the service it reaches (a
//! key-value [`crate::key_value::Store`], [`crate::redis::RedisService`],
//! the component's variables), which know nothing of guests, as Spin's
//! `factor-*` crates keep each capability apart from the instance state.

mod key_value_spin;
mod key_value_wasi;
mod postgres;
mod redis;
mod variables;

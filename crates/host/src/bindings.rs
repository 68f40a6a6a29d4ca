//! Host-side bindings for the Spin interfaces in the top-level `wit/` folder.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "host",
    imports: {
        "fermyon:spin/redis": async | trappable,
        "fermyon:spin/key-value": async | trappable,
        "wasi:keyvalue/store": async | trappable,
        "wasi:keyvalue/atomics": async | trappable,
        "wasi:keyvalue/batch": async | trappable,
        "spin:postgres/postgres": async | trappable,
        default: trappable,
    },
    with: {
        "fermyon:spin/key-value.store": crate::key_value::StoreHandle,
        "wasi:keyvalue/store.bucket": crate::key_value::StoreHandle,
        "wasi:keyvalue/atomics.cas": crate::key_value::CasHandle,
        "fermyon:spin/redis.connection": crate::redis::Connection,
        "spin:postgres/postgres.connection": crate::postgres::Connection,
    },
});

pub use fermyon::spin::{key_value as spin_key_value, redis as spin_redis, variables as spin_variables};
pub use spin::postgres::postgres as spin_postgres;
pub use wasi::keyvalue::{atomics as wasi_atomics, batch as wasi_batch, store as wasi_store};

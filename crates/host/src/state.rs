//! What one guest instance sees: its WASI context, HTTP context, resources,
//! and the component's own grants (variables, stores, outbound hosts).

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::allowed_hosts::AllowedHosts;
use crate::app::Shared;
use crate::key_value::Session;
use crate::outbound_http::OutboundHttp;

/// A component's configuration, resolved once at start.
#[derive(Debug)]
pub struct ComponentConfig {
    pub id: String,
    /// The component's `variables` table with templates expanded; an `Err`
    /// holds the message a guest gets when it reads that variable.
    pub variables: HashMap<String, Result<String, String>>,
    pub key_value_stores: Vec<String>,
    pub allowed_hosts: AllowedHosts,
    pub environment: Vec<(String, String)>,
}

/// Largest linear memory one instance may grow to.
pub const MAX_GUEST_MEMORY: usize = 256 << 20;

/// The `T` of every `Store<T>`: one per request.
pub struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub outbound: OutboundHttp,
    pub component: Arc<ComponentConfig>,
    pub app: Arc<Shared>,
    pub limits: StoreLimits,
    /// Committed before the response leaves (see [`Session`]).
    pub kv_session: Arc<Session>,
}

impl HostState {
    pub fn new(app: Arc<Shared>, component: Arc<ComponentConfig>) -> Self {
        let wasi = WasiCtx::builder()
            .inherit_stdout()
            .inherit_stderr()
            .envs(&component.environment)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundHttp::new(app.clone(), component.clone()),
            component,
            app,
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_GUEST_MEMORY)
                .instances(16)
                .build(),
            kv_session: Arc::default(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

//! What one guest instance sees: its WASI context, HTTP context, resources,
//! the services it may reach, and its component's grants.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::component::ComponentConfig;
use crate::key_value::Session;
use crate::logging::TaggedStderr;
use crate::outbound_http::{Dispatch, OutboundHttp};
use crate::services::Services;

/// Largest linear memory one instance may grow to.
pub const MAX_GUEST_MEMORY: usize = 256 << 20;

/// The `T` of every `Store<T>`: one per request.
pub struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub outbound: OutboundHttp,
    pub component: Arc<ComponentConfig>,
    /// Key-value stores and Redis.
    pub services: Arc<Services>,
    pub limits: GuestLimits,
    /// Committed before the response leaves (see [`Session`]).
    pub kv_session: Arc<Session>,
}

impl HostState {
    /// `stderr`: where the guest's stderr goes instead of the host's own.
    pub fn new(services: Arc<Services>, dispatch: Arc<dyn Dispatch>, component: Arc<ComponentConfig>, stderr: Option<TaggedStderr>) -> Self {
        let mut builder = WasiCtx::builder();
        builder.inherit_stdout().envs(&component.environment).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        match stderr {
            Some(stderr) => builder.stderr(stderr),
            None => builder.inherit_stderr(),
        };
        let wasi = builder.build();
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundHttp::new(dispatch, component.clone()),
            component,
            services,
            limits: GuestLimits {
                limits: StoreLimitsBuilder::new().memory_size(MAX_GUEST_MEMORY).instances(16).build(),
                memory_bytes: 0,
            },
            kv_session: Arc::default(),
        }
    }
}

/// A guest's resource limits, and the linear memory it came to hold: Spin
/// resets an instance's whole memory after each request, a cost
/// `--store-mode spin` charges by size ([`crate::spin_model`]).
pub struct GuestLimits {
    limits: StoreLimits,
    /// Bytes of linear memory over all of the guest's memories.
    pub memory_bytes: usize,
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
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

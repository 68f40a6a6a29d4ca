//! `wasi:keyvalue@0.2.0-draft2`: store, atomics and batch, with Spin's semantics.

use wasmtime::component::Resource;

use crate::key_value::{CasHandle, KvError, StoreHandle};
use crate::bindings::wasi_atomics::{self, CasError};
use crate::bindings::wasi_batch;
use crate::bindings::wasi_store::{self, Error, KeyResponse};
use crate::state::HostState;

fn to_guest<T>(result: Result<T, KvError>) -> wasmtime::Result<Result<T, Error>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(KvError::Other(m)) => Ok(Err(Error::Other(m))),
        Err(trap @ KvError::NotAnInteger(_)) => Err(trap.into()),
    }
}

impl wasi_store::Host for HostState {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<StoreHandle>, Error>> {
        if !self.component.key_value_stores.contains(&identifier) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(store) = self.services.key_value.get(&identifier).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        if let Err(e) = store.opened(&self.kv_session).await {
            return Ok(Err(Error::Other(e.to_string())));
        }
        Ok(Ok(self.table.push(StoreHandle { store })?))
    }
}

impl wasi_store::HostBucket for HostState {
    async fn get(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.get(&self.kv_session, &key).await)
    }

    async fn set(&mut self, b: Resource<StoreHandle>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.set(&self.kv_session, &key, &value).await)
    }

    async fn delete(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.delete(&self.kv_session, &key).await)
    }

    async fn exists(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.exists(&self.kv_session, &key).await)
    }

    /// Like Spin: every key at once, and no cursors.
    async fn list_keys(&mut self, b: Resource<StoreHandle>, cursor: Option<String>) -> wasmtime::Result<Result<KeyResponse, Error>> {
        if cursor.is_some() {
            return Ok(Err(Error::Other("list_keys: cursor not supported".into())));
        }
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.keys(&self.kv_session).await.map(|keys| KeyResponse { keys, cursor: None }))
    }

    async fn drop(&mut self, b: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl wasi_atomics::Host for HostState {
    async fn increment(&mut self, b: Resource<StoreHandle>, key: String, delta: i64) -> wasmtime::Result<Result<i64, Error>> {
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.increment(&self.kv_session, &key, delta).await)
    }

    async fn swap(&mut self, cas: Resource<CasHandle>, value: Vec<u8>) -> wasmtime::Result<Result<(), CasError>> {
        let mut handle = self.table.delete(cas)?;
        let swapped = handle.store.cas_swap(&self.kv_session, &handle.key, handle.snapshot.as_deref(), &value, &mut handle.state).await;
        match swapped {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // As in Spin, the failure carries a fresh handle (a new
                // compare-and-swap) that has read the new value.
                let fresh = async {
                    let mut state = handle.store.cas_begin(&self.kv_session, &handle.key).await?;
                    let snapshot = handle.store.cas_current(&self.kv_session, &handle.key, &mut state).await?;
                    Ok::<_, KvError>(CasHandle { snapshot, state, ..handle })
                };
                match fresh.await {
                    Ok(fresh) => Ok(Err(CasError::CasFailed(self.table.push(fresh)?))),
                    Err(e) => Ok(Err(CasError::StoreError(Error::Other(e.to_string())))),
                }
            }
            Err(e) => Ok(Err(CasError::StoreError(Error::Other(e.to_string())))),
        }
    }
}

impl wasi_atomics::HostCas for HostState {
    /// Records the key (and whatever the store keeps per compare-and-swap);
    /// the value is read by `current`, as Spin does.
    async fn new(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<Resource<CasHandle>, Error>> {
        let store = self.table.get(&b)?.store.clone();
        let state = match store.cas_begin(&self.kv_session, &key).await {
            Ok(state) => state,
            Err(e) => return Ok(Err(Error::Other(e.to_string()))),
        };
        Ok(Ok(self.table.push(CasHandle { store, key, snapshot: None, state })?))
    }

    async fn current(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let handle = self.table.get_mut(&cas)?;
        let (store, key) = (handle.store.clone(), handle.key.clone());
        let mut state = std::mem::take(&mut handle.state);
        let read = store.cas_current(&self.kv_session, &key, &mut state).await;
        let handle = self.table.get_mut(&cas)?;
        handle.state = state;
        match read {
            Ok(value) => {
                handle.snapshot = value.clone();
                Ok(Ok(value))
            }
            Err(e) => Ok(Err(Error::Other(e.to_string()))),
        }
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl wasi_batch::Host for HostState {
    async fn get_many(
        &mut self,
        b: Resource<StoreHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, Error>> {
        let store = self.table.get(&b)?.store.clone();
        let found = store.get_many(&self.kv_session, &keys).await;
        to_guest(found.map(|pairs| pairs.into_iter().map(|(k, v)| (k, Some(v))).collect()))
    }

    async fn set_many(&mut self, b: Resource<StoreHandle>, key_values: Vec<(String, Vec<u8>)>) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.set_many(&self.kv_session, &key_values).await)
    }

    async fn delete_many(&mut self, b: Resource<StoreHandle>, keys: Vec<String>) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&b)?.store.clone();
        to_guest(store.delete_many(&self.kv_session, &keys).await)
    }
}

//! `wasi:keyvalue@0.2.0-draft2`: store, atomics and batch, with Spin's semantics.

use wasmtime::component::Resource;

use super::{CasHandle, KvError, StoreHandle};
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
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<StoreHandle>, Error>> {
        if !self.component.key_value_stores.contains(&identifier) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(store) = self.app.key_value.get(&identifier).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(StoreHandle { store })?))
    }
}

impl wasi_store::HostBucket for HostState {
    fn get(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        to_guest(self.table.get(&b)?.store.get(&self.kv_session, &key))
    }

    fn set(&mut self, b: Resource<StoreHandle>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        to_guest(self.table.get(&b)?.store.set(&self.kv_session, &key, &value))
    }

    fn delete(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<(), Error>> {
        to_guest(self.table.get(&b)?.store.delete(&self.kv_session, &key))
    }

    fn exists(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        to_guest(self.table.get(&b)?.store.get(&self.kv_session, &key).map(|v| v.is_some()))
    }

    /// Like Spin: every key at once, and no cursors.
    fn list_keys(&mut self, b: Resource<StoreHandle>, cursor: Option<String>) -> wasmtime::Result<Result<KeyResponse, Error>> {
        if cursor.is_some() {
            return Ok(Err(Error::Other("list_keys: cursor not supported".into())));
        }
        to_guest(self.table.get(&b)?.store.keys(&self.kv_session).map(|keys| KeyResponse { keys, cursor: None }))
    }

    fn drop(&mut self, b: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl wasi_atomics::Host for HostState {
    fn increment(&mut self, b: Resource<StoreHandle>, key: String, delta: i64) -> wasmtime::Result<Result<i64, Error>> {
        to_guest(self.table.get(&b)?.store.increment(&self.kv_session, &key, delta))
    }

    fn swap(&mut self, cas: Resource<CasHandle>, value: Vec<u8>) -> wasmtime::Result<Result<(), CasError>> {
        let handle = self.table.delete(cas)?;
        match handle.store.swap(&self.kv_session, &handle.key, handle.snapshot.as_deref(), &value) {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // As in Spin, the failure carries a fresh handle that has read the new value.
                let snapshot = match handle.store.get(&self.kv_session, &handle.key) {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(CasError::StoreError(Error::Other(e.to_string())))),
                };
                let fresh = self.table.push(CasHandle { snapshot, ..handle })?;
                Ok(Err(CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(CasError::StoreError(Error::Other(e.to_string())))),
        }
    }
}

impl wasi_atomics::HostCas for HostState {
    /// Records the key only; the value is read by `current`, as Spin does.
    fn new(&mut self, b: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<Resource<CasHandle>, Error>> {
        let store = self.table.get(&b)?.store.clone();
        Ok(Ok(self.table.push(CasHandle { store, key, snapshot: None })?))
    }

    fn current(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let handle = self.table.get_mut(&cas)?;
        match handle.store.get(&self.kv_session, &handle.key) {
            Ok(value) => {
                handle.snapshot = value.clone();
                Ok(Ok(value))
            }
            Err(e) => Ok(Err(Error::Other(e.to_string()))),
        }
    }

    fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl wasi_batch::Host for HostState {
    fn get_many(
        &mut self,
        b: Resource<StoreHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, Error>> {
        let found = self.table.get(&b)?.store.get_many(&self.kv_session, &keys);
        to_guest(found.map(|pairs| pairs.into_iter().map(|(k, v)| (k, Some(v))).collect()))
    }

    fn set_many(&mut self, b: Resource<StoreHandle>, key_values: Vec<(String, Vec<u8>)>) -> wasmtime::Result<Result<(), Error>> {
        to_guest(self.table.get(&b)?.store.set_many(&self.kv_session, &key_values))
    }

    fn delete_many(&mut self, b: Resource<StoreHandle>, keys: Vec<String>) -> wasmtime::Result<Result<(), Error>> {
        to_guest(self.table.get(&b)?.store.delete_many(&self.kv_session, &keys))
    }
}

//! `fermyon:spin/key-value@2.0.0`.

use wasmtime::component::Resource;

use crate::key_value::{KvError, StoreHandle};
use crate::bindings::spin_key_value::{self, Error};
use crate::state::HostState;

fn to_guest<T>(result: Result<T, KvError>) -> wasmtime::Result<Result<T, Error>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(KvError::Other(m)) => Ok(Err(Error::Other(m))),
        Err(trap @ KvError::NotAnInteger(_)) => Err(trap.into()),
    }
}

impl spin_key_value::Host for HostState {}

impl spin_key_value::HostStore for HostState {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<StoreHandle>, Error>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(store) = self.services.key_value.get(&label).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(StoreHandle { store })?))
    }

    async fn get(&mut self, s: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let store = self.table.get(&s)?.store.clone();
        to_guest(store.get(&self.kv_session, &key).await)
    }

    async fn set(&mut self, s: Resource<StoreHandle>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&s)?.store.clone();
        to_guest(store.set(&self.kv_session, &key, &value).await)
    }

    async fn delete(&mut self, s: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<(), Error>> {
        let store = self.table.get(&s)?.store.clone();
        to_guest(store.delete(&self.kv_session, &key).await)
    }

    async fn exists(&mut self, s: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        let store = self.table.get(&s)?.store.clone();
        to_guest(store.exists(&self.kv_session, &key).await)
    }

    async fn get_keys(&mut self, s: Resource<StoreHandle>) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let store = self.table.get(&s)?.store.clone();
        to_guest(store.keys(&self.kv_session).await)
    }

    async fn drop(&mut self, s: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

//! Storing API keys: each record under its secret's hash (what a request's
//! check reads, one key), and per project an index of ids and hashes (what
//! listing and revoking read). Both live outside any project's prefix.

use crate::auth::{key_index_key, key_record_key, KeyIndex, KeyRecord};
use crate::kv::{update, Change, Kv, StoreError};

fn decode_index(key: &str, bytes: Option<&[u8]>) -> Result<KeyIndex, StoreError> {
    bytes.map_or(Ok(KeyIndex::default()), |b| serde_json::from_slice(b).map_err(|e| StoreError::corrupt(key, e)))
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(key, e))
}

/// Stores a new key: its record first, then its place in the index, so a
/// key is usable once created even if the index write fails (it is then
/// missing from listings until created again).
pub fn create<K: Kv>(kv: &mut K, record: &KeyRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Store(e.to_string()))?;
    kv.set(&key_record_key(&record.hash), &bytes)?;
    let index_key = key_index_key(&record.project);
    update(kv, &index_key, |current| {
        let mut index = decode_index(&index_key, current)?;
        if index.keys.iter().any(|(id, _)| *id == record.id) {
            return Ok(Change::Done(()));
        }
        index.keys.push((record.id.clone(), record.hash.clone()));
        Ok(Change::Write(serde_json::to_vec(&index).unwrap_or_default(), ()))
    })
}

/// Every key of `project`, oldest first.
pub fn list<K: Kv>(kv: &mut K, project: &str) -> Result<Vec<KeyRecord>, StoreError> {
    let index_key = key_index_key(project);
    let index = decode_index(&index_key, kv.get(&index_key)?.as_deref())?;
    let keys: Vec<String> = index.keys.iter().map(|(_, hash)| key_record_key(hash)).collect();
    let values = kv.get_many(&keys)?;
    keys.iter().zip(values).filter_map(|(key, value)| value.map(|v| decode_record(key, &v))).collect()
}

/// Revokes key `id` of `project` at `now_ms`; `None` if the project has no
/// such key. Revoking again changes nothing (and says when it happened).
pub fn revoke<K: Kv>(kv: &mut K, project: &str, id: &str, now_ms: i64) -> Result<Option<KeyRecord>, StoreError> {
    let index_key = key_index_key(project);
    let index = decode_index(&index_key, kv.get(&index_key)?.as_deref())?;
    let Some((_, hash)) = index.keys.iter().find(|(key_id, _)| key_id == id) else { return Ok(None) };
    let key = key_record_key(hash);
    update(kv, &key, |current| {
        let Some(bytes) = current else { return Ok(Change::Done(None)) };
        let mut record = decode_record(&key, bytes)?;
        if record.revoked_at_ms.is_some() {
            return Ok(Change::Done(Some(record)));
        }
        record.revoked_at_ms = Some(now_ms);
        Ok(Change::Write(serde_json::to_vec(&record).unwrap_or_default(), Some(record)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{authorize, new_secret, Mode, NewKey, Scope, DEFAULT_PROJECT};
    use crate::memory_store::MemoryStore;

    fn make(kv: &mut MemoryStore, project: &str, seed: u8) -> (String, KeyRecord) {
        let root = authorize(Mode::Required, Some("root"), "root", None, Scope::Admin).unwrap();
        let new = NewKey { name: format!("k{seed}"), scopes: vec![Scope::Read], rate_limit_requests: None, allowed_origins: vec![], project: Some(project.into()) };
        let secret = new_secret([seed; 24], DEFAULT_PROJECT);
        let record = new.record(&root, &secret, 1_000 + seed as i64).unwrap();
        create(kv, &record).unwrap();
        (secret, record)
    }

    #[test]
    fn keys_are_listed_per_project_and_revoked_once() {
        let mut kv = MemoryStore::default();
        let (_, a1) = make(&mut kv, "acme", 1);
        let (_, a2) = make(&mut kv, "acme", 2);
        let (_, b1) = make(&mut kv, "bolt", 3);
        assert_eq!(list(&mut kv, "acme").unwrap().iter().map(|r| r.id.clone()).collect::<Vec<_>>(), [a1.id.clone(), a2.id.clone()]);
        assert_eq!(list(&mut kv, "bolt").unwrap(), [b1.clone()]);
        assert_eq!(revoke(&mut kv, "acme", &b1.id, 5).unwrap(), None, "another project's key");
        let revoked = revoke(&mut kv, "acme", &a1.id, 5).unwrap().unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(5));
        assert_eq!(revoke(&mut kv, "acme", &a1.id, 9).unwrap().unwrap().revoked_at_ms, Some(5), "idempotent");
        let stored: KeyRecord = serde_json::from_slice(&kv.value(&key_record_key(&a1.hash)).unwrap()).unwrap();
        assert_eq!(stored.revoked_at_ms, Some(5), "the record a request reads says so");
    }
}

//! Who may do what. Every metric belongs to a project; an API key belongs to
//! one project and carries scopes: `ingest` (write only: safe to ship in a
//! page or an app), `read` (summaries, lists, series, stats) and `admin`
//! (manage keys, erase users). The variable `admin_token` is the bootstrap
//! credential: every scope, on every project (it is the only way to create
//! a project's first key).
//!
//! Keys are stored only as SHA-256 hashes (`apikey:{hash}`, outside any
//! project), found by that hash and compared in constant time, so checking a
//! key is one key-value read. A revoked key's record says so; every replica
//! reads it on every request, so revocation is immediate everywhere.
//!
//! With `auth = "open"` (the default, for trying the API out) a request
//! without a key acts on the default project with every data scope; admin
//! still needs the admin token or an admin key. With `auth = "required"`
//! every data endpoint needs a key: 401 without one (or with an unknown or
//! revoked one), 403 for a key that lacks the scope.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api_error::{ApiError, FieldError};

/// The project of requests without a key, and of the bootstrap token.
pub const DEFAULT_PROJECT: &str = "default";
pub const MAX_KEY_NAME: usize = 100;
pub const MAX_ORIGINS: usize = 20;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// `auth`: whether a key is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Open,
    Required,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim() {
            "open" => Some(Mode::Open),
            "required" => Some(Mode::Required),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Required => "required",
        }
    }
}

/// A stored key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub project: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Requests per rate-limit window for this key (default: the app's).
    pub rate_limit_requests: Option<u32>,
    /// Origins a browser page may use this key from (CORS).
    pub allowed_origins: Vec<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// SHA-256 of the secret, hex.
    pub hash: String,
}

impl KeyRecord {
    /// The public view: everything but the hash.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "scopes": self.scopes,
            "rate_limit_requests": self.rate_limit_requests,
            "allowed_origins": self.allowed_origins,
            "created_at": crate::time::format_timestamp(self.created_at_ms),
            "revoked_at": self.revoked_at_ms.map(crate::time::format_timestamp),
        })
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub project: String,
    /// The key used, if any (`None`: no key, or the bootstrap token).
    pub key_id: Option<String>,
    pub scopes: Vec<Scope>,
    pub rate_limit_requests: Option<u32>,
    pub allowed_origins: Vec<String>,
    /// The bootstrap admin token: every project.
    pub bootstrap: bool,
}

impl Principal {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Prefix of this project's keys (in the store and in Redis): none for
    /// the default project, so its layout is the one before projects.
    pub fn key_prefix(&self) -> String {
        project_prefix(&self.project)
    }
}

/// Prefix of a project's keys.
pub fn project_prefix(project: &str) -> String {
    if project == DEFAULT_PROJECT {
        String::new()
    } else {
        format!("p:{project}:")
    }
}

/// SHA-256 of a secret, hex.
pub fn key_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a key's record lives.
pub fn key_record_key(hash: &str) -> String {
    format!("apikey:{hash}")
}

/// A project's key index: ids and hashes, for listing and revoking.
pub fn key_index_key(project: &str) -> String {
    format!("apikeys:{project}")
}

/// Hex digits of a secret's random part.
const SECRET_HEX: usize = 48;

/// A new secret from 24 random bytes: `rak_` and 48 hex digits, with the
/// project's name in between (`rak_acme_…`) outside the default project, so
/// a request's reads can go with its key's record ([`project_hint`]).
pub fn new_secret(random: [u8; 24], project: &str) -> String {
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    if project == DEFAULT_PROJECT {
        format!("rak_{hex}")
    } else {
        format!("rak_{project}_{hex}")
    }
}

/// The project a secret says it belongs to: a hint for reading ahead,
/// never a credential (the key's record decides).
pub fn project_hint(secret: &str) -> &str {
    let Some(rest) = secret.strip_prefix("rak_") else { return DEFAULT_PROJECT };
    match rest.len().checked_sub(SECRET_HEX + 1).map(|at| rest.split_at(at)) {
        Some((project, tail)) if tail.starts_with('_') && validate_project(project).is_ok() => project,
        _ => DEFAULT_PROJECT,
    }
}

/// A key's public id: derived from its hash, so it says nothing of the secret.
pub fn key_id(hash: &str) -> String {
    format!("key_{}", &hash[..16.min(hash.len())])
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(401, "unauthorized", message)
}

/// The credential a request carries: `Authorization: Bearer <key>` or
/// `X-API-Key: <key>` (both only if they agree).
pub fn credential(authorization: Option<&str>, x_api_key: Option<&str>) -> Result<Option<String>, ApiError> {
    let bearer = match authorization.map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(value) => match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Some(token.trim().to_string()),
            _ => return Err(unauthorized("the Authorization header must be `Bearer <key>`")),
        },
    };
    let header = x_api_key.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    match (bearer, header) {
        (Some(a), Some(b)) if a != b => Err(unauthorized("Authorization and X-API-Key carry different keys; send one")),
        (a, b) => Ok(a.or(b)),
    }
}

/// Whether `given` is the bootstrap token (constant time; an empty token never matches).
pub fn is_admin_token(given: &str, admin_token: &str) -> bool {
    !admin_token.is_empty() && bool::from(given.as_bytes().ct_eq(admin_token.as_bytes()))
}

/// Who the request acts as, given the mode, its credential, the bootstrap
/// token and (when the credential is not that token) the record stored
/// under the credential's hash; and whether that may do `needed`.
pub fn authorize(mode: Mode, credential: Option<&str>, admin_token: &str, record: Option<KeyRecord>, needed: Scope) -> Result<Principal, ApiError> {
    let principal = match credential {
        Some(secret) if is_admin_token(secret, admin_token) => Principal {
            project: DEFAULT_PROJECT.into(),
            key_id: None,
            scopes: Scope::ALL.to_vec(),
            rate_limit_requests: None,
            allowed_origins: Vec::new(),
            bootstrap: true,
        },
        Some(secret) => {
            let hash = key_hash(secret);
            let record = record
                .filter(|r| bool::from(r.hash.as_bytes().ct_eq(hash.as_bytes())))
                .ok_or_else(|| unauthorized("unknown API key"))?;
            if record.revoked_at_ms.is_some() {
                return Err(unauthorized(format!("API key {} was revoked", record.id)));
            }
            Principal {
                project: record.project,
                key_id: Some(record.id),
                scopes: record.scopes,
                rate_limit_requests: record.rate_limit_requests,
                allowed_origins: record.allowed_origins,
                bootstrap: false,
            }
        }
        None if mode == Mode::Open && needed != Scope::Admin => Principal {
            project: DEFAULT_PROJECT.into(),
            key_id: None,
            scopes: vec![Scope::Ingest, Scope::Read],
            rate_limit_requests: None,
            allowed_origins: Vec::new(),
            bootstrap: false,
        },
        None if needed == Scope::Admin => {
            return Err(unauthorized("send an admin key or the admin token: Authorization: Bearer <key> (or X-API-Key)"))
        }
        None => return Err(unauthorized("this API needs a key: Authorization: Bearer <key> (or X-API-Key)")),
    };
    if !principal.may(needed) {
        let id = principal.key_id.as_deref().unwrap_or("this credential");
        return Err(ApiError::new(403, "forbidden", format!("{id} lacks the `{}` scope", needed.name())));
    }
    Ok(principal)
}

/// A validated `POST /api/keys` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub rate_limit_requests: Option<u32>,
    pub allowed_origins: Vec<String>,
    /// Only the bootstrap token may name another project.
    pub project: Option<String>,
}

/// Project ids: 1–64 of `[a-z0-9_-]`.
pub fn validate_project(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
        return Err("must be 1-64 characters of a-z, 0-9, '_' and '-'".into());
    }
    Ok(())
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
pub fn validate_origin(text: &str) -> Result<(), String> {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '*']) {
        return Err(format!("`{text}` is not an origin like https://app.example.com or http://localhost:8080"));
    }
    Ok(())
}

impl NewKey {
    pub fn parse(body: &[u8]) -> Result<NewKey, ApiError> {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ApiError::new(422, "invalid_json", format!("the body is not valid JSON: {e}")))?;
        let Some(object) = json.as_object() else {
            return Err(ApiError::new(422, "invalid_json", "a key request must be a JSON object"));
        };
        let mut errors = Vec::new();
        let name = match object.get("name").and_then(|v| v.as_str()) {
            Some(n) if !n.trim().is_empty() && n.chars().count() <= MAX_KEY_NAME => n.trim().to_string(),
            _ => {
                errors.push(FieldError::new("name", format!("is required: 1-{MAX_KEY_NAME} characters")));
                String::new()
            }
        };
        let mut scopes = Vec::new();
        match object.get("scopes").and_then(|v| v.as_array()) {
            Some(list) if !list.is_empty() => {
                for item in list {
                    match item.as_str().and_then(Scope::parse) {
                        Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
                        Some(_) => {}
                        None => errors.push(FieldError::new("scopes", format!("{item} is not one of ingest, read, admin"))),
                    }
                }
            }
            _ => errors.push(FieldError::new("scopes", "is required: a non-empty list of ingest, read, admin")),
        }
        scopes.sort();
        let rate_limit_requests = match object.get("rate_limit_requests") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=u32::MAX as u64).contains(&n) => Some(n as u32),
                _ => {
                    errors.push(FieldError::new("rate_limit_requests", "must be a whole number from 1 to 4294967295"));
                    None
                }
            },
        };
        let mut allowed_origins = Vec::new();
        match object.get("allowed_origins") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(list)) if list.len() <= MAX_ORIGINS => {
                for item in list {
                    match item.as_str().map(|o| (o, validate_origin(o))) {
                        Some((origin, Ok(()))) => allowed_origins.push(origin.to_string()),
                        Some((_, Err(message))) => errors.push(FieldError::new("allowed_origins", message)),
                        None => errors.push(FieldError::new("allowed_origins", "must hold strings")),
                    }
                }
            }
            Some(_) => errors.push(FieldError::new("allowed_origins", format!("must be a list of at most {MAX_ORIGINS} origins"))),
        }
        let project = match object.get("project") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_str().map(|p| (p, validate_project(p))) {
                Some((p, Ok(()))) => Some(p.to_string()),
                Some((_, Err(message))) => {
                    errors.push(FieldError::new("project", message));
                    None
                }
                None => {
                    errors.push(FieldError::new("project", "must be a string"));
                    None
                }
            },
        };
        if !errors.is_empty() {
            let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            return Err(ApiError::new(422, "validation_failed", format!("invalid fields: {}", fields.join(", "))).with_details(errors));
        }
        Ok(NewKey { name, scopes, rate_limit_requests, allowed_origins, project })
    }

    /// The record to store for `secret`, created by `creator`, at `now_ms`.
    /// The project the new key belongs to: the one asked for, which only the
    /// admin token may choose freely, else its creator's.
    pub fn project(&self, creator: &Principal) -> Result<String, ApiError> {
        match (&self.project, creator.bootstrap) {
            (Some(p), true) => Ok(p.clone()),
            (Some(p), false) if *p != creator.project => Err(ApiError::new(403, "forbidden", "only the admin token creates keys for another project")),
            _ => Ok(creator.project.clone()),
        }
    }

    pub fn record(&self, creator: &Principal, secret: &str, now_ms: i64) -> Result<KeyRecord, ApiError> {
        let project = self.project(creator)?;
        let hash = key_hash(secret);
        Ok(KeyRecord {
            id: key_id(&hash),
            project,
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            rate_limit_requests: self.rate_limit_requests,
            allowed_origins: self.allowed_origins.clone(),
            created_at_ms: now_ms,
            revoked_at_ms: None,
            hash,
        })
    }
}

/// A project's key index: `(id, hash)` pairs in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyIndex {
    pub keys: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scopes: &[Scope]) -> (String, KeyRecord) {
        let secret = new_secret([7; 24], DEFAULT_PROJECT);
        let new = NewKey { name: "k".into(), scopes: scopes.to_vec(), rate_limit_requests: Some(50), allowed_origins: vec![], project: None };
        let creator = authorize(Mode::Open, Some("root"), "root", None, Scope::Admin).unwrap();
        (secret.clone(), new.record(&creator, &secret, 1_000).unwrap())
    }

    #[test]
    fn credentials_come_from_either_header() {
        assert_eq!(credential(Some("Bearer abc"), None).unwrap().as_deref(), Some("abc"));
        assert_eq!(credential(Some("bearer  abc "), None).unwrap().as_deref(), Some("abc"));
        assert_eq!(credential(None, Some("abc")).unwrap().as_deref(), Some("abc"));
        assert_eq!(credential(Some("Bearer abc"), Some("abc")).unwrap().as_deref(), Some("abc"));
        assert_eq!(credential(None, None).unwrap(), None);
        assert_eq!(credential(Some("Basic abc"), None).unwrap_err().status, 401);
        assert_eq!(credential(Some("Bearer a"), Some("b")).unwrap_err().status, 401);
    }

    #[test]
    fn each_mode_scope_and_key_state_is_decided() {
        let (secret, ingest) = record(&[Scope::Ingest]);
        // Open: no key reads and writes the default project, but is no admin.
        let anonymous = authorize(Mode::Open, None, "root", None, Scope::Read).unwrap();
        assert_eq!((anonymous.project.as_str(), anonymous.key_id), ("default", None));
        assert_eq!(authorize(Mode::Open, None, "root", None, Scope::Admin).unwrap_err().status, 401);
        // Required: nothing without a key.
        assert_eq!(authorize(Mode::Required, None, "root", None, Scope::Ingest).unwrap_err().status, 401);
        // An ingest key writes, and nothing else.
        let p = authorize(Mode::Required, Some(&secret), "root", Some(ingest.clone()), Scope::Ingest).unwrap();
        assert_eq!((p.key_id.as_deref(), p.rate_limit_requests), (Some(ingest.id.as_str()), Some(50)));
        assert_eq!(authorize(Mode::Required, Some(&secret), "root", Some(ingest.clone()), Scope::Read).unwrap_err().status, 403);
        assert_eq!(authorize(Mode::Open, Some(&secret), "root", Some(ingest.clone()), Scope::Admin).unwrap_err().status, 403);
        // Unknown, mismatched and revoked keys are 401s.
        assert_eq!(authorize(Mode::Required, Some("rak_nope"), "root", None, Scope::Read).unwrap_err().status, 401);
        assert_eq!(authorize(Mode::Required, Some("rak_other"), "root", Some(ingest.clone()), Scope::Ingest).unwrap_err().status, 401);
        let revoked = KeyRecord { revoked_at_ms: Some(2_000), ..ingest };
        assert!(authorize(Mode::Required, Some(&secret), "root", Some(revoked), Scope::Ingest).unwrap_err().message.contains("revoked"));
        // The bootstrap token may do everything; an empty token is no token.
        assert!(authorize(Mode::Required, Some("root"), "root", None, Scope::Admin).unwrap().bootstrap);
        assert_eq!(authorize(Mode::Required, Some(""), "", None, Scope::Read).unwrap_err().status, 401);
    }

    #[test]
    fn key_requests_are_validated_field_by_field() {
        let ok = NewKey::parse(br#"{"name": "web", "scopes": ["ingest", "ingest"], "allowed_origins": ["https://a.example"], "rate_limit_requests": 10}"#).unwrap();
        assert_eq!((ok.scopes, ok.allowed_origins.len(), ok.rate_limit_requests), (vec![Scope::Ingest], 1, Some(10)));
        let bad = NewKey::parse(br#"{"scopes": ["write"], "allowed_origins": ["https://a.example/path"], "rate_limit_requests": 0, "project": "A B"}"#).unwrap_err();
        let fields: Vec<&str> = bad.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["name", "scopes", "rate_limit_requests", "allowed_origins", "project"]);
        assert_eq!(NewKey::parse(b"[]").unwrap_err().status, 422);
    }

    #[test]
    fn only_the_bootstrap_token_creates_keys_for_another_project() {
        let (secret, admin) = record(&[Scope::Admin]);
        let admin = authorize(Mode::Required, Some(&secret), "root", Some(admin), Scope::Admin).unwrap();
        let elsewhere = NewKey { name: "x".into(), scopes: vec![Scope::Read], rate_limit_requests: None, allowed_origins: vec![], project: Some("acme".into()) };
        assert_eq!(elsewhere.record(&admin, "s", 0).unwrap_err().status, 403);
        let root = authorize(Mode::Required, Some("root"), "root", None, Scope::Admin).unwrap();
        assert_eq!(elsewhere.record(&root, "s", 0).unwrap().project, "acme");
        assert_eq!(project_prefix("acme"), "p:acme:");
        assert_eq!(project_prefix(DEFAULT_PROJECT), "");
    }

    #[test]
    fn secrets_are_stored_only_as_hashes() {
        let (secret, record) = record(&[Scope::Read]);
        let stored = serde_json::to_string(&record).unwrap();
        assert!(!stored.contains(&secret) && !record.to_json().to_string().contains(&record.hash));
        assert_eq!(record.hash.len(), 64);
        assert!(secret.starts_with("rak_") && secret.len() == 52);
    }

    #[test]
    fn secrets_outside_the_default_project_name_it() {
        let acme = new_secret([9; 24], "acme");
        assert!(acme.starts_with("rak_acme_") && acme.len() == 57, "{acme}");
        assert_eq!(project_hint(&acme), "acme");
        assert_eq!(project_hint(&new_secret([9; 24], "a_b-1")), "a_b-1");
        assert_eq!(project_hint(&new_secret([9; 24], DEFAULT_PROJECT)), DEFAULT_PROJECT);
        for other in ["rak_", "rak_ACME_0123", "token", "", "rak__0000000000000000000000000000000000000000000000000"] {
            assert_eq!(project_hint(other), DEFAULT_PROJECT, "{other}");
        }
    }
}

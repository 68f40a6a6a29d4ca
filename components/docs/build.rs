//! Renders `openapi/openapi.yaml` (the one source of truth, written by hand)
//! as compact JSON into `$OUT_DIR/openapi.json`, which the component embeds,
//! after a few checks that would otherwise only show in a browser: OpenAPI
//! 3.1, every local `$ref` resolves, every operation has a unique
//! `operationId` and at least one response. `info.version` is set to the
//! workspace version. Also writes `$OUT_DIR/etags.rs`: one ETag for the
//! document and one for the Swagger UI files, from their bytes.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = manifest_dir.join("../../openapi/openapi.yaml");
    println!("cargo:rerun-if-changed={}", source.display());

    let text = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    // Parsed as YAML values first, which keep the file's order (paths as
    // written, not sorted); serialised from those as JSON.
    let mut document: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", source.display()));
    document["info"]["version"] = serde_yaml::Value::String(std::env::var("CARGO_PKG_VERSION").unwrap_or_default());
    let json = serde_json::to_vec(&document).unwrap_or_else(|e| panic!("{} has no JSON form: {e}", source.display()));
    let problems = check(&serde_json::from_slice(&json).expect("JSON just written parses"));
    if !problems.is_empty() {
        panic!("{}:\n  {}", source.display(), problems.join("\n  "));
    }
    fs::write(out_dir.join("openapi.json"), &json).expect("write openapi.json");

    // The UI: the vendored Swagger UI files and this component's own page.
    let mut ui_files: Vec<PathBuf> = ["src/index.html", "src/swagger-initializer.js"].iter().map(|p| manifest_dir.join(p)).collect();
    let assets = manifest_dir.join("assets");
    println!("cargo:rerun-if-changed={}", assets.display());
    let mut vendored: Vec<PathBuf> = fs::read_dir(&assets)
        .unwrap_or_else(|e| panic!("{}: {e}", assets.display()))
        .map(|entry| entry.expect("read assets/").path())
        .collect();
    vendored.sort();
    ui_files.extend(vendored);
    let mut ui_hash = Fnv::default();
    for file in &ui_files {
        println!("cargo:rerun-if-changed={}", file.display());
        ui_hash.write(file.file_name().unwrap_or_default().as_encoded_bytes());
        ui_hash.write(&fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
    }
    let mut document_hash = Fnv::default();
    document_hash.write(&json);
    let etags = format!(
        "/// ETag of `/openapi.json`.\npub const OPENAPI_ETAG: &str = \"\\\"{:016x}\\\"\";\n\
         /// ETag of `/docs` and every file under it.\npub const UI_ETAG: &str = \"\\\"{:016x}\\\"\";\n",
        document_hash.0, ui_hash.0
    );
    fs::write(out_dir.join("etags.rs"), etags).expect("write etags.rs");
}

/// 64-bit FNV-1a: stable across builds and toolchains, which `DefaultHasher` is not.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What is wrong with the document, one line each.
fn check(document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match document["openapi"].as_str() {
        Some(v) if v.starts_with("3.1.") => {}
        other => problems.push(format!("`openapi` must be 3.1.x, not {other:?}")),
    }
    let mut refs = Vec::new();
    collect_refs(document, &mut refs);
    for reference in refs {
        match reference.strip_prefix('#') {
            Some(pointer) if resolve(document, pointer).is_some() => {}
            Some(_) => problems.push(format!("`$ref: {reference}` points at nothing")),
            None => problems.push(format!("`$ref: {reference}`: only local references (#/...) are allowed")),
        }
    }
    let mut ids = HashSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(operation) = item.get(*method) else { continue };
            let label = format!("{} {path}", method.to_uppercase());
            match operation["operationId"].as_str() {
                Some(id) if !ids.insert(id.to_string()) => problems.push(format!("{label}: operationId `{id}` is used twice")),
                Some(_) => {}
                None => problems.push(format!("{label}: no operationId")),
            }
            if operation["responses"].as_object().is_none_or(|r| r.is_empty()) {
                problems.push(format!("{label}: no responses"));
            }
        }
    }
    problems
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A JSON pointer (RFC 6901) into `document`.
fn resolve<'a>(document: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(document);
    }
    let pointer = pointer.strip_prefix('/')?;
    pointer.split('/').try_fold(document, |node, token| {
        let token = token.replace("~1", "/").replace("~0", "~");
        match node {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => items.get(token.parse::<usize>().ok()?),
            _ => None,
        }
    })
}

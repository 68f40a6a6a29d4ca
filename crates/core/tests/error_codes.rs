//! `ERROR_CODES` is the one list of the API's error codes. These tests hold
//! the OpenAPI document (openapi/openapi.yaml) and the sources of the API to
//! it: the document's `ErrorCode` enum must name exactly those codes, every
//! error response must use the one `Error` schema (so generated clients have
//! one error type), and the sources must write no code that is not listed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use analytics_core::api_error::ERROR_CODES;
use serde_yaml::Value;

const ERROR_REF: &str = "#/components/schemas/Error";
const ERROR_CODE_REF: &str = "#/components/schemas/ErrorCode";
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// 4xx/5xx responses whose body is not an error: `/health` answers its
/// report with a 503 when a part is down.
const NOT_ERRORS: &[(&str, &str, &str)] = &[("/health", "get", "503")];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn document() -> Value {
    let path = repo_root().join("openapi/openapi.yaml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn listed() -> BTreeSet<String> {
    ERROR_CODES.iter().map(|c| c.to_string()).collect()
}

/// What is in `a` and not in `b`, and the other way round, for a message.
fn difference(a: &BTreeSet<String>, a_name: &str, b: &BTreeSet<String>, b_name: &str) -> String {
    format!(
        "in {a_name}, not in {b_name}: {:?}; in {b_name}, not in {a_name}: {:?}",
        a.difference(b).collect::<Vec<_>>(),
        b.difference(a).collect::<Vec<_>>()
    )
}

/// Follows a local `$ref` (`#/a/b`) in `document`, once.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix("#/").unwrap_or_else(|| panic!("`{reference}` is not a local reference"));
            pointer.split('/').fold(document, |v, key| v.get(key).unwrap_or_else(|| panic!("`{reference}` points at nothing")))
        }
        None => value,
    }
}

#[test]
fn the_list_holds_each_code_once_in_snake_case() {
    assert_eq!(listed().len(), ERROR_CODES.len(), "a code is listed twice: {ERROR_CODES:?}");
    for code in ERROR_CODES {
        let snake = !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && !code.starts_with('_') && !code.ends_with('_');
        assert!(snake, "`{code}` is not snake_case");
    }
}

#[test]
fn the_documents_error_code_enum_is_exactly_the_list() {
    let document = document();
    let schema = &document["components"]["schemas"]["ErrorCode"];
    assert_eq!(schema["type"].as_str(), Some("string"), "ErrorCode: {schema:?}");
    let values = schema["enum"].as_sequence().unwrap_or_else(|| panic!("ErrorCode has no enum: {schema:?}"));
    let documented: BTreeSet<String> =
        values.iter().map(|v| v.as_str().unwrap_or_else(|| panic!("ErrorCode: {v:?} is not a string")).to_string()).collect();
    assert_eq!(documented.len(), values.len(), "ErrorCode names a code twice");
    assert_eq!(documented, listed(), "{}", difference(&documented, "openapi.yaml's ErrorCode", &listed(), "ERROR_CODES"));
}

#[test]
fn every_error_code_property_is_the_one_enum() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    for name in ["Error", "BatchRejection"] {
        let error = &schemas[name]["properties"]["error"];
        assert_eq!(error["$ref"].as_str(), Some(ERROR_CODE_REF), "{name}.error must be `$ref: '{ERROR_CODE_REF}'`: {error:?}");
    }
    assert_eq!(
        schemas["Error"]["required"].as_sequence().map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>()),
        Some(vec!["error", "message"]),
        "Error's required fields"
    );
}

/// Every 4xx and 5xx response (after following `$ref`s to
/// `components/responses`), with its label.
fn error_responses(document: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    let paths = document["paths"].as_mapping().expect("the document has paths");
    for (path, item) in paths {
        let path = path.as_str().expect("paths are strings");
        for method in METHODS {
            let Some(responses) = item.get(*method).and_then(|op| op.get("responses")).and_then(Value::as_mapping) else { continue };
            for (status, response) in responses {
                let status = status.as_str().unwrap_or_else(|| panic!("{method} {path}: status {status:?} is not quoted"));
                if !(status.starts_with('4') || status.starts_with('5')) || NOT_ERRORS.contains(&(path, method, status)) {
                    continue;
                }
                out.push((format!("{} {path} {status}", method.to_uppercase()), resolve(document, response)));
            }
        }
    }
    out
}

#[test]
fn every_error_response_is_the_error_schema_itself() {
    let document = document();
    let responses = error_responses(&document);
    assert!(responses.len() > 50, "found only {} error responses; is the walk broken?", responses.len());
    let mut problems = Vec::new();
    for (label, response) in &responses {
        let Some(content) = response.get("content").and_then(Value::as_mapping) else {
            problems.push(format!("{label}: no body documented"));
            continue;
        };
        for (media_type, body) in content {
            // Exactly `{$ref: Error}`: an `allOf` narrowing `error`, or any
            // other schema, is what makes generators copy the model.
            let schema = &body["schema"];
            let is_ref = schema.as_mapping().is_some_and(|m| m.len() == 1) && schema["$ref"].as_str() == Some(ERROR_REF);
            if !is_ref {
                problems.push(format!("{label} {media_type:?}: the schema is not `$ref: '{ERROR_REF}'`: {schema:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_error_example_carries_a_listed_code() {
    let document = document();
    let codes = listed();
    let mut seen = 0;
    let mut problems = Vec::new();
    for (label, response) in error_responses(&document) {
        for (_, body) in response.get("content").and_then(Value::as_mapping).into_iter().flatten() {
            let named = body.get("examples").and_then(Value::as_mapping).into_iter().flatten().map(|(_, e)| &e["value"]);
            for example in body.get("example").into_iter().chain(named) {
                seen += 1;
                match example["error"].as_str() {
                    Some(code) if codes.contains(code) => {}
                    other => problems.push(format!("{label}: an example's `error` is {other:?}")),
                }
            }
        }
    }
    assert!(seen > 20, "found only {seen} examples; is the walk broken?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The sources of what answers requests: every component, and the crates
/// they link (this one and the platform).
fn api_sources() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates/core/src"), &mut files);
    rust_files(&root.join("crates/platform/src"), &mut files);
    let components = root.join("components");
    for entry in fs::read_dir(&components).unwrap_or_else(|e| panic!("{}: {e}", components.display())) {
        let src = entry.unwrap_or_else(|e| panic!("{}: {e}", components.display())).path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    files.sort();
    files
}

/// The string literal at the start of `text` (after blanks), if there is one.
fn literal_at(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// The error codes `source` writes, and what it writes that this cannot
/// read: `ApiError::new(<status>, "<code>", ..)`, a JSON body's
/// `"error": "<code>"` and `body["error"] = json!("<code>")`. Comment lines
/// are skipped (the module docs show `{"error": "<code>"}`).
fn codes_in(source: &str) -> (Vec<String>, Vec<String>) {
    let code: String = source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let (mut found, mut unreadable) = (Vec::new(), Vec::new());
    for (at, _) in code.match_indices("ApiError::new(") {
        let args = &code[at + "ApiError::new(".len()..];
        let after_status = args.trim_start().trim_start_matches(|c: char| c.is_ascii_digit()).trim_start().strip_prefix(',');
        match after_status.and_then(literal_at) {
            Some(c) => found.push(c.to_string()),
            // A code from a variable could be anything: name it literally.
            None => unreadable.push(format!("ApiError::new({}", args.chars().take(60).collect::<String>())),
        }
    }
    for (at, _) in code.match_indices("\"error\"") {
        let rest = &code[at + "\"error\"".len()..];
        if let Some(c) = rest.trim_start().strip_prefix(':').and_then(literal_at) {
            found.push(c.to_string());
        }
    }
    for (at, _) in code.match_indices("[\"error\"]") {
        let rest = code[at + "[\"error\"]".len()..].trim_start();
        if let Some(value) = rest.strip_prefix('=').map(str::trim_start).and_then(|r| r.strip_prefix("json!(")) {
            match literal_at(value) {
                Some(c) => found.push(c.to_string()),
                None => unreadable.push(format!("[\"error\"] = json!({}", value.chars().take(60).collect::<String>())),
            }
        }
    }
    (found, unreadable)
}

#[test]
fn the_scan_reads_each_way_the_sources_write_a_code() {
    let source = r#"
        //! {"error": "<code>"} in a doc comment is not a code.
        let a = ApiError::new(404, "not_found", "x");
        let b = ApiError::new(
            405,
            "method_not_allowed",
            message,
        );
        let c = json!({"error": "rate_limited", "message": m});
        body["error"] = json!("nothing_accepted");
        let d = json!({"index": 1, "error": error.code});
        let e = ApiError::new(500, CODE, "x");
    "#;
    let (found, unreadable) = codes_in(source);
    assert_eq!(found, ["not_found", "method_not_allowed", "rate_limited", "nothing_accepted"]);
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
}

#[test]
fn every_code_the_sources_write_is_listed_and_every_listed_code_is_written() {
    let files = api_sources();
    assert!(files.len() > 20, "found only {} source files under {}", files.len(), repo_root().display());
    let mut written = BTreeSet::new();
    let mut unreadable = Vec::new();
    for file in &files {
        let source = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (found, opaque) = codes_in(&source);
        written.extend(found);
        unreadable.extend(opaque.into_iter().map(|o| format!("{}: {o}", file.display())));
    }
    assert!(unreadable.is_empty(), "codes this test cannot read (write them as literals):\n{}", unreadable.join("\n"));
    assert_eq!(
        written,
        listed(),
        "{} (a new code goes into ERROR_CODES, openapi.yaml's ErrorCode and the README's table)",
        difference(&written, "the sources", &listed(), "ERROR_CODES")
    );
}

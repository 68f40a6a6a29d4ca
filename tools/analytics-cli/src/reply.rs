//! Reading the server's answer to one batch (`200`/`422` with per-item results).

use serde::Deserialize;

/// Why one row was not stored: the server's error code and message, or one
/// made up here for a row that could not be sent (see `input`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rejection {
    pub error: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Vec<Detail>,
}

/// One bad field of a rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Detail {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub message: String,
}

impl Rejection {
    pub fn new(error: &str, message: impl Into<String>) -> Rejection {
        Rejection { error: error.to_string(), message: message.into(), details: Vec::new() }
    }
}

/// Error codes the client acts on.
pub const ID_IN_PROGRESS: &str = "id_in_progress";
pub const SERVICE_UNAVAILABLE: &str = "service_unavailable";
pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";

/// Item errors worth sending the row again for, after a pause: its id's first
/// post is still being stored, or the store failed for this item only.
pub fn is_transient(code: &str) -> bool {
    code == ID_IN_PROGRESS || code == SERVICE_UNAVAILABLE
}

/// What the server did with a batch of `n` items: counts for the stored and
/// the duplicate ones (the reply does not say which), and each rejected item
/// by its index in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchReply {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<(usize, Rejection)>,
    /// Set when the counts do not add up to the batch size: the import goes
    /// on (the rejected rows are still known), but the user is told.
    pub mismatch: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    accepted: Option<u64>,
    duplicates: Option<u64>,
    rejected: Option<Vec<Item>>,
    error: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    #[serde(flatten)]
    rejection: Rejection,
}

/// Reads a `200` or `422` body for a batch of `batch_len` items. A `422`
/// without per-item results (the batch as a whole was refused) is an error,
/// as is a reply naming an item that was not sent or the same item twice.
pub fn parse_reply(status: u16, body: &[u8], batch_len: usize) -> Result<BatchReply, String> {
    let parsed: Body = serde_json::from_slice(body).map_err(|e| {
        format!("the server's {status} reply is not the batch result ({e}): {}", snippet(body))
    })?;
    let Some(items) = parsed.rejected else {
        let what = match (parsed.error, parsed.message) {
            (Some(e), Some(m)) => format!("{e}: {m}"),
            (Some(e), None) => e,
            _ => snippet(body),
        };
        return Err(format!("the server answered {status} without per-item results: {what}"));
    };
    let mut seen = vec![false; batch_len];
    let mut rejected = Vec::with_capacity(items.len());
    for item in items {
        match seen.get_mut(item.index) {
            None => return Err(format!("the server rejected item {} of a batch of {batch_len}", item.index)),
            Some(true) => return Err(format!("the server rejected item {} twice", item.index)),
            Some(flag) => *flag = true,
        }
        rejected.push((item.index, item.rejection));
    }
    rejected.sort_by_key(|(index, _)| *index);
    let accepted = parsed.accepted.unwrap_or(0);
    let duplicates = parsed.duplicates.unwrap_or(0);
    let counted = accepted + duplicates + rejected.len() as u64;
    let mismatch = (counted != batch_len as u64).then(|| {
        format!(
            "the server counted {accepted} accepted + {duplicates} duplicates + {} rejected for a batch of {batch_len}",
            rejected.len()
        )
    });
    Ok(BatchReply { accepted, duplicates, rejected, mismatch })
}

/// The start of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_partial_success() {
        let body = br#"{"accepted": 2, "duplicates": 1, "rejected": [
            {"index": 3, "error": "validation_failed", "message": "invalid fields: value",
             "details": [{"field": "value", "message": "must be a number, not a string"}]},
            {"index": 0, "error": "id_conflict", "message": "id `x` is already used"}]}"#;
        let reply = parse_reply(200, body, 5).unwrap();
        assert_eq!((reply.accepted, reply.duplicates, reply.mismatch.clone()), (2, 1, None));
        assert_eq!(reply.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(reply.rejected[0].1, Rejection::new("id_conflict", "id `x` is already used"));
        assert_eq!(reply.rejected[1].1.details, vec![Detail { field: "value".into(), message: "must be a number, not a string".into() }]);
    }

    #[test]
    fn reads_nothing_accepted_like_a_200() {
        let body = br#"{"error": "nothing_accepted", "message": "no item was accepted", "accepted": 0, "duplicates": 0,
            "rejected": [{"index": 0, "error": "invalid_json", "message": "not an object"}]}"#;
        let reply = parse_reply(422, body, 1).unwrap();
        assert_eq!(reply.rejected.len(), 1);
        assert_eq!(reply.rejected[0].1.error, "invalid_json");
    }

    #[test]
    fn flags_counts_that_do_not_add_up() {
        let reply = parse_reply(200, br#"{"accepted": 1, "duplicates": 0, "rejected": []}"#, 3).unwrap();
        assert!(reply.mismatch.unwrap().contains("batch of 3"));
    }

    #[test]
    fn refuses_replies_it_cannot_map_to_rows() {
        let whole = br#"{"error": "invalid_json", "message": "the body must be a JSON array"}"#;
        assert!(parse_reply(422, whole, 2).unwrap_err().contains("invalid_json: the body must be a JSON array"));
        let out_of_range = br#"{"accepted": 0, "duplicates": 0, "rejected": [{"index": 2, "error": "x"}]}"#;
        assert!(parse_reply(200, out_of_range, 2).is_err());
        let twice = br#"{"accepted": 0, "duplicates": 0, "rejected": [{"index": 1, "error": "x"}, {"index": 1, "error": "y"}]}"#;
        assert!(parse_reply(200, twice, 2).is_err());
        assert!(parse_reply(200, b"<html>oops</html>", 2).unwrap_err().contains("<html>oops</html>"));
        assert!(parse_reply(200, b"", 2).unwrap_err().contains("(empty body)"));
    }
}

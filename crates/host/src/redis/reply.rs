//! A Redis reply, the common currency of the embedded and the external server.

/// One RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Status(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
    /// An error reply, e.g. `WRONGTYPE Operation against a key holding the wrong kind of value`.
    Error(String),
}

impl Reply {
    pub fn ok() -> Self {
        Reply::Status("OK".into())
    }

    pub fn error(message: impl Into<String>) -> Self {
        Reply::Error(message.into())
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Self {
        Reply::Bulk(bytes.into())
    }

    /// `(integer) 1` / `(integer) 0`.
    pub fn bool(value: bool) -> Self {
        Reply::Int(value as i64)
    }
}

impl From<redis::Value> for Reply {
    fn from(value: redis::Value) -> Self {
        use redis::Value;
        match value {
            Value::Nil => Reply::Nil,
            Value::Int(n) => Reply::Int(n),
            Value::BulkString(b) => Reply::Bulk(b),
            Value::SimpleString(s) => Reply::Status(s),
            Value::Okay => Reply::ok(),
            Value::Array(items) | Value::Set(items) => Reply::Array(items.into_iter().map(Reply::from).collect()),
            Value::Double(d) => Reply::Bulk(d.to_string().into_bytes()),
            Value::Boolean(b) => Reply::bool(b),
            Value::VerbatimString { text, .. } => Reply::Bulk(text.into_bytes()),
            Value::ServerError(e) => Reply::Error(format!("{} {}", e.code(), e.details().unwrap_or_default())),
            Value::Map(pairs) => Reply::Array(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [Reply::from(k), Reply::from(v)])
                    .collect(),
            ),
            other => Reply::Error(format!("unsupported reply {other:?}")),
        }
    }
}

//! Query-string parameters, decoded, with each name allowed at most once.

use std::collections::BTreeMap;

use crate::api_error::ApiError;

/// Decoded `name=value` pairs of a query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    /// Parses `a=1&b=x%20y`; a repeated name is a 400 naming it.
    pub fn parse(query: &str) -> Result<Query, ApiError> {
        let mut map = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
            if map.insert(name.to_string(), value.to_string()).is_some() {
                return Err(ApiError::bad_request(&name, "is given more than once"));
            }
        }
        Ok(Query(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that must be present and non-empty.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::bad_request(name, "is required")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_repeats() {
        let q = Query::parse("type=cpu%2Eusage&limit=5&empty=").unwrap();
        assert_eq!(q.get("type"), Some("cpu.usage"));
        assert!(q.required("empty").is_err());
        assert!(q.required("missing").is_err());
        assert_eq!(Query::parse("a=1&a=2").unwrap_err().status, 400);
    }
}

//! `allowed_outbound_hosts` entries: parsing and matching, following Spin's rules
//! (`scheme://host[:port]`, `*` wildcards, `*.domain` suffixes, `a..b` port ranges).

/// An entry that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed_outbound_hosts entry `{entry}`: {message}")]
pub struct AllowedHostError {
    pub entry: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `self` / `self.alt`: requests to the app itself.
    ToSelf,
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// Half-open range `[start, end)`.
    Range(u16, u32),
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

/// The default port Spin assumes for a scheme when an entry or URL gives none.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "redis" => 6379,
        "postgres" => 5432,
        "mysql" => 3306,
        "mqtt" => 1883,
        _ => return None,
    })
}

impl AllowedHost {
    /// Parses one entry (after templates have been expanded).
    pub fn parse(entry: &str) -> Result<Self, AllowedHostError> {
        let err = |message: &str| AllowedHostError {
            entry: entry.to_string(),
            message: message.to_string(),
        };
        let trimmed = entry.trim();
        let (scheme, rest) = trimmed
            .split_once("://")
            .ok_or_else(|| err("it does not contain a scheme; write e.g. `https://example.com` or `*://*:*`"))?;
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_ascii_lowercase()),
            _ => return Err(err("the scheme must be letters or `*`")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(err("an entry names a host, not a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
            _ => (rest, None),
        };
        let host = match host {
            "" => return Err(err("the host is empty")),
            "*" => HostPattern::Any,
            "self" | "self.alt" => HostPattern::ToSelf,
            h if h.starts_with("*.") && !h[2..].contains('*') => {
                HostPattern::Suffix(h[1..].to_ascii_lowercase())
            }
            h if h.contains('*') => return Err(err("`*` may only stand alone or start a `*.domain` host")),
            h => HostPattern::Exact(h.to_ascii_lowercase()),
        };
        let port = match port {
            Some("*") => PortPattern::Any,
            Some(p) if p.contains("..") => {
                let (a, b) = p.split_once("..").unwrap_or_default();
                let start: u16 = a.parse().map_err(|_| err("bad port range"))?;
                let end: u32 = b.parse().map_err(|_| err("bad port range"))?;
                PortPattern::Range(start, end)
            }
            Some(p) if !p.is_empty() => {
                let port: u16 = p.parse().map_err(|_| err("the port must be a number, a range `a..b` or `*`"))?;
                PortPattern::Range(port, port as u32 + 1)
            }
            _ => match scheme.as_deref().and_then(default_port) {
                Some(port) => PortPattern::Range(port, port as u32 + 1),
                None if host == HostPattern::ToSelf => PortPattern::Any,
                None => return Err(err("this scheme has no default port; give one, e.g. `:8080` or `:*`")),
            },
        };
        Ok(AllowedHost { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s.eq_ignore_ascii_case(scheme));
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::ToSelf => false,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(h) => *h == host,
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Range(start, end) => port >= start && (port as u32) < end,
        };
        scheme_ok && host_ok && port_ok
    }

    /// Whether this entry lets a component call its own app with `scheme`.
    pub fn allows_self(&self, scheme: &str) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s.eq_ignore_ascii_case(scheme));
        scheme_ok && matches!(self.host, HostPattern::ToSelf | HostPattern::Any)
    }
}

/// A component's whole list.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, AllowedHostError> {
        entries.into_iter().map(AllowedHost::parse).collect::<Result<_, _>>().map(AllowedHosts)
    }

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.0.iter().any(|e| e.allows(scheme, host, port))
    }

    /// Checks a URL such as `redis://127.0.0.1:6379/0`; a URL without a port uses the scheme's default.
    pub fn allows_url(&self, url: &str) -> bool {
        let Some((scheme, rest)) = url.split_once("://") else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => match p.parse::<u16>() {
                Ok(port) => (h, Some(port)),
                Err(_) => return false,
            },
            _ => (authority, None),
        };
        match port.or_else(|| default_port(scheme)) {
            Some(port) if !host.is_empty() => self.allows(scheme, host, port),
            _ => false,
        }
    }

    pub fn allows_self(&self, scheme: &str) -> bool {
        self.0.iter().any(|e| e.allows_self(scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries.iter().copied()).expect("valid entries")
    }

    #[test]
    fn default_ports_follow_the_scheme() {
        let h = hosts(&["redis://127.0.0.1", "https://api.example.com"]);
        assert!(h.allows_url("redis://127.0.0.1:6379"));
        assert!(h.allows_url("redis://127.0.0.1"));
        assert!(!h.allows_url("redis://127.0.0.1:6380"));
        assert!(h.allows_url("https://api.example.com/v1?x=1"));
        assert!(!h.allows_url("http://api.example.com/v1"));
    }

    #[test]
    fn wildcards_for_hosts_ports_and_schemes() {
        let h = hosts(&["http://*.spin.internal", "*://localhost:*", "http://10.0.0.1:8000..8002"]);
        assert!(h.allows("http", "external-simulator.spin.internal", 80));
        assert!(!h.allows("http", "spin.internal", 80));
        assert!(!h.allows("https", "external-simulator.spin.internal", 443));
        assert!(h.allows("tcp", "localhost", 1));
        assert!(h.allows("http", "10.0.0.1", 8001));
        assert!(!h.allows("http", "10.0.0.1", 8002));
    }

    #[test]
    fn self_entries_allow_only_self_requests() {
        let h = hosts(&["http://self"]);
        assert!(h.allows_self("http"));
        assert!(!h.allows_self("https"));
        assert!(!h.allows_url("http://self.example.com"));
        assert!(!hosts(&["https://example.com"]).allows_self("http"));
    }

    #[test]
    fn malformed_entries_are_refused_with_a_reason() {
        for bad in ["example.com", "*://*", "https://example.com/path", "https://exa*mple.com", "tcp://host"] {
            let err = AllowedHost::parse(bad).unwrap_err();
            assert_eq!(err.entry, bad);
        }
    }
}

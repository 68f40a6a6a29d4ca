//! HTTP routing as Spin does it: exact routes and trailing `/...` wildcards,
//! compared with leading and trailing slashes trimmed; an exact route beats a
//! wildcard, and a longer wildcard prefix beats a shorter one.

use crate::manifest::{HttpTrigger, RouteDecl};

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{route}`: {message}")]
pub struct RouteError {
    pub route: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Trimmed path segments that must match exactly.
    Exact(Vec<String>),
    /// Trimmed path segments that must prefix the request path.
    Wildcard(Vec<String>),
}

#[derive(Debug, Clone)]
struct Route {
    pattern: Pattern,
    raw: String,
    based: String,
    component: String,
}

/// A request matched to a component, with the values Spin puts in its `spin-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub component: String,
    /// `spin-matched-route`: the route with one trailing `/` removed.
    pub matched_route: String,
    /// `spin-raw-component-route`: the route as written in the manifest.
    pub raw_route: String,
    /// `spin-component-route`: the route without its `/...` suffix.
    pub component_route: String,
    /// `spin-path-info`: the part of the path the wildcard matched.
    pub path_info: String,
}

/// The routing table built from `[[trigger.http]]`.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

fn segments(path: &str) -> Vec<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').map(str::to_string).collect()
    }
}

impl Router {
    /// Builds the table; private routes are left out (reachable only by chaining).
    /// When two triggers give the same route, the later one wins, as in Spin.
    pub fn build(triggers: &[HttpTrigger]) -> Result<Self, RouteError> {
        let mut routes: Vec<Route> = Vec::new();
        for trigger in triggers {
            let RouteDecl::Path(raw) = &trigger.route else {
                continue;
            };
            let refuse = |message: &str| RouteError {
                route: raw.clone(),
                message: message.to_string(),
            };
            let based = match raw.strip_suffix('/') {
                Some(stripped) if !raw.ends_with("//") => stripped.to_string(),
                _ => raw.clone(),
            };
            let pattern = if let Some(prefix) = based.strip_suffix("/...") {
                Pattern::Wildcard(segments(prefix))
            } else if based == "..." {
                Pattern::Wildcard(Vec::new())
            } else {
                Pattern::Exact(segments(&based))
            };
            let segs = match &pattern {
                Pattern::Exact(s) | Pattern::Wildcard(s) => s,
            };
            if segs.iter().any(|s| s.starts_with(':') || s.contains('*') || s == "...") {
                return Err(refuse(
                    "`:name` captures and `*` are not supported by this host; use exact routes or a trailing `/...`",
                ));
            }
            routes.retain(|r| r.raw != *raw);
            routes.push(Route {
                pattern,
                raw: raw.clone(),
                based,
                component: trigger.component.clone(),
            });
        }
        Ok(Router { routes })
    }

    /// The most specific route for `path` (the query must already be removed).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let request = segments(path);
        let best = self
            .routes
            .iter()
            .filter(|r| match &r.pattern {
                Pattern::Exact(s) => *s == request,
                Pattern::Wildcard(s) => request.starts_with(s),
            })
            .max_by_key(|r| match &r.pattern {
                Pattern::Exact(_) => (1, usize::MAX),
                Pattern::Wildcard(s) => (0, s.len()),
            })?;
        let (component_route, path_info) = match &best.pattern {
            Pattern::Exact(_) => (best.raw.clone(), String::new()),
            Pattern::Wildcard(prefix) => {
                let component_route = best.raw.strip_suffix("/...").unwrap_or("").to_string();
                (component_route, path_info(path, prefix.len()))
            }
        };
        Some(RouteMatch {
            component: best.component.clone(),
            matched_route: best.based.clone(),
            raw_route: best.raw.clone(),
            component_route,
            path_info,
        })
    }

    /// The match Spin builds for `http://<component>.spin.internal` requests.
    pub fn chained(component: &str, path: &str) -> RouteMatch {
        RouteMatch {
            component: component.to_string(),
            matched_route: "/...".into(),
            raw_route: "/...".into(),
            component_route: String::new(),
            path_info: path.to_string(),
        }
    }

    /// Whether a component has any trigger (public or private); chaining needs one.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.component.as_str())
    }
}

/// The request path after skipping `prefix_len` non-empty segments, keeping
/// Spin's convention that `/test` under `/test/...` gives `""` and `/test/` gives `/`.
fn path_info(path: &str, prefix_len: usize) -> String {
    let mut rest = path;
    for _ in 0..prefix_len {
        rest = rest.trim_start_matches('/');
        rest = match rest.find('/') {
            Some(i) => &rest[i..],
            None => "",
        };
    }
    if prefix_len == 0 && rest.is_empty() {
        return "/".to_string();
    }
    rest.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<HttpTrigger> = routes
            .iter()
            .map(|(route, component)| HttpTrigger {
                id: None,
                route: RouteDecl::Path(route.to_string()),
                component: component.to_string(),
                executor: None,
            })
            .collect();
        Router::build(&triggers).expect("valid routes")
    }

    fn component(r: &Router, path: &str) -> Option<String> {
        r.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_beats_wildcard_and_longer_prefix_beats_shorter() {
        let r = router(&[
            ("/...", "fallback"),
            ("/api/...", "api"),
            ("/api/metrics", "ingest"),
            ("/api/metrics/summary", "summary"),
        ]);
        assert_eq!(component(&r, "/api/metrics").as_deref(), Some("ingest"));
        assert_eq!(component(&r, "/api/metrics/").as_deref(), Some("ingest"));
        assert_eq!(component(&r, "/api/metrics/summary").as_deref(), Some("summary"));
        assert_eq!(component(&r, "/api/metrics/other").as_deref(), Some("api"));
        assert_eq!(component(&r, "/api").as_deref(), Some("api"));
        assert_eq!(component(&r, "/apix").as_deref(), Some("fallback"));
        assert_eq!(component(&r, "/").as_deref(), Some("fallback"));
    }

    #[test]
    fn no_match_without_a_catch_all() {
        let r = router(&[("/health", "health")]);
        assert_eq!(component(&r, "/healthz"), None);
        assert_eq!(component(&r, "/health/x"), None);
    }

    #[test]
    fn spin_header_values_for_wildcards_and_exact_routes() {
        let r = router(&[("/test/...", "t"), ("/exact/", "e"), ("/...", "all")]);
        let m = r.route("/test/hello/").unwrap();
        assert_eq!(
            (m.matched_route.as_str(), m.raw_route.as_str(), m.component_route.as_str(), m.path_info.as_str()),
            ("/test/...", "/test/...", "/test", "/hello/")
        );
        assert_eq!(r.route("/test").unwrap().path_info, "");
        assert_eq!(r.route("/test/").unwrap().path_info, "/");
        let m = r.route("/exact").unwrap();
        assert_eq!((m.matched_route.as_str(), m.raw_route.as_str(), m.path_info.as_str()), ("/exact", "/exact/", ""));
        let m = r.route("/1/2").unwrap();
        assert_eq!((m.component_route.as_str(), m.path_info.as_str()), ("", "/1/2"));
        assert_eq!(r.route("/").unwrap().path_info, "/");
    }

    #[test]
    fn a_later_duplicate_route_wins_and_captures_are_refused() {
        let r = router(&[("/a", "first"), ("/a", "second")]);
        assert_eq!(component(&r, "/a").as_deref(), Some("second"));
        let bad = HttpTrigger {
            id: None,
            route: RouteDecl::Path("/users/:id".into()),
            component: "u".into(),
            executor: None,
        };
        assert!(Router::build(&[bad]).is_err());
    }
}

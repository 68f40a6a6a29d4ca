//! Outbound HTTP from guests: `allowed_outbound_hosts` is enforced, requests to
//! `http://<component>.spin.internal` and to the app itself are served
//! in-process, and everything else goes to the network.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::component::ComponentConfig;
use crate::router::{RouteMatch, Router};

/// Where an outbound request goes.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// The app itself: a relative URL, or the host `self.alt`. (`http://self/...`
    /// is an ordinary host to Spin, so an entry `http://self` does not allow it.)
    SelfApp,
    /// Another component by service chaining; the port is checked against the
    /// allow-list like any other (443 by default for `https`).
    Component { id: String, scheme: String, port: u16 },
    Network { scheme: String, host: String, port: u16 },
}

fn destination(uri: &http::Uri) -> Destination {
    let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Destination::SelfApp;
    };
    let host = host.to_ascii_lowercase();
    if host == "self.alt" {
        return Destination::SelfApp;
    }
    let port = uri
        .port_u16()
        .or_else(|| crate::allowed_hosts::default_port(&scheme))
        .unwrap_or(0);
    if let Some(component) = chaining_target(&host) {
        return Destination::Component { id: component.to_string(), scheme, port };
    }
    Destination::Network { scheme, host, port }
}

/// The component named by a `<component>.spin.internal[:port]` host.
pub(crate) fn chaining_target(host: &str) -> Option<&str> {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let component = name.strip_suffix(".spin.internal")?;
    (!component.is_empty() && !component.contains('.')).then_some(component)
}

/// The application itself, as outbound requests reach it: requests to the
/// app and to a component by service chaining are served in-process.
pub trait Dispatch: Send + Sync {
    /// Serves a request as if it came in from `client`.
    fn handle(self: Arc<Self>, request: Request<WasiBody>, client: SocketAddr) -> BoxFuture<Response<WasiBody>>;
    /// Runs the component `route` names on `request`.
    fn serve(
        self: Arc<Self>,
        route: RouteMatch,
        request: Request<WasiBody>,
        client: SocketAddr,
    ) -> BoxFuture<anyhow::Result<Response<WasiBody>>>;
    /// Whether `id` can be reached by service chaining (it has some trigger).
    fn is_chainable(&self, id: &str) -> bool;
}

pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

type SendFuture =
    Box<dyn Future<Output = Result<(Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>> + Send>;

/// The `wasi:http` hooks of one guest instance.
pub struct OutboundHttp {
    app: Arc<dyn Dispatch>,
    component: Arc<ComponentConfig>,
}

impl OutboundHttp {
    pub fn new(app: Arc<dyn Dispatch>, component: Arc<ComponentConfig>) -> Self {
        OutboundHttp { app, component }
    }

    fn deny(&self, what: &str) -> SendFuture {
        eprintln!(
            "warning: component `{}` tried to reach {what}, which its allowed_outbound_hosts does not list",
            self.component.id
        );
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}

fn done() -> Box<dyn Future<Output = Result<(), Error>> + Send> {
    Box::new(async { Ok(()) })
}

/// Runs an in-process call, honouring the guest's first-byte timeout.
async fn in_process(
    call: impl Future<Output = Response<WasiBody>>,
    options: Option<RequestOptions>,
) -> Result<(Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error> {
    let limit = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));
    match tokio::time::timeout(limit, call).await {
        Ok(response) => Ok((response, done())),
        Err(_) => Err(Error::HttpResponseTimeout),
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        request.headers_mut().remove(http::header::HOST);
        let allowed = &self.component.allowed_hosts;
        match destination(request.uri()) {
            Destination::SelfApp => {
                // Spin checks a self request against both schemes, whatever the URL says.
                if !allowed.allows_self("http") && !allowed.allows_self("https") {
                    return self.deny("its own app (add `http://self`)");
                }
                let app = self.app.clone();
                let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                Box::new(in_process(app.handle(request, client), options))
            }
            Destination::Component { id, scheme, port } => {
                let host = format!("{id}.spin.internal");
                if !allowed.allows(&scheme, &host, port) {
                    return self.deny(&format!("{scheme}://{host}"));
                }
                if !self.app.is_chainable(&id) {
                    return Box::new(async move {
                        Err(Error::InternalError(Some(format!(
                            "unknown routing destination `{id}`: it has no [[trigger.http]]"
                        ))))
                    });
                }
                let path = request.uri().path().to_string();
                let app = self.app.clone();
                let route = Router::chained(&id, &path);
                let call = async move {
                    let client = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
                    match app.serve(route, request, client).await {
                        Ok(response) => response,
                        Err(error) => {
                            eprintln!("error: chained component `{id}` failed: {error:#}");
                            let mut response = Response::new(
                                http_body_util::Empty::new().map_err(|e| match e {}).boxed_unsync(),
                            );
                            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                            response
                        }
                    }
                };
                Box::new(in_process(call, options))
            }
            Destination::Network { scheme, host, port } => {
                if !allowed.allows(&scheme, &host, port) {
                    return self.deny(&format!("{scheme}://{host}:{port}"));
                }
                Box::new(async move {
                    let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                    Ok((
                        response.map(BodyExt::boxed_unsync),
                        Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(uri: &str) -> Destination {
        destination(&uri.parse().unwrap())
    }

    #[test]
    fn classifies_destinations() {
        let chained = |id: &str, scheme: &str, port| Destination::Component { id: id.into(), scheme: scheme.into(), port };
        assert_eq!(dest("http://external-simulator.spin.internal/x"), chained("external-simulator", "http", 80));
        assert_eq!(dest("https://backend.spin.internal/x"), chained("backend", "https", 443));
        assert_eq!(dest("http://backend.spin.internal:8080/"), chained("backend", "http", 8080));
        assert_eq!(chaining_target("backend.spin.internal:3000"), Some("backend"));
        assert_eq!(chaining_target("spin.internal"), None);
        assert_eq!(dest("http://self.alt/api"), Destination::SelfApp);
        assert_eq!(dest("/api"), Destination::SelfApp);
        assert_eq!(
            dest("http://self/api"),
            Destination::Network { scheme: "http".into(), host: "self".into(), port: 80 }
        );
        assert_eq!(
            dest("https://a.b.spin.internal/"),
            Destination::Network { scheme: "https".into(), host: "a.b.spin.internal".into(), port: 443 }
        );
        assert_eq!(
            dest("http://example.com:8080/"),
            Destination::Network { scheme: "http".into(), host: "example.com".into(), port: 8080 }
        );
    }
}

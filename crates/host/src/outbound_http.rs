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

use crate::app::Shared;
use crate::router::Router;
use crate::state::ComponentConfig;

/// Where an outbound request goes.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// The app itself: a relative URL, or the host `self` / `self.alt`.
    SelfApp,
    /// Another component by service chaining.
    Component(String),
    Network { scheme: String, host: String, port: u16 },
}

fn destination(uri: &http::Uri) -> Destination {
    let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Destination::SelfApp;
    };
    let host = host.to_ascii_lowercase();
    if host == "self" || host == "self.alt" {
        return Destination::SelfApp;
    }
    if let Some(component) = host.strip_suffix(".spin.internal") {
        if !component.is_empty() && !component.contains('.') {
            return Destination::Component(component.to_string());
        }
    }
    let port = uri
        .port_u16()
        .or_else(|| crate::allowed_hosts::default_port(&scheme))
        .unwrap_or(0);
    Destination::Network { scheme, host, port }
}

type SendFuture =
    Box<dyn Future<Output = Result<(Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>> + Send>;

/// The `wasi:http` hooks of one guest instance.
pub struct OutboundHttp {
    app: Arc<Shared>,
    component: Arc<ComponentConfig>,
}

impl OutboundHttp {
    pub fn new(app: Arc<Shared>, component: Arc<ComponentConfig>) -> Self {
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
                let scheme = request.uri().scheme_str().unwrap_or("http").to_string();
                if !allowed.allows_self(&scheme) {
                    return self.deny("its own app (add `http://self`)");
                }
                let app = self.app.clone();
                let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                Box::new(in_process(app.handle(request, client), options))
            }
            Destination::Component(id) => {
                let uri = request.uri();
                let port = uri.port_u16().unwrap_or(80);
                let scheme = uri.scheme_str().unwrap_or("http").to_string();
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
                let path = uri.path().to_string();
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
        assert_eq!(dest("http://external-simulator.spin.internal/x"), Destination::Component("external-simulator".into()));
        assert_eq!(dest("http://self/api"), Destination::SelfApp);
        assert_eq!(dest("/api"), Destination::SelfApp);
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

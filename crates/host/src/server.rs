//! The HTTP listener: hyper on tokio, one task per connection, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;

/// Binds `address`, explaining the usual failure.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => "; another process is using it, pick another with --listen",
            std::io::ErrorKind::PermissionDenied => "; ports below 1024 need privileges",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {address}: {e}{hint}")
    })
}

/// Serves `app` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(app: App, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("warning: accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(request, client).await) }
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                if !e.is_incomplete_message() {
                    eprintln!("warning: connection from {client}: {e}");
                }
            }
        });
    }
    drop(listener);
    tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown())
        .await
        .context("requests were still running 10 s after shutdown began")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        () = terminate => {},
    }
}

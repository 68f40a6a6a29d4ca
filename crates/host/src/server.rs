//! The HTTP listener: hyper on tokio, one single-threaded runtime per core,
//! one task per connection, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

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

/// Serves `app` until `shutdown` resolves, then stops accepting, closes
/// idle connections and lets requests in flight finish, for at most `drain`;
/// requests still running then are abandoned (none was answered, so no
/// client was told its data is stored). Says whether every request finished.
///
/// Connections are served by one single-threaded runtime per core, each
/// connection wholly on one of them (the one with the fewest open
/// connections when it arrived). Compared with one work-stealing runtime,
/// a request then never hops between cores: on a 2-core machine that halves
/// the CPU time of a trivial request.
pub async fn serve(app: App, listener: TcpListener, shutdown: impl Future<Output = ()>, drain: std::time::Duration) -> anyhow::Result<Drained> {
    let graceful = GracefulShutdown::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (0..threads)
        .map(|index| Worker::start(index, app.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut next = 0;
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
        // Moving a socket between runtimes goes through its std form.
        let mut handoff = match stream.into_std() {
            Ok(stream) => (stream, client, graceful.watcher()),
            Err(e) => {
                eprintln!("warning: connection from {client}: {e}");
                continue;
            }
        };
        // The least loaded worker, starting the search after the last one chosen;
        // should a worker have stopped, the next least loaded one.
        let mut candidates: Vec<usize> = (0..workers.len()).map(|offset| (next + 1 + offset) % workers.len()).collect();
        candidates.sort_by_key(|&index| workers[index].open.load(Ordering::Relaxed));
        let mut sent = false;
        for index in candidates {
            match workers[index].send(handoff) {
                Ok(()) => {
                    (next, sent) = (index, true);
                    break;
                }
                Err(returned) => handoff = returned,
            }
        }
        if !sent {
            eprintln!("warning: connection from {client} dropped: every worker has stopped");
        }
    }
    drop(listener);
    // Event streams would otherwise run to the end of their lifetime; their clients reconnect elsewhere.
    app.end_streams();
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        return Ok(Drained::TimedOut);
    }
    // Every connection is closed; the workers stop once their channel does.
    for worker in workers {
        let thread = worker.stop();
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    Ok(Drained::All)
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight finished.
    All,
    /// Some were still running when the drain time ran out.
    TimedOut,
}

type Handoff = (std::net::TcpStream, SocketAddr, Watcher);

/// A thread running a single-threaded runtime that serves the connections sent to it.
struct Worker {
    sender: mpsc::UnboundedSender<Handoff>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn start(index: usize, app: App) -> anyhow::Result<Worker> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Handoff>();
        let open = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a worker runtime")?;
        let counter = open.clone();
        let thread = std::thread::Builder::new()
            .name(format!("spin-host-worker-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some((stream, client, watcher)) = receiver.recv().await {
                        let open = Open(counter.clone());
                        match TcpStream::from_std(stream) {
                            Ok(stream) => {
                                let connection = connection(app.clone(), stream, client, watcher);
                                tokio::spawn(async move {
                                    let _open = open;
                                    connection.await;
                                });
                            }
                            Err(e) => eprintln!("warning: connection from {client}: {e}"),
                        }
                    }
                })
            })
            .context("cannot start a worker thread")?;
        Ok(Worker { sender, open, thread })
    }

    /// Hands a connection over, or gives it back if this worker has stopped.
    fn send(&self, handoff: Handoff) -> Result<(), Handoff> {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.sender.send(handoff).map_err(|returned| {
            // Never chosen first again.
            self.open.store(usize::MAX / 2, Ordering::Relaxed);
            returned.0
        })
    }

    fn stop(self) -> std::thread::JoinHandle<()> {
        drop(self.sender);
        self.thread
    }
}

/// Counts one open connection of a worker until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection until the client closes it or shutdown asks it to.
async fn connection(app: App, stream: TcpStream, client: SocketAddr, watcher: Watcher) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(request, client).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection).await {
        if !e.is_incomplete_message() {
            eprintln!("warning: connection from {client}: {e}");
        }
    }
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

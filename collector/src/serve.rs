//! The HTTP server loop: accepts connections, bounds what each client may hold, and shuts down
//! in bounded time.
//!
//! `axum::serve` has no header, body or idle timeouts and no connection cap, so a few hundred
//! clients that send one byte at a time could hold every file descriptor, starve the health
//! checks and keep a SIGTERM waiting forever. Here:
//!
//! - **Headers** must arrive within [`Limits::header_timeout`] of the connection being ready for
//!   a request. hyper starts that timer whenever it waits for a request head, so the same limit
//!   closes **idle keep-alive** connections (Node's server does the same with 5 s).
//! - **Bodies** must arrive whole within [`Limits::body_timeout`] (checked where bodies are read,
//!   [`crate::ingest::read_body`]; answered 408).
//! - **Connections** are capped at [`Limits::max_connections`]. The last [`health_reserve`] of
//!   them only serve `/healthz`, `/readyz` and `/metrics` (with a short header timeout), so a
//!   flood of slow clients cannot make a load balancer think the collector is dead; past the cap
//!   a connection is closed at once. `--admin-listen` gives the probes an address of their own.
//! - **Shutdown**: stop accepting, mark the collector draining (new batches 503), let in-flight
//!   requests and background tasks (stall scans, webhook deliveries) finish, and after
//!   [`Limits::drain_timeout`] exit anyway, dropping what is left: a batch not yet acknowledged
//!   is the client's to resend, so nothing acknowledged is lost.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::AppState;

/// How long clients may take, and how many may be connected at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            // Under the usual open-file limit of 1024 with room for the store's files; the
            // binary raises both together (see `main`).
            max_connections: 960,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Connections kept for health probes out of `max`.
pub fn health_reserve(max: usize) -> usize {
    (max / 32).clamp(2, 32).min(max / 2)
}

/// Serves `state` on `listener` (and the probes on `admin`, if given) until `shutdown`
/// resolves, then drains as the module docs say.
pub async fn serve(
    listener: TcpListener,
    admin: Option<TcpListener>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits;
    let full = crate::app(state.clone());
    let probes = crate::probes(state.clone(), true);
    let (stop, stopped) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    if let Some(admin) = admin {
        // Probes and metrics only, a handful of clients: no cap beyond the file limit.
        let admin_router = crate::probes(state.clone(), false);
        let stopped = stopped.clone();
        connections.spawn(async move {
            let mut inner = JoinSet::new();
            let mut stop = stopped.clone();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    accepted = admin.accept() => match accepted {
                        Ok((stream, _)) => {
                            inner.spawn(connection(stream, admin_router.clone(), limits.header_timeout, stopped.clone()));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Some(_) = inner.join_next(), if !inner.is_empty() => {}
                }
            }
            while inner.join_next().await.is_some() {}
        });
    }
    tokio::pin!(shutdown);
    let reserve = health_reserve(limits.max_connections);
    let mut refused_logged = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, typically: wait for connections to close
                        // rather than spin on the error.
                        if !refused_logged {
                            eprintln!("onramp-collector: accept failed ({e}); lower --max-connections or raise the open-file limit");
                            refused_logged = true;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let now_open = open.load(Ordering::Relaxed);
                if now_open >= limits.max_connections {
                    drop(stream);
                    state.metrics.connection_refused();
                    continue;
                }
                let (router, header_timeout) = if now_open >= limits.max_connections - reserve {
                    (probes.clone(), limits.header_timeout.min(Duration::from_secs(2)))
                } else {
                    (full.clone(), limits.header_timeout)
                };
                let guard = Counted::new(&open);
                let stopped = stopped.clone();
                connections.spawn(async move {
                    let _guard = guard;
                    connection(stream, router, header_timeout, stopped).await;
                });
            }
        }
    }
    drop(listener);
    state.begin_shutdown();
    let _ = stop.send(true);
    let drained = async {
        while connections.join_next().await.is_some() {}
        state.background_finished().await;
    };
    if tokio::time::timeout(limits.drain_timeout, drained).await.is_err() {
        eprintln!(
            "onramp-collector: drain took over {:?}; closing {} connection(s) still open",
            limits.drain_timeout,
            open.load(Ordering::Relaxed)
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One HTTP/1.1 connection, closed gracefully (after the request in flight) when `stopped`
/// turns true.
async fn connection(stream: TcpStream, router: Router, header_timeout: Duration, mut stopped: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // The guard `wait_for` returns must not live across the await below.
        _ = async { drop(stopped.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Holds one count in the open-connection gauge while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(n: &Arc<AtomicUsize>) -> Counted {
        n.fetch_add(1, Ordering::Relaxed);
        Counted(n.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answer on a reserved connection to anything but a probe.
pub(crate) async fn busy() -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "too many connections, retry shortly\n").into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_few_connections_for_probes() {
        assert_eq!(health_reserve(960), 30);
        assert_eq!(health_reserve(12), 2);
        assert_eq!(health_reserve(100_000), 32);
        assert_eq!(health_reserve(3), 1);
    }
}

//! The HTTP API's listener, bounded: a connection cap, a deadline for each request head (and
//! TLS handshake), and an idle timeout, so slow or silent clients cannot hold the API down.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// How much one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// A request head must arrive in full within this long.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
}

/// Serve `router` until `shutdown` completes, then let requests in flight finish. With
/// `tls`, every connection is HTTPS (the handshake counts against the head deadline).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file handles, most likely: wait a little instead of spinning.
                    tracing::warn!(error = %err, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.http_connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let metrics = metrics.clone();
        let stopping = stopping.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, router, limits, &metrics, stopping).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, limits, &metrics, stopping).await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => metrics.http_connections_timed_out.inc(),
                    }
                }
            }
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// Requests in flight on one connection, and when the last one finished.
struct Activity {
    in_flight: AtomicUsize,
    last_done: Mutex<Instant>,
}

impl Activity {
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| *self.last_done.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The address a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

async fn serve_connection<Io>(
    stream: Io,
    peer: std::net::SocketAddr,
    router: Router,
    limits: HttpLimits,
    metrics: &Metrics,
    mut stopping: watch::Receiver<bool>,
) where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last_done: Mutex::new(Instant::now()),
    });
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        let router = router.clone();
        let activity = tracked.clone();
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        async move {
            // A body sent byte by byte must not hold the connection past the idle bound.
            let handled = router.oneshot(req.map(axum::body::Body::new));
            let response = match tokio::time::timeout(limits.idle_timeout, handled).await {
                Ok(response) => response,
                Err(_) => Ok(request_timeout()),
            };
            *activity.last_done.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            activity.in_flight.fetch_sub(1, Ordering::AcqRel);
            response
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let check_every = (limits.idle_timeout / 4).max(Duration::from_millis(25));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    let timed_out = err
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        metrics.http_connections_timed_out.inc();
                    }
                }
                return;
            }
            _ = stopping.wait_for(|s| *s), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(check_every), if !closing => {
                let idle_too_long = activity
                    .idle_since()
                    .is_some_and(|since| since.elapsed() >= limits.idle_timeout);
                if idle_too_long {
                    metrics.http_connections_timed_out.inc();
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

fn request_timeout() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({ "error": "request not received in time" })),
    )
        .into_response()
}

//! The accept loop and the one shutdown path.
//!
//! Shutdown: stop accepting (the listening socket is shared, so siblings keep
//! accepting from the same queue), then let every open connection finish what it is
//! doing within `graceful_timeout`, then return (the caller exits, which forces the
//! rest closed: long-lived SSE streams need that step).
//!
//! One subtlety makes rolling restarts lossless: a connection accepted just before
//! shutdown may hold a request the server has not read yet. hyper's graceful
//! shutdown would close such an "idle" connection at once and the client would see
//! a reset. So a connection that has not started its first request gets a short
//! grace to do so before it is asked to close.

use crate::http::App;
use crate::wire::Deadline;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

/// How long a just-accepted connection may take to deliver its first request once
/// shutdown has begun.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub graceful_timeout: Duration,
    pub header_read_timeout: Duration,
    /// `REQUEST_BODY_TIMEOUT`: each request's body arrives within it, or
    /// reading it fails (408, connection closed).
    pub body_timeout: Duration,
    /// Connections served at once; those beyond get 503 and are closed.
    pub max_connections: usize,
}

/// What a connection beyond `max_connections` is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 66\r\nretry-after: 1\r\nconnection: close\r\n\r\n\
{\"detail\":\"too many connections to this worker (MAX_CONNECTIONS)\"}";

/// Counts a connection while it is served.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How the drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished.
    Complete,
    /// `graceful_timeout` passed with connections still open.
    TimedOut,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
    opts: ServeOptions,
) -> Drain {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if open.fetch_add(1, Ordering::AcqRel) >= opts.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            tokio::spawn(refuse(stream));
            continue;
        }
        let slot = Slot(open.clone());
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            stop_rx.clone(),
            (done_tx.clone(), slot),
            opts.header_read_timeout,
            opts.body_timeout,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    match tokio::time::timeout(opts.graceful_timeout, done_rx.recv()).await {
        Ok(_) => Drain::Complete,
        Err(_) => Drain::TimedOut,
    }
}

/// Tells a connection over the cap so (without reading what it sent), then
/// closes it; a peer that does not read is given a second.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: App,
    mut stop: watch::Receiver<bool>,
    _done: (mpsc::Sender<()>, Slot),
    header_read_timeout: Duration,
    body_timeout: Duration,
) {
    let started = Arc::new((AtomicBool::new(false), Notify::new()));
    let svc = {
        let started = started.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            if !started.0.swap(true, Ordering::AcqRel) {
                started.1.notify_one();
            }
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            let req = req.map(|b| axum::body::Body::new(Deadline::new(b, body_timeout)));
            async move { Ok::<_, Infallible>(app.call(req).await) }
        })
    };
    let mut conn = pin!(http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), svc));
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    if !started.0.load(Ordering::Acquire) {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = started.1.notified() => {}
            () = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

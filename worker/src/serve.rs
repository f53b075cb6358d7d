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
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            stop_rx.clone(),
            done_tx.clone(),
            opts.header_read_timeout,
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

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: App,
    mut stop: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
    header_read_timeout: Duration,
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
            async move { Ok::<_, Infallible>(app.call(req.map(axum::body::Body::new)).await) }
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

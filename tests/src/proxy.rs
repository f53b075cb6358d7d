//! A reverse proxy that opens a new TCP connection to its target for every HTTP
//! request, so that a client keeping one connection alive still has its requests
//! accepted by whichever worker of a fleet wins each new connection.
//!
//! Requests and responses pass through unchanged: method, path, every header (in
//! both directions) and the bodies, streamed as they arrive (SSE answers flow event
//! by event). The proxy records which worker accepted each request (the
//! `x-fleetgate-worker` answer header), so a test can check that its requests did
//! spread.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, hyper::Error>;

/// A running proxy; dropping it stops accepting (connections in flight finish).
pub struct FreshProxy {
    /// Where the proxy listens (127.0.0.1, an ephemeral port).
    pub addr: SocketAddr,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    accept: JoinHandle<()>,
}

impl FreshProxy {
    /// Listens on 127.0.0.1:0 and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> FreshProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let target: Arc<str> = target.into();
        let accept = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let (target, seen) = (target.clone(), seen.clone());
                    let service = service_fn(move |req| forward(target.clone(), seen.clone(), req));
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            }
        });
        FreshProxy { addr, seen, accept }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests answered so far, by the worker that accepted them (`x-fleetgate-worker`;
    /// `"?"` when the answer had no such header, `"!"` when the target could not be reached).
    pub fn workers(&self) -> BTreeMap<String, usize> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FreshProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    target: Arc<str>,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let count = |who: &str| {
        *seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(who.to_owned())
            .or_default() += 1;
    };
    match send(&target, req).await {
        Ok(resp) => {
            let who = resp
                .headers()
                .get("x-fleetgate-worker")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            count(who);
            Ok(resp.map(BodyExt::boxed))
        }
        Err(e) => {
            count("!");
            let body = Full::new(Bytes::from(format!("proxy: {target}: {e}")))
                .map_err(|never| match never {})
                .boxed();
            let mut r = Response::new(body);
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(r)
        }
    }
}

/// Sends `req` on a connection of its own. The connection's task lives until the
/// answer's body has been read (or dropped), then the connection closes.
async fn send(
    target: &str,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

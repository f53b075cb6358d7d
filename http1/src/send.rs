//! The exchange: one request on a pooled connection or a fresh one, retried
//! once on a fresh one when a pooled connection gave nothing back.

use crate::conn::{Conn, Failure};
use crate::error::SendError;
use crate::head::Request;
use crate::pool::IdleConnections;
use crate::response::Response;
use std::future::Future;
use std::sync::Arc;

/// Sends one request on an idle connection for `key` if there is one, else on
/// a fresh one from `open`. A pooled connection that turns out closed (the
/// peer dropped it while idle) costs one retry on a fresh connection; an
/// answer that broke off is not retried (the request may have been acted
/// on). The answer takes its connection back to `pool` when its body has
/// been read.
pub async fn send<F, Fut, E>(
    pool: &Arc<IdleConnections>,
    key: String,
    open: F,
    request: &Request<'_>,
) -> Result<Response, SendError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Conn, E>>,
{
    exchange(pool, key, open, request, false).await
}

/// [`send`] for a request that must never be acted on twice. A pooled
/// connection is given up for a fresh one only when the request could not be
/// written on it in full (its peer cannot have acted on it); a request
/// written in full whose connection then ends without a whole answer head is
/// [`SendError::Unanswered`], and nothing is sent again. [`SendError::Http`]
/// here means the request was not delivered. (Pooled connections are
/// checked for a peer's close before use, so a peer that closed one while
/// idle is seen then, not after the request.)
pub async fn send_once<F, Fut, E>(
    pool: &Arc<IdleConnections>,
    key: String,
    open: F,
    request: &Request<'_>,
) -> Result<Response, SendError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Conn, E>>,
{
    exchange(pool, key, open, request, true).await
}

/// [`send`] (`once`: [`send_once`]).
async fn exchange<F, Fut, E>(
    pool: &Arc<IdleConnections>,
    key: String,
    open: F,
    request: &Request<'_>,
    once: bool,
) -> Result<Response, SendError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Conn, E>>,
{
    let encoded = request.encode();
    if let Some(mut conn) = pool.take(&key) {
        match conn.exchange(&encoded).await {
            Ok(head) => return Ok(Response::new(head, conn, pool.clone(), key)),
            Err(Failure::NotSent(_)) => {}
            Err(Failure::Unanswered(_)) if !once => {}
            Err(Failure::Unanswered(e) | Failure::Broken(e)) if once => {
                return Err(SendError::Unanswered(e))
            }
            Err(f) => return Err(SendError::Http(f.into_error())),
        }
    }
    let mut conn = open().await.map_err(SendError::Connect)?;
    match conn.exchange(&encoded).await {
        Ok(head) => Ok(Response::new(head, conn, pool.clone(), key)),
        Err(Failure::Unanswered(e) | Failure::Broken(e)) if once => Err(SendError::Unanswered(e)),
        Err(f) => Err(SendError::Http(f.into_error())),
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{answer_once, body_of};
    use crate::Client;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_pooled_connection_closed_unanswered_is_retried_once_on_a_fresh_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            // One answer; the next request is read and the connection closed
            // unanswered (a keep-alive timeout racing the request).
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            drop(s);
            answer_once(
                &listener,
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh",
            )
            .await;
            // A fresh connection that closes unanswered is an error, not retried.
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
        });
        let client = Client::new();
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"first");
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"fresh");
        drop(r); // not kept: the server closes it
        let e = client.post(&url).send().await.unwrap_err();
        assert!(e.to_string().contains("closed before an answer"), "{e}");
    }

    /// A request taken and left unanswered is never sent again by
    /// `send_once`: the caller learns it was delivered, and the server saw it
    /// once (`send` would have retried it on a fresh connection).
    #[tokio::test]
    async fn send_once_never_repeats_a_delivered_request() {
        use crate::{send_once, Conn, IdleConnections, Request, SendError};
        use http::{HeaderMap, Method};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        tokio::spawn(async move {
            // On each connection: the first request is answered, the second
            // read and left unanswered (a process dying mid-request).
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    for answered in [true, false] {
                        if s.read(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        if answered {
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            s.write_all(ok).await.unwrap();
                        }
                    }
                });
            }
        });
        let pool = Arc::new(IdleConnections::new(4));
        let headers = HeaderMap::new();
        let req = Request {
            method: &Method::POST,
            target: "/x",
            headers: &headers,
            body: b"{}",
        };
        let open = || async { tokio::net::TcpStream::connect(addr).await.map(Conn::new) };
        let mut r = send_once(&pool, "k".into(), open, &req).await.unwrap();
        assert_eq!(body_of(&mut r).await, b"ok");
        drop(r); // back to the pool
        let e = send_once(&pool, "k".into(), open, &req).await.unwrap_err();
        assert!(matches!(e, SendError::Unanswered(_)), "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "the second request was sent once"
        );
    }
}

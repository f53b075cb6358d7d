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
    let encoded = request.encode();
    if let Some(mut conn) = pool.take(&key) {
        match conn.exchange(&encoded).await {
            Ok(head) => return Ok(Response::new(head, conn, pool.clone(), key)),
            Err(Failure::Unanswered(_)) => {}
            Err(Failure::Broken(e)) => return Err(SendError::Http(e)),
        }
    }
    let mut conn = open().await.map_err(SendError::Connect)?;
    match conn.exchange(&encoded).await {
        Ok(head) => Ok(Response::new(head, conn, pool.clone(), key)),
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
}

//! An answer: its head, and its body read as the caller asks for it, on the
//! connection it came on. The connection goes home when the body ends.

use crate::body::{Framing, Step};
use crate::conn::Conn;
use crate::error::{BodyError, Error};
use crate::head::{decimal, Head};
use crate::pool::IdleConnections;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// An answer, its body read as it comes. Its connection goes back to the pool
/// as soon as the body has been read to its end (dropped earlier, it is
/// closed).
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
    conn: Option<Conn>,
    /// The pool and key the connection goes back to (taken when it does).
    home: Option<(Arc<IdleConnections>, String)>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .finish()
    }
}

impl Response {
    pub(crate) fn new(head: Head, conn: Conn, pool: Arc<IdleConnections>, key: String) -> Response {
        let mut resp = Response {
            status: head.status,
            headers: head.headers,
            framing: head.framing,
            keep_alive: head.keep_alive,
            conn: Some(conn),
            home: Some((pool, key)),
        };
        if resp.framing == Framing::Done {
            resp.finished();
        }
        resp
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The `Content-Length` the answer announces.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| decimal(v.as_bytes()))
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// The whole body, at most `limit` bytes of it.
    pub async fn bytes(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        let Some(first) = self.chunk().await.map_err(BodyError::Broken)? else {
            return Ok(Bytes::new());
        };
        // Usually the whole body comes in one piece: kept, not copied.
        let mut pieces = Vec::new();
        let mut len = first.len();
        loop {
            if len > limit {
                return Err(BodyError::TooLarge);
            }
            let Some(c) = self.chunk().await.map_err(BodyError::Broken)? else {
                break;
            };
            len += c.len();
            if pieces.is_empty() {
                pieces.extend_from_slice(&first);
            }
            pieces.extend_from_slice(&c);
        }
        Ok(if pieces.is_empty() {
            first
        } else {
            Bytes::from(pieces)
        })
    }

    /// The body read to its end: the connection goes home if it may (kept
    /// alive, and nothing unasked-for behind the answer).
    fn finished(&mut self) {
        self.framing = Framing::Done;
        let conn = self.conn.take();
        if let (Some(conn), Some((pool, key)), true) = (conn, self.home.take(), self.keep_alive) {
            if conn.buf.is_empty() {
                pool.put(&key, conn);
            }
        }
    }

    fn broken(&mut self, e: Error) -> Poll<Result<Option<Bytes>, Error>> {
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Err(e))
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            match self.framing.step(&mut conn.buf) {
                Step::Data(data) => {
                    if self.framing == Framing::Done {
                        self.finished();
                    }
                    return Poll::Ready(Ok(Some(data)));
                }
                Step::End => {
                    self.finished();
                    return Poll::Ready(Ok(None));
                }
                Step::Broken(e) => return self.broken(e.into()),
                Step::Read => match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) if self.framing == Framing::Close => {
                        self.keep_alive = false;
                        self.finished();
                        return Poll::Ready(Ok(None));
                    }
                    Poll::Ready(Ok(0)) => return self.broken(Error::ClosedInBody),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return self.broken(Error::ReceiveBody(e)),
                },
            }
        }
    }
}

/// The answer as a body for a response of our own (a relayed stream).
impl http_body::Body for Response {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        self.get_mut()
            .poll_chunk(cx)
            .map(|r| r.transpose().map(|r| r.map(http_body::Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{answer_once, body_of, raw_server};
    use crate::{BodyError, Client};
    use http::StatusCode;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn length_and_chunked_bodies_on_one_kept_alive_connection() {
        let (url, server) = raw_server(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: t\r\n\r\n",
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let client = Client::new();
        let mut r = client.post(&url).body("one").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(body_of(&mut r).await, b"hello");
        let mut r = client.post(&url).body("two").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(body_of(&mut r).await, b"abc0123456789abcdef");
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        drop(r);
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3, "all three on one connection: {seen:?}");
        assert!(seen[0].starts_with("POST /mcp HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[0].contains("content-length: 3\r\n") && seen[0].ends_with("\r\n\r\none"));
        assert!(
            seen[2].starts_with("GET /mcp HTTP/1.1\r\n") && !seen[2].contains("content-length")
        );
    }

    #[tokio::test]
    async fn an_answer_dropped_early_closes_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                n += 1;
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(k) = s.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789")
                            .await;
                    }
                });
            }
            n
        });
        let client = Client::new();
        let r = client.post(&url).send().await.unwrap();
        drop(r); // body unread: the connection cannot carry another request
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"0123456789");
        let mut r = client.post(&url).send().await.unwrap(); // reuses the second
        assert_eq!(body_of(&mut r).await, b"0123456789");
        assert_eq!(accepted.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn broken_answers_are_errors_not_bodies() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            b"SMTP ready\r\n\r\n",
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            tokio::spawn(async move { answer_once(&listener, answer).await });
            let outcome = match Client::new().post(&url).send().await {
                Err(e) => Err(e),
                Ok(mut r) => r.bytes(1 << 20).await.map_err(|e| match e {
                    BodyError::Broken(e) => e,
                    BodyError::TooLarge => panic!("not too large"),
                }),
            };
            assert!(
                outcome.is_err(),
                "{:?} gave {outcome:?}",
                String::from_utf8_lossy(answer)
            );
        }
    }
}

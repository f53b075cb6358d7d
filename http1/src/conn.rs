//! One connection: the [`Io`] it runs on, its read buffer, and the exchange
//! of a request for an answer's head.

use crate::error::Error;
use crate::head::{parse_head, Encoded, Head};
use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// What a connection runs on: TCP, a Unix socket, TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// One HTTP/1.1 connection: its stream and what was read from it but not
/// yet used.
pub struct Conn {
    io: Box<dyn Io>,
    pub(crate) buf: BytesMut,
}

/// Free room below which a read first grows the buffer.
const MIN_READ_ROOM: usize = 4 << 10;
/// How much a read buffer grows by.
const READ_GROWTH: usize = 16 << 10;

/// Why an exchange failed.
pub(crate) enum Failure {
    /// The request could not be written in full and nothing came back: the
    /// peer cannot have acted on it.
    NotSent(Error),
    /// The request was written in full and nothing came back: on a
    /// connection that had been idle, the peer may have closed it in the
    /// meantime (a fresh connection may succeed), or it took the request
    /// and stopped before answering.
    Unanswered(Error),
    /// The answer broke off or is not HTTP.
    Broken(Error),
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::NotSent(e) | Failure::Unanswered(e) | Failure::Broken(e) => e,
        }
    }
}

impl Conn {
    pub fn new(io: impl Io) -> Conn {
        Conn {
            io: Box::new(io),
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry a request: nothing is readable
    /// on it. A peer that closed it made it readable (end of stream), and
    /// bytes nobody asked for make it unusable. No system call when the
    /// stream is known not readable, which is the usual case.
    pub(crate) fn reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            Pin::new(&mut *self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }

    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.reserve(READ_GROWTH);
        }
        // tokio's `read_buf` reads only what is ready: dropping it pending
        // loses nothing.
        let read = self.io.read_buf(&mut self.buf);
        std::pin::pin!(read).poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Writes the request and reads the answer's head (1xx heads skipped).
    pub(crate) async fn exchange(&mut self, req: &Encoded<'_>) -> Result<Head, Failure> {
        let written = async {
            self.io.write_all(&req.head).await?;
            self.io.write_all(req.rest).await?;
            self.io.flush().await
        }
        .await;
        if let Err(e) = written {
            // A server can answer before it has read the whole request and
            // close the connection (413 for a body over its limit): the write
            // fails, and that answer is the one to give. The connection is
            // not used again.
            return match self.read_head().await {
                Ok(head) => Ok(Head {
                    keep_alive: false,
                    ..head
                }),
                Err(_) => Err(Failure::NotSent(Error::Send(e))),
            };
        }
        self.read_head().await
    }

    /// Reads the answer's head (1xx heads skipped).
    async fn read_head(&mut self) -> Result<Head, Failure> {
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                received = true;
                match parse_head(&mut self.buf) {
                    Ok(Some(head)) if head.status.is_informational() => continue,
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(e) => return Err(Failure::Broken(e.into())),
                }
            }
            match self.fill().await {
                Ok(0) if !received => return Err(Failure::Unanswered(Error::ClosedBeforeAnswer)),
                Ok(0) => return Err(Failure::Broken(Error::ClosedInHead)),
                Ok(_) => {}
                Err(e) if !received => return Err(Failure::Unanswered(Error::Receive(e))),
                Err(e) => return Err(Failure::Broken(Error::Receive(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{answer_once, body_of};
    use crate::Client;
    use http::StatusCode;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn an_answer_given_before_the_body_was_read_is_the_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        // Reads the head, refuses the body and closes with most of it unread
        // (which resets the connection while the client still writes).
        tokio::spawn(async move {
            let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\n\r\ntoo large";
            answer_once(&listener, answer).await;
        });
        let client = Client::new();
        let body = vec![b'x'; 64 << 20]; // more than loopback buffers take
        let mut r = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body_of(&mut r).await, b"too large");
    }
}

//! The crate's errors: [`Error`] for a request that got no answer or an
//! answer that broke off, [`Malformed`] for an answer that is not valid
//! HTTP/1.1, [`BodyError`] and [`SendError`] for the two calls that add a
//! case of their own.
//!
//! Each message is complete on its own (an I/O error's text is part of it,
//! not a source), so logging `%e` says everything; only a TLS failure keeps
//! its causes as a source.

use crate::body::MAX_LINE;
use crate::head::MAX_HEAD;
use http::HeaderName;
use std::io;
use std::time::Duration;

/// A request that got no answer, or an answer whose body broke off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a valid URL: {0}")]
    InvalidUrl(http::uri::InvalidUri),
    #[error("not an absolute URL: {0:?}")]
    NotAbsolute(String),
    #[error("bad host: {0}")]
    InvalidHost(http::header::InvalidHeaderValue),
    #[error("unsupported URL scheme {0:?}: use http:// or https://")]
    UnsupportedScheme(String),
    /// An `https://` URL in a build without the `rustls` feature.
    #[error("https:// upstreams need fleetgate built with the `rustls` feature")]
    HttpsNotBuilt,
    #[error("connecting to {host}:{port} took longer than {} s", .after.as_secs())]
    ConnectTimeout {
        host: String,
        port: u16,
        after: Duration,
    },
    #[error("connecting to {host}:{port} failed: {error}")]
    Connect {
        host: String,
        port: u16,
        error: io::Error,
    },
    #[error("setting TCP_NODELAY failed: {0}")]
    NoDelay(io::Error),
    /// The TLS connector failed: its message, its causes as the source.
    #[error("{message}")]
    Tls {
        message: String,
        #[source]
        causes: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Writing the request failed and no answer could be read.
    #[error("sending the request failed: {0}")]
    Send(io::Error),
    #[error("reading the answer failed: {0}")]
    Receive(io::Error),
    #[error("the connection was closed before an answer arrived")]
    ClosedBeforeAnswer,
    #[error("the connection was closed in the middle of the answer's head")]
    ClosedInHead,
    #[error("reading the answer's body failed: {0}")]
    ReceiveBody(io::Error),
    #[error("the connection was closed before the answer's body ended")]
    ClosedInBody,
    #[error(transparent)]
    Malformed(#[from] Malformed),
}

/// What makes an answer not HTTP/1.1 as this client reads it.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("its answer is not HTTP/1.1: {0}")]
    NotHttp(httparse::Error),
    #[error("its answer has an invalid status code")]
    Status,
    #[error("its answer has an invalid header name {0:?}")]
    HeaderName(String),
    #[error("its answer has an invalid value for header {0}")]
    HeaderValue(HeaderName),
    /// Not one decimal number (signs and lists are not numbers).
    #[error("its answer has an invalid Content-Length")]
    ContentLength,
    #[error("its answer has conflicting Content-Length headers")]
    ConflictingContentLength,
    #[error("the answer's head is larger than {} KiB", MAX_HEAD >> 10)]
    HeadTooLarge,
    #[error("its chunked body has a line longer than {} KiB", MAX_LINE >> 10)]
    LineTooLong,
    /// Not hex digits, or more of them than a size this client accepts.
    #[error("its chunked body has an invalid chunk size")]
    ChunkSize,
    #[error("its chunked body has data past a chunk's size")]
    DataPastChunk,
}

impl Error {
    /// Keeps the error's text and its sources'.
    #[cfg(feature = "rustls")]
    pub(crate) fn tls(e: &(dyn std::error::Error + 'static)) -> Error {
        let mut causes = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        Error::Tls {
            message: e.to_string(),
            causes: (!causes.is_empty()).then(|| causes.join(": ").into()),
        }
    }
}

/// Why [`Response::bytes`](crate::Response::bytes) gave no body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the caller's limit.
    #[error("the answer's body is larger than the limit")]
    TooLarge,
    /// The body broke off.
    #[error(transparent)]
    Broken(Error),
}

/// Why [`send`](crate::send) or [`send_once`](crate::send_once) got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError<E> {
    /// No connection could be opened.
    #[error("no connection could be opened")]
    Connect(E),
    /// The exchange failed before an answer's head arrived.
    #[error(transparent)]
    Http(Error),
    /// ([`send_once`](crate::send_once) only) The request was written in
    /// full and the connection ended before a whole answer head: the peer
    /// may have acted on it.
    #[error("{0} (the request was delivered: it may have been acted on)")]
    Unanswered(Error),
}

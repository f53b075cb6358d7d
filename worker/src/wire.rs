//! Answers and bodies every layer builds the same way: a `{"detail": …}`
//! answer (ContextForge's error shape, for paths that do not speak JSON-RPC),
//! a JSON-RPC error answer, a JSON body, and a request body read up to a
//! limit.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use fleetgate_mcp::protocol;
use http::{header, HeaderValue, StatusCode};
use http_body::Body as _;
use std::future::Future as _;

/// A `{"detail": …}` answer.
pub fn detail(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "detail": msg }))).into_response()
}

/// 405, naming the methods the path takes.
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// A JSON-RPC error answer with an HTTP status.
pub fn rpc_error(status: StatusCode, id: &Id, err: &ErrorObject) -> Response {
    json_body(status, jsonrpc::encode_error(id, err))
}

/// A JSON answer, built directly (axum's tuple `IntoResponse` goes through
/// its response-parts machinery, on every call).
pub fn json_body(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(protocol::CONTENT_TYPE_JSON),
    );
    resp
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than the limit of {0} bytes (MAX_REQUEST_BODY_BYTES)")]
    TooLarge(usize),
    #[error("cannot read the request body: {0}")]
    Broken(String),
    /// The body was still arriving at its deadline.
    #[error("{0}")]
    TimedOut(BodyTimedOut),
}

impl BodyError {
    /// 413, 408 or 400, as a JSON-RPC error (the paths that read bodies here
    /// speak JSON-RPC). The connection of a body that did not arrive whole
    /// (too large or too slow) is closed after the answer: what is left of
    /// the body is never read.
    pub fn into_response(self) -> Response {
        let (status, close) = match self {
            BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, true),
            BodyError::Broken(_) => (StatusCode::BAD_REQUEST, false),
            BodyError::TimedOut(_) => (StatusCode::REQUEST_TIMEOUT, true),
        };
        let mut resp = rpc_error(
            status,
            &Id::Null,
            &ErrorObject::invalid_request(self.to_string()),
        );
        if close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A body, up to `limit` bytes. One whose declared length is over the limit
/// is refused before any of it is read.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge(limit));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(e) => {
            // The deadline's error, as axum's `Body` wraps it.
            let e = match e.downcast::<axum::Error>() {
                Ok(e) => e.into_inner(),
                Err(e) => e,
            };
            match e.downcast::<BodyTimedOut>() {
                Ok(t) => Err(BodyError::TimedOut(*t)),
                Err(e) => Err(BodyError::Broken(e.to_string())),
            }
        }
    }
}

/// A request body that must arrive whole within its deadline
/// (`REQUEST_BODY_TIMEOUT`, counted from the request's head): a body
/// trickling in, or never finishing, fails with [`BodyTimedOut`] instead of
/// holding its connection forever.
pub struct Deadline<B> {
    body: B,
    at: tokio::time::Instant,
    /// Made the first time the body is not ready (most bodies never are
    /// not: they came with their head).
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    after: std::time::Duration,
}

impl<B> Deadline<B> {
    pub fn new(body: B, after: std::time::Duration) -> Deadline<B> {
        Deadline {
            body,
            at: tokio::time::Instant::now() + after,
            sleep: None,
            after,
        }
    }
}

/// A request body still arriving at its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s (REQUEST_BODY_TIMEOUT)", .0.as_secs_f64())]
pub struct BodyTimedOut(std::time::Duration);

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let at = this.at;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.after))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

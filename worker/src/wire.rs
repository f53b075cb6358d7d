//! Answers and bodies every layer builds the same way: a `{"detail": …}`
//! answer (ContextForge's error shape, for paths that do not speak JSON-RPC),
//! a JSON-RPC error answer, a JSON body, and a request body read up to a
//! limit.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use fleetgate_mcp::protocol;
use http::{header, HeaderValue, StatusCode};

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
}

impl BodyError {
    /// 413 or 400, as a JSON-RPC error (the paths that read bodies here
    /// speak JSON-RPC).
    pub fn into_response(self) -> Response {
        let status = match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        };
        rpc_error(
            status,
            &Id::Null,
            &ErrorObject::invalid_request(self.to_string()),
        )
    }
}

/// A body, up to `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}

//! The REST API's errors and its input plumbing.
//!
//! - [`ApiError`]: every failure a REST handler returns, rendered as
//!   `{"detail": "..."}` (or, for validation errors, FastAPI's
//!   `{"detail": [{"type", "loc", "msg"}]}`) with the status chosen in one place:
//!   [`store_status`] maps every [`StoreError`] variant and [`upstream_status`] every
//!   [`UpstreamError`] variant, each in one exhaustive `match`.
//! - [`JsonBody`]: the body as a JSON value; anything that is not JSON is a 422
//!   naming where parsing stopped (never axum's plain-text 400/415).
//! - [`QueryPairs`]: the query string as pairs; a malformed one is a 422.
//! - [`Fields`]: reads a JSON object field by field (snake_case or camelCase keys),
//!   collecting every problem with its location, as pydantic does.

use crate::gateway::error::RpcError;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use fleetgate_mcp::UpstreamError;
use fleetgate_store::StoreError;
use serde_json::{json, Map, Value};

/// One field's problem, FastAPI-style.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `["body", "name"]`, `["query", "activate"]`, ...
    pub loc: Vec<String>,
    /// pydantic's error type (`missing`, `string_type`, `value_error`, ...).
    pub kind: &'static str,
    pub msg: String,
}

impl FieldError {
    pub fn new(loc: &[&str], kind: &'static str, msg: impl Into<String>) -> FieldError {
        FieldError {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            kind,
            msg: msg.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "type": self.kind, "loc": self.loc, "msg": self.msg })
    }
}

/// Every failure of a REST handler.
#[derive(Debug)]
pub enum ApiError {
    /// The request is invalid (422, `detail` is a list naming each field).
    Validation(Vec<FieldError>),
    /// A status and a human-readable `detail`.
    Detail(StatusCode, String),
}

impl ApiError {
    pub fn conflict(what: impl Into<String>) -> ApiError {
        ApiError::Detail(StatusCode::CONFLICT, what.into())
    }

    /// An upstream could not be discovered (the message names the URL).
    pub fn upstream(url: &str, err: &UpstreamError) -> ApiError {
        ApiError::Detail(
            upstream_status(err),
            format!("Unable to connect to gateway at {url}: {err}"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = store_status(&e);
        match e {
            StoreError::Invalid { field, message } => ApiError::Validation(vec![FieldError {
                loc: vec!["body".into(), field.clone()],
                kind: "value_error",
                msg: format!("{field}: {message}"),
            }]),
            StoreError::NotFound { kind, id } => {
                ApiError::Detail(status, format!("{} not found: {id}", capitalized(kind)))
            }
            other => ApiError::Detail(status, other.to_string()),
        }
    }
}

/// The HTTP status of every store failure, decided in one place.
pub fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status of a failed discovery of an upstream, decided in one place.
pub fn upstream_status(e: &UpstreamError) -> StatusCode {
    match e {
        UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::Rpc { .. }
        | UpstreamError::Http { .. }
        | UpstreamError::Unreachable { .. }
        | UpstreamError::SessionExpired { .. }
        | UpstreamError::Protocol { .. } => StatusCode::BAD_GATEWAY,
    }
}

impl From<RpcError> for ApiError {
    fn from(e: RpcError) -> ApiError {
        ApiError::Detail(rpc_status(&e), e.to_string())
    }
}

/// The HTTP status of a dispatcher failure (a resource read or prompt render
/// through the REST API), decided in one place.
pub fn rpc_status(e: &RpcError) -> StatusCode {
    match e {
        RpcError::ToolNotFound(_)
        | RpcError::PromptNotFound(_)
        | RpcError::ResourceNotFound(_)
        | RpcError::ServerNotFound(_)
        | RpcError::MethodNotFound(_) => StatusCode::NOT_FOUND,
        RpcError::InvalidParams(_) | RpcError::MissingExtension(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        RpcError::Forbidden(_) => StatusCode::FORBIDDEN,
        // The upstream refused the arguments: the caller's problem.
        RpcError::Upstream(UpstreamError::Rpc { error, .. })
            if error.code == fleetgate_mcp::jsonrpc::INVALID_PARAMS =>
        {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        RpcError::Upstream(u) => upstream_status(u),
        RpcError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(errors) => {
                let detail: Vec<Value> = errors.iter().map(FieldError::to_json).collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "detail": detail })),
                )
                    .into_response()
            }
            ApiError::Detail(status, msg) => {
                if status.is_server_error() {
                    tracing::warn!(status = status.as_u16(), detail = %msg, "REST request failed");
                }
                crate::wire::detail(status, &msg)
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The request body as JSON. Any content type is read as JSON (as FastAPI does
/// for a JSON body parameter); what does not parse is a 422.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::Validation(vec![FieldError::new(
                &["body"],
                "missing",
                "Field required: the request body must be a JSON object",
            )])
            .into_response());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) => Err(ApiError::Validation(vec![FieldError {
                loc: vec!["body".into(), e.column().to_string()],
                kind: "json_invalid",
                msg: format!("JSON decode error: {e}"),
            }])
            .into_response()),
        }
    }
}

/// The query string as `(name, value)` pairs; a malformed one is a 422.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Query(pairs)) => Ok(QueryPairs(pairs)),
            Err(e) => Err(ApiError::Validation(vec![FieldError::new(
                &["query"],
                "value_error",
                format!("malformed query string: {e}"),
            )])
            .into_response()),
        }
    }
}

impl QueryPairs {
    pub fn get(&self, name: &str) -> Option<&str> {
        let camel = to_camel(name);
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name || *k == camel)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (pydantic's spellings: true/false, 1/0, yes/no, on/off).
    pub fn bool(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ApiError::Validation(vec![FieldError::new(
                    &["query", name],
                    "bool_parsing",
                    format!(
                        "{name}: Input should be a valid boolean, unable to interpret input {v:?}"
                    ),
                )])
            }),
        }
    }

    /// A non-negative integer parameter.
    pub fn usize(&self, name: &str) -> ApiResult<Option<usize>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                ApiError::Validation(vec![FieldError::new(
                    &["query", name],
                    "int_parsing",
                    format!("{name}: Input should be a non-negative integer, got {v:?}"),
                )])
            }),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// `associated_tools` → `associatedTools` (ContextForge's `to_camel_case`).
pub fn to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split('_').enumerate() {
        if i == 0 {
            out.push_str(word);
        } else {
            let mut c = word.chars();
            if let Some(first) = c.next() {
                out.extend(first.to_uppercase());
                out.push_str(c.as_str());
            }
        }
    }
    out
}

/// A JSON object read field by field: each accessor takes the snake_case or the
/// camelCase key, checks the type and records a [`FieldError`] on a mismatch;
/// [`Fields::finish`] turns the collected errors into one 422.
pub struct Fields {
    map: Map<String, Value>,
    loc: Vec<String>,
    errors: Vec<FieldError>,
}

impl Fields {
    /// `body` must be an object; `loc` is where it sits (`["body"]`, `["body", "server"]`).
    pub fn new(body: Value, loc: &[&str]) -> ApiResult<Fields> {
        let loc: Vec<String> = loc.iter().map(|s| (*s).to_owned()).collect();
        match body {
            Value::Object(map) => Ok(Fields {
                map,
                loc,
                errors: Vec::new(),
            }),
            other => Err(ApiError::Validation(vec![FieldError {
                loc,
                kind: "model_type",
                msg: format!("Input should be a JSON object, got {}", json_type(&other)),
            }])),
        }
    }

    fn error(&mut self, field: &str, kind: &'static str, msg: String) {
        let mut loc = self.loc.clone();
        loc.push(field.to_owned());
        self.errors.push(FieldError {
            loc,
            kind,
            msg: format!("{field}: {msg}"),
        });
    }

    /// Records an error about `field` (for checks done by the caller).
    pub fn reject(&mut self, field: &str, msg: impl Into<String>) {
        self.error(field, "value_error", msg.into());
    }

    /// Whether the field is present (even as `null`).
    pub fn has(&self, field: &str) -> bool {
        self.map.contains_key(field) || self.map.contains_key(&to_camel(field))
    }

    /// The raw value: `None` if absent, `Some(Null)` if explicitly null.
    pub fn take(&mut self, field: &str) -> Option<Value> {
        let snake = self.map.remove(field);
        let camel = self.map.remove(&to_camel(field));
        snake.or(camel)
    }

    /// A required non-empty string.
    pub fn req_str(&mut self, field: &str) -> String {
        match self.take(field) {
            None | Some(Value::Null) => {
                self.error(field, "missing", "Field required".into());
                String::new()
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.error(field, "string_too_short", "must not be empty".into());
                String::new()
            }
            Some(Value::String(s)) => s,
            Some(other) => {
                self.type_error(field, "a valid string", &other);
                String::new()
            }
        }
    }

    /// An optional string (`null` and absent are both `None`).
    pub fn opt_str(&mut self, field: &str) -> Option<String> {
        self.patch_str(field).flatten()
    }

    /// For updates: `None` absent, `Some(None)` explicit null, `Some(Some(s))` a value.
    pub fn patch_str(&mut self, field: &str) -> Option<Option<String>> {
        match self.take(field)? {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s)),
            other => {
                self.type_error(field, "a valid string", &other);
                None
            }
        }
    }

    /// Tags: plain strings or ContextForge's `{"id", "label"}` objects (the label is kept).
    pub fn opt_tags(&mut self, field: &str) -> Option<Vec<String>> {
        match self.take(field)? {
            Value::Null => None,
            Value::Array(items) => {
                let mut out: Vec<String> = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let tag = match &item {
                        Value::String(s) => Some(s.trim().to_owned()),
                        Value::Object(o) => o
                            .get("label")
                            .or_else(|| o.get("id"))
                            .and_then(Value::as_str)
                            .map(|s| s.trim().to_owned()),
                        _ => None,
                    };
                    match tag {
                        Some(t) if t.is_empty() => {}
                        Some(t) => {
                            if !out.iter().any(|o| tag_id(o) == tag_id(&t)) {
                                out.push(t);
                            }
                        }
                        None => {
                            let at = format!("{field}.{i}");
                            self.type_error(
                                &at,
                                "a string or an {\"id\", \"label\"} object",
                                &item,
                            );
                        }
                    }
                }
                Some(out)
            }
            Value::String(s) => Some(
                s.split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect(),
            ),
            other => {
                self.type_error(field, "a valid list", &other);
                None
            }
        }
    }

    fn type_error(&mut self, field: &str, expected: &str, got: &Value) {
        self.error(
            field,
            "type_error",
            format!("Input should be {expected}, got {}", json_type(got)),
        );
    }

    /// The collected errors as one 422, or `Ok`.
    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// A tag's normalised id (ContextForge: lowercase, whitespace runs and `_` → `-`).
pub fn tag_id(label: &str) -> String {
    label
        .trim()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
        .replace('_', "-")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_matches_contextforge() {
        assert_eq!(to_camel("associated_tools"), "associatedTools");
        assert_eq!(to_camel("name"), "name");
        assert_eq!(to_camel("auth_header_key"), "authHeaderKey");
    }

    #[test]
    fn fields_accept_both_spellings_and_name_bad_ones() {
        let mut f = Fields::new(
            json!({"authType": "bearer", "name": 5, "tags": ["A b", {"id": "x", "label": "X"}]}),
            &["body"],
        )
        .unwrap();
        assert_eq!(f.opt_str("auth_type").as_deref(), Some("bearer"));
        assert_eq!(f.req_str("name"), "");
        assert_eq!(f.req_str("url"), "");
        assert_eq!(
            f.opt_tags("tags"),
            Some(vec!["A b".to_owned(), "X".to_owned()])
        );
        let Err(ApiError::Validation(errs)) = f.finish() else {
            panic!("expected a validation error")
        };
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].loc, vec!["body", "name"]);
        assert_eq!(errs[1].loc, vec!["body", "url"]);
        assert_eq!(errs[1].kind, "missing");
    }

    #[test]
    fn every_store_error_has_a_status() {
        let cases = [
            (StoreError::Conflict("x".into()), 409),
            (StoreError::Unavailable("x".into()), 503),
            (StoreError::Internal("x".into()), 500),
            (
                StoreError::Invalid {
                    field: "url".into(),
                    message: "bad".into(),
                },
                422,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(store_status(&e).as_u16(), code);
        }
    }

    #[test]
    fn tag_ids_are_normalised() {
        assert_eq!(tag_id(" Machine  Learning "), "machine-learning");
        assert_eq!(tag_id("under_score"), "under-score");
    }
}

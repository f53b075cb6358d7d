//! JSON-RPC 2.0 messages: typed values, a parser that never panics, and
//! serialization helpers.
//!
//! # Layout
//! - this file: the message types ([`Message`], [`Request`], [`Notification`],
//!   [`Response`], [`ErrorResponse`], [`Id`], [`ErrorObject`]) and the error
//!   codes.
//! - `parse`: [`parse`], [`parse_message`], [`from_value`]: the rules a message
//!   must follow, judged on what `loose` read, and [`ParseError`].
//! - `loose`: the serde visitors that read a message's envelope straight from
//!   the bytes without judging it.
//! - `encode`: serialization from borrowed parts ([`encode_response`],
//!   [`encode_error`], [`encode_request`], [`encode_notification`],
//!   [`encode_batch`]), `"jsonrpc": "2.0"` first.
//!
//! # Parsing
//! [`parse`] takes the raw bytes of an HTTP body and returns either one
//! [`Message`] or a batch. [`parse_message`] is the same but refuses batches
//! (MCP removed batching in 2025-06-18). Errors are typed ([`ParseError`]) and
//! carry the JSON-RPC code to answer with:
//! - bytes that are not JSON → [`PARSE_ERROR`] (-32700);
//! - JSON that is not a JSON-RPC 2.0 message (missing or wrong `jsonrpc`, an
//!   `id` that is neither a string nor an integer, a `method` that is not a
//!   string, `params` that are neither an object nor an array, an empty batch,
//!   …) → [`INVALID_REQUEST`] (-32600), with a message a person can act on.
//!
//! When the `id` of a broken message could still be read, the error carries it
//! ([`ParseError::id`]) so the error response can be correlated.
//!
//! Strictness choices: `params: null` is rejected (JSON-RPC says params are
//! "a Structured value", i.e. object or array, or absent); a request whose
//! `id` is `null` is rejected (MCP forbids it); ids must be strings or integers
//! that fit an `i64` (MCP: "string or integer"). An error response may omit
//! `id` (the Streamable HTTP spec allows an id-less error body on HTTP 4xx); it
//! is then read as [`Id::Null`].

mod encode;
mod loose;
mod parse;
#[cfg(test)]
mod tests;

pub use encode::{
    encode_batch, encode_error, encode_notification, encode_request, encode_response,
};
pub use parse::{from_value, parse, parse_message, request_id, request_method, ParseError, Parsed};

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use encode::to_vec_infallible;

/// The only protocol version this module speaks.
pub const JSONRPC_VERSION: &str = "2.0";

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid JSON-RPC request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;
/// fleetgate: the upstream server could not be reached, failed, or timed out.
pub const UPSTREAM_UNAVAILABLE: i64 = -32001;
/// fleetgate: the `Mcp-Session-Id` names no live session.
pub const SESSION_NOT_FOUND: i64 = -32002;
/// fleetgate: the caller may not do this.
pub const FORBIDDEN: i64 = -32003;

/// A JSON-RPC request id: a string or an integer, and `null` only in error
/// responses to messages whose id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
    /// `null`: only valid in an error response.
    Null,
}

impl Id {
    /// `true` for [`Id::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Id::Null)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
            Id::Null => f.write_str("null"),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Number(n)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::String(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::String(s)
    }
}

/// The `error` member of an error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// One of the `*_ERROR`/`*_NOT_FOUND`/… constants, or an application code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Anything the server wants to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with no `data`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with `data` set.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32700 with a detail.
    pub fn parse_error(detail: impl fmt::Display) -> Self {
        Self::new(PARSE_ERROR, format!("Parse error: {detail}"))
    }

    /// -32600 with a message.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }

    /// -32601 naming the method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }

    /// -32602 with a message.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// -32603 with a message.
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }

    /// -32001 with a message.
    pub fn upstream_unavailable(message: impl Into<String>) -> Self {
        Self::new(UPSTREAM_UNAVAILABLE, message)
    }

    /// -32002 with a message.
    pub fn session_not_found(message: impl Into<String>) -> Self {
        Self::new(SESSION_NOT_FOUND, message)
    }

    /// -32003 with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(FORBIDDEN, message)
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (JSON-RPC error {})", self.message, self.code)
    }
}

impl std::error::Error for ErrorObject {}

/// A request: expects a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Never [`Id::Null`] when produced by the parser.
    pub id: Id,
    /// The method name.
    pub method: String,
    /// An object or an array, if present.
    pub params: Option<Value>,
}

/// A notification: a request without an id, which gets no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method name.
    pub method: String,
    /// An object or an array, if present.
    pub params: Option<Value>,
}

/// A successful response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The id of the request answered; never [`Id::Null`] from the parser.
    pub id: Id,
    /// Whatever the method returns, as the sender wrote it: a gateway relays
    /// results without reading them (nor reordering keys or rounding numbers).
    pub result: Box<RawValue>,
}

impl PartialEq for Response {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.result.get() == other.result.get()
    }
}

impl Response {
    /// A response carrying `result` (serialized here).
    pub fn new(id: Id, result: &Value) -> Response {
        Response {
            id,
            result: raw(result),
        }
    }
}

/// `value` as raw JSON text.
pub fn raw(value: &Value) -> Box<RawValue> {
    // Serializing a `Value` cannot fail (string keys only).
    serde_json::value::to_raw_value(value).unwrap_or_default()
}

/// Raw JSON text read back as a [`Value`].
pub fn value_of(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorResponse {
    /// The id of the request answered, or [`Id::Null`] if it was unreadable.
    pub id: Id,
    /// What went wrong.
    pub error: ErrorObject,
}

/// Any one JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A successful response.
    Response(Response),
    /// An error response.
    Error(ErrorResponse),
}

impl Message {
    /// The id, for requests and responses.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Message::Request(r) => Some(&r.id),
            Message::Notification(_) => None,
            Message::Response(r) => Some(&r.id),
            Message::Error(e) => Some(&e.id),
        }
    }

    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            Message::Response(_) | Message::Error(_) => None,
        }
    }

    /// `true` for responses and error responses.
    pub fn is_response(&self) -> bool {
        matches!(self, Message::Response(_) | Message::Error(_))
    }

    /// The message as JSON bytes (`"jsonrpc": "2.0"` first).
    pub fn to_vec(&self) -> Vec<u8> {
        to_vec_infallible(self)
    }
}

impl From<Request> for Message {
    fn from(v: Request) -> Self {
        Message::Request(v)
    }
}
impl From<Notification> for Message {
    fn from(v: Notification) -> Self {
        Message::Notification(v)
    }
}
impl From<Response> for Message {
    fn from(v: Response) -> Self {
        Message::Response(v)
    }
}
impl From<ErrorResponse> for Message {
    fn from(v: ErrorResponse) -> Self {
        Message::Error(v)
    }
}

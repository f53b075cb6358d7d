//! JSON-RPC 2.0 messages: typed values, a parser that never panics, and
//! serialization helpers.
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
//! The parser runs serde straight over the bytes with a hand-written visitor:
//! the envelope members (`jsonrpc`, `method`, string `id`s) are borrowed from
//! the input when they have no escapes, members other than the six JSON-RPC
//! ones are skipped without being materialized, and only `params`, `result`
//! and `error` become [`Value`]s. serde_json's recursion limit (128) bounds
//! nesting, so hostile input cannot overflow the stack.
//!
//! Strictness choices: `params: null` is rejected (JSON-RPC says params are
//! "a Structured value", i.e. object or array, or absent); a request whose
//! `id` is `null` is rejected (MCP forbids it); ids must be strings or integers
//! that fit an `i64` (MCP: "string or integer"). An error response may omit
//! `id` (the Streamable HTTP spec allows an id-less error body on HTTP 4xx); it
//! is then read as [`Id::Null`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

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

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => s.serialize_i64(*n),
            Id::String(v) => s.serialize_str(v),
            Id::Null => s.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let loose = Loose::deserialize(d)?;
        loose.into_id().map_err(de::Error::custom)
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

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RequestRef {
            id: Some(&self.id),
            method: &self.method,
            params: self.params.as_ref(),
        }
        .serialize(s)
    }
}

impl Serialize for Notification {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RequestRef {
            id: None,
            method: &self.method,
            params: self.params.as_ref(),
        }
        .serialize(s)
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ResponseRef {
            id: &self.id,
            result: &self.result,
        }
        .serialize(s)
    }
}

impl Serialize for ErrorResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ErrorResponseRef {
            id: &self.id,
            error: &self.error,
        }
        .serialize(s)
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Request(v) => v.serialize(s),
            Message::Notification(v) => v.serialize(s),
            Message::Response(v) => v.serialize(s),
            Message::Error(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawItem::deserialize(d)?;
        raw.into_message().map_err(de::Error::custom)
    }
}

struct ResponseRef<'a, R: ?Sized> {
    id: &'a Id,
    result: &'a R,
}

impl<R: Serialize + ?Sized> Serialize for ResponseRef<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Response", 3)?;
        st.serialize_field("jsonrpc", JSONRPC_VERSION)?;
        st.serialize_field("id", self.id)?;
        st.serialize_field("result", self.result)?;
        st.end()
    }
}

struct ErrorResponseRef<'a> {
    id: &'a Id,
    error: &'a ErrorObject,
}

impl Serialize for ErrorResponseRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ErrorResponse", 3)?;
        st.serialize_field("jsonrpc", JSONRPC_VERSION)?;
        st.serialize_field("id", self.id)?;
        st.serialize_field("error", self.error)?;
        st.end()
    }
}

/// `{"jsonrpc":"2.0","id":…,"result":…}` without cloning anything.
/// `result` is relayed JSON text ([`RawValue`]) or a [`Value`] made here.
pub fn encode_response<R: Serialize + ?Sized>(id: &Id, result: &R) -> Vec<u8> {
    to_vec_infallible(&ResponseRef { id, result })
}

/// `{"jsonrpc":"2.0","id":…,"error":{…}}` without cloning anything. Pass
/// [`Id::Null`] when the request's id is unknown.
pub fn encode_error(id: &Id, error: &ErrorObject) -> Vec<u8> {
    to_vec_infallible(&ErrorResponseRef { id, error })
}

/// `{"jsonrpc":"2.0","id":…,"method":…,"params":…}` from borrowed parts.
pub fn encode_request(id: &Id, method: &str, params: Option<&Value>) -> Vec<u8> {
    to_vec_infallible(&RequestRef {
        id: Some(id),
        method,
        params,
    })
}

/// `{"jsonrpc":"2.0","method":…,"params":…}` from borrowed parts.
pub fn encode_notification(method: &str, params: Option<&Value>) -> Vec<u8> {
    to_vec_infallible(&RequestRef {
        id: None,
        method,
        params,
    })
}

struct RequestRef<'a> {
    id: Option<&'a Id>,
    method: &'a str,
    params: Option<&'a Value>,
}

impl Serialize for RequestRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = 2 + usize::from(self.id.is_some()) + usize::from(self.params.is_some());
        let mut st = s.serialize_struct("Request", n)?;
        st.serialize_field("jsonrpc", JSONRPC_VERSION)?;
        if let Some(id) = self.id {
            st.serialize_field("id", id)?;
        }
        st.serialize_field("method", self.method)?;
        if let Some(p) = self.params {
            st.serialize_field("params", p)?;
        }
        st.end()
    }
}

/// A JSON array of messages.
pub fn encode_batch(messages: &[Message]) -> Vec<u8> {
    to_vec_infallible(&messages)
}

fn to_vec_infallible<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    // Serializing these types cannot fail (string keys only, no custom
    // failing impls); keep a valid JSON-RPC fallback anyway instead of a panic.
    serde_json::to_vec(v).unwrap_or_else(|e| {
        let err = ErrorObject::internal_error(format!("failed to serialize a message: {e}"));
        serde_json::to_vec(&ErrorResponseRef {
            id: &Id::Null,
            error: &err,
        })
        .unwrap_or_default()
    })
}

/// Why bytes are not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// [`PARSE_ERROR`] or [`INVALID_REQUEST`].
    pub code: i64,
    /// What is wrong, in words a person can act on.
    pub message: String,
    /// The id of the offending message, when it could be read.
    pub id: Option<Id>,
}

impl ParseError {
    fn invalid(message: impl Into<String>, id: Option<Id>) -> Self {
        ParseError {
            code: INVALID_REQUEST,
            message: message.into(),
            id,
        }
    }

    /// The `error` member to answer with.
    pub fn to_error_object(&self) -> ErrorObject {
        ErrorObject::new(self.code, self.message.clone())
    }

    /// The error response to answer with (id `null` when unknown).
    pub fn to_error_response(&self) -> ErrorResponse {
        ErrorResponse {
            id: self.id.clone().unwrap_or(Id::Null),
            error: self.to_error_object(),
        }
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// One message.
    Single(Message),
    /// A non-empty batch; each element is judged on its own, as JSON-RPC
    /// wants one error response per invalid element.
    Batch(Vec<Result<Message, ParseError>>),
}

/// Parses one message or a batch.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let text = check_utf8(bytes)?;
    if first_non_ws(bytes) == Some(b'[') {
        let items: Vec<RawItem<'_>> = serde_json::from_str(text).map_err(map_serde_error)?;
        if items.is_empty() {
            return Err(ParseError::invalid(
                "Invalid Request: empty batch: a batch must contain at least one message",
                None,
            ));
        }
        Ok(Parsed::Batch(
            items.into_iter().map(RawItem::into_message).collect(),
        ))
    } else {
        parse_one(text).map(Parsed::Single)
    }
}

/// Parses exactly one message; a batch is an error ([`INVALID_REQUEST`]).
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    parse_one(check_utf8(bytes)?)
}

/// Parses text already checked to be UTF-8: serde_json reading a `&str` does
/// not check each string it decodes again, as it must reading bytes.
fn parse_one(text: &str) -> Result<Message, ParseError> {
    let item: RawItem<'_> = serde_json::from_str(text).map_err(map_serde_error)?;
    item.into_message()
}

/// JSON text must be UTF-8 throughout (serde_json reading bytes checks only
/// the strings it decodes, not the ones it skips): checked once, here.
fn check_utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError {
        code: PARSE_ERROR,
        message: format!(
            "Parse error: the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ),
        id: None,
    })
}

/// Reads one message from an already-parsed JSON value.
pub fn from_value(value: Value) -> Result<Message, ParseError> {
    let item = RawItem::deserialize(value).map_err(map_serde_error)?;
    item.into_message()
}

fn first_non_ws(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

fn map_serde_error(e: serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ParseError {
            code: PARSE_ERROR,
            message: format!("Parse error: the body is not valid JSON: {e}"),
            id: None,
        },
        Category::Data => ParseError::invalid(format!("Invalid Request: {e}"), None),
    }
}

// ---------------------------------------------------------------------------
// The tolerant intermediate representation.

/// A JSON value of which only strings and numbers are kept.
#[derive(Debug)]
enum Loose<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float,
    Bool,
    Null,
    Array,
    Object,
}

impl Loose<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Loose::Str(_) => "a string",
            Loose::Int(_) | Loose::UInt(_) => "an integer",
            Loose::Float => "a non-integer number",
            Loose::Bool => "a boolean",
            Loose::Null => "null",
            Loose::Array => "an array",
            Loose::Object => "an object",
        }
    }

    fn into_id(self) -> Result<Id, String> {
        match self {
            Loose::Str(s) => Ok(Id::String(s.into_owned())),
            Loose::Int(n) => Ok(Id::Number(n)),
            Loose::UInt(n) => i64::try_from(n).map(Id::Number).map_err(|_| {
                format!("`id` {n} is too large: integer ids must fit in a signed 64-bit integer")
            }),
            Loose::Null => Ok(Id::Null),
            other => Err(format!(
                "`id` must be a string or an integer, got {}",
                other.kind()
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Loose::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Object)
    }
}

enum Key {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "jsonrpc" => Key::Jsonrpc,
                    "id" => Key::Id,
                    "method" => Key::Method,
                    "params" => Key::Params,
                    "result" => Key::Result,
                    "error" => Key::Error,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

#[derive(Default)]
struct RawObject<'a> {
    jsonrpc: Option<Loose<'a>>,
    id: Option<Loose<'a>>,
    method: Option<Loose<'a>>,
    params: Option<Value>,
    result: Option<Box<RawValue>>,
    error: Option<Value>,
    duplicate: Option<&'static str>,
}

enum RawItem<'a> {
    Object(RawObject<'a>),
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for RawItem<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawItemVisitor)
    }
}

struct RawItemVisitor;

fn set<T>(slot: &mut Option<T>, value: T, name: &'static str, dup: &mut Option<&'static str>) {
    if slot.is_some() {
        dup.get_or_insert(name);
    }
    *slot = Some(value);
}

impl<'de> Visitor<'de> for RawItemVisitor {
    type Value = RawItem<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("null"))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(RawItemVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawItem::NotObject("an array (batches cannot be nested)"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut o = RawObject::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Jsonrpc => {
                    let v = map.next_value()?;
                    set(&mut o.jsonrpc, v, "jsonrpc", &mut o.duplicate);
                }
                Key::Id => {
                    let v = map.next_value()?;
                    set(&mut o.id, v, "id", &mut o.duplicate);
                }
                Key::Method => {
                    let v = map.next_value()?;
                    set(&mut o.method, v, "method", &mut o.duplicate);
                }
                Key::Params => {
                    let v = map.next_value()?;
                    set(&mut o.params, v, "params", &mut o.duplicate);
                }
                Key::Result => {
                    let v = map.next_value()?;
                    set(&mut o.result, v, "result", &mut o.duplicate);
                }
                Key::Error => {
                    let v = map.next_value()?;
                    set(&mut o.error, v, "error", &mut o.duplicate);
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawItem::Object(o))
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl RawItem<'_> {
    fn into_message(self) -> Result<Message, ParseError> {
        let o = match self {
            RawItem::Object(o) => o,
            RawItem::NotObject(kind) => {
                return Err(ParseError::invalid(
                    format!(
                        "Invalid Request: a JSON-RPC message must be a JSON object, got {kind}"
                    ),
                    None,
                ))
            }
        };

        // Read the id first so that every later error can carry it.
        let id = match o.id {
            None => None,
            Some(raw) => match raw.into_id() {
                Ok(id) => Some(id),
                Err(msg) => {
                    return Err(ParseError::invalid(format!("Invalid Request: {msg}"), None))
                }
            },
        };
        let good_id = || id.clone().filter(|i| !i.is_null());

        if let Some(name) = o.duplicate {
            return Err(ParseError::invalid(
                format!("Invalid Request: the `{name}` member appears more than once"),
                good_id(),
            ));
        }

        match &o.jsonrpc {
            Some(Loose::Str(v)) if v == JSONRPC_VERSION => {}
            Some(Loose::Str(v)) => {
                return Err(ParseError::invalid(
                    format!("Invalid Request: `jsonrpc` must be exactly \"2.0\", got {v:?}"),
                    good_id(),
                ))
            }
            Some(other) => {
                return Err(ParseError::invalid(
                    format!(
                        "Invalid Request: `jsonrpc` must be the string \"2.0\", got {}",
                        other.kind()
                    ),
                    good_id(),
                ))
            }
            None => {
                return Err(ParseError::invalid(
                    "Invalid Request: missing `jsonrpc` member: every JSON-RPC 2.0 message must \
                     contain \"jsonrpc\": \"2.0\"",
                    good_id(),
                ))
            }
        }

        if let Some(method) = o.method {
            let method = match method {
                Loose::Str(m) => m.into_owned(),
                other => {
                    return Err(ParseError::invalid(
                        format!(
                            "Invalid Request: `method` must be a string, got {}",
                            other.kind()
                        ),
                        good_id(),
                    ))
                }
            };
            if o.result.is_some() || o.error.is_some() {
                return Err(ParseError::invalid(
                    "Invalid Request: a message cannot carry both `method` and `result`/`error`",
                    good_id(),
                ));
            }
            if let Some(p) = &o.params {
                if !(p.is_object() || p.is_array()) {
                    return Err(ParseError::invalid(
                        format!(
                            "Invalid Request: `params` must be an object or an array when present, got {}",
                            value_kind(p)
                        ),
                        good_id(),
                    ));
                }
            }
            return match id {
                None => Ok(Message::Notification(Notification {
                    method,
                    params: o.params,
                })),
                Some(Id::Null) => Err(ParseError::invalid(
                    "Invalid Request: a request `id` must be a string or an integer, not null \
                     (omit `id` to send a notification)",
                    None,
                )),
                Some(id) => Ok(Message::Request(Request {
                    id,
                    method,
                    params: o.params,
                })),
            };
        }

        if o.params.is_some() {
            return Err(ParseError::invalid(
                "Invalid Request: `params` without `method`: requests and notifications need a \
                 `method` string",
                good_id(),
            ));
        }

        match (o.result, o.error) {
            (Some(_), Some(_)) => Err(ParseError::invalid(
                "Invalid Request: a response cannot carry both `result` and `error`",
                good_id(),
            )),
            (Some(result), None) => match id {
                Some(id) if !id.is_null() => Ok(Message::Response(Response { id, result })),
                _ => Err(ParseError::invalid(
                    "Invalid Request: a response needs the string or integer `id` of the request \
                     it answers",
                    None,
                )),
            },
            (None, Some(error)) => {
                let error =
                    parse_error_object(error).map_err(|m| ParseError::invalid(m, good_id()))?;
                Ok(Message::Error(ErrorResponse {
                    id: id.unwrap_or(Id::Null),
                    error,
                }))
            }
            (None, None) => Err(ParseError::invalid(
                "Invalid Request: not a JSON-RPC message: expected a `method` (request or \
                 notification) or a `result`/`error` (response)",
                good_id(),
            )),
        }
    }
}

fn parse_error_object(v: Value) -> Result<ErrorObject, String> {
    let Value::Object(mut map) = v else {
        return Err(format!(
            "Invalid Request: `error` must be an object with `code` and `message`, got {}",
            value_kind(&v)
        ));
    };
    let code = match map.get("code") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("Invalid Request: `error.code` must be an integer, got {n}"))?,
        Some(other) => {
            return Err(format!(
                "Invalid Request: `error.code` must be an integer, got {}",
                value_kind(other)
            ))
        }
        None => return Err("Invalid Request: `error` is missing its integer `code`".to_owned()),
    };
    let message = match map.remove("message") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "Invalid Request: `error.message` must be a string, got {}",
                value_kind(&other)
            ))
        }
        None => return Err("Invalid Request: `error` is missing its string `message`".to_owned()),
    };
    Ok(ErrorObject {
        code,
        message,
        data: map.remove("data"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn single(s: &str) -> Result<Message, ParseError> {
        parse_message(s.as_bytes())
    }

    #[test]
    fn request_notification_response_error() {
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#).unwrap();
        assert_eq!(
            m,
            Message::Request(Request {
                id: Id::Number(1),
                method: "tools/list".into(),
                params: Some(json!({}))
            })
        );
        let m = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(
            matches!(m, Message::Notification(ref n) if n.method == "notifications/initialized" && n.params.is_none())
        );
        let m = single(r#"{"jsonrpc":"2.0","id":"a","result":null}"#).unwrap();
        assert_eq!(
            m,
            Message::Response(Response::new("a".into(), &Value::Null))
        );
        let m = single(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x","data":[1]}}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            Message::Error(ErrorResponse {
                id: Id::Null,
                error: ErrorObject::new(-32700, "x").with_data(json!([1]))
            })
        );
        // id-less error body (HTTP 4xx) is accepted as id null
        let m = single(r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad"}}"#).unwrap();
        assert_eq!(m.id(), Some(&Id::Null));
    }

    #[test]
    fn escaped_strings_and_unknown_members() {
        let m = single(
            r#"{"x":{"deep":[1,2,{"a":null}]},"jsonrpc":"2.0","id":"a\"b","method":"t\u00e9"}"#,
        )
        .unwrap();
        assert_eq!(m.id(), Some(&Id::String("a\"b".into())));
        assert_eq!(m.method(), Some("té"));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "   ",
            "{",
            "nul",
            "{\"jsonrpc\":\"2.0\",}",
            "\u{1}",
            "{} x",
        ] {
            let e = single(bad).unwrap_err();
            assert_eq!(e.code, PARSE_ERROR, "{bad:?}: {e}");
        }
        assert_eq!(parse_message(b"\xff\xfe").unwrap_err().code, PARSE_ERROR);
        assert_eq!(
            parse_message(b"{\"a\":\"\xff\"}").unwrap_err().code,
            PARSE_ERROR
        );
    }

    #[test]
    fn invalid_requests_have_actionable_messages() {
        let cases = [
            (r#"{"id":1,"method":"a"}"#, "missing `jsonrpc`"),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"a"}"#,
                "exactly \"2.0\"",
            ),
            (r#"{"jsonrpc":2,"id":1,"method":"a"}"#, "the string \"2.0\""),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"a"}"#,
                "`id` must be a string or an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"a"}"#,
                "`id` must be a string or an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#,
                "`id` must be a string or an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"a"}"#,
                "too large",
            ),
            (r#"{"jsonrpc":"2.0","id":null,"method":"a"}"#, "not null"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
                "`method` must be a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","params":3}"#,
                "`params` must be an object or an array",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","params":null}"#,
                "`params` must be an object or an array",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","result":1}"#,
                "both `method`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
                "both `result` and `error`",
            ),
            (
                r#"{"jsonrpc":"2.0","result":1}"#,
                "needs the string or integer `id`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"result":1}"#,
                "needs the string or integer `id`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":"boom"}"#,
                "`error` must be an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}"#,
                "missing its integer `code`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}"#,
                "`error.code` must be an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#,
                "missing its string `message`",
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, "expected a `method`"),
            (
                r#"{"jsonrpc":"2.0","id":1,"params":{}}"#,
                "`params` without `method`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}"#,
                "more than once",
            ),
            ("[]", "empty batch"),
            ("3", "must be a JSON object"),
            ("\"x\"", "must be a JSON object"),
            ("null", "must be a JSON object"),
        ];
        for (input, needle) in cases {
            let e = parse(input.as_bytes()).unwrap_err();
            assert_eq!(e.code, INVALID_REQUEST, "{input}: {e}");
            assert!(
                e.message.contains(needle),
                "{input}: {e} (wanted {needle:?})"
            );
        }
    }

    #[test]
    fn errors_carry_the_id_when_readable() {
        let e = single(r#"{"jsonrpc":"2.0","id":7,"method":"a","params":1}"#).unwrap_err();
        assert_eq!(e.id, Some(Id::Number(7)));
        let r = e.to_error_response();
        assert_eq!(r.id, Id::Number(7));
        assert_eq!(r.error.code, INVALID_REQUEST);
        let e = single(r#"{"jsonrpc":"1","id":"x","method":"a"}"#).unwrap_err();
        assert_eq!(e.id, Some(Id::String("x".into())));
    }

    #[test]
    fn batches() {
        let p = parse(
            br#" [ {"jsonrpc":"2.0","id":1,"method":"a"}, 5, {"jsonrpc":"2.0","method":"n"}, [] ]"#,
        )
        .unwrap();
        let Parsed::Batch(items) = p else {
            panic!("not a batch")
        };
        assert_eq!(items.len(), 4);
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().code, INVALID_REQUEST);
        assert!(items[2].is_ok());
        assert!(items[3].as_ref().unwrap_err().message.contains("nested"));
        // parse_message refuses batches
        assert_eq!(parse_message(b"[1]").unwrap_err().code, INVALID_REQUEST);
        // a syntactically broken batch is a parse error
        assert_eq!(parse(b"[{]").unwrap_err().code, PARSE_ERROR);
    }

    #[test]
    fn serialization() {
        let bytes = encode_response(&Id::Number(3), &raw(&json!({"ok":true})));
        assert_eq!(bytes, br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#);
        let bytes = encode_error(&Id::Null, &ErrorObject::method_not_found("x/y"));
        assert_eq!(
            bytes,
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"Method not found: x/y"}}"#
        );
        let n = Message::Notification(Notification {
            method: "n".into(),
            params: None,
        });
        assert_eq!(n.to_vec(), br#"{"jsonrpc":"2.0","method":"n"}"#);
        let batch = encode_batch(&[n.clone(), n]);
        assert!(matches!(parse(&batch).unwrap(), Parsed::Batch(v) if v.len() == 2));
    }

    #[test]
    fn a_result_keeps_the_senders_bytes() {
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"z":1,"a":[{"type":"text","text":"hi"}],"n":12345678901234567890123}}"#;
        let Ok(Parsed::Single(Message::Response(r))) = parse(text.as_bytes()) else {
            panic!("not a response");
        };
        assert_eq!(
            r.result.get(),
            r#"{"z":1,"a":[{"type":"text","text":"hi"}],"n":12345678901234567890123}"#
        );
        assert_eq!(encode_response(&r.id, &r.result), text.as_bytes());
    }

    #[test]
    fn from_value_and_deserialize() {
        let v = json!({"jsonrpc":"2.0","id":"q","method":"ping"});
        let m = from_value(v.clone()).unwrap();
        assert_eq!(m.method(), Some("ping"));
        let m2: Message = serde_json::from_value(v).unwrap();
        assert_eq!(m, m2);
        assert!(serde_json::from_value::<Message>(json!({"id":1})).is_err());
        // A result read from a `Value` keeps its content.
        let r =
            from_value(json!({"jsonrpc":"2.0","id":2,"result":{"b":[1,2.5],"a":null}})).unwrap();
        assert_eq!(
            r,
            Message::Response(Response::new(Id::Number(2), &json!({"a":null,"b":[1,2.5]})))
        );
        let id: Id = serde_json::from_str("12").unwrap();
        assert_eq!(id, Id::Number(12));
        assert!(serde_json::from_str::<Id>("1.5").is_err());
    }
}

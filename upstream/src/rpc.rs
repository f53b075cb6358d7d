//! JSON-RPC 2.0 framing: parsing incoming messages and writing responses without
//! building intermediate `Value` trees.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Generic server error (used for transport-level problems: missing session id...).
pub const SERVER_ERROR: i64 = -32000;
/// Session not found (what the reference SDKs answer with HTTP 404).
pub const SESSION_NOT_FOUND: i64 = -32001;
/// MCP: resource not found.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// Request cancelled (answer given in JSON mode when a request is cancelled).
pub const REQUEST_CANCELLED: i64 = -32800;

/// One incoming JSON-RPC message (request, notification or response).
#[derive(Deserialize)]
pub struct Incoming<'a> {
    #[serde(default, borrow, deserialize_with = "cow_str")]
    pub jsonrpc: Option<Cow<'a, str>>,
    /// `None` when absent, `Some(Value::Null)` when `"id": null`.
    #[serde(default, deserialize_with = "present")]
    pub id: Option<Value>,
    #[serde(default, borrow, deserialize_with = "cow_str")]
    pub method: Option<Cow<'a, str>>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

/// A string borrowed from the input when it has no escapes (no allocation), owned otherwise.
fn cow_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

pub enum Kind<'m> {
    Request {
        id: Value,
        method: &'m str,
    },
    Notification {
        method: &'m str,
    },
    Response {
        id: Value,
        result: Option<Value>,
        error: Option<Value>,
    },
    Invalid {
        id: Value,
        why: &'static str,
    },
}

impl<'a> Incoming<'a> {
    /// Classify the message, taking the id out of it.
    pub fn kind(&mut self) -> Kind<'_> {
        if self.jsonrpc.as_deref() != Some("2.0") {
            let id = self.id.take().unwrap_or(Value::Null);
            return Kind::Invalid {
                id,
                why: "jsonrpc must be \"2.0\"",
            };
        }
        match (&self.method, self.id.take()) {
            (Some(m), Some(id)) => {
                if id.is_string() || id.is_number() {
                    Kind::Request { id, method: m }
                } else {
                    Kind::Invalid {
                        id: Value::Null,
                        why: "request id must be a string or a number",
                    }
                }
            }
            (Some(m), None) => Kind::Notification { method: m },
            (None, Some(id)) if self.result.is_some() || self.error.is_some() => Kind::Response {
                id,
                result: self.result.take(),
                error: self.error.take(),
            },
            (None, id) => Kind::Invalid {
                id: id.unwrap_or(Value::Null),
                why: "message has neither a method nor a result/error",
            },
        }
    }
}

/// Text key for a JSON-RPC id (its JSON form), used to match responses and cancellations.
pub fn id_key(id: &Value) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

const PREFIX: &[u8] = br#"{"jsonrpc":"2.0","id":"#;

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` with RESULT serialized from `result`.
pub fn result_msg<T: Serialize + ?Sized>(id: &Value, result: &T) -> Bytes {
    let mut buf = Vec::with_capacity(160);
    buf.extend_from_slice(PREFIX);
    let _ = serde_json::to_writer(&mut buf, id);
    buf.extend_from_slice(br#","result":"#);
    let _ = serde_json::to_writer(&mut buf, result);
    buf.push(b'}');
    Bytes::from(buf)
}

/// Same as [`result_msg`] with an already-serialized result.
pub fn raw_result_msg(id: &Value, raw_result: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(PREFIX.len() + 24 + raw_result.len());
    buf.extend_from_slice(PREFIX);
    let _ = serde_json::to_writer(&mut buf, id);
    buf.extend_from_slice(br#","result":"#);
    buf.extend_from_slice(raw_result);
    buf.push(b'}');
    Bytes::from(buf)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i64,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

/// `{"jsonrpc":"2.0","id":ID,"error":{...}}`.
pub fn error_msg(id: &Value, code: i64, message: &str, data: Option<&Value>) -> Bytes {
    let mut buf = Vec::with_capacity(96 + message.len());
    buf.extend_from_slice(PREFIX);
    let _ = serde_json::to_writer(&mut buf, id);
    buf.extend_from_slice(br#","error":"#);
    let _ = serde_json::to_writer(
        &mut buf,
        &ErrorBody {
            code,
            message,
            data,
        },
    );
    buf.push(b'}');
    Bytes::from(buf)
}

/// A notification or a server-to-client request (`id` given), serialized.
pub fn message(id: Option<&Value>, method: &str, params: &Value) -> Bytes {
    #[derive(Serialize)]
    struct Msg<'a> {
        jsonrpc: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        method: &'a str,
        params: &'a Value,
    }
    Bytes::from(
        serde_json::to_vec(&Msg {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
        .unwrap_or_default(),
    )
}

/// One SSE `message` event, with an optional event id.
pub fn sse_frame(event_id: Option<&str>, data: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(data.len() + 48);
    if let Some(eid) = event_id {
        buf.extend_from_slice(b"id: ");
        buf.extend_from_slice(eid.as_bytes());
        buf.push(b'\n');
    }
    buf.extend_from_slice(b"event: message\ndata: ");
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// The SSE priming event (SEP-1699): an event id, a retry hint and empty data.
pub fn sse_priming(event_id: &str, retry_ms: u64) -> Bytes {
    Bytes::from(format!("id: {event_id}\nretry: {retry_ms}\ndata: \n\n"))
}

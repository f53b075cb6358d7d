//! Serialization: every message type's `Serialize`, and `encode_*` functions
//! that write a message from borrowed parts without cloning them.

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::{
    ErrorObject, ErrorResponse, Id, Message, Notification, Request, Response, JSONRPC_VERSION,
};

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => s.serialize_i64(*n),
            Id::String(v) => s.serialize_str(v),
            Id::Null => s.serialize_unit(),
        }
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

/// `{"jsonrpc":"2.0","id":…,"result":…}` without cloning anything. `result`
/// is relayed JSON text ([`RawValue`](serde_json::value::RawValue)) or a
/// [`Value`] made here.
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

pub(super) fn to_vec_infallible<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
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

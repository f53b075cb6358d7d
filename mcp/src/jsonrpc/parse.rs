//! The parser: bytes (or a [`Value`]) to a [`Message`] or a batch, judged by
//! JSON-RPC 2.0's and MCP's rules on what `loose` read. Never panics; every
//! failure is a [`ParseError`] carrying the code to answer with and, when it
//! could be read, the offending message's id.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::loose::{Loose, RawItem};
use super::{
    ErrorObject, ErrorResponse, Id, Message, Notification, Request, Response, INVALID_REQUEST,
    JSONRPC_VERSION, PARSE_ERROR,
};

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let loose = Loose::deserialize(d)?;
        loose.into_id().map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawItem::deserialize(d)?;
        raw.into_message().map_err(de::Error::custom)
    }
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

/// The id of the request in `bytes`; `None` when they are not one request
/// (a notification, a response, a batch, or not JSON-RPC at all). For an
/// error about a request that was carried but not read.
pub fn request_id(bytes: &[u8]) -> Option<Id> {
    match parse_message(bytes).ok()? {
        Message::Request(r) => Some(r.id),
        _ => None,
    }
}

/// The method of `bytes` if it is one request (not a notification, a
/// response or a batch).
pub fn request_method(bytes: &[u8]) -> Option<String> {
    match parse_message(bytes).ok()? {
        Message::Request(r) => Some(r.method),
        _ => None,
    }
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

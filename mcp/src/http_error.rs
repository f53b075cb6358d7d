//! One policy for a non-2xx HTTP answer to a JSON-RPC request, whoever gave
//! it: an upstream MCP server (read by [`crate::upstream`]) or the worker
//! that owns a session, answering a request forwarded to it (relayed by the
//! worker's `relay`).
//!
//! At most [`MAX_BODY`] bytes of the body are read. Then:
//!
//! | who answered | body                                  | the JSON-RPC error |
//! |--------------|---------------------------------------|--------------------|
//! | upstream     | a JSON-RPC error for the request's id | the upstream's own |
//! | upstream     | anything else                         | -32001, `upstream {url} answered HTTP {status}: {excerpt}` |
//! | owner        | JSON with an `error` object           | the owner's own    |
//! | owner        | JSON with a `detail`                  | by status (below), `Forwarded request failed (HTTP {status}): {detail}`, data `{"httpStatus": status}` |
//! | owner        | anything else                         | the same, quoting the [`excerpt`] |
//!
//! An owner's status, by code: 401/403 → -32003, 404 → -32002, 408 and
//! 502–504 → -32001, other 4xx → -32600, anything else → -32603.
//!
//! Why the peers differ: an upstream's status says only that the upstream
//! failed, never what was wrong with the client's request, so it is -32001
//! naming the upstream; and a JSON-RPC error answers the request only if it
//! carries that request's id. An owner ran the client's own request, with
//! the client's token and session, so its status is the verdict on that
//! request and keeps its meaning; its JSON-RPC errors are the client's
//! answer whatever id they carry (null when it could not read one), and
//! `detail` is ContextForge's error shape, whose wording operators' log
//! searches match. The owner's rows are the contract in
//! `worker/tests/vectors/forward-answers.json`.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::jsonrpc::{self, ErrorObject, ErrorResponse, Id, Message};

/// The most of a non-2xx answer's body that is read: plenty for an error
/// worth quoting, and a peer that sends more cannot make us buffer it.
pub const MAX_BODY: usize = 64 * 1024;
/// How many characters of a body an error message quotes.
pub const EXCERPT_CHARS: usize = 200;

/// Who gave the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer<'a> {
    /// An upstream MCP server at `url`.
    Upstream {
        /// The upstream URL, which the error names.
        url: &'a str,
    },
    /// The worker that owns the session, answering a forwarded request.
    Owner,
}

/// What a non-2xx answer's body says.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// The peer's own JSON-RPC error for the request: passed on as is.
    Error(ErrorObject),
    /// No usable JSON-RPC error: the words an error message quotes.
    Text(String),
}

/// Reads a non-2xx answer's body (at most [`MAX_BODY`] bytes of it). `id` is
/// the request's id; without one (a notification, a response) an upstream's
/// body is only quoted.
pub fn read(peer: Peer<'_>, body: &[u8], id: Option<&Id>) -> Body {
    let body = &body[..body.len().min(MAX_BODY)];
    match peer {
        Peer::Upstream { .. } => {
            if let Some(id) = id {
                if let Ok(Message::Error(ErrorResponse { id: eid, error })) =
                    jsonrpc::parse_message(body)
                {
                    if eid == *id {
                        return Body::Error(error);
                    }
                }
            }
            Body::Text(excerpt(body))
        }
        Peer::Owner => {
            let parsed: Option<Value> = serde_json::from_slice(body).ok();
            if let Some(error) = parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(|e| ErrorObject::deserialize(e).ok())
            {
                return Body::Error(error);
            }
            Body::Text(match parsed.as_ref().and_then(|v| v.get("detail")) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => excerpt(body),
            })
        }
    }
}

/// The JSON-RPC error for a non-2xx answer whose body said `text` (see the
/// table above).
pub fn status_error(peer: Peer<'_>, status: u16, text: &str) -> ErrorObject {
    let error = ErrorObject::new(code(peer, status), message(peer, status, text));
    match peer {
        Peer::Upstream { .. } => error,
        Peer::Owner => error.with_data(json!({ "httpStatus": status })),
    }
}

/// [`read`], then the peer's own error or [`status_error`].
pub fn to_error_object(peer: Peer<'_>, status: u16, body: &[u8], id: Option<&Id>) -> ErrorObject {
    match read(peer, body, id) {
        Body::Error(error) => error,
        Body::Text(text) => status_error(peer, status, &text),
    }
}

/// The message of [`status_error`].
pub fn message(peer: Peer<'_>, status: u16, text: &str) -> String {
    match peer {
        Peer::Upstream { url } => format!("upstream {url} answered HTTP {status}: {text}"),
        Peer::Owner if text.is_empty() => format!("Forwarded request failed (HTTP {status})"),
        Peer::Owner => format!("Forwarded request failed (HTTP {status}): {text}"),
    }
}

/// The code of [`status_error`].
pub fn code(peer: Peer<'_>, status: u16) -> i64 {
    match peer {
        Peer::Upstream { .. } => jsonrpc::UPSTREAM_UNAVAILABLE,
        Peer::Owner => match status {
            401 | 403 => jsonrpc::FORBIDDEN,
            404 => jsonrpc::SESSION_NOT_FOUND,
            408 | 502..=504 => jsonrpc::UPSTREAM_UNAVAILABLE,
            400..=499 => jsonrpc::INVALID_REQUEST,
            _ => jsonrpc::INTERNAL_ERROR,
        },
    }
}

/// At most [`EXCERPT_CHARS`] characters of a body, whitespace collapsed; a
/// cut body ends with `…`.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        for (i, c) in std::iter::once(' ').chain(word.chars()).enumerate() {
            if i == 0 && out.is_empty() {
                continue;
            }
            if count == EXCERPT_CHARS {
                out.pop();
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Peer<'static> = Peer::Upstream {
        url: "http://127.0.0.1:9/mcp",
    };

    #[test]
    fn excerpt_is_short_and_collapsed() {
        assert_eq!(excerpt(b"  a\n\n b  "), "a b");
        let long = "x".repeat(500);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("é".repeat(300).as_bytes()).chars().count(), 200);
        assert_eq!(excerpt(b""), "");
    }

    #[test]
    fn an_upstream_error_counts_only_for_the_request() {
        let body = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}"#;
        let own = read(UP, body, Some(&Id::Number(7)));
        assert!(
            matches!(own, Body::Error(ref e) if e.code == -32602),
            "{own:?}"
        );
        for id in [Some(&Id::Number(8)), None] {
            assert!(matches!(read(UP, body, id), Body::Text(_)), "{id:?}");
        }
        // And its status is always -32001, naming the upstream, without data.
        for status in [400, 401, 404, 500, 503] {
            let e = to_error_object(UP, status, b"<h1>no</h1>", Some(&Id::Number(7)));
            assert_eq!(e.code, jsonrpc::UPSTREAM_UNAVAILABLE);
            assert_eq!(
                e.message,
                format!("upstream http://127.0.0.1:9/mcp answered HTTP {status}: <h1>no</h1>")
            );
            assert_eq!(e.data, None);
        }
    }

    #[test]
    fn an_owner_error_counts_whatever_its_id() {
        let body = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"no"}}"#;
        let e = to_error_object(Peer::Owner, 403, body, Some(&Id::Number(5)));
        assert_eq!((e.code, e.message.as_str(), e.data), (-32003, "no", None));
        let e = to_error_object(Peer::Owner, 418, br#"{"detail":{"a":1}}"#, None);
        assert_eq!(e.code, jsonrpc::INVALID_REQUEST);
        assert_eq!(e.message, r#"Forwarded request failed (HTTP 418): {"a":1}"#);
        assert_eq!(e.data, Some(json!({"httpStatus": 418})));
        let e = to_error_object(Peer::Owner, 500, b"", None);
        assert_eq!(e.message, "Forwarded request failed (HTTP 500)");
    }

    #[test]
    fn only_the_first_max_body_bytes_are_read() {
        let mut body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":""#.to_vec();
        body.resize(MAX_BODY + 10, b'x');
        body.extend_from_slice(br#""}}"#);
        assert!(matches!(
            read(UP, &body, Some(&Id::Number(1))),
            Body::Text(_)
        ));
        assert!(matches!(read(Peer::Owner, &body, None), Body::Text(_)));
    }
}

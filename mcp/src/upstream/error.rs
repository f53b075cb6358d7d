//! [`UpstreamError`], and how a session turns what went wrong (a broken
//! connection, a non-2xx answer, a protocol breach) into one naming its
//! upstream. A non-2xx answer is read by the crate's one policy,
//! [`crate::http_error`].

use std::time::Duration;

use http::StatusCode;

use super::Inner;
use crate::http_error::{self, Body, Peer};
use crate::jsonrpc::{ErrorObject, Id};
use crate::net;

/// Everything that can go wrong talking to an upstream. Every message names
/// the upstream URL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream answered with a JSON-RPC error (relay `error` as is).
    #[error("upstream {url} answered with an error: {error}")]
    Rpc {
        /// The upstream URL.
        url: String,
        /// The upstream's error object.
        error: ErrorObject,
    },
    /// The upstream answered with a non-2xx HTTP status.
    #[error("{}", http_error::message(Peer::Upstream { url }, *status, body))]
    Http {
        /// The upstream URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (at most 200 characters).
        body: String,
    },
    /// No connection could be made, or it broke.
    #[error("upstream {url} is unreachable: {reason}")]
    Unreachable {
        /// The upstream URL.
        url: String,
        /// What the network stack said.
        reason: String,
    },
    /// The deadline passed.
    #[error("upstream {url} did not answer within {} ms", .after.as_millis())]
    Timeout {
        /// The upstream URL.
        url: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The upstream answered 404 to a request carrying its session id (or,
    /// on the legacy SSE transport, the session's stream closed): the session
    /// is gone and a new one must be initialized.
    #[error("upstream {url} no longer knows session {session_id} (HTTP 404, or its SSE stream closed); a new session must be initialized")]
    SessionExpired {
        /// The upstream URL.
        url: String,
        /// The expired session id.
        session_id: String,
    },
    /// The upstream broke the protocol (bad JSON, wrong content type, a
    /// stream without a response, an unsupported version, …).
    #[error("upstream {url} broke the MCP protocol: {reason}")]
    Protocol {
        /// The upstream URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl UpstreamError {
    /// The upstream URL.
    pub fn url(&self) -> &str {
        match self {
            UpstreamError::Rpc { url, .. }
            | UpstreamError::Http { url, .. }
            | UpstreamError::Unreachable { url, .. }
            | UpstreamError::Timeout { url, .. }
            | UpstreamError::SessionExpired { url, .. }
            | UpstreamError::Protocol { url, .. } => url,
        }
    }

    /// `true` for [`UpstreamError::SessionExpired`].
    pub fn is_session_expired(&self) -> bool {
        matches!(self, UpstreamError::SessionExpired { .. })
    }

    /// The JSON-RPC error to give a downstream client: the upstream's own
    /// error for [`UpstreamError::Rpc`], [`http_error`]'s for
    /// [`UpstreamError::Http`], else
    /// [`UPSTREAM_UNAVAILABLE`](crate::jsonrpc::UPSTREAM_UNAVAILABLE) with this
    /// error's message (which names the upstream URL).
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            UpstreamError::Rpc { error, .. } => error.clone(),
            UpstreamError::Http { url, status, body } => {
                http_error::status_error(Peer::Upstream { url }, *status, body)
            }
            UpstreamError::Unreachable { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::SessionExpired { .. }
            | UpstreamError::Protocol { .. } => ErrorObject::upstream_unavailable(self.to_string()),
        }
    }
}

impl Inner {
    pub(super) fn expired(&self) -> UpstreamError {
        UpstreamError::SessionExpired {
            url: self.url.clone(),
            session_id: self.session_id.clone().unwrap_or_default(),
        }
    }

    pub(super) fn protocol(&self, reason: String) -> UpstreamError {
        UpstreamError::Protocol {
            url: self.url.clone(),
            reason,
        }
    }

    pub(super) fn network_error(&self, e: &net::Error, during: &str) -> UpstreamError {
        unreachable(&self.url, e, during)
    }

    pub(super) async fn send(
        &self,
        rb: net::RequestBuilder,
    ) -> Result<net::Response, UpstreamError> {
        rb.send()
            .await
            .map_err(|e| self.network_error(&e, "sending the request failed"))
    }

    /// See [`non_2xx`].
    pub(super) async fn non_2xx(
        &self,
        status: StatusCode,
        resp: net::Response,
        id: Option<&Id>,
    ) -> UpstreamError {
        non_2xx(&self.url, self.session_id.as_deref(), status, resp, id).await
    }
}

/// `Unreachable`, saying what was going on and the whole chain of causes.
pub(super) fn unreachable(url: &str, e: &net::Error, during: &str) -> UpstreamError {
    let mut reason = format!("{during}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    UpstreamError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

/// The error for a non-2xx answer: a 404 on a session is `SessionExpired`;
/// else the body is read by [`http_error`](crate::http_error), so the
/// upstream's own JSON-RPC error for request `id` (stateless servers send
/// -32601 with 404, -32022 with 400) is `Rpc`, and anything else `Http`.
pub(super) async fn non_2xx(
    url: &str,
    session_id: Option<&str>,
    status: StatusCode,
    resp: net::Response,
    id: Option<&Id>,
) -> UpstreamError {
    if let (StatusCode::NOT_FOUND, Some(session_id)) = (status, session_id) {
        return UpstreamError::SessionExpired {
            url: url.to_owned(),
            session_id: session_id.to_owned(),
        };
    }
    let body = read_limited(resp, http_error::MAX_BODY).await;
    match http_error::read(Peer::Upstream { url }, &body, id) {
        Body::Error(error) => UpstreamError::Rpc {
            url: url.to_owned(),
            error,
        },
        Body::Text(body) => UpstreamError::Http {
            url: url.to_owned(),
            status: status.as_u16(),
            body,
        },
    }
}

/// Up to `limit` bytes of a body; a body that breaks is what arrived.
async fn read_limited(mut resp: net::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::UPSTREAM_UNAVAILABLE;

    #[test]
    fn error_messages_name_the_url() {
        let url = "http://127.0.0.1:9/mcp".to_owned();
        let errs = [
            UpstreamError::Rpc {
                url: url.clone(),
                error: ErrorObject::new(-1, "boom"),
            },
            UpstreamError::Http {
                url: url.clone(),
                status: 500,
                body: "x".into(),
            },
            UpstreamError::Unreachable {
                url: url.clone(),
                reason: "refused".into(),
            },
            UpstreamError::Timeout {
                url: url.clone(),
                after: Duration::from_millis(5),
            },
            UpstreamError::SessionExpired {
                url: url.clone(),
                session_id: "s".into(),
            },
            UpstreamError::Protocol {
                url: url.clone(),
                reason: "r".into(),
            },
        ];
        for e in errs {
            assert!(e.to_string().contains(&url), "{e}");
            assert_eq!(e.url(), url);
            let o = e.to_error_object();
            match e {
                UpstreamError::Rpc { .. } => assert_eq!(o.code, -1),
                _ => {
                    assert_eq!(o.code, UPSTREAM_UNAVAILABLE);
                    assert_eq!(o.message, e.to_string());
                }
            }
        }
    }
}

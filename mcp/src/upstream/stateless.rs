//! The stateless era (2026-07-28) on Streamable HTTP: `server/discover`
//! instead of `initialize`, version, identity and capabilities in every
//! request's `_meta`, and multi round-trip requests.
//!
//! There are no server → client requests on streams; instead a
//! `tools/call`, `resources/read` or `prompts/get` can return an
//! `InputRequiredResult` (`resultType: "input_required"`). By default the
//! session resolves it through the request's handler: each entry of
//! `inputRequests` is passed to
//! [`ServerMessageHandler::on_request`] with the entry's key as a string id,
//! and the original request is retried (new id) with `inputResponses` and the
//! echoed `requestState`, at most [`MAX_INPUT_ROUNDS`] times. Turn this off
//! with [`RequestOptions::resolve_input_required`](super::RequestOptions::resolve_input_required)
//! to get the interim result back.

use std::time::Duration;

use http::HeaderMap;
use serde_json::{json, Map, Value};

use super::streamable_http::{self, StreamableHttp};
use super::{
    Inner, NoopHandler, ServerMessageHandler, UpstreamClient, UpstreamError, UpstreamSession,
};
use crate::jsonrpc::{self, Id, Request};
use crate::protocol::{
    error_codes, meta, methods, STATEFUL_PROTOCOL_VERSIONS, STATELESS_PROTOCOL_VERSION,
};

/// How many `input_required` rounds one request may go through.
pub const MAX_INPUT_ROUNDS: u32 = 16;

/// `server/discover`. `Ok(None)`: the upstream is a legacy
/// (initialize-based) server.
pub(super) async fn discover(
    client: &UpstreamClient,
    url: &str,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<Option<UpstreamSession>, UpstreamError> {
    let inner = streamable_http::open(
        client,
        url,
        headers,
        STATELESS_PROTOCOL_VERSION,
        None,
        true,
        true,
    )?;
    let params = json!({});
    match inner
        .call(
            &Id::Number(0),
            methods::SERVER_DISCOVER,
            Some(&params),
            &NoopHandler,
        )
        .await
    {
        Ok((raw, _)) => {
            let result = jsonrpc::value_of(&raw);
            let supported: Vec<&str> = result
                .get("supportedVersions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if supported.contains(&STATELESS_PROTOCOL_VERSION) {
                let server_info = server_info_of(&result);
                return Ok(Some(UpstreamSession::with_identity(
                    result,
                    server_info,
                    inner,
                    timeout,
                )));
            }
            if supported
                .iter()
                .any(|v| STATEFUL_PROTOCOL_VERSIONS.contains(v))
            {
                return Ok(None);
            }
            Err(inner.protocol(format!(
                "server/discover lists versions {supported:?}, none of which fleetgate speaks"
            )))
        }
        Err(UpstreamError::Rpc { error, .. })
            if error.code == error_codes::UNSUPPORTED_PROTOCOL_VERSION =>
        {
            let stateful = error
                .data
                .as_ref()
                .and_then(|d| d.get("supported"))
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .any(|v| STATEFUL_PROTOCOL_VERSIONS.contains(&v))
                });
            if stateful {
                Ok(None)
            } else {
                Err(UpstreamError::Rpc {
                    url: url.to_owned(),
                    error,
                })
            }
        }
        // Recognized modern errors: the server is modern, do not fall back.
        Err(e @ UpstreamError::Rpc { .. })
            if matches!(&e, UpstreamError::Rpc { error, .. }
                if error.code == error_codes::HEADER_MISMATCH
                    || error.code == error_codes::MISSING_REQUIRED_CLIENT_CAPABILITY) =>
        {
            Err(e)
        }
        // A JSON-RPC error to server/discover (which modern servers MUST
        // implement) or a 400/404/405: a legacy server.
        Err(UpstreamError::Rpc { .. }) => Ok(None),
        Err(UpstreamError::Http {
            status: 400 | 404 | 405,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl UpstreamClient {
    /// A stateless (2026-07-28) session with the upstream `url`, whose
    /// `server/discover` answered `discovered` before (on this or another
    /// session): nothing is sent, since this era has no handshake; the
    /// capabilities and identity are the answer's. For a caller that
    /// remembers an upstream's era (as the spec suggests, per origin) and
    /// would otherwise probe it again for each session. `timeout` is the
    /// session's default per-request deadline.
    pub fn stateless_session(
        &self,
        url: &str,
        headers: &HeaderMap,
        discovered: &Value,
        timeout: Duration,
    ) -> Result<UpstreamSession, UpstreamError> {
        super::check_url(url)?;
        let inner = streamable_http::open(
            self,
            url,
            headers,
            STATELESS_PROTOCOL_VERSION,
            None,
            true,
            true,
        )?;
        Ok(UpstreamSession::with_identity(
            discovered.clone(),
            server_info_of(discovered),
            inner,
            timeout,
        ))
    }
}

/// The server's identity in a `server/discover` result.
fn server_info_of(result: &Value) -> Value {
    result
        .get("_meta")
        .and_then(|m| m.get(meta::SERVER_INFO))
        .or_else(|| result.get("serverInfo"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A stateless request's params: `_meta` carries the version, and the
/// client's identity and capabilities unless the caller set them.
pub(super) fn with_meta(
    t: &StreamableHttp,
    protocol_version: &str,
    params: Option<&Value>,
) -> Option<Value> {
    let mut map = match params {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return Some(other.clone()),
    };
    let meta_entry = map
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta_entry.is_object() {
        *meta_entry = Value::Object(Map::new());
    }
    if let Value::Object(m) = meta_entry {
        m.insert(
            meta::PROTOCOL_VERSION.to_owned(),
            Value::String(protocol_version.to_owned()),
        );
        m.entry(meta::CLIENT_INFO)
            .or_insert_with(|| t.client_info.clone());
        m.entry(meta::CLIENT_CAPABILITIES)
            .or_insert_with(|| t.client_capabilities.clone());
    }
    Some(Value::Object(map))
}

impl Inner {
    /// The params to retry a request with after an `input_required`
    /// `result`: each input request answered by `handler`.
    pub(super) async fn resolve_input(
        &self,
        params: Option<Value>,
        result: &Value,
        handler: &dyn ServerMessageHandler,
    ) -> Result<Value, UpstreamError> {
        let mut responses = Map::new();
        if let Some(requests) = result.get("inputRequests") {
            let Some(requests) = requests.as_object() else {
                return Err(self.protocol("`inputRequests` is not an object".to_owned()));
            };
            for (key, req) in requests {
                let Some(method) = req.get("method").and_then(Value::as_str) else {
                    return Err(self.protocol(format!("input request {key:?} has no `method`")));
                };
                let request = Request {
                    id: Id::String(key.clone()),
                    method: method.to_owned(),
                    params: req.get("params").cloned(),
                };
                let answer =
                    handler
                        .on_request(request)
                        .await
                        .map_err(|error| UpstreamError::Rpc {
                            url: self.url.clone(),
                            error,
                        })?;
                responses.insert(key.clone(), answer);
            }
        }
        let mut map = match params {
            None => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(self.protocol(
                    "it asked for input on a request whose params are not an object".to_owned(),
                ))
            }
        };
        map.remove("inputResponses");
        map.remove("requestState");
        if !responses.is_empty() {
            map.insert("inputResponses".to_owned(), Value::Object(responses));
        }
        if let Some(state) = result.get("requestState") {
            map.insert("requestState".to_owned(), state.clone());
        }
        Ok(Value::Object(map))
    }
}

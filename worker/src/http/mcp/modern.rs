//! Which era a POST speaks, and the per-request checks of 2026-07-28.
//!
//! One endpoint serves both eras per request: a request is legacy (sessions,
//! `initialize`) unless its `MCP-Protocol-Version` header or its
//! `_meta["io.modelcontextprotocol/protocolVersion"]` says otherwise. A
//! modern request is checked as the spec's Streamable HTTP "Server
//! Validation" and `basic/index` "_meta" sections say, before anything runs:
//!
//! - header missing, or header and `_meta` disagree → 400, -32020;
//! - a version fleetgate does not speak → 400, -32022 with `supported` and
//!   `requested`;
//! - `_meta`, its `protocolVersion` or its `clientCapabilities` missing →
//!   400, -32602;
//! - `Mcp-Method` missing or not the body's method, `Mcp-Name` missing or
//!   not the body's `params.name`/`params.uri` (after `=?base64?…?=`
//!   decoding and trimming optional whitespace) → 400, -32020;
//! - a method the revision removed → 404, -32601 (as any unknown method);
//! - a `tools/call` whose `Mcp-Param-*` headers do not mirror its
//!   `x-mcp-header` arguments → 400, -32020 ([`check_param_headers`]).

use super::{header_str, TransportError};
use crate::gateway::mrtr::Ask;
use fleetgate_mcp::jsonrpc::{ErrorObject, Id, Message, INVALID_PARAMS, METHOD_NOT_FOUND};
use fleetgate_mcp::protocol::{
    self, decode_header_value, error_codes, mcp_name_of, meta, MCP_METHOD, MCP_NAME,
    MCP_PROTOCOL_VERSION,
};
use fleetgate_mcp::ServerMessageHandler;
use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, PoisonError};

/// What a modern request declared that serving it needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Modern {
    /// `_meta["io.modelcontextprotocol/logLevel"]`: without it no
    /// `notifications/message` may reach the client.
    pub log_level: Option<String>,
    /// `_meta["io.modelcontextprotocol/clientCapabilities"]`.
    pub capabilities: Value,
}

impl Modern {
    /// `true` if a log message of `level` may be sent for this request
    /// (RFC 5424 order, as the logging utility defines it).
    pub(crate) fn wants_log(&self, level: &str) -> bool {
        const ORDER: [&str; 8] = [
            "debug",
            "info",
            "notice",
            "warning",
            "error",
            "critical",
            "alert",
            "emergency",
        ];
        let rank = |l: &str| ORDER.iter().position(|o| *o == l);
        match (&self.log_level, rank(level)) {
            (None, _) => false,
            (Some(min), Some(r)) => rank(min).is_none_or(|m| r >= m),
            (Some(_), None) => true,
        }
    }
}

/// The era of one POSTed message.
pub(crate) enum Era {
    Legacy,
    Modern(Modern),
}

/// Classifies `msg` and, when it is modern, checks it.
pub(crate) fn classify(h: &HeaderMap, msg: &Message) -> Result<Era, TransportError> {
    let id = msg.id().cloned().unwrap_or(Id::Null);
    let params = match msg {
        Message::Request(r) => r.params.as_ref(),
        Message::Notification(n) => n.params.as_ref(),
        _ => None,
    };
    let header = header_str(h, MCP_PROTOCOL_VERSION).map(str::trim);
    let meta = params.and_then(|p| p.get("_meta"));
    let declared = meta.and_then(|m| m.get(meta::PROTOCOL_VERSION));
    let declared_str = declared.and_then(Value::as_str);
    let stateful = |v: &str| protocol::STATEFUL_PROTOCOL_VERSIONS.contains(&v);
    match (header, declared) {
        (None, None) => return Ok(Era::Legacy),
        (Some(v), None) if stateful(v) => return Ok(Era::Legacy),
        (Some(v), Some(_)) if stateful(v) && declared_str == Some(v) => return Ok(Era::Legacy),
        _ => {}
    }
    let Some(version) = header else {
        return Err(mismatch(id, "the MCP-Protocol-Version header is required"));
    };
    if !protocol::is_supported_version(version) {
        return Err(TransportError::UnsupportedVersion {
            id,
            version: version.to_owned(),
        });
    }
    let Message::Request(req) = msg else {
        // The revision defines no client notifications over HTTP and no
        // headers for them; a response is not the client's to send.
        return match msg {
            Message::Notification(_) => Ok(Era::Modern(Modern::default())),
            _ => Err(TransportError::Refused {
                status: StatusCode::BAD_REQUEST,
                id,
                error: ErrorObject::invalid_request(
                    "a 2026-07-28 client sends requests and notifications only",
                ),
            }),
        };
    };
    let Some(meta) = meta.and_then(Value::as_object) else {
        return Err(invalid_meta(id, "params._meta is required"));
    };
    let Some(declared) = declared_str else {
        return Err(invalid_meta(
            id,
            "params._meta[\"io.modelcontextprotocol/protocolVersion\"] (a string) is required",
        ));
    };
    let capabilities = match meta.get(meta::CLIENT_CAPABILITIES) {
        Some(c @ Value::Object(_)) => c.clone(),
        _ => return Err(invalid_meta(
            id,
            "params._meta[\"io.modelcontextprotocol/clientCapabilities\"] (an object) is required",
        )),
    };
    if declared != version {
        return Err(mismatch(
            id,
            &format!("MCP-Protocol-Version header value '{version}' does not match body value '{declared}'"),
        ));
    }
    match header_str(h, MCP_METHOD).map(str::trim) {
        None => return Err(mismatch(id, "the Mcp-Method header is required")),
        Some(m) if m != req.method => {
            return Err(mismatch(
                id,
                &format!(
                    "Mcp-Method header value '{m}' does not match body value '{}'",
                    req.method
                ),
            ))
        }
        Some(_) => {}
    }
    let body_name = mcp_name_of(&req.method, params);
    let header_name = match h.get(MCP_NAME) {
        None => None,
        Some(v) => {
            let text = v
                .to_str()
                .ok()
                .and_then(|t| decode_header_value(t.trim()).map(|d| d.into_owned()));
            match text {
                Some(t) => Some(t),
                None => return Err(mismatch(id, "the Mcp-Name header value is malformed")),
            }
        }
    };
    match (body_name, header_name.as_deref()) {
        (Some(b), Some(hn)) if b != hn => {
            return Err(mismatch(
                id,
                &format!("Mcp-Name header value '{hn}' does not match body value '{b}'"),
            ))
        }
        (Some(_), None) => return Err(mismatch(id, "the Mcp-Name header is required")),
        _ => {}
    }
    if protocol::REMOVED_IN_STATELESS.contains(&req.method.as_str()) {
        return Err(TransportError::Refused {
            status: StatusCode::NOT_FOUND,
            id,
            error: ErrorObject::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {} (removed in {version})", req.method),
            ),
        });
    }
    let log_level = meta
        .get(meta::LOG_LEVEL)
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Era::Modern(Modern {
        log_level,
        capabilities,
    }))
}

/// A `tools/call` of a tool with `x-mcp-header` parameters: each mirrored
/// `Mcp-Param-*` header must be present when its argument has a value, be
/// well-formed, and carry that value (-32020 otherwise), as the spec's
/// server validation says. fleetgate checks it itself (it knows the tool's
/// schema), whatever the upstream would.
pub(crate) fn check_param_headers(
    st: &crate::state::AppState,
    scope: &crate::gateway::scope::Scope,
    h: &HeaderMap,
    req: &fleetgate_mcp::Request,
) -> Result<(), TransportError> {
    if req.method != protocol::methods::TOOLS_CALL {
        return Ok(());
    }
    let params = req.params.as_ref();
    let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return Ok(());
    };
    let tool = {
        let snap = st.core.registry.snapshot();
        let Some(t) = snap.scope(scope).and_then(|i| i.tool(name)) else {
            return Ok(());
        };
        (t.item.gateway_id.clone(), t.item.original_name.clone())
    };
    let Some(mirrored) = st.core.federation.mirrored(&tool.0, &tool.1) else {
        return Ok(());
    };
    mirrored
        .check(h, params.and_then(|p| p.get("arguments")))
        .map_err(|why| mismatch(req.id.clone(), &why))
}

/// A batch under a modern header: the revision's POST body is one message.
pub(crate) fn is_modern_batch(h: &HeaderMap) -> bool {
    header_str(h, MCP_PROTOCOL_VERSION)
        .map(str::trim)
        .is_some_and(protocol::is_stateless_version)
}

fn mismatch(id: Id, msg: &str) -> TransportError {
    TransportError::Refused {
        status: StatusCode::BAD_REQUEST,
        id,
        error: ErrorObject::new(
            error_codes::HEADER_MISMATCH,
            format!("Header mismatch: {msg}"),
        ),
    }
}

fn invalid_meta(id: Id, msg: &str) -> TransportError {
    TransportError::Refused {
        status: StatusCode::BAD_REQUEST,
        id,
        error: ErrorObject::new(INVALID_PARAMS, format!("Invalid params: {msg}")),
    }
}

/// The `UnsupportedProtocolVersionError` for `requested`.
pub(crate) fn unsupported_version(requested: &str) -> ErrorObject {
    ErrorObject::new(
        error_codes::UNSUPPORTED_PROTOCOL_VERSION,
        format!(
            "Unsupported protocol version {requested}; supported: {}",
            protocol::SUPPORTED_PROTOCOL_VERSIONS.join(", ")
        ),
    )
    .with_data(json!({
        "supported": protocol::SUPPORTED_PROTOCOL_VERSIONS,
        "requested": requested,
    }))
}

/// The client capability an upstream's request to the client needs.
fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        protocol::methods::SAMPLING_CREATE_MESSAGE => Some("sampling"),
        protocol::methods::ELICITATION_CREATE => Some("elicitation"),
        protocol::methods::ROOTS_LIST => Some("roots"),
        _ => None,
    }
}

/// Stands between a modern request's call and the handler of what its
/// upstream sends mid-call. The 2026-07-28 client takes `input_required`
/// results itself (a modern upstream's pass through untouched); an
/// `initialize`-era upstream's mid-call request for input goes to `asks`,
/// where the call is parked for the client's retry
/// ([`crate::gateway::mrtr`]). One needing a capability the client did not
/// declare is refused to the upstream and remembered, and the call's answer
/// becomes `MissingRequiredClientCapabilityError` (a server MUST NOT rely on
/// capabilities the client has not declared).
pub(crate) struct CapabilityGate {
    pub inner: Arc<dyn ServerMessageHandler>,
    pub declared: Value,
    pub missing: Arc<Mutex<Option<&'static str>>>,
    pub asks: tokio::sync::mpsc::UnboundedSender<Ask>,
}

impl ServerMessageHandler for CapabilityGate {
    fn on_notification(&self, n: fleetgate_mcp::Notification) -> BoxFuture<'_, ()> {
        self.inner.on_notification(n)
    }

    fn on_request(&self, r: fleetgate_mcp::Request) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        let Some(cap) = capability_for(&r.method) else {
            return self.inner.on_request(r);
        };
        if self.declared.get(cap).is_none() {
            *self.missing.lock().unwrap_or_else(PoisonError::into_inner) = Some(cap);
            let e = missing_capability(cap, None);
            return Box::pin(async move { Err(e) });
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let sent = self.asks.send(Ask { request: r, answer });
        Box::pin(async move {
            sent.map_err(|_| {
                ErrorObject::internal_error("the call is no longer waiting for input")
            })?;
            answered.await.unwrap_or_else(|_| {
                Err(ErrorObject::internal_error(
                    "the client did not retry the call with the input asked for",
                ))
            })
        })
    }

    fn takes_input_required(&self) -> bool {
        true
    }
}

/// -32021 naming `cap` in `data.requiredCapabilities`, and `asker` (the
/// gateway that asked, as the message says it) when known.
pub(crate) fn missing_capability(cap: &str, asker: Option<&str>) -> ErrorObject {
    let who = asker.unwrap_or("the upstream");
    crate::gateway::error::missing_capability(
        json!({ cap: {} }),
        &format!("{cap} ({who} asked the client for it; declare it in _meta[\"io.modelcontextprotocol/clientCapabilities\"] to use this)"),
    )
}

#[cfg(test)]
mod tests {
    use super::Modern;

    #[test]
    fn log_messages_need_the_requests_level() {
        let none = Modern::default();
        assert!(!none.wants_log("emergency"));
        let warn = Modern {
            log_level: Some("warning".into()),
            ..Modern::default()
        };
        assert!(warn.wants_log("error"));
        assert!(warn.wants_log("warning"));
        assert!(!warn.wants_log("info"));
    }
}

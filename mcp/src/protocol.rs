//! MCP constants and small helpers: protocol versions and their negotiation,
//! Streamable HTTP header names, session-id validation, method names, `_meta`
//! keys of the stateless revision, and the header-value encoding it defines.
//!
//! SSE framing lives in [`crate::sse`] and is re-exported here.
//!
//! Spec facts used (modelcontextprotocol/modelcontextprotocol, `docs/specification`):
//! - 2025-03-26 … 2025-11-25 (`basic/transports`): sessions via `Mcp-Session-Id`
//!   (visible ASCII 0x21–0x7E), `MCP-Protocol-Version` on every request after
//!   initialization (a server without the header assumes 2025-03-26), SSE
//!   resumption with `Last-Event-ID`, 404 on an expired session.
//! - 2026-07-28 (`basic/transports/streamable-http`, `basic/versioning`):
//!   no sessions and no `initialize`; every request carries
//!   `_meta["io.modelcontextprotocol/protocolVersion"]`, `…/clientInfo` and
//!   `…/clientCapabilities`, plus the `MCP-Protocol-Version`, `Mcp-Method` and
//!   (for `tools/call`, `resources/read`, `prompts/get`) `Mcp-Name` headers;
//!   header values that are not plain ASCII use `=?base64?…?=`.

use std::borrow::Cow;

use http::HeaderName;

pub use crate::sse::{
    encode_comment, encode_event, encode_message_event, encode_priming_event, SseDecoder, SseError,
    SseEvent,
};

/// The protocol versions fleetgate speaks, oldest first. The last stateful one
/// is [`LATEST_STATEFUL_PROTOCOL_VERSION`]; [`STATELESS_PROTOCOL_VERSION`] is the
/// stateless draft.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] =
    &["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];

/// The stateful (initialize + session) versions, oldest first.
pub const STATEFUL_PROTOCOL_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];

/// The newest version that uses `initialize` and sessions.
pub const LATEST_STATEFUL_PROTOCOL_VERSION: &str = "2025-11-25";

/// The stateless draft: no `initialize`, no sessions, version in each request.
pub const STATELESS_PROTOCOL_VERSION: &str = "2026-07-28";

/// What a server assumes when a request has no `MCP-Protocol-Version` header
/// and nothing else tells the version.
pub const DEFAULT_PROTOCOL_VERSION_WITHOUT_HEADER: &str = "2025-03-26";

/// `true` if fleetgate speaks `version` (stateful or stateless).
pub fn is_supported_version(version: &str) -> bool {
    SUPPORTED_PROTOCOL_VERSIONS.contains(&version)
}

/// `true` for versions without `initialize` and sessions (2026-07-28 and later).
pub fn is_stateless_version(version: &str) -> bool {
    version == STATELESS_PROTOCOL_VERSION
}

/// The answer to an `initialize` that asks for `requested`: the same version
/// if it is a supported stateful one, else [`LATEST_STATEFUL_PROTOCOL_VERSION`].
///
/// The stateless version is never the outcome: it has no `initialize`, so a
/// client asking for it in one gets the latest stateful version.
pub fn negotiate_version(requested: &str) -> &'static str {
    STATEFUL_PROTOCOL_VERSIONS
        .iter()
        .copied()
        .find(|v| *v == requested)
        .unwrap_or(LATEST_STATEFUL_PROTOCOL_VERSION)
}

/// `Mcp-Session-Id` (lowercase, as `http` stores names).
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `X-Mcp-Session-Id`, the alias ContextForge clients send.
pub const X_MCP_SESSION_ID: HeaderName = HeaderName::from_static("x-mcp-session-id");
/// `MCP-Protocol-Version`.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Last-Event-ID`.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// `Mcp-Method` (2026-07-28).
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name` (2026-07-28).
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// `text/event-stream`.
pub const CONTENT_TYPE_SSE: &str = "text/event-stream";
/// `application/json`.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// The `Accept` a client sends on POST.
pub const ACCEPT_POST: &str = "application/json, text/event-stream";

/// `true` for the session ids fleetgate mints and accepts: `^[A-Za-z0-9_-]{1,128}$`.
pub fn is_valid_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `true` for what the spec allows an upstream to mint: 1–1024 visible ASCII
/// characters (0x21–0x7E). The length cap is fleetgate's.
pub fn is_valid_upstream_session_id(id: &str) -> bool {
    (1..=1024).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Method names.
pub mod methods {
    /// `initialize`.
    pub const INITIALIZE: &str = "initialize";
    /// `notifications/initialized`.
    pub const INITIALIZED: &str = "notifications/initialized";
    /// `notifications/cancelled`.
    pub const CANCELLED: &str = "notifications/cancelled";
    /// `notifications/progress`.
    pub const PROGRESS: &str = "notifications/progress";
    /// `notifications/message`.
    pub const LOG_MESSAGE: &str = "notifications/message";
    /// `ping`.
    pub const PING: &str = "ping";
    /// `server/discover` (2026-07-28).
    pub const SERVER_DISCOVER: &str = "server/discover";
    /// `tools/list`.
    pub const TOOLS_LIST: &str = "tools/list";
    /// `tools/call`.
    pub const TOOLS_CALL: &str = "tools/call";
    /// `resources/list`.
    pub const RESOURCES_LIST: &str = "resources/list";
    /// `resources/templates/list`.
    pub const RESOURCE_TEMPLATES_LIST: &str = "resources/templates/list";
    /// `resources/read`.
    pub const RESOURCES_READ: &str = "resources/read";
    /// `prompts/list`.
    pub const PROMPTS_LIST: &str = "prompts/list";
    /// `prompts/get`.
    pub const PROMPTS_GET: &str = "prompts/get";
    /// `sampling/createMessage` (server → client).
    pub const SAMPLING_CREATE_MESSAGE: &str = "sampling/createMessage";
    /// `elicitation/create` (server → client).
    pub const ELICITATION_CREATE: &str = "elicitation/create";
    /// `roots/list` (server → client).
    pub const ROOTS_LIST: &str = "roots/list";
    /// `resources/subscribe` (2025 era).
    pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
    /// `resources/unsubscribe` (2025 era).
    pub const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";
    /// `notifications/resources/updated`.
    pub const RESOURCES_UPDATED: &str = "notifications/resources/updated";
    /// `subscriptions/listen` (2026-07-28): a long-lived notification stream.
    pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";
    /// `notifications/subscriptions/acknowledged` (2026-07-28): the first
    /// message of a listen stream.
    pub const SUBSCRIPTIONS_ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
}

/// Methods 2026-07-28 removed (changelog: sessions, `initialize`, `ping`,
/// `logging/setLevel`, `resources/subscribe`/`unsubscribe`, `tasks/list`);
/// a modern request naming one is answered like any unknown method.
pub const REMOVED_IN_STATELESS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "tasks/list",
];

/// Results of 2026-07-28 that carry caching hints (`ttlMs`, `cacheScope`)
/// when complete (`server/utilities/caching`).
pub const CACHEABLE_METHODS: &[&str] = &[
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// `resultType` values of 2026-07-28.
pub mod result_type {
    /// The request completed.
    pub const COMPLETE: &str = "complete";
    /// An MRTR interim result: the client retries with `inputResponses`.
    pub const INPUT_REQUIRED: &str = "input_required";
}

/// `_meta` keys of the stateless revision (2026-07-28).
pub mod meta {
    /// The request's protocol version.
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    /// The client's `Implementation` (`name`, `version`).
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    /// The client's capabilities.
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// The server's `Implementation`, in a result's `_meta`.
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    /// The log level a request opts in to.
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    /// The `subscriptions/listen` request a notification belongs to.
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
}

/// Error codes the MCP specification itself defines (2026-07-28 numbering).
pub mod error_codes {
    /// The HTTP headers do not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// A capability the server needs is missing from the client's.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// The server does not implement the requested protocol version; `data`
    /// carries `supported` and `requested`.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// The `Mcp-Name` source of a request in the stateless revision:
/// `params.name` for `tools/call` and `prompts/get`, `params.uri` for
/// `resources/read`, `params.taskId` for the tasks extension's `tasks/get`,
/// `tasks/update` and `tasks/cancel`, nothing otherwise.
pub fn mcp_name_of<'a>(method: &str, params: Option<&'a serde_json::Value>) -> Option<&'a str> {
    let key = match method {
        methods::TOOLS_CALL | methods::PROMPTS_GET => "name",
        methods::RESOURCES_READ => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params?.get(key)?.as_str()
}

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";

/// Encodes a value for an `Mcp-Name`/`Mcp-Param-*` header (2026-07-28): kept
/// as is when it is plain header-safe ASCII (0x20–0x7E and tab, no leading or
/// trailing whitespace, not itself looking like the sentinel), else
/// `=?base64?<standard base64 of the UTF-8>?=`.
pub fn encode_header_value(value: &str) -> Cow<'_, str> {
    let plain_ascii = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b));
    let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let looks_encoded = value.starts_with(SENTINEL_PREFIX) && value.ends_with(SENTINEL_SUFFIX);
    let safe = plain_ascii && !padded && !looks_encoded;
    if safe {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!(
            "{SENTINEL_PREFIX}{}{SENTINEL_SUFFIX}",
            base64_encode(value.as_bytes())
        ))
    }
}

/// Reverses [`encode_header_value`]; `None` when the sentinel wraps something
/// that is not base64 of UTF-8.
pub fn decode_header_value(value: &str) -> Option<Cow<'_, str>> {
    match value
        .strip_prefix(SENTINEL_PREFIX)
        .and_then(|v| v.strip_suffix(SENTINEL_SUFFIX))
    {
        None => Some(Cow::Borrowed(value)),
        Some(inner) => {
            let bytes = base64_decode(inner)?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = |shift: u32| char::from(B64[((n >> shift) & 63) as usize]);
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { '=' });
        out.push(if chunk.len() > 2 { idx(0) } else { '=' });
    }
    out
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (i, q) in bytes.chunks(4).enumerate() {
        let last = i + 1 == quads;
        let pad = q.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate_version("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate_version("2025-03-26"), "2025-03-26");
        assert_eq!(negotiate_version("2024-11-05"), "2025-11-25");
        assert_eq!(negotiate_version("2026-07-28"), "2025-11-25");
        assert_eq!(negotiate_version(""), LATEST_STATEFUL_PROTOCOL_VERSION);
        assert!(is_supported_version("2026-07-28"));
        assert!(is_stateless_version("2026-07-28"));
        assert!(!is_stateless_version("2025-11-25"));
        assert!(!is_supported_version("2024-11-05"));
    }

    #[test]
    fn session_ids() {
        assert!(is_valid_session_id("abc-DEF_123"));
        assert!(is_valid_session_id(&"a".repeat(128)));
        assert!(!is_valid_session_id(&"a".repeat(129)));
        assert!(!is_valid_session_id(""));
        assert!(!is_valid_session_id("a b"));
        assert!(!is_valid_session_id("a.b"));
        assert!(!is_valid_session_id("é"));
        assert!(is_valid_upstream_session_id("1868a90c.x/y=="));
        assert!(!is_valid_upstream_session_id("a b"));
        assert!(!is_valid_upstream_session_id(""));
    }

    #[test]
    fn header_value_encoding_matches_spec_examples() {
        assert_eq!(encode_header_value("us-west1"), "us-west1");
        assert_eq!(
            encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(encode_header_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            encode_header_value("line1\nline2"),
            "=?base64?bGluZTEKbGluZTI=?="
        );
        assert_eq!(
            encode_header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        for v in [
            "",
            "a",
            "ab",
            "abc",
            "Hello, 世界",
            " x",
            "=?base64?literal?=",
            "\u{0}",
        ] {
            let enc = encode_header_value(v);
            assert_eq!(decode_header_value(&enc).as_deref(), Some(v));
        }
        assert_eq!(decode_header_value("=?base64?***?="), None);
        assert_eq!(decode_header_value("=?base64?QQ=A?="), None);
    }

    #[test]
    fn mcp_name() {
        let p = serde_json::json!({"name": "t", "uri": "file:///x"});
        assert_eq!(mcp_name_of("tools/call", Some(&p)), Some("t"));
        assert_eq!(mcp_name_of("resources/read", Some(&p)), Some("file:///x"));
        assert_eq!(mcp_name_of("tools/list", Some(&p)), None);
        assert_eq!(mcp_name_of("tools/call", None), None);
    }
}

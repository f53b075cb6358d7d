//! What a request path is, decided once in front of everything (the auth
//! gate, the error shape, the route all read this, never the path again).

/// The kinds of path the worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Open to everyone, token or not: `/`, `/health`, `/ready`, `/metrics`,
    /// `/openapi.json`, `/docs`.
    Open,
    /// MCP Streamable HTTP: `/mcp` (`None`) or `/servers/{id}/mcp` (the id,
    /// percent-decoded); one trailing slash allowed.
    Mcp(Option<String>),
    /// The legacy HTTP+SSE transport's stream (MCP 2024-11-05): `GET /sse`
    /// (`None`) or `/servers/{id}/sse`; one trailing slash allowed.
    LegacySse(Option<String>),
    /// The legacy transport's messages: `POST /message` (`None`) or
    /// `/servers/{id}/message`, `?session_id=…`; one trailing slash allowed.
    LegacyMessage(Option<String>),
    /// `/servers/{id}/mcp` (`…/sse`, `…/message`) whose id is not UTF-8 once
    /// percent-decoded.
    BadServerId,
    /// `/rpc` (one trailing slash allowed).
    Rpc,
    /// ContextForge's other MCP transport paths (`/mcp/sse`, `/mcp/message`,
    /// anything under `/mcp/`, the same under `/servers/{id}`): MCP for the
    /// gate (`MCP_REQUIRE_AUTH`, JSON-RPC errors), served by no route.
    OtherMcp,
    /// Everything else: the REST API, through the router.
    Rest,
}

impl Endpoint {
    pub fn of(path: &str) -> Endpoint {
        if matches!(
            path,
            "/" | "/health" | "/ready" | "/metrics" | "/openapi.json" | "/docs"
        ) {
            return Endpoint::Open;
        }
        let p = path.strip_suffix('/').unwrap_or(path);
        match p {
            "/mcp" => return Endpoint::Mcp(None),
            "/rpc" => return Endpoint::Rpc,
            "/sse" => return Endpoint::LegacySse(None),
            "/message" => return Endpoint::LegacyMessage(None),
            _ => {}
        }
        if let Some((id, tail)) = p.strip_prefix("/servers/").and_then(|r| r.split_once('/')) {
            let of: Option<fn(Option<String>) -> Endpoint> = match tail {
                "mcp" => Some(Endpoint::Mcp),
                "sse" => Some(Endpoint::LegacySse),
                "message" => Some(Endpoint::LegacyMessage),
                _ => None,
            };
            if let (Some(of), false) = (of, id.is_empty()) {
                return match percent_encoding::percent_decode_str(id).decode_utf8() {
                    Ok(id) => of(Some(id.into_owned())),
                    Err(_) => Endpoint::BadServerId,
                };
            }
        }
        let t = path.trim_end_matches('/');
        if t.ends_with("/mcp")
            || t.ends_with("/mcp/sse")
            || t.ends_with("/mcp/message")
            || path.starts_with("/mcp/")
        {
            return Endpoint::OtherMcp;
        }
        Endpoint::Rest
    }

    /// An MCP path (anonymous access follows `MCP_REQUIRE_AUTH`).
    pub fn is_mcp(&self) -> bool {
        matches!(
            self,
            Endpoint::Mcp(_)
                | Endpoint::LegacySse(_)
                | Endpoint::LegacyMessage(_)
                | Endpoint::BadServerId
                | Endpoint::OtherMcp
        )
    }

    /// Errors on this path are JSON-RPC errors (else `{"detail": …}`).
    pub fn speaks_jsonrpc(&self) -> bool {
        self.is_mcp() || *self == Endpoint::Rpc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_once() {
        let cases = [
            ("/health", Endpoint::Open),
            ("/", Endpoint::Open),
            ("/mcp", Endpoint::Mcp(None)),
            ("/mcp/", Endpoint::Mcp(None)),
            ("/servers/a/mcp", Endpoint::Mcp(Some("a".into()))),
            ("/servers/a%20b/mcp/", Endpoint::Mcp(Some("a b".into()))),
            ("/servers/%ff/mcp", Endpoint::BadServerId),
            ("/rpc", Endpoint::Rpc),
            ("/rpc/", Endpoint::Rpc),
            ("/mcp/sse", Endpoint::OtherMcp),
            ("/mcp/message", Endpoint::OtherMcp),
            ("/servers/a/mcp/sse", Endpoint::OtherMcp),
            ("/servers/a/b/mcp", Endpoint::OtherMcp),
            ("/tools", Endpoint::Rest),
            ("/servers/a/tools", Endpoint::Rest),
            ("/mcpx", Endpoint::Rest),
            ("/servers//mcp", Endpoint::OtherMcp),
            ("/sse", Endpoint::LegacySse(None)),
            ("/sse/", Endpoint::LegacySse(None)),
            ("/message", Endpoint::LegacyMessage(None)),
            ("/servers/a/sse", Endpoint::LegacySse(Some("a".into()))),
            (
                "/servers/a%2Fb/message/",
                Endpoint::LegacyMessage(Some("a/b".into())),
            ),
            ("/servers/%ff/sse", Endpoint::BadServerId),
            ("/servers/a/b/sse", Endpoint::Rest),
            ("/servers//sse", Endpoint::Rest),
            ("/messages", Endpoint::Rest),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::of(path), want, "{path}");
        }
        for p in [
            "/mcp",
            "/servers/a/mcp/",
            "/mcp/sse",
            "/servers/%ff/mcp",
            "/sse",
            "/servers/a/message",
        ] {
            assert!(Endpoint::of(p).is_mcp(), "{p}");
        }
        for p in ["/", "/rpc", "/tools", "/servers/a/tools", "/mcpx"] {
            assert!(!Endpoint::of(p).is_mcp(), "{p}");
        }
        assert!(Endpoint::of("/rpc").speaks_jsonrpc());
        assert!(!Endpoint::of("/tools").speaks_jsonrpc());
    }
}

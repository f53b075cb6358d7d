//! Every scope check for one request, in ContextForge's order (server, IP, time,
//! permission), so the HTTP layer makes one call and maps `Err` to 403.

use super::claims::Claims;
use super::net::ip_allowed;
use super::scope::{path_allowed, permits, required_permission, rest_permits, PathDecision};
use super::time::time_allowed;
use fleetgate_shared::config::AuthConfig;
use std::net::IpAddr;

/// What the guard needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The URL path, without the query string.
    pub path: &'a str,
    /// An MCP or JSON-RPC path ([`crate::endpoint::Endpoint::speaks_jsonrpc`]):
    /// every method is checked again by the dispatcher.
    pub transport: bool,
    /// From [`super::client_ip`].
    pub client_ip: IpAddr,
    /// Unix seconds.
    pub now: u64,
}

/// Why a verified token may not make this request (HTTP 403, or JSON-RPC
/// -32003 on MCP). Messages name the restriction but not the token's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("token is scoped to another server")]
    WrongServer,
    #[error("token is scoped to one server; this endpoint is outside it")]
    OutsideServerScope,
    #[error("token is not valid from this client address")]
    Ip,
    #[error("token is not valid at this time")]
    Time,
    #[error("token lacks the permission for this operation ({0})")]
    Permission(String),
}

/// Paths ContextForge never scopes: health, docs, login, well-known metadata.
fn unscoped(path: &str) -> bool {
    path == "/"
        || [
            "/health",
            "/ready",
            "/openapi.json",
            "/docs",
            "/redoc",
            "/auth/email/login",
            "/auth/email/register",
        ]
        .iter()
        .any(|p| {
            path.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        })
        || path.starts_with("/.well-known/")
        || (path.starts_with("/servers/") && path.contains("/.well-known/"))
}

/// The token's scopes against an HTTP request: `server_id` ([`path_allowed`]),
/// `ip_restrictions`, `time_restrictions`, then `permissions` for the route
/// ([`rest_permits`]; `POST /mcp` and `POST /rpc` need `servers.use`).
pub fn authorize_rest(
    claims: &Claims,
    req: &RequestFacts<'_>,
    cfg: &AuthConfig,
) -> Result<(), Denied> {
    if unscoped(req.path) {
        return Ok(());
    }
    let s = &claims.scopes;
    match path_allowed(s.server_id.as_deref(), req.path) {
        PathDecision::Allowed => {}
        PathDecision::WrongServer => return Err(Denied::WrongServer),
        PathDecision::OutsideServerScope => return Err(Denied::OutsideServerScope),
    }
    if !ip_allowed(&s.ip_restrictions, req.client_ip) {
        return Err(Denied::Ip);
    }
    if !time_allowed(&s.time_restrictions, req.now, cfg) {
        return Err(Denied::Time);
    }
    // A server-scoped token without explicit permissions may read and use its
    // server, not rewrite it (or anything else): writes need a grant.
    if s.server_id.is_some() && s.permissions.is_empty() && !read_or_transport(req) {
        let needed = super::rest_permission(req.method, req.path).unwrap_or("an explicit grant");
        return Err(Denied::Permission(needed.to_owned()));
    }
    if !rest_permits(&s.permissions, req.method, req.path) {
        let needed = super::rest_permission(req.method, req.path).unwrap_or("an explicit grant");
        return Err(Denied::Permission(needed.to_owned()));
    }
    Ok(())
}

/// Reads (GET/HEAD) and the MCP / JSON-RPC transports, whose every method is
/// checked again by the dispatcher.
fn read_or_transport(req: &RequestFacts<'_>) -> bool {
    matches!(req.method, "GET" | "HEAD") || req.transport
}

/// The token's `permissions` against one JSON-RPC method (after
/// [`authorize_rest`] admitted the transport request).
pub fn authorize_mcp(claims: &Claims, method: &str) -> Result<(), Denied> {
    match required_permission(method) {
        Some(p) if !permits(&claims.scopes.permissions, p) => Err(Denied::Permission(p.to_owned())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config_tests::cfg;
    use crate::auth::{Scopes, TimeRestrictions};

    const MONDAY_NOON: u64 = 1_795_392_000 + 12 * 3600;

    fn token(scopes: Scopes) -> Claims {
        Claims {
            scopes,
            ..Claims::anonymous()
        }
    }

    fn req<'a>(method: &'a str, path: &'a str, ip: &str, now: u64) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            transport: crate::endpoint::Endpoint::of(path).speaks_jsonrpc(),
            client_ip: ip.parse().unwrap(),
            now,
        }
    }

    #[test]
    fn unscoped_tokens_pass() {
        let c = cfg(&[]);
        assert_eq!(
            authorize_rest(
                &Claims::anonymous(),
                &req("DELETE", "/gateways/g", "192.0.2.1", 0),
                &c
            ),
            Ok(())
        );
        assert_eq!(authorize_mcp(&Claims::anonymous(), "tools/call"), Ok(()));
    }

    #[test]
    fn checks_run_in_order() {
        let c = cfg(&[]);
        let t = token(Scopes {
            server_id: Some("srv-a".into()),
            permissions: vec!["tools.read".into()],
            ip_restrictions: vec!["10.0.0.0/8".into()],
            time_restrictions: TimeRestrictions {
                weekdays_only: true,
                ..Default::default()
            },
        });
        let ok = |m, p| authorize_rest(&t, &req(m, p, "10.1.2.3", MONDAY_NOON), &c);
        assert_eq!(ok("GET", "/servers/srv-a/tools"), Ok(()));
        assert_eq!(ok("POST", "/servers/srv-a/mcp"), Ok(()));
        assert_eq!(ok("GET", "/servers/srv-b/tools"), Err(Denied::WrongServer));
        assert_eq!(ok("GET", "/tools"), Err(Denied::OutsideServerScope));
        assert_eq!(
            ok("POST", "/servers/srv-a/tools/x/call"),
            Err(Denied::Permission("tools.execute".into()))
        );
        assert_eq!(ok("GET", "/health"), Ok(()));
        assert_eq!(
            ok("GET", "/servers/srv-b/.well-known/oauth-protected-resource"),
            Ok(())
        );
        let from =
            |ip| authorize_rest(&t, &req("GET", "/servers/srv-a/tools", ip, MONDAY_NOON), &c);
        assert_eq!(from("192.0.2.1"), Err(Denied::Ip));
        let saturday = req(
            "GET",
            "/servers/srv-a/tools",
            "10.1.2.3",
            MONDAY_NOON - 2 * 86_400,
        );
        assert_eq!(authorize_rest(&t, &saturday, &c), Err(Denied::Time));
        assert_eq!(authorize_mcp(&t, "tools/list"), Ok(()));
        assert_eq!(authorize_mcp(&t, "initialize"), Ok(()));
        assert_eq!(
            authorize_mcp(&t, "tools/call"),
            Err(Denied::Permission("tools.execute".into()))
        );
        assert!(Denied::Permission("tools.execute".into())
            .to_string()
            .contains("tools.execute"));
    }
}

//! Token scopes: which paths a server-scoped token reaches, and which permission
//! each MCP method and REST route needs (ContextForge's `token_scoping.py`,
//! `token_scope_grants` and `Permissions` names).
//!
//! Paths are matched after stripping a leading `/v1`, as ContextForge does.

/// Whether a server-scoped token may use a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathDecision {
    Allowed,
    /// `/servers/{other}/…`: another server than the token's.
    WrongServer,
    /// Neither a general endpoint nor the token's server.
    OutsideServerScope,
}

impl PathDecision {
    pub fn is_allowed(self) -> bool {
        self == PathDecision::Allowed
    }
}

/// Endpoints open to every server-scoped token (and their sub-paths).
const GENERAL: &[&str] = &[
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/redoc",
    "/rpc",
    "/mcp",
    "/sse",
];

fn strip_v1(path: &str) -> &str {
    match path.strip_prefix("/v1") {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// `path` is `base` or below it (`/mcp`, `/mcp/`, `/mcp/sse`; not `/mcpx`).
fn under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
}

/// ContextForge's server restriction: an unscoped token goes anywhere; a token
/// scoped to server `S` reaches `/servers/S/…` (and `/sse/S`, `/ws/S`), the
/// general endpoints (`/`, `/health`, `/ready`, `/metrics`, `/openapi.json`,
/// `/docs`, `/redoc`, `/rpc`, `/mcp`, `/sse`, with trailing slash or sub-path),
/// and nothing else.
pub fn path_allowed(server_id_scope: Option<&str>, path: &str) -> PathDecision {
    let Some(scope) = server_id_scope.filter(|s| !s.is_empty()) else {
        return PathDecision::Allowed;
    };
    let path = strip_v1(path);
    for prefix in ["/servers/", "/sse/", "/ws/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let id = rest.split(['/', '?']).next().unwrap_or("");
            if !id.is_empty() {
                return if id == scope {
                    PathDecision::Allowed
                } else {
                    PathDecision::WrongServer
                };
            }
        }
    }
    if path == "/" || GENERAL.iter().any(|g| under(path, g)) {
        PathDecision::Allowed
    } else {
        PathDecision::OutsideServerScope
    }
}

/// ContextForge's `token_scope_grants`: an empty list restricts nothing; `*` grants
/// all; `tools.*` grants every `tools.…`; otherwise an exact match. Any MCP method
/// permission (`tools.`, `resources.`, `prompts.`) also grants `servers.use`, the
/// transport access without which it would be useless.
pub fn permits(granted: &[String], required: &str) -> bool {
    if granted.is_empty() || granted.iter().any(|g| g == "*" || g == required) {
        return true;
    }
    if let Some((category, _)) = required.split_once('.') {
        if granted
            .iter()
            .any(|g| g.strip_suffix(".*") == Some(category))
        {
            return true;
        }
    }
    required == "servers.use"
        && granted.iter().any(|g| {
            ["tools.", "resources.", "prompts."]
                .iter()
                .any(|p| g.starts_with(p))
        })
}

/// The permission an MCP (JSON-RPC) method needs; `None` = none (lifecycle,
/// notifications, client-side features). Unknown methods need `tools.execute`,
/// as ContextForge treats them as legacy direct tool calls.
///
/// `completion/complete` is `prompts.read` here; pass `params.ref.type` to
/// [`completion_permission`] for the exact one (ContextForge itself asks `tools.read`).
pub fn required_permission(mcp_method: &str) -> Option<&'static str> {
    Some(match mcp_method {
        "initialize" | "ping" => return None,
        "tools/list" | "list_tools" => "tools.read",
        "tools/call" => "tools.execute",
        "resources/list"
        | "resources/read"
        | "resources/templates/list"
        | "resources/subscribe"
        | "resources/unsubscribe" => "resources.read",
        "prompts/list" | "prompts/get" | "completion/complete" => "prompts.read",
        "list_gateways" => "gateways.read",
        "roots/list" | "list_roots" | "logging/setLevel" => "admin.system_config",
        m if [
            "notifications/",
            "roots/",
            "sampling/",
            "elicitation/",
            "completion/",
            "logging/",
        ]
        .iter()
        .any(|p| m.starts_with(p)) =>
        {
            return None
        }
        _ => "tools.execute",
    })
}

/// `completion/complete` by what is completed: `ref/resource` needs
/// `resources.read`, `ref/prompt` (and anything else) `prompts.read`.
pub fn completion_permission(ref_type: Option<&str>) -> &'static str {
    match ref_type {
        Some("ref/resource") => "resources.read",
        _ => "prompts.read",
    }
}

/// How a rule's path pattern must match.
#[derive(Clone, Copy)]
enum M {
    /// The pattern, then the end or `/…` (ContextForge's `(?:$|/)`).
    Prefix,
    /// The pattern, with an optional trailing slash (`/?$`).
    Exact,
    /// The pattern followed by `/` (`[^/]+/`: sub-resources).
    Sub,
}

use M::{Exact, Prefix, Sub};

/// (method, pattern, match, permission); `*` is one path segment; first match wins.
#[rustfmt::skip]
const RULES: &[(&str, &str, M, &str)] = &[
    ("GET", "/plugins", Prefix, "plugins.read"),
    ("GET", "/tools", Prefix, "tools.read"),
    ("POST", "/tools", Exact, "tools.create"),
    ("POST", "/tools/preview", Prefix, "tools.preview"),
    ("POST", "/tools/*", Sub, "tools.update"),
    ("PUT", "/tools/*", Prefix, "tools.update"),
    ("DELETE", "/tools/*", Prefix, "tools.delete"),
    ("GET", "/servers/*/tools", Prefix, "tools.read"),
    ("POST", "/servers/*/tools/*/call", Prefix, "tools.execute"),
    ("POST", "/rpc", Prefix, "servers.use"),
    ("GET", "/sse", Prefix, "servers.use"),
    ("POST", "/mcp", Prefix, "servers.use"),
    ("GET", "/mcp", Prefix, "servers.use"),
    ("DELETE", "/mcp", Prefix, "servers.use"),
    // fleetgate: the per-server MCP transport is transport access for every verb.
    ("GET", "/servers/*/mcp", Prefix, "servers.use"),
    ("DELETE", "/servers/*/mcp", Prefix, "servers.use"),
    ("GET", "/resources", Prefix, "resources.read"),
    ("POST", "/resources", Exact, "resources.create"),
    ("POST", "/resources/subscribe", Prefix, "resources.read"),
    ("POST", "/resources/*", Sub, "resources.update"),
    ("PUT", "/resources/*", Prefix, "resources.update"),
    ("DELETE", "/resources/*", Prefix, "resources.delete"),
    ("GET", "/servers/*/resources", Prefix, "resources.read"),
    ("GET", "/prompts", Prefix, "prompts.read"),
    ("POST", "/prompts", Exact, "prompts.create"),
    ("POST", "/prompts/*", Sub, "prompts.update"),
    ("POST", "/prompts/*", Exact, "prompts.read"),
    ("PUT", "/prompts/*", Prefix, "prompts.update"),
    ("DELETE", "/prompts/*", Prefix, "prompts.delete"),
    ("GET", "/servers/*/sse", Prefix, "servers.use"),
    ("GET", "/servers", Prefix, "servers.read"),
    ("POST", "/servers", Exact, "servers.create"),
    ("POST", "/servers/*/state", Prefix, "servers.update"),
    ("POST", "/servers/*/toggle", Prefix, "servers.update"),
    ("POST", "/servers/*/message", Prefix, "servers.use"),
    ("POST", "/servers/*/mcp", Prefix, "servers.use"),
    ("PUT", "/servers/*", Prefix, "servers.update"),
    ("DELETE", "/servers/*", Prefix, "servers.delete"),
    ("GET", "/gateways", Prefix, "gateways.read"),
    ("POST", "/gateways", Exact, "gateways.create"),
    ("POST", "/gateways/*", Sub, "gateways.update"),
    ("PUT", "/gateways/*", Prefix, "gateways.update"),
    ("DELETE", "/gateways/*", Prefix, "gateways.delete"),
    ("GET", "/metrics", Prefix, "admin.metrics"),
    ("POST", "/metrics/reset", Prefix, "admin.metrics"),
    ("GET", "/tokens", Prefix, "tokens.read"),
    ("POST", "/tokens", Exact, "tokens.create"),
    ("POST", "/tokens/teams/*", Prefix, "tokens.create"),
    ("PUT", "/tokens/*", Prefix, "tokens.update"),
    ("DELETE", "/tokens/*", Prefix, "tokens.revoke"),
    ("GET", "/a2a", Prefix, "a2a.read"),
    ("POST", "/a2a", Exact, "a2a.create"),
    ("POST", "/a2a/invoke", Exact, "a2a.invoke"),
    ("POST", "/a2a/*/invoke", Prefix, "a2a.invoke"),
    ("POST", "/a2a/*/jsonrpc", Prefix, "a2a.invoke"),
    ("POST", "/a2a/*/state", Prefix, "a2a.update"),
    ("POST", "/a2a/*/toggle", Prefix, "a2a.update"),
    ("PUT", "/a2a/*", Prefix, "a2a.update"),
    ("DELETE", "/a2a/*", Prefix, "a2a.delete"),
];

fn matches(pattern: &str, how: M, path: &str) -> bool {
    let mut rest = path;
    for seg in pattern.split('/').skip(1) {
        let Some(r) = rest.strip_prefix('/') else {
            return false;
        };
        let (head, tail) = r.split_at(r.find('/').unwrap_or(r.len()));
        if head.is_empty() || (seg != "*" && seg != head) {
            return false;
        }
        rest = tail;
    }
    match how {
        Prefix => true,
        Exact => rest.is_empty() || rest == "/",
        Sub => rest.starts_with('/'),
    }
}

/// The permission a REST call needs (ContextForge's `_PERMISSION_PATTERNS`, e.g.
/// `GET /tools` → `tools.read`, `POST /gateways` → `gateways.create`); `None` when
/// no rule matches.
pub fn rest_permission(method: &str, path: &str) -> Option<&'static str> {
    let path = strip_v1(path);
    RULES
        .iter()
        .find(|(m, pat, how, _)| m.eq_ignore_ascii_case(method) && matches(pat, *how, path))
        .map(|r| r.3)
}

/// ContextForge's REST permission check for a token's `permissions`: no
/// restriction when empty or `*`; `/search` is open (per-entity checks apply
/// downstream); an unmapped route is refused (default deny).
pub fn rest_permits(granted: &[String], method: &str, path: &str) -> bool {
    if granted.is_empty() || granted.iter().any(|g| g == "*") || under(strip_v1(path), "/search") {
        return true;
    }
    rest_permission(method, path).is_some_and(|p| permits(granted, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn server_scope_paths() {
        use PathDecision::*;
        assert_eq!(path_allowed(None, "/servers/b/tools"), Allowed);
        assert_eq!(path_allowed(Some(""), "/admin"), Allowed);
        let s = |p| path_allowed(Some("a"), p);
        let open = "/ /health /health/ /ready /metrics /openapi.json /docs /redoc /rpc /rpc/ \
                    /mcp /mcp/ /mcp/sse /v1/mcp /servers/a /servers/a/mcp /sse/a";
        for p in open.split_whitespace() {
            assert_eq!(s(p), Allowed, "{p}");
        }
        for p in "/servers/b /servers/b/mcp /servers/ab/tools /ws/b /v1/servers/b/tools".split(' ')
        {
            assert_eq!(s(p), WrongServer, "{p}");
        }
        for p in "/tools /gateways /servers /servers/ /mcpx /admin /healthz".split(' ') {
            assert_eq!(s(p), OutsideServerScope, "{p}");
        }
        assert!(!s("/tools").is_allowed());
    }

    #[test]
    fn permission_grants() {
        assert!(permits(&[], "tools.execute"));
        assert!(permits(&v(&["*"]), "admin.system_config"));
        assert!(permits(&v(&["tools.*"]), "tools.execute"));
        assert!(!permits(&v(&["tools.*"]), "resources.read"));
        assert!(permits(&v(&["tools.read"]), "tools.read"));
        assert!(!permits(&v(&["tools.read"]), "tools.execute"));
        assert!(permits(&v(&["prompts.read"]), "servers.use"));
        assert!(!permits(&v(&["a2a.read"]), "servers.use"));
        assert!(!permits(&v(&["tools"]), "tools.read"));
    }

    #[test]
    fn mcp_methods() {
        let none = "initialize ping notifications/initialized notifications/cancelled sampling/createMessage";
        for m in none.split(' ') {
            assert_eq!(required_permission(m), None, "{m}");
        }
        let cases = [
            ("tools/list", "tools.read"),
            ("tools/call", "tools.execute"),
            ("resources/list", "resources.read"),
            ("resources/read", "resources.read"),
            ("resources/templates/list", "resources.read"),
            ("resources/subscribe", "resources.read"),
            ("prompts/list", "prompts.read"),
            ("prompts/get", "prompts.read"),
            ("completion/complete", "prompts.read"),
            ("logging/setLevel", "admin.system_config"),
            ("my_tool", "tools.execute"),
        ];
        for (m, p) in cases {
            assert_eq!(required_permission(m), Some(p), "{m}");
        }
        let resource = completion_permission(Some("ref/resource"));
        assert_eq!(resource, "resources.read");
        assert_eq!(completion_permission(Some("ref/prompt")), "prompts.read");
    }

    #[test]
    fn rest_routes() {
        let cases = [
            ("GET", "/tools", "tools.read"),
            ("GET", "/v1/tools/abc", "tools.read"),
            ("POST", "/tools", "tools.create"),
            ("POST", "/tools/", "tools.create"),
            ("POST", "/tools/abc/state", "tools.update"),
            ("PUT", "/tools/abc", "tools.update"),
            ("DELETE", "/tools/abc", "tools.delete"),
            ("POST", "/servers/s/tools/t/call", "tools.execute"),
            ("POST", "/gateways", "gateways.create"),
            ("POST", "/gateways/g/refresh", "gateways.update"),
            ("GET", "/servers/s/mcp", "servers.use"),
            ("POST", "/servers/s/mcp", "servers.use"),
            ("GET", "/servers/s", "servers.read"),
            ("DELETE", "/servers/s", "servers.delete"),
            ("POST", "/prompts/p", "prompts.read"),
            ("POST", "/prompts/p/state", "prompts.update"),
            ("POST", "/rpc", "servers.use"),
            ("GET", "/metrics", "admin.metrics"),
            ("delete", "/tokens/t", "tokens.revoke"),
        ];
        for (m, p, want) in cases {
            assert_eq!(rest_permission(m, p), Some(want), "{m} {p}");
        }
        assert_eq!(rest_permission("GET", "/toolsx"), None);
        assert_eq!(rest_permission("PATCH", "/tools/a"), None);
        assert!(rest_permits(&[], "PATCH", "/anything"));
        assert!(rest_permits(&v(&["tools.read"]), "GET", "/tools"));
        assert!(!rest_permits(&v(&["tools.read"]), "POST", "/tools"));
        assert!(rest_permits(&v(&["tools.read"]), "GET", "/v1/search"));
        assert!(!rest_permits(&v(&["tools.read"]), "GET", "/unmapped"));
        assert!(rest_permits(&v(&["tools.execute"]), "POST", "/mcp"));
    }
}

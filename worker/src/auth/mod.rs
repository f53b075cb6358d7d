//! Authentication and token scoping, wire-compatible with ContextForge's JWTs.
//!
//! Pure functions and one prepared [`Verifier`]; no I/O, no clock reads except
//! [`unix_now`]. HTTP integration lives with the routes.
//!
//! # Module map
//! - [`claims`]: [`Claims`], what a verified token means: subject, admin flag,
//!   [`TeamScope`] (ContextForge's `normalize_token_teams`), [`Scopes`].
//! - [`verify`]: [`bearer`] (the `Authorization` header) and [`Verifier`] (signature,
//!   `iss`/`aud`/`exp`/`jti`/`env` checks).
//! - [`scope`]: [`path_allowed`] (server-scoped tokens), [`required_permission`]
//!   (MCP methods), [`rest_permission`] / [`rest_permits`] (REST routes), [`permits`].
//! - [`net`]: [`client_ip`] (trusted proxies, `X-Forwarded-For`) and [`ip_allowed`].
//! - [`time`]: [`time_allowed`] (business hours, weekdays, explicit windows).
//! - [`gate`]: [`Gate`], the keys, settings and revoked ids the HTTP gate uses.
//! - [`guard`]: [`authorize_rest`] / [`authorize_mcp`], every scope check in
//!   ContextForge's order, as one call returning a [`Denied`] reason.
//! - [`mint`](mod@mint): [`mint()`](fn@mint) tokens with ContextForge's claim layout;
//!   [`token_cli`] for `fleetgate token`.
//!
//! # Request flow (for the HTTP layer)
//! 1. `bearer(headers.get(AUTHORIZATION))`: `Err` → 401 (never a silent downgrade);
//!    `Ok(None)` → if `anonymous_allowed(&cfg, endpoint.is_mcp())` then
//!    [`Claims::anonymous`] (public only) else 401 [`AuthError::Missing`].
//! 2. `verifier.verify(token, unix_now())` → [`Claims`]; `Err(e)` → `e.status()`, with
//!    `WWW-Authenticate: e.www_authenticate()`.
//! 3. Revocation: look `claims.jti` up; revoked → [`AuthError::Revoked`] (401).
//! 4. `client_ip(peer, x_forwarded_for, &cfg.trusted_proxies)`, then
//!    `authorize_rest(&claims, &RequestFacts { .. }, &cfg)` → 403 on `Err(Denied)`.
//! 5. On MCP, per JSON-RPC message: `authorize_mcp(&claims, method)` → JSON-RPC error
//!    (`completion/complete`: check [`completion_permission`] of `params.ref.type`).
//! 6. Visibility: `claims.teams` (`All` = admin bypass, `PublicOnly`, `Teams(ids)`).

pub mod claims;
pub mod gate;
pub mod guard;
pub mod mint;
pub mod net;
pub mod scope;
pub mod time;
pub mod verify;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod vector_tests;

pub use claims::{Claims, Scopes, TeamScope, TimeRestrictions};
pub use gate::Gate;
pub use guard::{authorize_mcp, authorize_rest, Denied, RequestFacts};
pub use mint::{mint, mint_at, token_cli, MintRequest};
pub use net::{client_ip, ip_allowed};
pub use scope::{
    completion_permission, path_allowed, permits, required_permission, rest_permission,
    rest_permits, PathDecision,
};
pub use time::time_allowed;
pub use verify::{bearer, Verifier, LEEWAY_SECS};

use fleetgate_shared::config::AuthConfig;
use http::StatusCode;

/// Why a request is not authenticated. Every variant is a 401 except `Config` (500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("unsupported Authorization scheme: send `Authorization: Bearer <token>`")]
    BadScheme,
    #[error("the Authorization header says Bearer but carries no token")]
    EmptyBearer,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token has expired: mint a new one")]
    Expired,
    #[error("token is not valid yet (nbf/iat in the future): check the issuer's clock")]
    NotYetValid,
    #[error("invalid token signature: not signed with this gateway's JWT key")]
    BadSignature,
    #[error("token is signed with {found}, this gateway accepts only {expected} (JWT_ALGORITHM)")]
    WrongAlgorithm { found: String, expected: String },
    #[error("token audience is not {0:?} (JWT_AUDIENCE)")]
    WrongAudience(String),
    #[error("token issuer is not {0:?} (JWT_ISSUER)")]
    WrongIssuer(String),
    #[error("token is for environment {token:?}, this gateway runs {server:?} (ENVIRONMENT)")]
    WrongEnvironment { token: String, server: String },
    #[error(
        "token has no exp claim: mint it with an expiry, or set REQUIRE_TOKEN_EXPIRATION=false"
    )]
    MissingExp,
    #[error("token has no jti claim so it cannot be revoked: set REQUIRE_JTI=false to allow")]
    MissingJti,
    #[error("token names no user: no sub, username or email claim")]
    MissingSubject,
    #[error("token has been revoked")]
    Revoked,
    #[error("authentication is misconfigured: {0}")]
    Config(String),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` value for a 401 (RFC 6750).
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Config(_) => "Bearer",
            AuthError::BadScheme | AuthError::EmptyBearer => "Bearer error=\"invalid_request\"",
            _ => "Bearer error=\"invalid_token\"",
        }
    }
}

/// Whether a request without any credentials may proceed (as [`Claims::anonymous`]:
/// public-only, no admin). MCP paths follow `MCP_REQUIRE_AUTH`, the rest
/// `AUTH_REQUIRED`. A present but bad token is refused either way.
pub fn anonymous_allowed(cfg: &AuthConfig, mcp_path: bool) -> bool {
    if mcp_path {
        !cfg.mcp_require_auth
    } else {
        !cfg.auth_required
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_challenges() {
        assert_eq!(AuthError::Expired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::Config("x".into()).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(AuthError::Missing.www_authenticate(), "Bearer");
        assert!(AuthError::EmptyBearer
            .www_authenticate()
            .contains("invalid_request"));
        assert!(AuthError::MissingExp
            .to_string()
            .contains("REQUIRE_TOKEN_EXPIRATION=false"));
    }

    #[test]
    fn anonymous_policy_follows_contextforge() {
        let mut cfg = crate::auth::config_tests::cfg(&[]);
        assert!(!anonymous_allowed(&cfg, true) && !anonymous_allowed(&cfg, false));
        cfg.mcp_require_auth = false;
        assert!(anonymous_allowed(&cfg, true) && !anonymous_allowed(&cfg, false));
        let anon = Claims::anonymous();
        assert_eq!((anon.teams, anon.is_admin), (TeamScope::PublicOnly, false));
    }
}

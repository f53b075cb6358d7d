//! Who is asking ([`Principal`]) and what they may see ([`Scope`]): typed values
//! set once at the edge and carried by [`crate::gateway::dispatch::Context`] into
//! the one dispatcher. Nothing downstream reads a server id from params.

use crate::auth::Claims;
use crate::gateway::error::RpcError;
use std::sync::Arc;

/// Everything (`/mcp`, `/rpc`), or one virtual server (`/servers/{id}/mcp`,
/// `/rpc` with `params.server_id`, or a server-scoped token anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    All,
    Server(Arc<str>),
}

impl Scope {
    pub fn server_id(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Server(id) => Some(id),
        }
    }
}

/// The verified caller: its token's claims (or the anonymous claims when
/// unauthenticated access is allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub claims: Arc<Claims>,
}

impl Principal {
    pub fn new(claims: Claims) -> Principal {
        Principal {
            claims: Arc::new(claims),
        }
    }

    pub fn anonymous() -> Principal {
        Principal::new(Claims::anonymous())
    }

    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    pub fn is_admin(&self) -> bool {
        self.claims.is_admin
    }

    /// The scope a request actually gets: the path's (or `/rpc`'s
    /// `params.server_id`), narrowed by a server-scoped token. A token scoped
    /// to server A acts only inside A; asking for another server is refused
    /// without saying whether it exists.
    pub fn effective_scope(&self, asked: Scope) -> Result<Scope, RpcError> {
        let Some(own) = self.claims.scopes.server_id.as_deref() else {
            return Ok(asked);
        };
        match asked {
            Scope::All => Ok(Scope::Server(own.into())),
            Scope::Server(id) if id.as_ref() == own => Ok(Scope::Server(id)),
            Scope::Server(_) => Err(RpcError::Forbidden(format!(
                "Token is scoped to server {own} and cannot act on another server"
            ))),
        }
    }
}

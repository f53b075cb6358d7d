//! Who is asking ([`Principal`]) and what they may see ([`Scope`]): typed values
//! set once at the edge and carried by [`crate::gateway::dispatch::Context`] into
//! the one dispatcher. Nothing downstream reads a server id from params.

use std::sync::Arc;

/// Everything (`/mcp`, `/rpc`), or one virtual server (`/servers/{id}/mcp`,
/// `/rpc` with `params.server_id`).
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

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// `sub` of the token, or `anonymous`.
    pub subject: String,
    pub is_admin: bool,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            subject: "anonymous".to_owned(),
            is_admin: false,
        }
    }
}

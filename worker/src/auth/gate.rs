//! The gate's state: verification keys, settings, and the revoked token ids
//! this worker knows (the HTTP layer's `http::auth::authenticate` runs the
//! checks).

use super::{AuthError, Claims, Verifier};
use fleetgate_shared::config::AuthConfig;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

/// Verification keys, settings, and the revoked token ids this worker knows.
pub struct Gate {
    pub cfg: AuthConfig,
    pub(crate) verifier: Verifier,
    revoked: RwLock<HashSet<String>>,
    /// The claims of every unauthenticated request: one `Arc`, so whatever
    /// is remembered per principal (the forward's claims cache) is
    /// remembered once for all of them.
    pub(crate) anonymous: Arc<Claims>,
}

impl Gate {
    pub fn new(cfg: AuthConfig) -> Result<Gate, AuthError> {
        Ok(Gate {
            verifier: Verifier::new(&cfg)?,
            cfg,
            revoked: RwLock::default(),
            anonymous: Arc::new(Claims::anonymous()),
        })
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(jti)
    }

    pub fn add_revoked(&self, jtis: impl IntoIterator<Item = String>) {
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(jtis);
    }
}

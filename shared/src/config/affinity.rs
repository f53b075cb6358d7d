//! Session affinity: how requests reach the worker that owns their session.

use super::Loader;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AffinityConfig {
    /// `FLEET_SECRET`: signs session ids and forwarded requests. Hosts sharing a
    /// Redis must share it; unset, the supervisor draws a random one per start.
    pub fleet_secret: Option<String>,
    /// `MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT` (s, default 30): a forward that gets
    /// no answer in time is JSON-RPC -32001.
    pub forward_timeout: Duration,
    /// Where workers listen for forwarded requests (set by the supervisor).
    pub socket_dir: Option<PathBuf>,
}

impl AffinityConfig {
    pub fn load(l: &mut Loader<'_>) -> AffinityConfig {
        let fleet_secret = l.opt_string("FLEET_SECRET");
        if let Some(s) = &fleet_secret {
            if s.len() < 16 {
                l.error("FLEET_SECRET", "***", "must be at least 16 characters");
            }
        }
        AffinityConfig {
            fleet_secret,
            forward_timeout: l.secs("MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT", 30.0),
            socket_dir: None,
        }
    }
}

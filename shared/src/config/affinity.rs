//! Session affinity: how requests reach the worker that owns their session.

use super::Loader;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `AFFINITY_FORWARD`: how a request travels to its session's owner when
/// `REDIS_URL` is set (without Redis, workers of one host use Unix sockets).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ForwardMode {
    /// Straight HTTP to the owner worker's internal listener (what `auto` picks).
    Http,
    /// Through Redis pub/sub (`mcpgw:pool_http:{worker}`).
    PubSub,
}

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
    /// `REDIS_URL`: session ownership, worker heartbeats and forwarding across
    /// hosts. Unset: embedded mode (one host, Unix sockets, no lookups).
    #[serde(default)]
    pub redis_url: Option<String>,
    /// `MCPGATEWAY_SESSION_AFFINITY_TTL` (s, default 300): how long an idle
    /// session's ownership lives in Redis (refreshed on use).
    #[serde(default = "default_ttl")]
    pub session_ttl: Duration,
    /// `AFFINITY_FORWARD` (`auto` | `pubsub` | `http`; `auto` is `http`).
    #[serde(default = "default_mode")]
    pub forward: ForwardMode,
    /// `AFFINITY_INTERNAL_HOST`: the address each worker's internal forwarding
    /// listener binds and advertises (default: `HOST`). Across hosts it must be
    /// one the other hosts reach.
    #[serde(default)]
    pub internal_host: Option<String>,
}

fn default_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_mode() -> ForwardMode {
    ForwardMode::Http
}

impl AffinityConfig {
    pub fn load(l: &mut Loader<'_>) -> AffinityConfig {
        let fleet_secret = l.opt_string("FLEET_SECRET");
        if let Some(s) = &fleet_secret {
            if s.len() < 16 {
                l.error("FLEET_SECRET", "***", "must be at least 16 characters");
            }
        }
        let redis_url = l.opt_string("REDIS_URL").filter(|u| !u.trim().is_empty());
        if let Some(u) = &redis_url {
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("unix://"))
            {
                l.error(
                    "REDIS_URL",
                    u,
                    "expected redis://host[:port][/db] (or rediss://, unix://)",
                );
            }
        }
        // Hosts sharing a Redis verify each other's session ids and forwards: a
        // per-start random secret would make every cross-host request fail.
        if redis_url.is_some() && fleet_secret.is_none() {
            l.error(
                "FLEET_SECRET",
                "",
                "required with REDIS_URL: every host of the fleet must share it (e.g. `openssl rand -hex 32`)",
            );
        }
        let forward = match l.choice("AFFINITY_FORWARD", &["auto", "pubsub", "http"], "auto") {
            "pubsub" => ForwardMode::PubSub,
            _ => ForwardMode::Http,
        };
        AffinityConfig {
            fleet_secret,
            forward_timeout: l.secs("MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT", 30.0),
            socket_dir: None,
            redis_url,
            session_ttl: l.secs("MCPGATEWAY_SESSION_AFFINITY_TTL", 300.0),
            forward,
            internal_host: l
                .opt_string("AFFINITY_INTERNAL_HOST")
                .filter(|h| !h.trim().is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<AffinityConfig, Vec<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load(&map)
            .map(|c| c.affinity)
            .map_err(|e| e.0.iter().map(|e| e.var.clone()).collect())
    }

    #[test]
    fn embedded_by_default() {
        let a = load(&[]).unwrap();
        assert_eq!(a.redis_url, None);
        assert_eq!(a.forward, ForwardMode::Http);
        assert_eq!(a.session_ttl, Duration::from_secs(300));
        assert_eq!(a.internal_host, None);
    }

    #[test]
    fn redis_settings_are_read_and_checked() {
        let missing = load(&[("REDIS_URL", "redis://127.0.0.1:6380/0")]).unwrap_err();
        assert!(
            missing.iter().any(|e| e.starts_with("FLEET_SECRET")),
            "{missing:?}"
        );
        let a = load(&[
            ("REDIS_URL", "redis://127.0.0.1:6380/0"),
            ("FLEET_SECRET", "a-shared-fleet-secret-0123"),
            ("AFFINITY_FORWARD", "PubSub"),
            ("MCPGATEWAY_SESSION_AFFINITY_TTL", "60"),
            ("AFFINITY_INTERNAL_HOST", "10.0.0.5"),
        ])
        .unwrap();
        assert_eq!(a.redis_url.as_deref(), Some("redis://127.0.0.1:6380/0"));
        assert_eq!(a.forward, ForwardMode::PubSub);
        assert_eq!(a.session_ttl, Duration::from_secs(60));
        assert_eq!(a.internal_host.as_deref(), Some("10.0.0.5"));
        assert_eq!(
            load(&[("AFFINITY_FORWARD", "auto")]).unwrap().forward,
            ForwardMode::Http
        );
        assert_eq!(
            load(&[
                ("REDIS_URL", "localhost:6379"),
                ("AFFINITY_FORWARD", "carrier-pigeon"),
                ("MCPGATEWAY_SESSION_AFFINITY_TTL", "0"),
            ])
            .unwrap_err(),
            [
                "REDIS_URL",
                "FLEET_SECRET",
                "AFFINITY_FORWARD",
                "MCPGATEWAY_SESSION_AFFINITY_TTL"
            ]
        );
    }
}

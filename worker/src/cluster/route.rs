//! The routing decision: serve a request here, or send it to its session's
//! owner and bring the answer back.
//!
//! Embedded mode routes by the slot the session id names (no lookup; the owner
//! verifies the id's MAC and the principal, so a stranger gets the owner's
//! 403/404 on every worker). With Redis, Redis is the truth for a session this
//! worker does not hold: one script call names the owner and its heartbeat.
//! A live owner gets the request; a dead one (no heartbeat, connection
//! refused, nobody subscribed) loses the session to an atomic reclaim and this
//! worker adopts it. An id Redis does not know is not adopted (404).

use super::forward::{ForwardError, Inbound, Target};
use super::redis_owners::{short, Reclaim, RedisOwners};
use super::Cluster;
use crate::metrics::Metrics;
use axum::response::Response;
use fleetgate_mcp::protocol::{MCP_SESSION_ID, X_MCP_SESSION_ID};
use fleetgate_shared::config::ForwardMode;
use http::{HeaderMap, Method};

/// Where a request is served.
pub enum Route {
    /// Sent to its session's owner: the owner's answer, relayed.
    Answered(Response),
    /// Here. `adopt`: a genuine session id this worker does not hold may be
    /// adopted (its owner is gone, or Redis names this worker its owner).
    Here { adopt: bool },
}

/// The session a request names, if any.
pub fn session_id(h: &HeaderMap) -> Option<&str> {
    let text = |name| {
        h.get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    text(MCP_SESSION_ID).or_else(|| text(X_MCP_SESSION_ID))
}

impl Cluster {
    /// Where `req` is served: here (no session, ours, or an owner that is
    /// gone, whose session this worker then adopts), or by its owner, whose
    /// answer comes back. `Err`: the owner cannot be known or reached while
    /// it may be alive (the request must not be served here).
    pub async fn route(&self, req: &Inbound<'_>) -> Result<Route, ForwardError> {
        let Some(sid) = req.session() else {
            return Ok(Route::Here { adopt: true });
        };
        if let Some(redis) = &self.redis {
            if self.sessions.get(sid, req.scope).is_some() {
                return Ok(Route::Here { adopt: true });
            }
            // Boxed, like every forward below: the common, local request's
            // future stays small (it is moved into place for every request).
            return Box::pin(self.route_via_redis(&redis.ownership, req, sid)).await;
        }
        let Some(slot) = self.seal.slot_hint(sid) else {
            return Ok(Route::Here { adopt: true });
        };
        if slot == self.seal.slot || self.sessions.get(sid, req.scope).is_some() {
            return Ok(Route::Here { adopt: true });
        }
        Metrics::inc(&self.metrics.forwards_unix);
        match Box::pin(self.forward(Target::Unix(slot), req)).await {
            Ok(resp) => Ok(Route::Answered(resp)),
            // Whoever binds the slot next serves the session's next request.
            Err(e @ ForwardError::Lost(_)) if !repeatable(req) => {
                Metrics::inc(&self.metrics.forward_failures);
                tracing::warn!(session = short(sid), slot, error = %e, "not run again");
                Err(e)
            }
            Err(_) => {
                Metrics::inc(&self.metrics.forward_failures);
                let adopt = req.kind.outlives_owner();
                tracing::warn!(
                    session = short(sid),
                    slot,
                    adopt,
                    "session owner unreachable; serving here"
                );
                Ok(Route::Here { adopt })
            }
        }
    }

    async fn route_via_redis(
        &self,
        redis: &RedisOwners,
        req: &Inbound<'_>,
        sid: &str,
    ) -> Result<Route, ForwardError> {
        // Owners are answered from memory only while Redis is up: no command
        // has failed, and the forwarding subscription (which drops the moment
        // Redis goes away, before any command fails) is in place.
        let redis_up = redis.reachable() && self.pubsub().is_some_and(|p| p.is_subscribed());
        for attempt in 0..3 {
            let looked = if attempt == 0 && redis_up {
                redis.lookup_remembered(sid).await
            } else {
                redis.forget_owner(sid);
                redis.lookup(sid).await
            };
            let owner = match looked {
                Ok(Some(o)) => o,
                Ok(None) => return Ok(Route::Here { adopt: false }),
                Err(_) => return Err(ForwardError::OwnerUnknown),
            };
            if owner.worker == redis.worker_id {
                self.stage_events(sid).await;
                return Ok(Route::Here { adopt: true });
            }
            if let Some(hb) = &owner.heartbeat {
                let target = match redis.mode {
                    // A GET stream never ends: it cannot be buffered into one message.
                    ForwardMode::PubSub if *req.method != Method::GET => {
                        Metrics::inc(&self.metrics.forwards_pubsub);
                        Target::PubSub(&owner.worker)
                    }
                    _ => {
                        Metrics::inc(&self.metrics.forwards_http);
                        Target::Http(&hb.addr)
                    }
                };
                match self.forward(target, req).await {
                    Ok(resp) => return Ok(Route::Answered(resp)),
                    Err(e @ ForwardError::Lost(_)) if !repeatable(req) => {
                        // Not run again; the session moves here for its
                        // next request (if it can: the request's answer is
                        // the loss either way).
                        redis.forget_owner(sid);
                        Metrics::inc(&self.metrics.forward_failures);
                        tracing::warn!(session = short(sid), owner = owner.worker, error = %e, "not run again");
                        if req.kind.outlives_owner()
                            && matches!(redis.reclaim(sid, &owner.worker).await, Ok(Reclaim::Taken))
                        {
                            Metrics::inc(&self.metrics.reclaims);
                        }
                        return Err(e);
                    }
                    Err(ForwardError::Unreachable | ForwardError::Lost(_)) => {
                        redis.forget_owner(sid);
                        Metrics::inc(&self.metrics.forward_failures);
                        tracing::warn!(
                            session = short(sid),
                            owner = owner.worker,
                            "session owner unreachable; taking the session over"
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
            if !req.kind.outlives_owner() {
                return Ok(Route::Here { adopt: false });
            }
            // The owner is dead: take its session over (only if it still is its owner).
            match redis.reclaim(sid, &owner.worker).await {
                Ok(Reclaim::Taken) => {
                    Metrics::inc(&self.metrics.reclaims);
                    tracing::info!(
                        session = short(sid),
                        dead = owner.worker,
                        "took over the session of a dead owner"
                    );
                    self.stage_events(sid).await;
                    return Ok(Route::Here { adopt: true });
                }
                Ok(Reclaim::Gone) => return Ok(Route::Here { adopt: false }),
                Ok(Reclaim::Other(_)) => continue, // someone else was faster: ask again
                Err(_) => return Err(ForwardError::OwnerUnknown),
            }
        }
        Err(ForwardError::OwnerUnknown)
    }

    /// Loads from Redis what the session's previous owner stored of its SSE
    /// events, for the adoption that follows (its streams go on where they were).
    async fn stage_events(&self, sid: &str) {
        if let Some(events) = self.sessions.redis_events() {
            events.stage(sid).await;
        }
    }
}

/// The requests that may be served again after their owner stopped while
/// serving them: they read, list or ask, and change nothing upstream.
const REPEATABLE: &[&str] = &[
    "ping",
    "tools/list",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "server/discover",
];

/// Whether `req` may run again after its owner stopped mid-way: a GET (a
/// stream: nothing runs), a DELETE (ending a session twice ends it once), a
/// notification or a response (nothing runs), or a request in
/// [`REPEATABLE`]. A batch is not: one of its requests may have run.
fn repeatable(req: &Inbound<'_>) -> bool {
    if *req.method != Method::POST {
        return true;
    }
    if req.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return false;
    }
    match fleetgate_mcp::jsonrpc::request_method(req.body) {
        None => true,
        Some(m) => REPEATABLE.contains(&m.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Kind;
    use crate::gateway::scope::{Principal, Scope};
    use axum::body::Bytes;

    fn may_repeat(method: Method, body: &str) -> bool {
        let (headers, body) = (HeaderMap::new(), Bytes::from(body.to_owned()));
        let (scope, who) = (Scope::All, Principal::anonymous());
        repeatable(&Inbound {
            method: &method,
            kind: &Kind::Mcp,
            scope: &scope,
            principal: &who,
            headers: &headers,
            body: &body,
        })
    }

    #[test]
    fn only_what_changes_nothing_is_served_again() {
        let req = |m: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}"}}"#);
        for m in [
            "ping",
            "tools/list",
            "resources/read",
            "prompts/get",
            "completion/complete",
        ] {
            assert!(may_repeat(Method::POST, &req(m)), "{m}");
        }
        for m in [
            "tools/call",
            "resources/subscribe",
            "logging/setLevel",
            "initialize",
        ] {
            assert!(!may_repeat(Method::POST, &req(m)), "{m}");
        }
        // A batch may hold a call; notifications and responses run nothing.
        assert!(!may_repeat(Method::POST, &format!("[{}]", req("ping"))));
        assert!(may_repeat(
            Method::POST,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#
        ));
        assert!(may_repeat(
            Method::POST,
            r#"{"jsonrpc":"2.0","id":"fleetgate-1","result":{}}"#
        ));
        assert!(may_repeat(Method::GET, ""));
        assert!(may_repeat(Method::DELETE, ""));
    }
}

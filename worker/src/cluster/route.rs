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
                    Err(ForwardError::Unreachable) => {
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

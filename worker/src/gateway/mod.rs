//! The gateway proper: registry snapshot, the one dispatcher, federation to
//! upstream MCP servers, downstream sessions.
//!
//! - [`registry`]: the enabled registry, indexed per scope, reloaded on change.
//! - [`scope`]: [`scope::Principal`] and [`scope::Scope`], the typed context.
//! - [`dispatch`]: the one JSON-RPC dispatcher and its [`dispatch::Context`].
//! - [`federation`]: upstream sessions, per downstream session or pooled.
//! - [`session`]: downstream sessions and the mid-call message relay.
//! - [`events`]: stored SSE events, for clients resuming a stream (`Last-Event-ID`).
//! - [`affinity`]: session ids that name their owner; signed forward envelopes.
//! - [`redis_affinity`]: session ownership and worker heartbeats in Redis.
//! - [`redis_events`]: the sessions' events copied to Redis, for replay after failover.
//! - [`redis_link`]: the pub/sub forward's own lean Redis connections.
//! - [`relay`]: the owner's answer to the client, faithfully (seed 002).
//! - [`error`]: [`error::RpcError`], mapped to wire codes in one place.

pub mod affinity;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod federation;
pub mod redis_affinity;
pub mod redis_events;
pub mod redis_link;
pub mod registry;
pub mod relay;
pub mod scope;
pub mod session;

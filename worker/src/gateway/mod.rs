//! The gateway proper: registry snapshot, the one dispatcher, federation to
//! upstream MCP servers, downstream sessions.
//!
//! - [`registry`]: the enabled registry, indexed per scope, reloaded on change.
//! - [`scope`]: [`scope::Principal`] and [`scope::Scope`], the typed context.
//! - [`dispatch`]: the one JSON-RPC dispatcher and its [`dispatch::Context`].
//! - [`federation`]: upstream sessions, per downstream session or pooled.
//! - [`session`]: downstream sessions and the mid-call client channel.
//! - [`catalog`]: upstream list changes refresh the catalog; sessions hear
//!   of changes to what they see.
//! - [`feed`]: what upstreams tell a 2026-07-28 `subscriptions/listen`
//!   stream (list changes, resource updates).
//! - [`discovery`]: asking an upstream what it offers.
//! - [`mrtr`]: a 2026-07-28 client's call that an `initialize`-era upstream
//!   asks for input, parked until the client's retry brings it.
//! - [`tasks`]: the tasks extension, passed through (task ids name their
//!   gateway).
//! - [`events`]: stored SSE events, for clients resuming a stream (`Last-Event-ID`).
//! - [`error`]: [`error::RpcError`], mapped to wire codes in one place.

pub mod catalog;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod federation;
pub mod feed;
pub mod mrtr;
pub mod registry;
pub mod scope;
pub mod session;
pub mod tasks;

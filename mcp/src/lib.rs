//! fleetgate's MCP wire layer: JSON-RPC 2.0 messages, MCP protocol constants,
//! SSE framing, and the client that talks to upstream MCP servers over
//! Streamable HTTP or the legacy HTTP+SSE transport.
//!
//! # Module map
//! - [`jsonrpc`]: typed JSON-RPC 2.0 messages ([`jsonrpc::Message`],
//!   [`jsonrpc::Request`], [`jsonrpc::Notification`], [`jsonrpc::Response`],
//!   [`jsonrpc::ErrorResponse`], [`jsonrpc::Id`]), a parser for one message or
//!   a batch that never panics and returns typed -32700/-32600 errors, the
//!   error-code constants, and allocation-light serialization helpers.
//! - [`protocol`]: supported protocol versions (2025-03-26, 2025-06-18,
//!   2025-11-25 and the stateless 2026-07-28) and `initialize` negotiation,
//!   header names (`Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`,
//!   `Mcp-Method`, `Mcp-Name`), session-id validation, method names, `_meta`
//!   keys and the `=?base64?…?=` header-value encoding of 2026-07-28. Re-exports
//!   the SSE items.
//! - [`sse`]: SSE encoding (`id:` / `event: message` / `data:`) and an
//!   incremental decoder that accepts bytes cut anywhere; used by both the
//!   server side (encoding) and the upstream client (decoding).
//! - [`client`]: [`UpstreamClient`] / [`UpstreamSession`]: `initialize` (or
//!   `server/discover` for stateless upstreams), requests answered with JSON
//!   or SSE, server → client requests relayed through a
//!   [`ServerMessageHandler`] and answered on the same session, notifications,
//!   `DELETE` on close, paginated discovery of tools/resources/templates/prompts,
//!   and typed [`UpstreamError`]s naming the upstream URL. The same session
//!   type speaks the legacy HTTP+SSE transport of 2024-11-05
//!   ([`UpstreamClient::connect_with_transport`] with [`Transport::Sse`]).
//! - [`legacy`]: that transport's stream reader and dispatch of messages to
//!   the requests waiting for them.
//!
//! The HTTP/1.1 client both transports use is the `fleetgate-http1` crate,
//! known inside this crate as `net` (`crate::net::Client`, …).

pub mod client;
pub mod jsonrpc;
pub mod legacy;
pub mod protocol;
pub mod sse;

pub(crate) use fleetgate_http1 as net;

pub use client::{
    channel_handler, discover, ChannelHandler, Discovered, NoopHandler, RequestOptions,
    ServerMessage, ServerMessageHandler, Transport, UpstreamClient, UpstreamError, UpstreamSession,
};
pub use jsonrpc::{ErrorObject, Id, Message, Notification, Request};

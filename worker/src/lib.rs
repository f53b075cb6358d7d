//! A fleetgate worker: one process, its own tokio runtime, axum on the socket the
//! supervisor handed it.
//!
//! # Layout
//! - [`boot`]: from the inherited fds and env to a running server; the one entry point.
//! - [`control`]: the control pipe to the supervisor (ready, heartbeat, retire) and
//!   the lifeline that ends an orphaned worker.
//! - [`serve`]: the accept loop and the one shutdown path (stop accepting, drain
//!   in-flight requests within `GRACEFUL_TIMEOUT`, then force).
//! - [`endpoint`]: what a request path is, decided once in front of everything.
//! - [`gateway`]: registry, the one dispatcher, federation, sessions.
//! - [`cluster`]: sessions across workers and hosts: ownership, the routing
//!   decision, forwarding over each transport, the owner's side, the relay of
//!   owner answers.
//! - [`http`]: the routes: the auth gate, MCP Streamable HTTP, `/rpc`, REST.
//! - [`wire`]: answers and bodies every layer builds the same way.
//! - [`metrics`]: per-worker counters for `/metrics`.
//! - [`state`]: `AppState`, one `Arc` of the handles every route gets.

pub mod auth;
pub mod boot;
pub mod cluster;
pub mod control;
pub mod endpoint;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod serve;
pub mod state;
pub mod wire;

pub use boot::run;

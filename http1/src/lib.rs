//! fleetgate's HTTP/1.1 client: requests on pooled keep-alive connections,
//! exchanged by the task that asks.
//!
//! Every upstream MCP call and every worker-to-worker forward goes through
//! it. It exists because general-purpose clients (reqwest, hyper's) cost
//! measurably more per request on that path: see `docs/perf.md` and
//! `docs/ARCHITECTURE.md`, difference 12.
//!
//! # What it is
//! - An HTTP/1.1 client: requests go out as HTTP/1.1 with a
//!   `Content-Length`; answers are read with httparse, their bodies framed by
//!   `Content-Length`, chunked, or the close. `http://`, and `https://` with
//!   the `rustls` feature (hyper-rustls's connector does the handshake only).
//! - A keep-alive pool, [`IdleConnections`], keyed by where a connection
//!   leads (an origin, a worker's socket). [`Client`] keeps one per client,
//!   keyed by `scheme://authority`; [`send`] takes any pool, key and way to
//!   open a [`Conn`] on any [`Io`].
//! - No connection task: the caller's task writes the request (head and a
//!   small body in one write) and reads the answer's head; it then reads the
//!   body through [`Response`] as it needs it ([`Response::chunk`],
//!   [`Response::bytes`], or as an `http_body::Body`).
//!
//! # What it is not
//! - Not HTTP/2 and not a server.
//! - No redirects: a 3xx is an answer like any other.
//! - No proxies: `HTTP_PROXY` / `HTTPS_PROXY` are not read.
//! - No streamed request bodies, no compression, no cookies.
//!
//! # Invariants
//! - A connection returns to its pool only when its answer's body was read to
//!   the end, the answer allows keep-alive and nothing unasked-for follows
//!   it. An answer dropped earlier closes its connection, so a cancelled call
//!   never leaves half an answer in front of the next request.
//! - A pooled connection is probed before use without a system call when the
//!   runtime knows it is not readable (the usual case): a peer that closed it
//!   made it readable. A request that got nothing at all back on a pooled
//!   connection is sent once more, on a fresh one; an answer that broke off
//!   is never retried.
//! - Hop-by-hop and framing headers from the caller (`Connection`,
//!   `Content-Length`, `Transfer-Encoding`, `TE`, `Trailer`, `Upgrade`,
//!   `Keep-Alive`, `Proxy-Connection`) are not sent: this crate frames the
//!   request.
//! - An answer decodes the same whichever pieces its bytes arrive in, and its
//!   limits hold whatever the pieces: a head of at most 64 KiB and 100
//!   headers, chunk-size and trailer lines of at most 4 KiB; the body's size
//!   is the caller's limit ([`Response::bytes`]).
//! - Errors are typed: [`Error`] (with [`Malformed`] for an answer that is not
//!   valid HTTP/1.1), [`BodyError`], [`SendError`]. A malformed answer is an
//!   error, never a body.
//!
//! # Layout
//! - `client.rs`: [`Client`], [`RequestBuilder`], URLs, connecting (TCP, TLS).
//! - `send.rs`: [`send`], the exchange on a pooled or fresh connection.
//! - `pool.rs`: [`IdleConnections`].
//! - `conn.rs`: [`Io`], [`Conn`]: reading into its buffer, writing a request
//!   and reading the answer's head.
//! - `head.rs`: [`Request`] on the wire, the answer's head parsed.
//! - `body.rs`: body framing: `Content-Length`, chunked, up to the close.
//! - `response.rs`: [`Response`], its body read as it comes.
//! - `error.rs`: the error types.

mod body;
mod client;
mod conn;
mod error;
mod head;
mod pool;
mod response;
mod send;
#[cfg(test)]
mod testing;

pub use client::{parse_uri, Client, IntoUri, RequestBuilder};
pub use conn::{Conn, Io};
pub use error::{BodyError, Error, Malformed, SendError};
pub use head::{push_decimal, Request};
pub use pool::{IdleConnections, IDLE_TIMEOUT};
pub use response::Response;
pub use send::{send, send_once};

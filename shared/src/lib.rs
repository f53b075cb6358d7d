//! Pieces every fleetgate process needs.
//!
//! # Layout
//! - [`config`]: the typed configuration, loaded from env > `.env` file > default,
//!   with every invalid variable reported at once.
//! - [`contract`]: what the supervisor and its workers agree on: inherited file
//!   descriptors, exit codes, the control-pipe messages, the worker's env.
//! - [`telemetry`]: log formatting (text or JSON, every line tagged with the process
//!   identity) and a log file that can be reopened on `SIGUSR1`.

pub mod config;
pub mod contract;
pub mod telemetry;

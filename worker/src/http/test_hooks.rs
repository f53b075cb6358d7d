//! Test-only routes, compiled only with the `test-hooks` feature (the integration
//! tests build it; release builds never contain these).
//!
//! - `GET /__test/slow?ms=N`: answers after N ms (a request in flight during drain);
//!   `GET /__test/inflight` says how many are in flight, so tests synchronise on
//!   facts instead of sleeping.
//! - env `FLEETGATE_TEST_BOOT_FAIL=reason`: the worker fails to boot with that reason.
//! - `POST /__test/hang`: stops this process with `SIGSTOP`, a real hang: no
//!   heartbeats, no progress, exactly what `WORKER_TIMEOUT` must catch.

use crate::state::AppState;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/__test/slow", get(slow))
        .route("/__test/inflight", get(inflight))
        .route("/__test/hang", post(hang))
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

async fn slow(State(state): State<AppState>, Query(q): Query<Slow>) -> Json<Value> {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(q.ms)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Json(json!({"slept_ms": q.ms, "pid": state.worker.pid}))
}

async fn inflight() -> Json<Value> {
    Json(json!({"in_flight": IN_FLIGHT.load(Ordering::SeqCst)}))
}

async fn hang(State(state): State<AppState>) -> Json<Value> {
    let pid = state.worker.pid;
    // Answer first, then freeze from another thread.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(50));
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    });
    Json(json!({"hanging": pid}))
}

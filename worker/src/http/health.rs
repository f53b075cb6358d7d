//! `GET /health` (liveness) and `GET /ready` (readiness: not while draining).

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "worker_id": state.worker.id,
        "pid": state.worker.pid,
    }))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let draining = state.worker.is_draining();
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({
            "status": if draining { "draining" } else { "ready" },
            "worker_id": state.worker.id,
            "pid": state.worker.pid,
        })),
    )
}

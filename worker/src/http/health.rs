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
        .route("/metrics", get(metrics))
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "worker_id": state.worker.id,
        "pid": state.worker.pid,
    }))
}

/// Ready: not draining, and the database answers within a second.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let draining = state.worker.is_draining();
    let db = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        state.core.registry.store.ping(),
    )
    .await;
    let database = match db {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unavailable: {e}"),
        Err(_) => "unavailable: no answer within 1 s".to_owned(),
    };
    let ok = !draining && database == "ok";
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if draining { "draining" } else if ok { "ready" } else { "degraded" },
            "worker_id": state.worker.id,
            "pid": state.worker.pid,
            "checks": { "database": database },
        })),
    )
}

async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(&state.worker.id),
    )
}

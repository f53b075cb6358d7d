//! `GET /health` (liveness) and `GET /ready` (readiness: not while draining, nor
//! while the database — or, with `REDIS_URL`, Redis — does not answer, nor while
//! another live process claims this worker's identity in Redis).

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
    let mut checks = json!({ "database": database });
    let mut redis_ok = true;
    if let Some(r) = state.cluster.redis() {
        let redis = if r.identity_conflict() {
            format!(
                "identity conflict: another live worker holds the heartbeat of {}",
                r.worker_id
            )
        } else {
            match r.ping().await {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("unavailable: {}", e.0),
            }
        };
        redis_ok = redis == "ok";
        checks["redis"] = json!(redis);
    }
    let ok = !draining && database == "ok" && redis_ok;
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
            "checks": checks,
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

//! `POST /tokens/revoke` (admins): revokes a token id fleet-wide. This worker
//! refuses it at once; the others within `REGISTRY_POLL_INTERVAL` (they poll
//! the database's revocation counter).

use crate::gateway::scope::Principal;
use crate::state::AppState;
use crate::wire::detail;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route("/tokens/revoke", post(revoke))
}

#[derive(Deserialize)]
struct Revoke {
    jti: String,
    reason: Option<String>,
}

async fn revoke(State(st): State<AppState>, who: Principal, body: axum::body::Bytes) -> Response {
    if !who.is_admin() {
        return detail(
            StatusCode::FORBIDDEN,
            "only administrators may revoke tokens",
        );
    }
    let req: Revoke = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("body must be {{\"jti\": \"…\", \"reason\": \"…\"}}: {e}"),
            )
        }
    };
    if req.jti.trim().is_empty() {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "jti: must not be empty");
    }
    let store = &st.core.registry.store;
    match store
        .revoke(&req.jti, who.subject(), req.reason.as_deref())
        .await
    {
        Ok(_) => {
            st.gate.add_revoked([req.jti.clone()]);
            (
                StatusCode::OK,
                Json(json!({"status": "revoked", "jti": req.jti})),
            )
                .into_response()
        }
        Err(e) => detail(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot record the revocation: {e}"),
        ),
    }
}

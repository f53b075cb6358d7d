//! Support for the authentication suite (`tests/tests/integration/security.rs`):
//! the set-up calls of [`crate::gateway`] with an `Authorization` header, and
//! connections whose worker is known.
//!
//! Which worker answered is not always what `x-fleetgate-worker` says: a request
//! forwarded to its session's owner comes back naming the owner. [`pinned`]
//! learns the worker at the other end of a fresh connection from `/health` (an
//! open endpoint, never forwarded) and keeps using that one connection.

use crate::fleet::Fleet;
use crate::gateway::ids;
use serde_json::{json, Value};
use std::time::Duration;

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST /gateways {"name","url","transport"}` as `token`; panics unless it succeeds.
pub async fn register_as(fleet: &Fleet, token: &str, name: &str, url: &str) -> Value {
    let r = reqwest::Client::new()
        .post(fleet.url("/gateways"))
        .header("authorization", bearer(token))
        .json(&json!({"name": name, "url": url, "transport": "STREAMABLEHTTP"}))
        .send()
        .await
        .expect("POST /gateways");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "register {name}: {status} {body}");
    body
}

/// `GET {path}` as `token`, as a JSON array.
pub async fn list_as(fleet: &Fleet, token: &str, path: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(fleet.url(path))
        .header("authorization", bearer(token))
        .send()
        .await
        .expect("GET list");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "GET {path}: {status} {body}");
    body.as_array().cloned().expect("a JSON array")
}

/// `POST /servers {"server": {"id", "name", "associated_tools"}}` as `token`;
/// returns the server's id.
pub async fn create_server_as(
    fleet: &Fleet,
    token: &str,
    id: &str,
    name: &str,
    tools: &[String],
) -> String {
    let r = reqwest::Client::new()
        .post(fleet.url("/servers"))
        .header("authorization", bearer(token))
        .json(&json!({"server": {"id": id, "name": name, "associated_tools": tools}}))
        .send()
        .await
        .expect("POST /servers");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "create server {name}: {status} {body}");
    body["id"].as_str().expect("server id").to_owned()
}

/// The ids of the tools of gateway `gateway_id` whose upstream names are `names`.
pub fn tool_ids(tools: &[Value], gateway_id: &str, names: &[&str]) -> Vec<String> {
    let picked: Vec<Value> = tools
        .iter()
        .filter(|t| {
            t["gatewayId"] == gateway_id
                && names.contains(&t["originalName"].as_str().unwrap_or_default())
        })
        .cloned()
        .collect();
    ids(&picked)
}

/// The pid in an `x-fleetgate-worker` value (`host:pid`).
pub fn worker_pid(header: &str) -> Option<u32> {
    header.rsplit(':').next()?.parse().ok()
}

/// The worker that answered `resp`, by its `x-fleetgate-worker` header.
pub fn answered_by(headers: &reqwest::header::HeaderMap) -> Option<u32> {
    worker_pid(headers.get("x-fleetgate-worker")?.to_str().ok()?)
}

/// A client holding one fresh connection, and the pid of the worker at its
/// other end (from `/health` on that connection).
pub async fn pinned(fleet: &Fleet) -> Option<(reqwest::Client, u32)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(30))
        .build()
        .ok()?;
    let pid = health_pid(&client, fleet).await?;
    Some((client, pid))
}

/// The worker `/health` answers from, on `client`'s connection.
pub async fn health_pid(client: &reqwest::Client, fleet: &Fleet) -> Option<u32> {
    let r = client.get(fleet.url("/health")).send().await.ok()?;
    let v: Value = r.json().await.ok()?;
    v["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

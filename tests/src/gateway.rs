//! REST calls tests make to set the gateway up (ContextForge's shapes).

use crate::fleet::Fleet;
use serde_json::{json, Value};

/// `POST /gateways {"name","url","transport"}`; panics unless it succeeds.
pub async fn register(fleet: &Fleet, name: &str, url: &str) -> Value {
    let r = reqwest::Client::new()
        .post(fleet.url("/gateways"))
        .json(&json!({"name": name, "url": url, "transport": "STREAMABLEHTTP"}))
        .send()
        .await
        .expect("POST /gateways");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "register {name}: {status} {body}");
    body
}

/// `GET {path}` as a JSON array (`/tools?limit=0`, `/resources`, `/prompts`).
pub async fn list(fleet: &Fleet, path: &str) -> Vec<Value> {
    reqwest::get(fleet.url(path))
        .await
        .expect("GET list")
        .json::<Vec<Value>>()
        .await
        .expect("a JSON array")
}

/// The ids of `items`.
pub fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

/// `POST /servers {"server": {...}}`; returns the new id.
pub async fn create_server(
    fleet: &Fleet,
    name: &str,
    tools: &[String],
    resources: &[String],
    prompts: &[String],
) -> String {
    let r = reqwest::Client::new()
        .post(fleet.url("/servers"))
        .json(&json!({"server": {
            "name": name,
            "description": "test",
            "associated_tools": tools,
            "associated_resources": resources,
            "associated_prompts": prompts,
        }}))
        .send()
        .await
        .expect("POST /servers");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "create server {name}: {status} {body}");
    body["id"].as_str().expect("server id").to_owned()
}

/// A virtual server holding everything registered.
pub async fn server_with_everything(fleet: &Fleet, name: &str) -> String {
    let tools = ids(&list(fleet, "/tools?limit=0").await);
    let resources = ids(&list(fleet, "/resources").await);
    let prompts = ids(&list(fleet, "/prompts").await);
    create_server(fleet, name, &tools, &resources, &prompts).await
}

/// Waits (up to 15 s) until `n` distinct workers answer `url` (a virtual
/// server's MCP URL) with something other than "Server not found": every
/// worker polls the registry, so a new server reaches them one by one.
pub async fn known_everywhere(url: &str, n: usize) {
    crate::eventually(
        std::time::Duration::from_secs(15),
        "the server known to every worker",
        || async {
            let client = crate::fresh_client();
            let mut ok = std::collections::BTreeSet::new();
            for _ in 0..(n * 10).max(20) {
                let r = client
                    .delete(url)
                    .header("mcp-session-id", "x")
                    .send()
                    .await
                    .ok()?;
                let w = r
                    .headers()
                    .get("x-fleetgate-worker")?
                    .to_str()
                    .ok()?
                    .to_owned();
                if r.text().await.ok()?.contains("Server not found") {
                    return None;
                }
                ok.insert(w);
            }
            (ok.len() >= n).then_some(())
        },
    )
    .await;
}

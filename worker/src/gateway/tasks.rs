//! The tasks extension (`io.modelcontextprotocol/tasks`), passed through.
//!
//! An upstream that declares the extension may answer a 2026-07-28
//! client's `tools/call` (when that client declared it too: its `_meta`
//! reaches the upstream as it sent it) with a `CreateTaskResult`; the
//! client then names the task in `tasks/get`, `tasks/update` and
//! `tasks/cancel`. fleetgate keeps no task state: the task id a client sees
//! is `{gateway id}:{the upstream's task id}`, so any worker of any host
//! knows where a task lives, and only gateways of the caller's scope are
//! reached that way (the upstream checks its own ids).

use crate::gateway::error::RpcError;
use fleetgate_mcp::jsonrpc;
use fleetgate_mcp::protocol::meta;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The extension's identifier.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// The extension's methods.
pub const METHODS: [&str; 3] = ["tasks/get", "tasks/update", "tasks/cancel"];

/// Whether a request's params declare the extension in their client
/// capabilities.
pub fn declared(params: &Map<String, Value>) -> bool {
    params
        .get("_meta")
        .and_then(|m| m.get(meta::CLIENT_CAPABILITIES))
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(EXTENSION))
        .is_some()
}

/// The gateway and the upstream's task id a client's task id names.
pub fn split(task_id: &str) -> Option<(&str, &str)> {
    task_id
        .split_once(':')
        .filter(|(gw, t)| !gw.is_empty() && !t.is_empty())
}

/// A result whose top-level `taskId` (a `CreateTaskResult`, a task) is
/// the upstream's, with the id the client is to use: `{gateway}:{id}`.
/// Anything else passes as it came.
pub fn name_task(raw: Box<RawValue>, gateway_id: &str) -> Result<Box<RawValue>, RpcError> {
    if !raw.get().contains("\"taskId\"") {
        return Ok(raw);
    }
    let Ok(Value::Object(mut result)) = serde_json::from_str::<Value>(raw.get()) else {
        return Ok(raw);
    };
    let Some(Value::String(id)) = result.get("taskId") else {
        return Ok(raw);
    };
    let named = format!("{gateway_id}:{id}");
    result.insert("taskId".into(), Value::String(named));
    Ok(jsonrpc::raw(&Value::Object(result)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_name_their_gateway_and_come_back_apart() {
        let raw = jsonrpc::raw(
            &serde_json::json!({"resultType": "task", "taskId": "t:1", "status": "working"}),
        );
        let named: Value = serde_json::from_str(name_task(raw, "g1").unwrap().get()).unwrap();
        assert_eq!(named["taskId"], "g1:t:1");
        assert_eq!(split("g1:t:1"), Some(("g1", "t:1")));
        assert_eq!(split(":t"), None);
        assert_eq!(split("g1"), None);
        let plain = jsonrpc::raw(&serde_json::json!({"content": []}));
        assert_eq!(name_task(plain, "g1").unwrap().get(), r#"{"content":[]}"#);
    }
}

//! The tasks extension (`io.modelcontextprotocol/tasks`, 2026-07-28 era):
//! a `tools/call` of a task-supporting tool, from a client that declares
//! the extension on the request, may answer `CreateTaskResult`
//! (`resultType: "task"`) and run on; the client polls `tasks/get`, and may
//! `tasks/cancel`. Tools named after the conformance suite's fixtures:
//!
//! * `greet` — never a task: `Hello, {name}!`.
//! * `slow_compute` — a task (when the client declares the extension and
//!   `seconds` > 0) that sleeps `seconds` (default 1) and answers
//!   `computed {label}`; cancelled while running, it settles `cancelled`.
//!   Without the extension, or with `seconds: 0`, the same result at once.
//! * `failing_job` — a task whose result, after about a second, is a tool
//!   error (`isError`: the task is `completed`, not `failed`); it runs only
//!   as a task (-32021 naming the extension to a client without it).
//! * `protocol_error_job` — a task that fails with a JSON-RPC error
//!   (`failed`, with `error`).
//!
//! `tasks/*` without the extension declared are -32021 naming it; an
//! unknown task id is -32602. A listen stream whose `taskIds` hold a task
//! gets `notifications/tasks` with its state whenever it settles.

use crate::rpc;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// The task-supporting tools (and `greet`), with their descriptions.
pub const TOOLS: &[(&str, &str)] = &[
    ("greet", "Tasks: a synchronous tool (never a task): Hello, {name}!"),
    (
        "slow_compute",
        "Tasks: sleeps `seconds` (default 1) then answers `computed {label}`; a task when the client declares the tasks extension and seconds > 0",
    ),
    (
        "failing_job",
        "Tasks: a task whose result, after about a second, is a tool error",
    ),
    (
        "protocol_error_job",
        "Tasks: a task that fails with a JSON-RPC error",
    ),
];

/// How long a task is kept, and the polling interval suggested.
const TTL_MS: u64 = 60_000;
const POLL_MS: u64 = 100;

#[derive(Clone)]
struct Task {
    status: &'static str,
    created_at: String,
    updated_at: String,
    result: Option<Value>,
    error: Option<Value>,
}

/// The server's tasks, by id.
#[derive(Default)]
pub struct Store {
    tasks: Mutex<HashMap<String, (Task, watch::Sender<bool>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Task, watch::Sender<bool>)>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new working task; its id and the receiver told of cancellation.
    fn create(&self) -> (String, watch::Receiver<bool>) {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("task-{n}-{:x}", now_ms());
        let (tx, rx) = watch::channel(false);
        let now = timestamp();
        let t = Task {
            status: "working",
            created_at: now.clone(),
            updated_at: now,
            result: None,
            error: None,
        };
        self.lock().insert(id.clone(), (t, tx));
        (id, rx)
    }

    /// Settles a working task (a cancelled one stays cancelled); its new
    /// state, if it changed.
    fn settle(
        &self,
        id: &str,
        status: &'static str,
        result: Option<Value>,
        error: Option<Value>,
    ) -> Option<Task> {
        let mut tasks = self.lock();
        let (t, _) = tasks.get_mut(id)?;
        if t.status != "working" {
            return None;
        }
        t.status = status;
        t.result = result;
        t.error = error;
        t.updated_at = timestamp();
        Some(t.clone())
    }

    fn view(&self, id: &str) -> Option<Task> {
        self.lock().get(id).map(|(t, _)| t.clone())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Now as ISO 8601 (UTC, milliseconds).
fn timestamp() -> String {
    let ms = now_ms();
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether the request's client capabilities declare the extension.
pub fn declared(caps: &Value) -> bool {
    caps.get("extensions")
        .and_then(|e| e.get(EXTENSION))
        .is_some()
}

/// The `Task` fields of `t` (with its payload for `detailed`).
fn task_json(id: &str, t: &Task, detailed: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("taskId".into(), json!(id));
    m.insert("status".into(), json!(t.status));
    m.insert("createdAt".into(), json!(t.created_at));
    m.insert("lastUpdatedAt".into(), json!(t.updated_at));
    m.insert("ttlMs".into(), json!(TTL_MS));
    m.insert("pollIntervalMs".into(), json!(POLL_MS));
    if detailed {
        if let Some(r) = &t.result {
            m.insert("result".into(), r.clone());
        }
        if let Some(e) = &t.error {
            m.insert("error".into(), e.clone());
        }
    }
    m
}

fn text(text: &str, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": is_error})
}

/// A `tools/call` of one of [`TOOLS`] (`name` without prefix).
pub async fn call_tool(
    shared: &Arc<crate::state::Shared>,
    id: &Value,
    name: &str,
    params: &Value,
    caps: &Value,
) -> Bytes {
    let args = params
        .get("arguments")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let tasks = declared(caps);
    match name {
        "greet" => {
            let who = args.get("name").and_then(Value::as_str).unwrap_or("World");
            rpc::result_msg(id, &text(&format!("Hello, {who}!"), false))
        }
        "slow_compute" => {
            let seconds = args
                .get("seconds")
                .and_then(Value::as_f64)
                .unwrap_or(1.0)
                .max(0.0);
            let label = args
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let work = Duration::from_secs_f64(seconds.min(600.0));
            if !tasks || seconds == 0.0 {
                tokio::time::sleep(work).await;
                return rpc::result_msg(id, &text(&format!("computed {label}"), false));
            }
            spawn_task(shared, id, work, move || {
                Ok(text(&format!("computed {label}"), false))
            })
        }
        "failing_job" => spawn_task(shared, id, Duration::from_secs(1), || {
            Ok(text("the job failed", true))
        }),
        _ => {
            let fail = || {
                Err(json!({"code": rpc::INTERNAL_ERROR, "message": "protocol_error_job failed"}))
            };
            if !tasks {
                return rpc::error_msg(id, rpc::INTERNAL_ERROR, "protocol_error_job failed", None);
            }
            spawn_task(shared, id, Duration::from_millis(200), fail)
        }
    }
}

/// Creates a task that settles after `work` with what `outcome` says, and
/// answers `CreateTaskResult`.
fn spawn_task(
    shared: &Arc<crate::state::Shared>,
    id: &Value,
    work: Duration,
    outcome: impl FnOnce() -> Result<Value, Value> + Send + 'static,
) -> Bytes {
    let (task_id, mut cancelled) = shared.tasks.create();
    let created = shared
        .tasks
        .view(&task_id)
        .map(|t| task_json(&task_id, &t, false));
    let (s, tid) = (shared.clone(), task_id.clone());
    tokio::spawn(async move {
        let settled = tokio::select! {
            _ = tokio::time::sleep(work) => match outcome() {
                Ok(r) => s.tasks.settle(&tid, "completed", Some(r), None),
                Err(e) => s.tasks.settle(&tid, "failed", None, Some(e)),
            },
            _ = cancelled.wait_for(|c| *c) => None,
        };
        if let Some(t) = settled {
            announce(&s, &tid, &t);
        }
    });
    let mut r = created.unwrap_or_default();
    r.insert("resultType".into(), json!("task"));
    rpc::result_msg(id, &Value::Object(r))
}

/// Tells the listen streams asking for `id` its new state
/// (`notifications/tasks`).
fn announce(shared: &crate::state::Shared, id: &str, t: &Task) {
    let detailed = Value::Object(task_json(id, t, true));
    let _ = shared.list_changes.send(crate::state::ListChange::Task(
        id.into(),
        Arc::new(detailed),
    ));
}

/// `tasks/get`, `tasks/update`, `tasks/cancel` (the extension declared).
pub fn handle(
    shared: &crate::state::Shared,
    id: &Value,
    method: &str,
    params: Option<&Value>,
) -> Bytes {
    let task_id = params.and_then(|p| p.get("taskId")).and_then(Value::as_str);
    let Some((task_id, t)) = task_id.and_then(|t| Some((t, shared.tasks.view(t)?))) else {
        return rpc::error_msg(id, rpc::INVALID_PARAMS, "Unknown taskId", None);
    };
    match method {
        "tasks/get" => {
            let mut r = task_json(task_id, &t, true);
            r.insert("resultType".into(), json!("complete"));
            rpc::result_msg(id, &Value::Object(r))
        }
        "tasks/cancel" => {
            let cancelled = {
                let mut tasks = shared.tasks.lock();
                match tasks.get_mut(task_id) {
                    Some((t, tx)) if t.status == "working" || t.status == "input_required" => {
                        t.status = "cancelled";
                        t.updated_at = timestamp();
                        let _ = tx.send(true);
                        Some(t.clone())
                    }
                    _ => None,
                }
            };
            if let Some(t) = cancelled {
                announce(shared, task_id, &t);
            }
            rpc::result_msg(id, &json!({"resultType": "complete"}))
        }
        // No task of this server asks for input: responses are ignored.
        _ => rpc::result_msg(id, &json!({"resultType": "complete"})),
    }
}

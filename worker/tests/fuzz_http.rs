//! Property test of the HTTP surface, in process (`App::call`, no sockets):
//! arbitrary bodies and headers POSTed to `/mcp` and `/rpc` never panic a worker,
//! and every answer is either a success or a well-formed error with the right
//! status. Bounded: `FLEETGATE_FUZZ_CASES` (default 1500) cases per property.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fleetgate_shared::config::Config;
use fleetgate_worker::control::Control;
use fleetgate_worker::gateway::affinity::Affinity;
use fleetgate_worker::gateway::dispatch::Core;
use fleetgate_worker::gateway::federation::Federation;
use fleetgate_worker::gateway::registry::Registry;
use fleetgate_worker::http::auth::Gate;
use fleetgate_worker::http::App;
use fleetgate_worker::state::{AppState, Shared, WorkerInfo};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn app() -> App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        runtime().block_on(async {
            let dir = std::env::temp_dir().join(format!("fleetgate-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite:{}", dir.join("fuzz.db").display());
            let store = fleetgate_store::connect(Some(&url)).await.unwrap();
            store.migrate().await.unwrap();
            let env = [
                ("MAX_REQUEST_BODY_BYTES", "65536"),
                // The transport and dispatcher are what is fuzzed here.
                ("AUTH_REQUIRED", "false"),
                ("MCP_REQUIRE_AUTH", "false"),
            ];
            let cfg = Config::load(
                &env.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<HashMap<_, _>>(),
            )
            .unwrap();
            let core = Arc::new(Core {
                registry: Arc::new(Registry::load(store).await.unwrap()),
                federation: Federation::new(cfg.gateway.upstream_timeout),
            });
            fleetgate_worker::http::router(AppState::new(Shared {
                worker: Arc::new(WorkerInfo::new(std::process::id(), 0, 0)),
                control: Arc::new(Control::detached()),
                core,
                sessions: Arc::default(),
                gateway_cfg: Arc::new(cfg.gateway),
                affinity: Arc::new(Affinity::new(
                    0,
                    "fuzz-fleet-secret-123",
                    None,
                    Duration::from_secs(1),
                )),
                gate: Arc::new(Gate::new(cfg.auth.clone()).unwrap()),
                metrics: Arc::default(),
                redis: None,
                pubsub: None,
                owner_connections: Arc::new(fleetgate_http1::IdleConnections::new(
                    fleetgate_worker::http::forward::MAX_IDLE_PER_OWNER,
                )),
            }))
        })
    })
    .clone()
}

fn cases() -> u32 {
    std::env::var("FLEETGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

/// POSTs and checks the answer's shape.
fn post(
    path: &str,
    body: Vec<u8>,
    session: Option<&str>,
    version: Option<&str>,
) -> Result<(), TestCaseError> {
    let mut req = Request::post(path)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    if let Some(v) = version {
        req = req.header("mcp-protocol-version", v);
    }
    let req = req.body(Body::from(body)).unwrap();
    let app = app();
    let (status, bytes) = runtime().block_on(async {
        let resp = app.call(req).await;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, bytes)
    });
    prop_assert!(!status.is_server_error(), "{path}: {status} {bytes:?}");
    if status == StatusCode::ACCEPTED || bytes.is_empty() {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{path}: non-JSON answer {status}: {e}")))?;
    let well_formed = match &v {
        Value::Object(o) => {
            o.get("jsonrpc") == Some(&Value::from("2.0"))
                && (o.contains_key("result") ^ o.contains_key("error"))
                || o.contains_key("detail")
        }
        Value::Array(items) => items.iter().all(|i| i.get("jsonrpc").is_some()),
        _ => false,
    };
    prop_assert!(well_formed, "{path}: {status} {v}");
    if status.is_client_error() && status != StatusCode::NOT_FOUND {
        prop_assert!(v.get("error").is_some() || v.get("detail").is_some(), "{v}");
    }
    Ok(())
}

/// JSON values shaped like JSON-RPC messages, with wrong types mixed in.
fn message() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    let json = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let method = prop_oneof![
        Just("initialize"),
        Just("ping"),
        Just("tools/list"),
        Just("tools/call"),
        Just("resources/read"),
        Just("prompts/get"),
        Just("completion/complete"),
        Just("resources/templates/list"),
        Just("logging/setLevel"),
        Just("nope"),
    ];
    (
        prop::option::of(json.clone()),
        method,
        prop::option::of(json.clone()),
        json,
        any::<bool>(),
    )
        .prop_map(|(id, method, params, junk, jsonrpc)| {
            let mut m = serde_json::Map::new();
            m.insert("jsonrpc".into(), if jsonrpc { "2.0".into() } else { junk });
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            m.insert("method".into(), method.into());
            if let Some(p) = params {
                m.insert("params".into(), p);
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_break_a_worker(body in prop::collection::vec(any::<u8>(), 0..512)) {
        post("/mcp", body.clone(), None, None)?;
        post("/rpc", body, None, None)?;
    }

    #[test]
    fn message_shaped_json_gets_a_proper_answer(
        msg in message(),
        batch in any::<bool>(),
        version in prop::option::of(prop_oneof![Just("2025-06-18"), Just("2026-07-28"), Just("bogus")]),
    ) {
        let body = if batch { Value::Array(vec![msg.clone(), msg]) } else { msg };
        let bytes = serde_json::to_vec(&body).unwrap();
        post("/mcp", bytes.clone(), None, version)?;
        post("/mcp", bytes.clone(), Some("unknown-session"), version)?;
        post("/rpc", bytes, None, None)?;
    }
}

//! `subscriptions/listen` (2026-07-28): the answer is an SSE stream that
//! stays open. Its first message is `notifications/subscriptions/acknowledged`
//! with the filter fleetgate honours; then the `list_changed` notices of the
//! kinds the client opted in to, whenever its scope's view changes
//! ([`crate::gateway::catalog`]), and the `notifications/resources/updated`
//! of the `resourceSubscriptions` some gateway of its scope serves
//! ([`crate::gateway::feed`]) and the `notifications/tasks` of its
//! `taskIds` (the tasks extension, declared on the request), each tagged
//! with the subscription id (the request's id). A comment line every [`KEEP_ALIVE`] keeps intermediaries
//! from closing a quiet stream. The client ends it by closing the stream.

use super::run::sse_response;
use crate::gateway::catalog::{Kind, Listen, LISTENERS};
use crate::gateway::feed;
use crate::gateway::scope::{Principal, Scope};
use crate::gateway::tasks;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::response::Response;
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use fleetgate_mcp::protocol::{self, meta, methods};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a quiet listen stream carries a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Notices a stream may have waiting before further ones are dropped.
const BUFFER: usize = 64;

/// The filter keys fleetgate honours, and the kind each opts in to.
const FILTER: [(&str, Kind); 3] = [
    ("toolsListChanged", Kind::Tools),
    ("promptsListChanged", Kind::Prompts),
    ("resourcesListChanged", Kind::Resources),
];

pub(super) fn open(
    st: &AppState,
    scope: Scope,
    principal: &Principal,
    req: fleetgate_mcp::Request,
) -> Response {
    if let Err(denied) = crate::auth::authorize_mcp(&principal.claims, &req.method) {
        let e = ErrorObject::forbidden(denied.to_string());
        return crate::wire::rpc_error(http::StatusCode::FORBIDDEN, &req.id, &e);
    }
    let asked = req
        .params
        .as_ref()
        .and_then(|p| p.get("notifications"))
        .and_then(Value::as_object);
    let mut honoured = Map::new();
    let mut kinds = Vec::new();
    for (key, kind) in FILTER {
        if asked.and_then(|a| a.get(key)).and_then(Value::as_bool) == Some(true) {
            honoured.insert(key.into(), true.into());
            kinds.push(kind);
        }
    }
    // Honoured: the URIs some gateway of the scope serves.
    let uris = match strings(asked, "resourceSubscriptions") {
        None => Default::default(),
        Some(asked_uris) => {
            let uris = feed::resolve(&st.core, &scope, &asked_uris);
            let served: Vec<&String> = uris.values().flatten().collect();
            honoured.insert("resourceSubscriptions".into(), json!(served));
            uris
        }
    };
    // Honoured: the tasks some gateway of the scope runs, as the client
    // named them; asking needs the extension declared.
    let tasks = match strings(asked, "taskIds") {
        None => Default::default(),
        Some(asked_tasks) => {
            let declared = req
                .params
                .as_ref()
                .and_then(Value::as_object)
                .is_some_and(tasks::declared);
            if !declared {
                let e = crate::gateway::error::RpcError::MissingExtension(tasks::EXTENSION);
                return crate::wire::rpc_error(
                    http::StatusCode::BAD_REQUEST,
                    &req.id,
                    &e.to_error_object(),
                );
            }
            let tasks = feed::resolve_tasks(&st.core, &scope, &asked_tasks);
            let named: Vec<String> = tasks
                .iter()
                .flat_map(|(gw, ids)| ids.iter().map(move |t| format!("{gw}:{t}")))
                .collect();
            honoured.insert("taskIds".into(), json!(named));
            tasks
        }
    };
    let subscription = id_value(&req.id);
    let ack = json!({
        "_meta": {meta::SUBSCRIPTION_ID: subscription},
        "notifications": honoured,
    });
    let ack = jsonrpc::encode_notification(methods::SUBSCRIPTIONS_ACKNOWLEDGED, Some(&ack));
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    // Registered before the answer starts: a change from now on is told.
    let list_changes = !kinds.is_empty();
    let wanted = feed::Wanted {
        list_changes,
        uris,
        tasks,
    };
    feed::spawn(
        st.core.clone(),
        scope.clone(),
        wanted,
        subscription.clone(),
        tx.clone(),
    );
    LISTENERS.add(Listen {
        scope,
        kinds,
        subscription,
        since: st.core.registry.snapshot().version,
        tx,
    });
    let first = Bytes::from(protocol::encode_message_event(
        None,
        std::str::from_utf8(&ack).unwrap_or("{}"),
    ));
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
            Ok(Some(m)) => protocol::encode_message_event(None, std::str::from_utf8(&m).ok()?),
            Ok(None) => return None,
            Err(_) => protocol::encode_comment("keep-alive"),
        };
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), rx))
    });
    let body = futures_util::stream::iter([Ok(first)]).chain(rest);
    let mut resp = sse_response(Body::from_stream(body));
    resp.headers_mut().insert(
        http::HeaderName::from_static("x-accel-buffering"),
        http::HeaderValue::from_static("no"),
    );
    resp
}

/// The strings of the filter's array `key`; `None` when the filter has no
/// such key.
fn strings(filter: Option<&Map<String, Value>>, key: &str) -> Option<Vec<String>> {
    let v = filter?.get(key)?;
    let items = v.as_array().map_or(&[][..], Vec::as_slice);
    Some(
        items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    )
}

fn id_value(id: &Id) -> Value {
    match id {
        Id::Number(n) => (*n).into(),
        Id::String(s) => s.clone().into(),
        Id::Null => Value::Null,
    }
}

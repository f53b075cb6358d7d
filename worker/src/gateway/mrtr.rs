//! Input across eras: a 2026-07-28 client's call that an `initialize`-era
//! upstream asks for input mid-call (sampling, elicitation, roots).
//!
//! The 2026-07-28 client cannot be sent a request; it expects an
//! `input_required` result and retries the call with `inputResponses`. The
//! upstream, meanwhile, waits on its open call for the answer. So the call is
//! *parked*: it goes on in a task of the worker that ran it, the client gets
//! `input_required` listing what the upstream asked (each under its own key)
//! and a `requestState` that names the parked call, and the retry — on any
//! worker of any host — is routed to that worker as a session's request is
//! (the parked call is held by a short-lived session, so ownership,
//! forwarding and adoption are the cluster's one way). There, the responses
//! are handed to the waiting upstream requests and the retry is answered
//! with what the call does next: more input asked, or its result.
//!
//! Invariants:
//! - The upstream call runs once. A retry never re-sends it; a retry whose
//!   parked call is gone (finished and answered, timed out, or its worker
//!   restarted) is refused, never run afresh.
//! - `requestState` is [`TOKEN_PREFIX`] + a sealed session id: only this
//!   fleet can mint one, for one scope and principal (checked as any
//!   session's), and it is honoured only on the same method and name.
//! - A parked call lives no longer than the upstream call (the upstream
//!   timeout bounds it); its session goes [`DONE_KEPT`] after the call
//!   ends, answered or not.

use crate::gateway::error::RpcError;
use fleetgate_mcp::jsonrpc::ErrorObject;
use fleetgate_mcp::Request;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a `requestState` minted by fleetgate starts with.
pub const TOKEN_PREFIX: &str = "fleetgate-mrtr:";

/// How long a finished parked call's result waits for the client's retry.
pub const DONE_KEPT: Duration = Duration::from_secs(60);

/// The methods that may answer `input_required` (the spec's "Supported
/// Requests").
pub const MAY_ASK: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

pub type Answer = Result<Value, ErrorObject>;

/// An upstream's request for input, and where its answer goes.
pub struct Ask {
    pub request: Request,
    pub answer: oneshot::Sender<Answer>,
}

/// What a parked call does next.
pub enum Step {
    /// The upstream asks for more input.
    Ask(Ask),
    /// The call ended with this result.
    Done(Result<Box<RawValue>, RpcError>),
}

/// A call waiting for its client's input.
pub struct Parked {
    /// The method and `params.name`/`uri` of the call: a retry must be the
    /// same call.
    pub method: String,
    pub name: Option<String>,
    /// The input requests the upstream waits on: key, `{method, params}`,
    /// where the answer goes.
    waiting: Mutex<Vec<(String, Value, oneshot::Sender<Answer>)>>,
    steps: tokio::sync::Mutex<mpsc::UnboundedReceiver<Step>>,
    /// A result that came behind input requests, for the retry after them.
    ended: Mutex<Option<Result<Box<RawValue>, RpcError>>>,
    next_key: AtomicU64,
}

impl Parked {
    pub fn new(
        method: String,
        name: Option<String>,
        steps: mpsc::UnboundedReceiver<Step>,
    ) -> Parked {
        Parked {
            method,
            name,
            waiting: Mutex::default(),
            steps: tokio::sync::Mutex::new(steps),
            ended: Mutex::default(),
            next_key: AtomicU64::new(1),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<(String, Value, oneshot::Sender<Answer>)>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `ask` until the client answers it.
    pub fn wait_on(&self, ask: Ask) {
        let key = format!("input-{}", self.next_key.fetch_add(1, Ordering::Relaxed));
        let mut asked = Map::new();
        asked.insert("method".into(), Value::String(ask.request.method));
        if let Some(p) = ask.request.params {
            asked.insert("params".into(), p);
        }
        self.waiting().push((key, Value::Object(asked), ask.answer));
    }

    /// The `inputRequests` of what waits now.
    pub fn input_requests(&self) -> Map<String, Value> {
        self.waiting()
            .iter()
            .map(|(k, asked, _)| (k.clone(), asked.clone()))
            .collect()
    }

    /// Hands the client's `responses` to the requests they answer; true if
    /// some request is still unanswered (the client is asked again).
    pub fn answer(&self, responses: &Map<String, Value>) -> bool {
        let mut waiting = self.waiting();
        let mut left = Vec::new();
        for (key, asked, tx) in waiting.drain(..) {
            match responses.get(&key) {
                // The upstream may have given up meanwhile: nothing to do.
                Some(r) => drop(tx.send(Ok(r.clone()))),
                None => left.push((key, asked, tx)),
            }
        }
        *waiting = left;
        !waiting.is_empty()
    }

    /// What the call does next, waiting at most `wait` for it.
    pub async fn next(&self, wait: Duration) -> Next {
        let Ok(mut steps) = tokio::time::timeout(wait, self.steps.lock()).await else {
            return Next::Gone;
        };
        if let Some(done) = self
            .ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Next::Done(done);
        }
        match tokio::time::timeout(wait, steps.recv()).await {
            Ok(Some(Step::Ask(first))) => {
                self.wait_on(first);
                // Requests the upstream sent together are asked together.
                while let Ok(step) = steps.try_recv() {
                    match step {
                        Step::Ask(more) => self.wait_on(more),
                        Step::Done(r) => {
                            *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
                            break;
                        }
                    }
                }
                Next::Input
            }
            Ok(Some(Step::Done(r))) => Next::Done(r),
            Ok(None) | Err(_) => Next::Gone,
        }
    }
}

/// What a parked call did next.
pub enum Next {
    /// It waits for input ([`Parked::input_requests`]).
    Input,
    /// It ended with this result.
    Done(Result<Box<RawValue>, RpcError>),
    /// Its result was taken already, or it did nothing within the wait.
    Gone,
}

/// The session a `requestState` minted by fleetgate names.
pub fn token_session(params: Option<&Value>) -> Option<&str> {
    params?
        .get("requestState")?
        .as_str()?
        .strip_prefix(TOKEN_PREFIX)
}

/// The `requestState` naming the parked call held by session `sid`.
pub fn token(sid: &str) -> String {
    format!("{TOKEN_PREFIX}{sid}")
}

/// The session a raw 2026-07-28 request body's `requestState` names, for
/// routing before the body is parsed (the owner checks it again, parsed).
pub fn routed_session(body: &[u8]) -> Option<&str> {
    let prefix = TOKEN_PREFIX.as_bytes();
    let at = body.windows(prefix.len()).position(|w| w == prefix)?;
    let rest = &body[at + prefix.len()..];
    let end = rest.iter().position(|b| matches!(b, b'"' | b'\\'))?;
    std::str::from_utf8(&rest[..end]).ok()
}

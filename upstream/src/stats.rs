//! Request counters, exposed at `GET /stats` and through [`crate::RunningUpstream::stats`].
//!
//! Counting is lock-free on the hot path: known methods and tools are counted in fixed
//! arrays of atomics; anything else (unknown methods a client invents) goes to a small
//! locked map.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::lock;

/// Every method (request or notification) the server knows by name. The index of a name
/// here is its counter slot.
pub(crate) const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// A point-in-time copy of the counters, as served by `GET /stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Sessions minted by `initialize`.
    pub sessions_initialized: u64,
    /// Sessions ended by an HTTP `DELETE` from the client.
    pub sessions_deleted: u64,
    /// Sessions currently held (initialized and not deleted).
    pub live_sessions: u64,
    /// HTTP `POST /mcp` requests received (whatever their outcome).
    pub post_requests: u64,
    /// HTTP `GET /mcp` requests received (standalone or resumed SSE streams).
    pub get_requests: u64,
    /// HTTP `DELETE /mcp` requests received.
    pub delete_requests: u64,
    /// Stateless (2026-07-28 draft) requests served without a session.
    pub stateless_requests: u64,
    /// JSON-RPC responses the client sent back (answers to sampling / elicitation).
    pub client_responses: u64,
    /// Requests the server sent to the client (sampling/createMessage, elicitation/create).
    pub server_requests: u64,
    /// JSON-RPC messages by method name (requests and notifications), only non-zero ones.
    pub methods: BTreeMap<String, u64>,
    /// `tools/call` count by tool name (as listed, i.e. with any prefix), only non-zero ones.
    pub tools: BTreeMap<String, u64>,
}

impl StatsSnapshot {
    /// Count of JSON-RPC messages with this method (0 if none).
    pub fn method(&self, name: &str) -> u64 {
        self.methods.get(name).copied().unwrap_or(0)
    }

    /// Count of `tools/call` for this tool name (0 if none).
    pub fn tool(&self, name: &str) -> u64 {
        self.tools.get(name).copied().unwrap_or(0)
    }
}

pub(crate) struct Stats {
    pub sessions_initialized: AtomicU64,
    pub sessions_deleted: AtomicU64,
    pub post_requests: AtomicU64,
    pub get_requests: AtomicU64,
    pub delete_requests: AtomicU64,
    pub stateless_requests: AtomicU64,
    pub client_responses: AtomicU64,
    pub server_requests: AtomicU64,
    known: Vec<AtomicU64>,
    other: Mutex<HashMap<String, u64>>,
    tools: Vec<AtomicU64>,
}

impl Stats {
    pub fn new(tool_count: usize) -> Self {
        Self {
            sessions_initialized: AtomicU64::new(0),
            sessions_deleted: AtomicU64::new(0),
            post_requests: AtomicU64::new(0),
            get_requests: AtomicU64::new(0),
            delete_requests: AtomicU64::new(0),
            stateless_requests: AtomicU64::new(0),
            client_responses: AtomicU64::new(0),
            server_requests: AtomicU64::new(0),
            known: KNOWN_METHODS.iter().map(|_| AtomicU64::new(0)).collect(),
            other: Mutex::new(HashMap::new()),
            tools: (0..tool_count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn count_method(&self, method: &str) {
        match KNOWN_METHODS.iter().position(|m| *m == method) {
            Some(i) => {
                self.known[i].fetch_add(1, Relaxed);
            }
            None => {
                let mut other = lock(&self.other);
                // Bound the map: a client inventing names must not grow it forever.
                if other.len() < 1024 || other.contains_key(method) {
                    *other.entry(method.to_owned()).or_insert(0) += 1;
                }
            }
        }
    }

    pub fn count_tool(&self, index: usize) {
        if let Some(c) = self.tools.get(index) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn reset(&self) {
        for c in [
            &self.sessions_initialized,
            &self.sessions_deleted,
            &self.post_requests,
            &self.get_requests,
            &self.delete_requests,
            &self.stateless_requests,
            &self.client_responses,
            &self.server_requests,
        ] {
            c.store(0, Relaxed);
        }
        for c in self.known.iter().chain(self.tools.iter()) {
            c.store(0, Relaxed);
        }
        lock(&self.other).clear();
    }

    pub fn snapshot(&self, live_sessions: usize, tool_names: &[String]) -> StatsSnapshot {
        let mut methods = BTreeMap::new();
        for (name, c) in KNOWN_METHODS.iter().zip(&self.known) {
            let n = c.load(Relaxed);
            if n > 0 {
                methods.insert((*name).to_owned(), n);
            }
        }
        for (name, n) in lock(&self.other).iter() {
            methods.insert(name.clone(), *n);
        }
        let mut tools = BTreeMap::new();
        for (name, c) in tool_names.iter().zip(&self.tools) {
            let n = c.load(Relaxed);
            if n > 0 {
                tools.insert(name.clone(), n);
            }
        }
        StatsSnapshot {
            sessions_initialized: self.sessions_initialized.load(Relaxed),
            sessions_deleted: self.sessions_deleted.load(Relaxed),
            live_sessions: live_sessions as u64,
            post_requests: self.post_requests.load(Relaxed),
            get_requests: self.get_requests.load(Relaxed),
            delete_requests: self.delete_requests.load(Relaxed),
            stateless_requests: self.stateless_requests.load(Relaxed),
            client_responses: self.client_responses.load(Relaxed),
            server_requests: self.server_requests.load(Relaxed),
            methods,
            tools,
        }
    }
}

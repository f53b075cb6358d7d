//! Session ownership in Redis (`REDIS_URL`), with ContextForge's key names.
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `mcpgw:pool_owner:{sid}` | owner worker id (`{host}:{pid}`) | `MCPGATEWAY_SESSION_AFFINITY_TTL`, refreshed on use |
//! | `mcp:session_owner:{sid}` | the session principal's subject | same |
//! | `mcpgw:worker_heartbeat:{worker}` | JSON: internal HTTP address, host, pid, instance | [`HEARTBEAT_TTL`], refreshed at a third of it |
//!
//! Redis is the truth for who owns a session that is not local: one script
//! call returns the owner and its heartbeat. An owner whose heartbeat is gone
//! (or that refuses the connection) is dead, and its session is taken over with
//! an atomic script that succeeds only if the recorded owner is still the dead
//! one. Every command has a short deadline, so a dead Redis never hangs a request.
//!
//! Every command of the worker, pub/sub forwarding's included, goes through
//! one multiplexed connection (the `redis` crate's [`ConnectionManager`],
//! lent out by `RedisOwners::connection`); only the forwarding
//! subscription has a connection of its own (`super::pubsub`).

use crate::metrics::Metrics;
use fleetgate_shared::config::ForwardMode;
use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a worker's heartbeat lives without a refresh: a worker that died
/// without a word is known dead at most this long after its last beat.
pub const HEARTBEAT_TTL: Duration = Duration::from_millis(2000);
/// How long a looked-up owner is used without asking Redis again. No longer
/// than an owner refreshes its own claim (a tenth of the TTL, at least 1 s):
/// a session taken over meanwhile is not served from a stale answer for
/// longer than the old owner would go on serving it anyway.
pub const OWNER_REMEMBERED: Duration = Duration::from_millis(1000);
/// Sessions whose owners are remembered per worker (when full, the expired
/// ones go, or all).
const MAX_REMEMBERED: usize = 4096;
/// Deadline of one Redis command: past it, Redis counts as unavailable.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(800);

pub fn owner_key(sid: &str) -> String {
    format!("mcpgw:pool_owner:{sid}")
}
pub fn principal_key(sid: &str) -> String {
    format!("mcp:session_owner:{sid}")
}
pub const HEARTBEAT_PREFIX: &str = "mcpgw:worker_heartbeat:";
pub fn heartbeat_key(worker: &str) -> String {
    format!("{HEARTBEAT_PREFIX}{worker}")
}
/// The pub/sub channel a worker takes forwarded requests on.
pub fn request_channel(worker: &str) -> String {
    format!("mcpgw:pool_http:{worker}")
}
pub const RESPONSE_PREFIX: &str = "mcpgw:pool_http_response:";

/// What a worker advertises in its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    /// `host:port` of the worker's internal forwarding listener.
    pub addr: String,
    pub host: String,
    pub pid: u32,
    /// Random per process: two processes claiming one id differ here.
    pub instance: String,
}

/// A session's owner as Redis has it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub worker: String,
    /// `None`: no live heartbeat (the owner is dead).
    pub heartbeat: Option<Heartbeat>,
}

/// The outcome of a dead-owner takeover.
#[derive(Debug, PartialEq)]
pub enum Reclaim {
    /// This worker owns the session now.
    Taken,
    /// Someone else took it first: that worker is the owner.
    Other(String),
    /// The session is gone from Redis (released or expired).
    Gone,
}

#[derive(Debug, thiserror::Error)]
#[error("Redis unavailable: {0}")]
pub struct RedisDown(pub String);

const LOOKUP: &str = r"
local o = redis.call('GET', KEYS[1])
if not o then return false end
local hb = redis.call('GET', ARGV[1] .. o)
if not hb then return {o} end
return {o, hb}
";
const CLAIM: &str = r"
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
if ok then return 1 end
return 0
";
/// Refresh on use: ours (or unowned, e.g. after Redis lost its data) is set
/// again; another owner's is left alone and named.
const REFRESH: &str = r"
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] then return o end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return ''
";
const RECLAIM: &str = r"
local o = redis.call('GET', KEYS[1])
if not o then return false end
if o ~= ARGV[1] then return o end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return ''
";
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
";
const BEAT: &str = r"
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";
const UNBEAT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

struct Scripts {
    lookup: Script,
    claim: Script,
    refresh: Script,
    reclaim: Script,
    release: Script,
    beat: Script,
    unbeat: Script,
}

/// A session this worker owns, as far as Redis is concerned.
struct Owned {
    subject: String,
    refreshed: Instant,
}

pub struct RedisOwners {
    /// Opens the pub/sub forward's subscription (a connection of its own).
    client: redis::Client,
    /// Every other command, `PUBLISH` included: one multiplexed connection,
    /// reconnected when it drops. `PUBLISH` needs no connection of its own:
    /// commands are pipelined, so a forward waits on no other's answer.
    conn: ConnectionManager,
    /// Forwards are published here (see [`Self::publisher`]).
    publisher: ConnectionManager,
    pub worker_id: String,
    pub mode: ForwardMode,
    ttl: Duration,
    /// Random per process; also names this worker's answer channels.
    pub instance: String,
    heartbeat: OnceLock<String>,
    /// Another live process claims this worker's identity.
    conflict: AtomicBool,
    /// The last command failed (for logs: say it once per outage).
    down: AtomicBool,
    /// The first heartbeat was set (later `SET NX` successes mean Redis lost it).
    beat_once: AtomicBool,
    owned: Mutex<foldhash::HashMap<String, Owned>>,
    /// Live owners of other workers' sessions, as recently looked up.
    remembered: Mutex<foldhash::HashMap<String, (Owner, Instant)>>,
    scripts: Scripts,
    metrics: Arc<Metrics>,
}

impl RedisOwners {
    pub fn new(
        url: &str,
        worker_id: String,
        mode: ForwardMode,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<RedisOwners, String> {
        let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg.clone())
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        let publisher = ConnectionManager::new_lazy_with_config(client.clone(), cfg)
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        Ok(RedisOwners {
            client,
            conn,
            publisher,
            worker_id,
            mode,
            ttl,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            heartbeat: OnceLock::new(),
            conflict: AtomicBool::new(false),
            down: AtomicBool::new(false),
            beat_once: AtomicBool::new(false),
            owned: Mutex::default(),
            remembered: Mutex::default(),
            scripts: Scripts {
                lookup: Script::new(LOOKUP),
                claim: Script::new(CLAIM),
                refresh: Script::new(REFRESH),
                reclaim: Script::new(RECLAIM),
                release: Script::new(RELEASE),
                beat: Script::new(BEAT),
                unbeat: Script::new(UNBEAT),
            },
            metrics,
        })
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }

    /// The worker's counters.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The client, for connections of their own (the pub/sub subscription).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A handle on the shared (multiplexed) connection, for commands of
    /// other Redis-backed parts (`redis_events`, `pubsub`), run through
    /// [`Self::run`].
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A handle on the connection forwards are published on: a request or
    /// an answer may be megabytes, and must not hold up the ownership
    /// lookups and heartbeats queued on [`Self::connection`].
    pub(crate) fn publisher(&self) -> ConnectionManager {
        self.publisher.clone()
    }

    /// Runs one command with the deadline; failures are counted and logged once
    /// per outage.
    pub(crate) async fn run<T, E, F>(&self, what: &str, fut: F) -> Result<T, RedisDown>
    where
        E: std::fmt::Display,
        F: Future<Output = Result<T, E>>,
    {
        let res = match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisDown(e.to_string())),
            Err(_) => Err(RedisDown(format!(
                "no answer within {} ms",
                COMMAND_TIMEOUT.as_millis()
            ))),
        };
        match &res {
            Ok(_) => {
                if self.down.swap(false, Ordering::AcqRel) {
                    tracing::info!("Redis reachable again");
                }
            }
            Err(e) => {
                Metrics::inc(&self.metrics.redis_errors);
                if !self.down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(error = %e.0, op = what, "Redis unavailable; serving local sessions only");
                }
            }
        }
        res
    }

    /// The owner of `sid` and its heartbeat, in one round trip; `None`: Redis
    /// knows no such session.
    pub async fn lookup(&self, sid: &str) -> Result<Option<Owner>, RedisDown> {
        let mut c = self.conn.clone();
        let mut inv = self.scripts.lookup.key(owner_key(sid));
        inv.arg(HEARTBEAT_PREFIX);
        let v: Option<Vec<String>> = self.run("lookup", inv.invoke_async(&mut c)).await?;
        Ok(v.and_then(|v| {
            let mut it = v.into_iter();
            let worker = it.next()?;
            let heartbeat = it.next().and_then(|h| serde_json::from_str(&h).ok());
            Some(Owner { worker, heartbeat })
        }))
    }

    /// [`Self::lookup`], answered from memory when the same session's live
    /// owner was looked up less than [`OWNER_REMEMBERED`] ago: a forward then
    /// skips a Redis round trip. A remembered owner that turns out dead is
    /// dealt with as a looked-up one would be (the forward fails, the reclaim
    /// compares against Redis); [`Self::forget_owner`] drops it.
    /// Callers use it only while Redis is reachable (see the router).
    pub async fn lookup_remembered(&self, sid: &str) -> Result<Option<Owner>, RedisDown> {
        if let Ok(m) = self.remembered.lock() {
            if let Some((o, at)) = m.get(sid) {
                if at.elapsed() < OWNER_REMEMBERED {
                    return Ok(Some(o.clone()));
                }
            }
        }
        let owner = self.lookup(sid).await?;
        match &owner {
            Some(o) if o.heartbeat.is_some() && o.worker != self.worker_id => {
                if let Ok(mut m) = self.remembered.lock() {
                    if m.len() >= MAX_REMEMBERED {
                        m.retain(|_, (_, at)| at.elapsed() < OWNER_REMEMBERED);
                        if m.len() >= MAX_REMEMBERED {
                            m.clear();
                        }
                    }
                    m.insert(sid.to_owned(), (o.clone(), Instant::now()));
                }
            }
            _ => self.forget_owner(sid),
        }
        Ok(owner)
    }

    /// The last command succeeded (Redis is not known to be down).
    pub fn reachable(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Drops what [`Self::lookup_remembered`] remembers of `sid`'s owner.
    pub fn forget_owner(&self, sid: &str) {
        if let Ok(mut m) = self.remembered.lock() {
            m.remove(sid);
        }
    }

    /// Claims a new session for this worker (at `initialize`).
    pub async fn claim(&self, sid: &str, subject: &str) -> Result<(), RedisDown> {
        self.track(sid, subject);
        let mut c = self.conn.clone();
        let mut inv = self.scripts.claim.key(owner_key(sid));
        inv.key(principal_key(sid))
            .arg(&self.worker_id)
            .arg(self.ttl_secs())
            .arg(subject);
        let _: i64 = self.run("claim", inv.invoke_async(&mut c)).await?;
        Ok(())
    }

    /// Remembers a session this worker owns (claimed or taken over).
    pub fn track(&self, sid: &str, subject: &str) {
        if let Ok(mut m) = self.owned.lock() {
            m.insert(
                sid.to_owned(),
                Owned {
                    subject: subject.to_owned(),
                    refreshed: Instant::now(),
                },
            );
        }
    }

    /// Whether a used session's ownership is due for a refresh (throttled to a
    /// tenth of the TTL); tracks it if it was not.
    pub fn refresh_due(&self, sid: &str, subject: &str) -> bool {
        let every = (self.ttl / 10).max(Duration::from_secs(1));
        let Ok(mut m) = self.owned.lock() else {
            return false;
        };
        match m.get_mut(sid) {
            Some(o) if o.refreshed.elapsed() < every => false,
            Some(o) => {
                o.refreshed = Instant::now();
                true
            }
            None => {
                m.insert(
                    sid.to_owned(),
                    Owned {
                        subject: subject.to_owned(),
                        refreshed: Instant::now(),
                    },
                );
                true
            }
        }
    }

    /// Refreshes ownership of a session used here. `Ok(Some(w))`: Redis says
    /// worker `w` owns it now (this worker was taken for dead).
    pub async fn refresh(&self, sid: &str, subject: &str) -> Result<Option<String>, RedisDown> {
        let mut c = self.conn.clone();
        let mut inv = self.scripts.refresh.key(owner_key(sid));
        inv.key(principal_key(sid))
            .arg(&self.worker_id)
            .arg(self.ttl_secs())
            .arg(subject);
        let other: String = self.run("refresh", inv.invoke_async(&mut c)).await?;
        if other.is_empty() {
            return Ok(None);
        }
        self.forget(sid);
        Ok(Some(other))
    }

    /// Takes over `sid` from `dead`, atomically: only if `dead` still owns it.
    pub async fn reclaim(&self, sid: &str, dead: &str) -> Result<Reclaim, RedisDown> {
        let mut c = self.conn.clone();
        let mut inv = self.scripts.reclaim.key(owner_key(sid));
        inv.key(principal_key(sid))
            .arg(dead)
            .arg(&self.worker_id)
            .arg(self.ttl_secs());
        let v: Option<String> = self.run("reclaim", inv.invoke_async(&mut c)).await?;
        Ok(match v {
            None => Reclaim::Gone,
            Some(s) if s.is_empty() => Reclaim::Taken,
            Some(s) if s == self.worker_id => Reclaim::Taken,
            Some(s) => Reclaim::Other(s),
        })
    }

    /// Releases a session this worker owned (DELETE).
    pub async fn release(&self, sid: &str) -> Result<(), RedisDown> {
        self.forget(sid);
        let mut c = self.conn.clone();
        let mut inv = self.scripts.release.key(owner_key(sid));
        inv.key(principal_key(sid)).arg(&self.worker_id);
        let _: i64 = self.run("release", inv.invoke_async(&mut c)).await?;
        Ok(())
    }

    fn forget(&self, sid: &str) {
        if let Ok(mut m) = self.owned.lock() {
            m.remove(sid);
        }
    }

    /// Redis answers (for `/ready`).
    pub async fn ping(&self) -> Result<(), RedisDown> {
        let mut c = self.conn.clone();
        let _: String = self
            .run("ping", redis::cmd("PING").query_async(&mut c))
            .await?;
        Ok(())
    }

    /// Another live worker claims this worker's identity.
    pub fn identity_conflict(&self) -> bool {
        self.conflict.load(Ordering::Acquire)
    }

    /// Sets what the heartbeat advertises (once, at boot).
    pub fn set_heartbeat(&self, hb: &Heartbeat) {
        let _ = self
            .heartbeat
            .set(serde_json::to_string(hb).unwrap_or_default());
    }

    /// One heartbeat. The first is `SET NX` (two processes can never share an
    /// identity); later ones refresh it only while it is still ours. A `SET NX`
    /// that succeeds again means Redis lost its data (restarted): the sessions
    /// this worker owns are claimed again.
    pub async fn beat(&self) -> Result<(), RedisDown> {
        let Some(value) = self.heartbeat.get() else {
            return Ok(());
        };
        let key = heartbeat_key(&self.worker_id);
        let ttl_ms = HEARTBEAT_TTL.as_millis() as u64;
        let mut c = self.conn.clone();
        let set: Option<String> = self
            .run(
                "heartbeat",
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut c),
            )
            .await?;
        if set.is_some() {
            self.conflict.store(false, Ordering::Release);
            if self.beat_once.swap(true, Ordering::AcqRel) {
                self.claim_all_again().await;
            }
            return Ok(());
        }
        let mut inv = self.scripts.beat.key(&key);
        inv.arg(value).arg(ttl_ms);
        let ours: i64 = self.run("heartbeat", inv.invoke_async(&mut c)).await?;
        let conflict = ours == 0;
        if conflict && !self.conflict.swap(true, Ordering::AcqRel) {
            tracing::error!(
                key,
                "another live process holds this worker's heartbeat: identity conflict, not ready"
            );
        } else if !conflict {
            self.conflict.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Removes this worker's heartbeat (on drain), so its sessions move at once.
    pub async fn unbeat(&self) {
        let Some(value) = self.heartbeat.get() else {
            return;
        };
        let mut c = self.conn.clone();
        let mut inv = self.scripts.unbeat.key(heartbeat_key(&self.worker_id));
        inv.arg(value);
        let _: Result<i64, _> = self.run("heartbeat", inv.invoke_async(&mut c)).await;
    }

    /// After Redis lost its data: every session owned here is claimed again.
    async fn claim_all_again(&self) {
        let owned: Vec<(String, String)> = match self.owned.lock() {
            Ok(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.subject.clone()))
                .collect(),
            Err(_) => return,
        };
        if owned.is_empty() {
            return;
        }
        tracing::info!(
            sessions = owned.len(),
            "Redis lost its state; claiming this worker's sessions again"
        );
        for (sid, subject) in owned {
            if self.refresh(&sid, &subject).await.is_err() {
                return;
            }
        }
    }
}

/// The first characters of a session id, for logs.
pub fn short(sid: &str) -> &str {
    let end = sid.char_indices().nth(12).map_or(sid.len(), |(i, _)| i);
    &sid[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contextforge_key_names() {
        assert_eq!(owner_key("s1"), "mcpgw:pool_owner:s1");
        assert_eq!(principal_key("s1"), "mcp:session_owner:s1");
        assert_eq!(heartbeat_key("h:42"), "mcpgw:worker_heartbeat:h:42");
        assert_eq!(request_channel("h:42"), "mcpgw:pool_http:h:42");
        assert!(RESPONSE_PREFIX.starts_with("mcpgw:pool_http_response:"));
        assert_eq!(short("0_0123456789abcdef"), "0_0123456789");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn heartbeats_round_trip() {
        let hb = Heartbeat {
            addr: "127.0.0.1:4000".into(),
            host: "h".into(),
            pid: 42,
            instance: "i".into(),
        };
        let s = serde_json::to_string(&hb).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Heartbeat>(&s).ok(), Some(hb));
    }
}

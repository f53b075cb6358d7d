//! A Redis copy of the sessions' SSE events (`REDIS_URL`), so the worker that
//! takes a session over after its owner died can still replay what the
//! client missed (`Last-Event-ID`, see [`events`]).
//!
//! Keys follow ContextForge's `RedisEventStore` (its stream id is ours
//! `{sid}:{stream}`, the stream `g` or `p{n}`):
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `mcpgw:eventstore:{sid}:{stream}:meta` | hash: `next_seq` (the last seq stored), `start_seq`, `count`, `done` (`1`: complete) | `STREAMABLE_HTTP_EVENT_TTL`, refreshed on write |
//! | `mcpgw:eventstore:{sid}:{stream}:events` | sorted set: event ids `{stream}_{seq}` scored by seq, trimmed to `STREAMABLE_HTTP_MAX_EVENTS_PER_STREAM` | same |
//! | `mcpgw:eventstore:{sid}:{stream}:messages` | hash: event id → JSON-RPC message | same |
//! | `mcpgw:eventstore:{sid}:streams` | hash: stream → its last seq (fleetgate's own: a session's streams, for adoption and DELETE) | same |
//!
//! ContextForge also keeps `…:event_index:{event_id}` because its event ids
//! are random; ours name their stream and sequence, so no index is needed.
//!
//! Writes are behind: the owner stores an event in memory and queues a copy;
//! one task per worker drains the queue in order, one pipeline per batch, so
//! an SSE stream never waits for Redis and each stream's copies land in
//! order. A full queue (Redis slow or down) drops copies, counted as
//! `event_copies_dropped` on `/metrics`; memory keeps them.
//! Reads happen only around adoption: [`RedisEvents::stage`] loads all of a
//! session's streams before the adopted session is created (so its new
//! streams continue the old numbering instead of overwriting it), and
//! [`RedisEvents::load_missing`] fetches the one stream a resuming `GET`
//! names when memory lacks it. Every command has the affinity's deadline:
//! Redis down means memory only, never a hang.

use super::redis_owners::{short, RedisDown, RedisOwners};
use crate::gateway::events::{self, EventSink, EventStore, Imported};
use crate::metrics::Metrics;
use bytes::Bytes;
use redis::{AsyncCommands, Script, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, error::TrySendError};

const PREFIX: &str = "mcpgw:eventstore:";
/// Copies waiting to be written; past this, new ones are dropped.
const QUEUE: usize = 16_384;
/// Copies written per pipeline.
const BATCH: usize = 256;
/// How long events loaded for an adoption wait for the session to be created.
const STAGED_FOR: Duration = Duration::from_secs(30);

/// `mcpgw:eventstore:{sid}:{stream}:{part}` (`meta`, `events`, `messages`).
pub fn stream_key(sid: &str, stream: &str, part: &str) -> String {
    format!("{PREFIX}{sid}:{stream}:{part}")
}
/// `mcpgw:eventstore:{sid}:streams`.
pub fn streams_key(sid: &str) -> String {
    format!("{PREFIX}{sid}:streams")
}

/// Stores one event, trims the stream, refreshes the TTLs (as ContextForge's
/// store script, with the owner's sequence number instead of a counter).
/// KEYS: meta, events, messages, streams. ARGV: id, json, seq, ttl, max, stream.
const APPEND: &str = r"
local seq = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('HDEL', KEYS[3], unpack(old))
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('HSET', KEYS[1], 'next_seq', seq, 'count', redis.call('ZCARD', KEYS[2]), 'start_seq', first[2])
redis.call('HSET', KEYS[4], ARGV[6], seq)
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return seq
";
/// Deletes every key of a session. KEYS: streams. ARGV: `mcpgw:eventstore:{sid}:`.
const DROP: &str = r"
local names = redis.call('HKEYS', KEYS[1])
for _, n in ipairs(names) do
  local b = ARGV[1] .. n
  redis.call('DEL', b .. ':meta', b .. ':events', b .. ':messages')
end
redis.call('DEL', KEYS[1])
return #names
";

/// One queued write.
enum Op {
    Append {
        sid: Arc<str>,
        stream: String,
        seq: u64,
        json: Bytes,
        max: usize,
        ttl: u64,
    },
    Finish {
        sid: Arc<str>,
        stream: String,
        ttl: u64,
    },
    Drop {
        sid: String,
    },
}

/// The worker's Redis event store: the write-behind queue and the readers.
pub struct RedisEvents {
    redis: Arc<RedisOwners>,
    queue: mpsc::Sender<Op>,
    /// Sessions loaded for an adoption, until `Sessions::create` takes them.
    staged: Mutex<HashMap<String, (Instant, Vec<Imported>)>>,
    /// The queue was full (for logs: say it once per episode).
    full: AtomicBool,
}

impl RedisEvents {
    /// The worker's store, its writer task started (call it in the runtime).
    pub fn start(redis: Arc<RedisOwners>) -> Arc<RedisEvents> {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_behind(redis.clone(), rx));
        Arc::new(RedisEvents {
            redis,
            queue,
            staged: Mutex::default(),
            full: AtomicBool::new(false),
        })
    }

    fn send(&self, op: Op) {
        match self.queue.try_send(op) {
            Ok(()) => {
                if self.full.swap(false, Ordering::AcqRel) {
                    tracing::info!("Redis event copies flow again");
                }
            }
            Err(TrySendError::Full(op)) => {
                if matches!(op, Op::Append { .. }) {
                    Metrics::inc(&self.redis.metrics().event_copies_dropped);
                }
                if !self.full.swap(true, Ordering::AcqRel) {
                    tracing::warn!("Redis event copy queue full: dropping copies (the owner's memory keeps the events)");
                }
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// The sink a session's store copies its events into.
    pub fn sink(self: &Arc<Self>, sid: &str, max: usize, ttl: Duration) -> Arc<dyn EventSink> {
        Arc::new(Sink {
            sid: Arc::from(sid),
            max: max.max(1),
            ttl: ttl.as_secs().max(1),
            events: self.clone(),
        })
    }

    /// Deletes the session's events (DELETE), after the copies queued before.
    pub fn drop_session(&self, sid: &str) {
        self.send(Op::Drop {
            sid: sid.to_owned(),
        });
    }

    /// Loads the streams of `sid`, about to be adopted here, for
    /// [`Self::take_staged`].
    pub async fn stage(&self, sid: &str) {
        match self.load_session(sid).await {
            Ok(streams) if !streams.is_empty() => {
                tracing::debug!(
                    session = short(sid),
                    streams = streams.len(),
                    "loaded the session's events from Redis"
                );
                let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
                staged.retain(|_, (at, _)| at.elapsed() < STAGED_FOR);
                staged.insert(sid.to_owned(), (Instant::now(), streams));
            }
            Ok(_) | Err(_) => {}
        }
    }

    /// The streams [`Self::stage`] loaded for `sid` (empty: none).
    pub fn take_staged(&self, sid: &str) -> Vec<Imported> {
        let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        if staged.is_empty() {
            return Vec::new();
        }
        staged.retain(|_, (at, _)| at.elapsed() < STAGED_FOR);
        staged.remove(sid).map(|(_, s)| s).unwrap_or_default()
    }

    /// Brings `stream` of `sid` from Redis into `store` if the store lacks it.
    pub async fn load_missing(&self, sid: &str, store: &EventStore, stream: &str) {
        if store.knows(stream) || !events::is_stream_name(stream) {
            return;
        }
        if let Ok(Some(s)) = self.load_stream(sid, stream).await {
            tracing::debug!(
                session = short(sid),
                stream,
                events = s.events.len(),
                "loaded a stream from Redis"
            );
            store.import(s);
        }
    }

    async fn load_stream(&self, sid: &str, stream: &str) -> Result<Option<Imported>, RedisDown> {
        let mut c = self.redis.connection();
        let mut pipe = redis::pipe();
        pipe.hget(streams_key(sid), stream)
            .hget(stream_key(sid, stream, "meta"), "done")
            .hgetall(stream_key(sid, stream, "messages"));
        type Loaded = (Option<u64>, Option<String>, HashMap<String, Vec<u8>>);
        let (last, done, messages): Loaded = self
            .redis
            .run("event load", pipe.query_async(&mut c))
            .await?;
        Ok(imported(
            stream,
            last,
            done.as_deref() == Some("1"),
            messages,
        ))
    }

    async fn load_session(&self, sid: &str) -> Result<Vec<Imported>, RedisDown> {
        let mut c = self.redis.connection();
        let names: HashMap<String, u64> = self
            .redis
            .run("event load", c.hgetall(streams_key(sid)))
            .await?;
        let names: Vec<(String, u64)> = names
            .into_iter()
            .filter(|(n, _)| events::is_stream_name(n))
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (n, _) in &names {
            pipe.hget(stream_key(sid, n, "meta"), "done")
                .hgetall(stream_key(sid, n, "messages"));
        }
        let values: Vec<Value> = self
            .redis
            .run("event load", pipe.query_async(&mut c))
            .await?;
        let mut values = values.into_iter();
        let mut out = Vec::with_capacity(names.len());
        for (name, last) in names {
            let done: Option<String> = values
                .next()
                .and_then(|v| redis::from_redis_value(v).ok())
                .flatten();
            let messages: HashMap<String, Vec<u8>> = values
                .next()
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or_default();
            out.extend(imported(
                &name,
                Some(last),
                done.as_deref() == Some("1"),
                messages,
            ));
        }
        Ok(out)
    }
}

/// A stream as Redis had it; `None`: Redis knows nothing of it.
fn imported(
    stream: &str,
    last: Option<u64>,
    done: bool,
    messages: HashMap<String, Vec<u8>>,
) -> Option<Imported> {
    let mut events: Vec<(u64, Bytes)> = messages
        .into_iter()
        .filter_map(|(id, json)| {
            let (s, seq) = events::parse_id(&id)?;
            (s == stream).then(|| (seq, Bytes::from(json)))
        })
        .collect();
    if last.is_none() && events.is_empty() {
        return None;
    }
    events.sort_unstable_by_key(|e| e.0);
    Some(Imported {
        stream: stream.to_owned(),
        last_seq: last.unwrap_or(0).max(events.last().map_or(0, |e| e.0)),
        done,
        events,
    })
}

/// One session's copies, queued for the writer.
struct Sink {
    sid: Arc<str>,
    max: usize,
    ttl: u64,
    events: Arc<RedisEvents>,
}

impl EventSink for Sink {
    fn appended(&self, stream: &str, seq: u64, json: &Bytes) {
        self.events.send(Op::Append {
            sid: self.sid.clone(),
            stream: stream.to_owned(),
            seq,
            json: json.clone(),
            max: self.max,
            ttl: self.ttl,
        });
    }

    fn finished(&self, stream: &str) {
        self.events.send(Op::Finish {
            sid: self.sid.clone(),
            stream: stream.to_owned(),
            ttl: self.ttl,
        });
    }
}

/// The writer: drains the queue in order, a pipeline per batch. A failed
/// batch is retried once after loading the scripts again (Redis may have
/// restarted and forgotten them; every write is idempotent), then dropped.
async fn write_behind(redis: Arc<RedisOwners>, mut rx: mpsc::Receiver<Op>) {
    let (append, drop_all) = (Script::new(APPEND), Script::new(DROP));
    let mut loaded = false;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut written = false;
        for _ in 0..2 {
            let mut c = redis.connection();
            if !loaded {
                let load = async {
                    append.load_async(&mut c).await?;
                    drop_all.load_async(&mut c).await
                };
                loaded = redis.run("event scripts", load).await.is_ok();
                if !loaded {
                    break;
                }
            }
            let pipe = pipeline(&batch, &append, &drop_all);
            match redis
                .run("event copy", pipe.query_async::<()>(&mut c))
                .await
            {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(_) => loaded = false,
            }
        }
        if !written {
            let events = batch
                .iter()
                .filter(|op| matches!(op, Op::Append { .. }))
                .count();
            Metrics::add(&redis.metrics().event_copies_dropped, events as u64);
        }
        batch.clear();
    }
}

fn pipeline(batch: &[Op], append: &Script, drop_all: &Script) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for op in batch {
        match op {
            Op::Append {
                sid,
                stream,
                seq,
                json,
                max,
                ttl,
            } => {
                let mut inv = append.key(stream_key(sid, stream, "meta"));
                inv.key(stream_key(sid, stream, "events"))
                    .key(stream_key(sid, stream, "messages"))
                    .key(streams_key(sid))
                    .arg(format!("{stream}_{seq}"))
                    .arg(json.as_ref())
                    .arg(*seq)
                    .arg(*ttl)
                    .arg(*max)
                    .arg(stream.as_str());
                pipe.invoke_script(&inv).ignore();
            }
            Op::Finish { sid, stream, ttl } => {
                let meta = stream_key(sid, stream, "meta");
                pipe.hset(&meta, "done", 1)
                    .ignore()
                    .expire(&meta, i64::try_from(*ttl).unwrap_or(i64::MAX))
                    .ignore();
            }
            Op::Drop { sid } => {
                let mut inv = drop_all.key(streams_key(sid));
                inv.arg(format!("{PREFIX}{sid}:"));
                pipe.invoke_script(&inv).ignore();
            }
        }
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contextforge_key_layout() {
        assert_eq!(
            stream_key("s1", "p2", "meta"),
            "mcpgw:eventstore:s1:p2:meta"
        );
        assert_eq!(
            stream_key("s1", "g", "messages"),
            "mcpgw:eventstore:s1:g:messages"
        );
        assert_eq!(streams_key("s1"), "mcpgw:eventstore:s1:streams");
    }

    #[test]
    fn a_stream_from_redis_is_in_order_and_its_own() {
        let messages = HashMap::from([
            ("p1_3".to_owned(), b"c".to_vec()),
            ("p1_2".to_owned(), b"b".to_vec()),
            ("p2_9".to_owned(), b"other".to_vec()),
            ("junk".to_owned(), b"x".to_vec()),
        ]);
        let s = imported("p1", Some(3), true, messages).unwrap();
        assert_eq!(s.stream, "p1");
        assert_eq!(s.last_seq, 3);
        assert!(s.done);
        assert_eq!(
            s.events,
            vec![(2, Bytes::from_static(b"b")), (3, Bytes::from_static(b"c"))]
        );
        assert_eq!(imported("p7", None, false, HashMap::new()), None);
        // Trimmed away but known: its numbering still counts.
        assert_eq!(
            imported("g", Some(5), false, HashMap::new()).map(|s| s.last_seq),
            Some(5)
        );
    }
}

//! Resumability of fleetgate's own SSE streams (MCP Streamable HTTP
//! "Resumability and Redelivery").
//!
//! Every event fleetgate sends on an SSE stream gets an id `{stream}_{seq}`:
//! `g` is the session's standalone GET stream, `p{n}` the n-th POST answer
//! that turned into an SSE stream. The ids are unique within a session. Each
//! session (on its owner: requests for a session always reach it) keeps the
//! last `STREAMABLE_HTTP_MAX_EVENTS_PER_STREAM` events of each stream for
//! `STREAMABLE_HTTP_EVENT_TTL`; a client reconnecting with `GET` and
//! `Last-Event-ID` gets the events after that id, then whatever the stream
//! still carries.
//!
//! A POST stream is written by the call's own task, not by the HTTP
//! connection: a client that disconnects mid-call does not cancel the call,
//! and its remaining events (the response last) wait in the store.
//!
//! With Redis (fleets), a store also hands every event to an [`EventSink`]
//! (`redis_events`: a write-behind copy in Redis), and a worker that adopts a
//! session after its owner died [`EventStore::import`]s the copies, so the
//! client's `Last-Event-ID` still finds its stream and new ids continue the
//! old numbering.

use bytes::Bytes;
use fleetgate_mcp::sse;
use futures_util::Stream;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The standalone GET stream's name.
pub const GET_STREAM: &str = "g";

/// Default `STREAMABLE_HTTP_MAX_EVENTS_PER_STREAM`.
pub const DEFAULT_MAX_EVENTS: usize = 100;
/// Default `STREAMABLE_HTTP_EVENT_TTL`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

struct Stored {
    seq: u64,
    at: Instant,
    json: Bytes,
}

struct Log {
    events: VecDeque<Stored>,
    next_seq: u64,
    done: bool,
    touched: Instant,
    notify: Arc<Notify>,
}

impl Log {
    fn new() -> Log {
        Log {
            events: VecDeque::new(),
            next_seq: 1,
            done: false,
            touched: Instant::now(),
            notify: Arc::new(Notify::new()),
        }
    }
}

#[derive(Default)]
struct Inner {
    streams: HashMap<String, Log>,
    next_post: u64,
    sink: Option<Arc<dyn EventSink>>,
}

/// Where a store copies its events as they are stored (with Redis: a queue
/// written behind to Redis). Called under the store's lock, so the copies of
/// a stream arrive in order; it must not block.
pub trait EventSink: Send + Sync {
    /// `json` was stored as event `seq` of `stream`.
    fn appended(&self, stream: &str, seq: u64, json: &Bytes);
    /// `stream` is complete.
    fn finished(&self, stream: &str);
}

/// A stream stored elsewhere (Redis), brought into a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub stream: String,
    /// The last sequence number the stream used (new events follow it).
    pub last_seq: u64,
    pub done: bool,
    /// `(seq, json)`, in order.
    pub events: Vec<(u64, Bytes)>,
}

/// One session's stored events.
pub struct EventStore {
    max: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl Default for EventStore {
    fn default() -> Self {
        EventStore::new(DEFAULT_MAX_EVENTS, DEFAULT_TTL)
    }
}

/// Splits an event id into its stream and sequence number.
pub fn parse_id(id: &str) -> Option<(&str, u64)> {
    let (stream, seq) = id.trim().rsplit_once('_')?;
    is_stream_name(stream).then_some(())?;
    Some((stream, seq.parse().ok()?))
}

/// `g`, or `p{n}`.
pub fn is_stream_name(stream: &str) -> bool {
    stream == GET_STREAM || post_number(stream).is_some()
}

/// `n` of the POST stream `p{n}`.
fn post_number(stream: &str) -> Option<u64> {
    let n = stream.strip_prefix('p')?;
    n.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    n.parse().ok()
}

fn event_id(stream: &str, seq: u64) -> String {
    format!("{stream}_{seq}")
}

/// One SSE `message` event carrying `json`, with its id.
pub fn encode(id: &str, json: &[u8]) -> Bytes {
    Bytes::from(sse::encode_message_event(
        Some(id),
        std::str::from_utf8(json).unwrap_or("{}"),
    ))
}

impl EventStore {
    /// A store keeping at most `max` events per stream (at least 1), each for `ttl`.
    pub fn new(max: usize, ttl: Duration) -> EventStore {
        EventStore {
            max: max.max(1),
            ttl,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops expired events, and streams that ended (or went quiet) a TTL ago.
    fn purge(&self, inner: &mut Inner, now: Instant) {
        let ttl = self.ttl;
        inner.streams.retain(|name, log| {
            while log
                .events
                .front()
                .is_some_and(|e| now.duration_since(e.at) > ttl)
            {
                log.events.pop_front();
            }
            name == GET_STREAM || now.duration_since(log.touched) <= ttl
        });
    }

    /// Names a new POST stream.
    pub fn open_post_stream(&self) -> String {
        let mut inner = self.lock();
        inner.next_post += 1;
        let name = format!("p{}", inner.next_post);
        inner.streams.insert(name.clone(), Log::new());
        name
    }

    /// Copies every event stored from now on to `sink`.
    pub fn mirror_to(&self, sink: Arc<dyn EventSink>) {
        self.lock().sink = Some(sink);
    }

    /// Stops copying (the session ended here, or moved to another worker).
    pub fn stop_mirroring(&self) {
        self.lock().sink = None;
    }

    /// Stores `json` as the next event of `stream`; its id.
    pub fn append(&self, stream: &str, json: Bytes) -> String {
        let now = Instant::now();
        let mut guard = self.lock();
        self.purge(&mut guard, now);
        let inner = &mut *guard;
        let log = inner
            .streams
            .entry(stream.to_owned())
            .or_insert_with(Log::new);
        let seq = log.next_seq;
        log.next_seq += 1;
        log.touched = now;
        if let Some(sink) = &inner.sink {
            sink.appended(stream, seq, &json);
        }
        log.events.push_back(Stored { seq, at: now, json });
        while log.events.len() > self.max {
            log.events.pop_front();
        }
        log.notify.notify_waiters();
        event_id(stream, seq)
    }

    /// Marks `stream` complete: followers end after its last event.
    pub fn finish(&self, stream: &str) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some(log) = inner.streams.get_mut(stream) {
            log.done = true;
            log.touched = Instant::now();
            log.notify.notify_waiters();
            if let Some(sink) = &inner.sink {
                sink.finished(stream);
            }
        }
    }

    /// Brings in a stream a previous owner of the session stored (not copied
    /// to the sink: it came from there). A stream this store already has is
    /// left alone. An imported POST stream is complete (the call that wrote it
    /// ran on the previous owner), and later POST streams are numbered after
    /// it; new events of an imported GET stream follow its last id.
    pub fn import(&self, mut s: Imported) {
        if !is_stream_name(&s.stream) {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        self.purge(&mut inner, now);
        if let Some(n) = post_number(&s.stream) {
            inner.next_post = inner.next_post.max(n);
            s.done = true;
        }
        if inner.streams.contains_key(&s.stream) {
            return;
        }
        s.events.sort_unstable_by_key(|e| e.0);
        let skip = s.events.len().saturating_sub(self.max);
        let mut log = Log::new();
        log.next_seq = s.last_seq.max(s.events.last().map_or(0, |e| e.0)) + 1;
        log.done = s.done;
        log.events = s
            .events
            .into_iter()
            .skip(skip)
            .map(|(seq, json)| Stored { seq, at: now, json })
            .collect();
        inner.streams.insert(s.stream, log);
    }

    /// Does this store know the stream `stream` (not expired)?
    pub fn knows(&self, stream: &str) -> bool {
        let mut inner = self.lock();
        self.purge(&mut inner, Instant::now());
        inner.streams.contains_key(stream)
    }

    /// The stored events of `stream` after `seq` (`(seq, json)`), and whether
    /// the stream is complete; `None`: unknown stream.
    pub fn after(&self, stream: &str, seq: u64) -> Option<(Vec<(u64, Bytes)>, bool)> {
        let mut inner = self.lock();
        self.purge(&mut inner, Instant::now());
        let log = inner.streams.get(stream)?;
        let events = log
            .events
            .iter()
            .filter(|e| e.seq > seq)
            .map(|e| (e.seq, e.json.clone()))
            .collect();
        Some((events, log.done))
    }

    fn notifier(&self, stream: &str) -> Option<Arc<Notify>> {
        self.lock().streams.get(stream).map(|l| l.notify.clone())
    }
}

/// The SSE body of `stream` from after `seq` on: stored events, then new ones
/// as they are stored, until the stream is complete.
pub fn follow(
    store: Arc<EventStore>,
    stream: String,
    seq: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::unfold(
        (store, stream, seq, VecDeque::<(u64, Bytes)>::new()),
        |(store, stream, mut last, mut buf)| async move {
            loop {
                if let Some((seq, json)) = buf.pop_front() {
                    let ev = encode(&event_id(&stream, seq), &json);
                    return Some((Ok(ev), (store, stream, last, buf)));
                }
                let notify = store.notifier(&stream)?;
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (events, done) = store.after(&stream, last)?;
                if let Some((seq, _)) = events.last() {
                    last = *seq;
                    buf.extend(events);
                    continue;
                }
                if done {
                    return None;
                }
                notified.await;
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_owned())
    }

    #[test]
    fn ids_name_the_stream_and_the_sequence() {
        let s = EventStore::default();
        let p = s.open_post_stream();
        assert_eq!(s.append(&p, b("{}")), "p1_1");
        assert_eq!(s.append(&p, b("{}")), "p1_2");
        assert_eq!(s.append(GET_STREAM, b("{}")), "g_1");
        assert_eq!(s.open_post_stream(), "p2");
        assert_eq!(parse_id("p1_2"), Some(("p1", 2)));
        assert_eq!(parse_id("g_7"), Some(("g", 7)));
        assert_eq!(parse_id("x_1"), None);
        assert_eq!(parse_id("p_1"), None);
        assert_eq!(parse_id("g_x"), None);
    }

    #[test]
    fn a_bounded_stream_drops_its_oldest_events() {
        let s = EventStore::new(3, DEFAULT_TTL);
        for i in 1..=5 {
            s.append(GET_STREAM, b(&i.to_string()));
        }
        let (events, done) = s.after(GET_STREAM, 0).unwrap();
        assert!(!done);
        let seqs: Vec<u64> = events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(events[0].1, b("3"));
        let (events, _) = s.after(GET_STREAM, 4).unwrap();
        assert_eq!(events.len(), 1);
        assert!(s.after("p9", 0).is_none());
    }

    #[test]
    fn expired_events_and_streams_are_gone() {
        let s = EventStore::new(10, Duration::from_millis(20));
        let p = s.open_post_stream();
        s.append(&p, b("1"));
        s.finish(&p);
        assert!(s.knows(&p));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!s.knows(&p));
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl EventSink for Recorder {
        fn appended(&self, stream: &str, seq: u64, json: &Bytes) {
            let json = String::from_utf8_lossy(json);
            self.0
                .lock()
                .unwrap()
                .push(format!("{stream}_{seq}={json}"));
        }
        fn finished(&self, stream: &str) {
            self.0.lock().unwrap().push(format!("{stream} done"));
        }
    }

    #[test]
    fn a_mirrored_store_copies_events_in_order_until_stopped() {
        let s = EventStore::default();
        let sink = Arc::new(Recorder::default());
        s.append(GET_STREAM, b("0"));
        s.mirror_to(sink.clone());
        let p = s.open_post_stream();
        s.append(&p, b("1"));
        s.append(GET_STREAM, b("2"));
        s.append(&p, b("3"));
        s.finish(&p);
        s.stop_mirroring();
        s.append(GET_STREAM, b("4"));
        assert_eq!(
            *sink.0.lock().unwrap(),
            vec!["p1_1=1", "g_2=2", "p1_2=3", "p1 done"]
        );
    }

    #[tokio::test]
    async fn imported_streams_replay_and_continue_the_old_numbering() {
        let s = Arc::new(EventStore::new(2, DEFAULT_TTL));
        s.import(Imported {
            stream: "p3".into(),
            last_seq: 4,
            done: false,
            events: vec![(4, b("d")), (2, b("b")), (3, b("c"))],
        });
        s.import(Imported {
            stream: GET_STREAM.into(),
            last_seq: 7,
            done: false,
            events: vec![(7, b("g7"))],
        });
        s.import(Imported {
            stream: "bogus".into(),
            last_seq: 1,
            done: false,
            events: vec![],
        });
        assert!(!s.knows("bogus"));
        // Bounded like any stream; a POST stream from a previous owner is complete.
        let (events, done) = s.after("p3", 2).unwrap();
        assert_eq!(events, vec![(3, b("c")), (4, b("d"))]);
        assert!(done);
        let got: Vec<_> = follow(s.clone(), "p3".into(), 3).collect().await;
        assert_eq!(got.len(), 1);
        // New ids never collide with the previous owner's.
        assert_eq!(s.open_post_stream(), "p4");
        assert_eq!(s.append(GET_STREAM, b("g8")), "g_8");
        // A stream already here is not replaced.
        s.import(Imported {
            stream: GET_STREAM.into(),
            last_seq: 1,
            done: true,
            events: vec![(1, b("old"))],
        });
        let (events, done) = s.after(GET_STREAM, 0).unwrap();
        assert_eq!(events, vec![(7, b("g7")), (8, b("g8"))]);
        assert!(!done);
    }

    #[tokio::test]
    async fn a_follower_gets_the_rest_then_ends_with_the_stream() {
        let s = Arc::new(EventStore::default());
        let p = s.open_post_stream();
        s.append(&p, b("1"));
        s.append(&p, b("2"));
        let follower = tokio::spawn(follow(s.clone(), p.clone(), 1).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.append(&p, b("3"));
        s.finish(&p);
        let got: Vec<String> = follower
            .await
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("id: p1_2\n"), "{got:?}");
        assert!(got[1].starts_with("id: p1_3\n"), "{got:?}");
        assert!(got[1].contains("data: 3\n"), "{got:?}");
    }
}

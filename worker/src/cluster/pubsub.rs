//! Forwarding through Redis pub/sub (`AFFINITY_FORWARD=pubsub`).
//!
//! Every worker (whatever its own forwarding mode) subscribes to its request
//! channel `mcpgw:pool_http:{worker_id}` and to its answer channels
//! `mcpgw:pool_http_response:{instance}-*` on one connection. A forwarded
//! request is one message, `{answer channel}\n{signature}\n{sealed bytes}`
//! (the same sealed bytes an HTTP forward carries); the owner serves each
//! message in its own task (never one at a time) through the same
//! [`Owner`] as the internal listeners, and publishes the answer ([`PubAnswer`]: status,
//! content type, session id and worker as length-prefixed fields, then the
//! body as it is) on the request's own answer channel. Nothing is hex-encoded
//! or re-encoded: Redis payloads are bytes. Streams (SSE) are buffered: a GET stream goes over HTTP instead.

use super::listener::{Handler, Owner};
use super::redis_link::Subscriber;
use super::redis_owners::{request_channel, RedisAffinity, RESPONSE_PREFIX};
use super::seal::{put, put_opt, Reader};
use crate::state::WORKER_HEADER;
use bytes::Bytes;
use fleetgate_mcp::protocol::MCP_SESSION_ID;
use http::header;
use http_body_util::{BodyExt, Limited};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Largest answer carried back.
const MAX_ANSWER: usize = 64 << 20;

/// The head of an owner's answer on the wire: the status (big-endian u16),
/// then content type, session id and worker as length-prefixed fields (the
/// last two optional), then the body as it is.
#[derive(Debug, PartialEq)]
pub struct PubAnswer {
    pub status: u16,
    pub content_type: String,
    pub session: Option<String>,
    pub worker: Option<String>,
}

impl PubAnswer {
    /// The answer message: this head, then `body`.
    fn encode(&self, body: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.content_type.len() + body.len());
        f.extend_from_slice(&self.status.to_be_bytes());
        put(&mut f, self.content_type.as_bytes());
        put_opt(&mut f, self.session.as_deref().map(str::as_bytes));
        put_opt(&mut f, self.worker.as_deref().map(str::as_bytes));
        f.extend_from_slice(body);
        f
    }

    /// An answer message: its head and (a view of) its body.
    fn decode(payload: &Bytes) -> Option<(PubAnswer, Bytes)> {
        let mut r = Reader(payload);
        let status = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
        let head = PubAnswer {
            status,
            content_type: r.str()?.to_owned(),
            session: r.opt_str()?.map(str::to_owned),
            worker: r.opt_str()?.map(str::to_owned),
        };
        Some((head, payload.slice(payload.len() - r.0.len()..)))
    }
}

/// Splits `payload` at its first newline.
fn split_line(payload: &Bytes) -> Option<(Bytes, Bytes)> {
    let end = memchr::memchr(b'\n', payload)?;
    Some((payload.slice(..end), payload.slice(end + 1..)))
}

/// This worker's side of pub/sub: answers it waits for.
#[derive(Default)]
pub struct PubSub {
    pending: Mutex<foldhash::HashMap<String, Waiting>>,
    subscribed: AtomicBool,
    /// Numbers this worker's answer channels.
    next_reply: AtomicU64,
}

/// A forward waiting for its answer.
struct Waiting {
    answer: oneshot::Sender<Result<Bytes, PubSendError>>,
    owner: String,
    since: Instant,
}

/// Why a pub/sub forward did not get to the owner.
pub enum PubSendError {
    /// Nobody listens on the owner's channel: it is dead.
    NoSubscriber,
    /// Redis (or this worker's subscription) is down.
    RedisDown,
    /// Redis refuses what pub/sub forwarding needs (a configuration to change).
    Refused(Arc<str>),
}

impl PubSub {
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn take(&self, channel: &str) -> Option<Waiting> {
        self.pending.lock().ok()?.remove(channel)
    }

    /// Publishes a sealed request to `owner` and waits for its answer (head
    /// and body); `Ok(None)`: no answer before `timeout`.
    pub async fn request(
        &self,
        redis: &RedisAffinity,
        owner: &str,
        sealed: &[u8],
        signature: &str,
        timeout: Duration,
    ) -> Result<Option<(PubAnswer, Bytes)>, PubSendError> {
        if !self.is_subscribed() {
            return Err(PubSendError::RedisDown);
        }
        let n = self.next_reply.fetch_add(1, Ordering::Relaxed);
        let reply = format!("{RESPONSE_PREFIX}{}-{n}", redis.instance);
        let mut payload = Vec::with_capacity(reply.len() + signature.len() + 2 + sealed.len());
        for part in [reply.as_bytes(), b"\n", signature.as_bytes(), b"\n", sealed] {
            payload.extend_from_slice(part);
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            let waiting = Waiting {
                answer: tx,
                owner: owner.to_owned(),
                since: Instant::now(),
            };
            p.insert(reply.clone(), waiting);
        }
        let result = match redis.publish(&request_channel(owner), &payload).await {
            Err(_) => Err(PubSendError::RedisDown),
            Ok(Err(why)) => Err(PubSendError::Refused(why)),
            Ok(Ok(())) => match wait_for_owner(rx, timeout).await {
                // An answer that does not parse is no answer: the forward times out.
                Ok(Some(answer)) => Ok(PubAnswer::decode(&answer)),
                other => other.map(|_| None),
            },
        };
        self.take(&reply);
        result
    }
}

/// How often the owners of waiting pub/sub forwards are checked for life.
const OWNER_CHECK: Duration = Duration::from_millis(200);

/// Waits for the owner's answer, or for [`check_owners`] to find the owner
/// dead; `Ok(None)`: no answer before `timeout`.
async fn wait_for_owner(
    rx: oneshot::Receiver<Result<Bytes, PubSendError>>,
    timeout: Duration,
) -> Result<Option<Bytes>, PubSendError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(answer)) => answer.map(Some),
        // Dropped unanswered: the subscription was lost.
        Ok(Err(_)) => Err(PubSendError::RedisDown),
        Err(_) => Ok(None),
    }
}

/// `PUBLISH` does not say whether the owner received the message (replies
/// are off, see `redis_link::Publisher`), so every [`OWNER_CHECK`] this
/// worker asks Redis whether the owners of forwards waiting longer than that
/// still listen, once per owner, however many forwards wait for it; the
/// forwards of an owner that does not are failed at once (the caller
/// reclaims the session instead of waiting out the forward timeout).
///
/// One clock for the worker, not a timer per forward: a timer that is due
/// before every other one makes tokio wake its own driver (an `eventfd`
/// write and an extra `epoll_wait` per forward); with this clock always
/// pending, a forward's own deadline never is.
async fn check_owners(redis: Arc<RedisAffinity>, ps: Arc<PubSub>) {
    let mut tick = tokio::time::interval(OWNER_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due = |w: &Waiting| w.since.elapsed() >= OWNER_CHECK;
        let mut owners: Vec<String> = match ps.pending.lock() {
            Ok(p) => p
                .values()
                .filter(|w| due(w))
                .map(|w| w.owner.clone())
                .collect(),
            Err(_) => continue,
        };
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            if let Ok(false) = redis.listening(&owner).await {
                let Ok(mut p) = ps.pending.lock() else {
                    continue;
                };
                for (_, w) in p.extract_if(|_, w| w.owner == owner && due(w)) {
                    let _ = w.answer.send(Err(PubSendError::NoSubscriber));
                }
            }
        }
    }
}

/// Keeps this worker subscribed (reconnecting while Redis is away) and serves
/// what arrives.
pub fn spawn_subscriber<H: Handler>(owner: Owner<H>, redis: Arc<RedisAffinity>, ps: Arc<PubSub>) {
    tokio::spawn(check_owners(redis.clone(), ps.clone()));
    tokio::spawn(async move {
        let requests = request_channel(&redis.worker_id);
        let answers = format!("{RESPONSE_PREFIX}{}-*", redis.instance);
        let mut failing = false;
        loop {
            let mut sub = match Subscriber::open(&redis.link, &requests, &answers).await {
                Ok(sub) => sub,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot subscribe to the forwarding channel; retrying");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            if failing {
                tracing::info!("subscribed to the forwarding channel again");
                failing = false;
            }
            ps.subscribed.store(true, Ordering::Release);
            while let Ok(msg) = sub.next().await {
                if msg.channel == requests.as_bytes() {
                    let (owner, redis) = (owner.clone(), redis.clone());
                    tokio::spawn(async move { serve(owner, redis, msg.payload).await });
                } else if let Some(w) = std::str::from_utf8(&msg.channel)
                    .ok()
                    .and_then(|c| ps.take(c))
                {
                    let _ = w.answer.send(Ok(msg.payload));
                }
            }
            ps.subscribed.store(false, Ordering::Release);
            // Wake every waiter: their answers cannot arrive on this connection.
            if let Ok(mut p) = ps.pending.lock() {
                p.clear();
            }
            tracing::warn!("lost the forwarding subscription (Redis gone?); reconnecting");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// The owner's side: one forwarded request, served like the HTTP forward route.
async fn serve<H: Handler>(owner: Owner<H>, redis: Arc<RedisAffinity>, payload: Bytes) {
    let parts = split_line(&payload).and_then(|(reply, rest)| {
        let (sig, sealed) = split_line(&rest)?;
        Some((String::from_utf8(reply.to_vec()).ok()?, sig, sealed))
    });
    let Some((reply, sig, sealed)) = parts else {
        tracing::warn!("ignored a malformed forwarded request");
        return;
    };
    if !reply.starts_with(RESPONSE_PREFIX) {
        return;
    }
    let sig = std::str::from_utf8(&sig).unwrap_or("");
    let resp = owner.serve(&sealed, sig).await;
    let (status, content_type, session, worker) = {
        let get = |n: http::HeaderName| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            resp.status().as_u16(),
            get(header::CONTENT_TYPE).unwrap_or_default(),
            get(MCP_SESSION_ID),
            get(WORKER_HEADER),
        )
    };
    let timeout = owner.cluster().seal.forward_timeout;
    let body = match tokio::time::timeout(
        timeout,
        Limited::new(resp.into_body(), MAX_ANSWER).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        _ => return, // the requester times out: -32001
    };
    let head = PubAnswer {
        status,
        content_type,
        session,
        worker,
    };
    let _ = redis.publish(&reply, &head.encode(&body)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_cross_the_wire_unchanged() {
        for head in [
            PubAnswer {
                status: 401,
                content_type: "application/json".into(),
                session: None,
                worker: Some("w-1".into()),
            },
            PubAnswer {
                status: 200,
                content_type: String::new(),
                session: Some("3_abc_def".into()),
                worker: None,
            },
        ] {
            let body = b"{\"detail\":\"no\"}\n\x00 any bytes";
            let (got, got_body) = PubAnswer::decode(&Bytes::from(head.encode(body))).unwrap();
            assert_eq!(got, head);
            assert_eq!(&got_body[..], &body[..]);
        }
    }

    #[test]
    fn a_cut_or_garbled_answer_is_no_answer() {
        let whole = PubAnswer {
            status: 200,
            content_type: "text/plain".into(),
            session: Some("s".into()),
            worker: Some("w".into()),
        }
        .encode(b"");
        for cut in 0..whole.len() {
            assert!(
                PubAnswer::decode(&Bytes::copy_from_slice(&whole[..cut])).is_none(),
                "{cut}"
            );
        }
        let mut bad_flag = whole.clone();
        bad_flag[2 + 4 + 10] = 7;
        assert!(PubAnswer::decode(&Bytes::from(bad_flag)).is_none());
    }
}

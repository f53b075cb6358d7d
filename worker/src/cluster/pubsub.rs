//! Forwarding through Redis pub/sub (`AFFINITY_FORWARD=pubsub`), both sides,
//! on the `redis` crate.
//!
//! Every worker (whatever its own forwarding mode) subscribes to its request
//! channel `mcpgw:pool_http:{worker_id}` and to its answer channels
//! `mcpgw:pool_http_response:{instance}-*` on one connection of its own
//! (`redis::aio::PubSub`). A forwarded request is one message,
//! `{answer channel}\n{signature}\n{sealed bytes}` (the same sealed bytes an
//! HTTP forward carries), published on the shared multiplexed connection
//! (`publish`); the owner serves each message in its own
//! task (never one at a time) through the same [`Owner`] as the internal
//! listeners, and publishes the answer ([`PubAnswer`]: status, content type,
//! session id and worker as length-prefixed fields, then the body as it is)
//! on the request's own answer channel. Nothing is hex-encoded or
//! re-encoded: Redis payloads are bytes. Streams (SSE) are buffered: a GET
//! stream goes over HTTP instead.
//!
//! A forward costs one `PUBLISH` and one message each way. The owner's
//! death is noticed without waiting out the forward's timeout: `PUBLISH`
//! says how many subscribers got the request (none: the owner is gone), and
//! `check_owners` watches the owners of forwards still waiting.

use super::forward::ForwardError;
use super::listener::{Handler, Owner};
use super::redis_owners::{
    heartbeat_key, request_channel, RedisDown, RedisOwners, RESPONSE_PREFIX,
};
use super::seal::{put, put_opt, Reader};
use super::MAX_ANSWER;
use crate::state::WORKER_HEADER;
use bytes::Bytes;
use fleetgate_mcp::protocol::MCP_SESSION_ID;
use futures_util::StreamExt;
use http::header;
use http_body_util::{BodyExt, Limited};
use redis::{ErrorKind, RedisError, RedisWrite, ServerErrorKind, ToRedisArgs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long opening the subscription (connect, `SUBSCRIBE`, `PSUBSCRIBE`) may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How soon a lost subscription is opened again.
const RESUBSCRIBE: Duration = Duration::from_millis(250);
/// How soon a refused subscription is asked for again (a configuration
/// change takes effect within this).
const RESUBSCRIBE_REFUSED: Duration = Duration::from_secs(5);

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
    /// The answer message's head (the body follows it as it is).
    fn encode_head(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.content_type.len());
        f.extend_from_slice(&self.status.to_be_bytes());
        put(&mut f, self.content_type.as_bytes());
        put_opt(&mut f, self.session.as_deref().map(str::as_bytes));
        put_opt(&mut f, self.worker.as_deref().map(str::as_bytes));
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

/// `PUBLISH channel payload` on the worker's publishing connection, the payload
/// being `parts` joined (written straight into the command): how many
/// subscribers received it. `Ok(Err(why))`: Redis answers but refuses the
/// command ([`refusal`]).
async fn publish(
    redis: &RedisOwners,
    channel: &str,
    parts: &[&[u8]],
) -> Result<Result<u64, Arc<str>>, RedisDown> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut cmd = redis::Cmd::with_capacity(3, "PUBLISH".len() + channel.len() + len);
    cmd.arg("PUBLISH").arg(channel).arg(Joined(parts));
    let mut c = redis.publisher();
    redis
        .run("publish", async {
            match cmd.query_async::<u64>(&mut c).await {
                Ok(n) => Ok(Ok(n)),
                Err(e) => match refusal("PUBLISH", &e) {
                    Some(why) => Ok(Err(why)),
                    None => Err(e),
                },
            }
        })
        .await
}

/// Does `worker` still listen for forwards: its heartbeat is there and its
/// request channel has a subscriber (gone the moment its connection closes,
/// where the heartbeat lasts until it expires)?
async fn listening(redis: &RedisOwners, worker: &str) -> Result<bool, RedisDown> {
    let mut c = redis.connection();
    let mut p = redis::pipe();
    p.exists(heartbeat_key(worker))
        .cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(request_channel(worker));
    let (beating, (_, subscribers)): (bool, (String, i64)) =
        redis.run("listening", p.query_async(&mut c)).await?;
    Ok(beating && subscribers > 0)
}

/// Byte strings sent as one command argument, each written into the
/// command as it is (no joined copy made first).
struct Joined<'a>(&'a [&'a [u8]]);

impl ToRedisArgs for Joined<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        for part in self.0 {
            // A write to memory cannot fail.
            let _ = arg.write_all(part);
        }
    }
}

/// Redis's error answer to `command` when it is a refusal that only a change
/// of configuration ends (the ACL denies it: `NOPERM`; the command is
/// disabled or renamed: `ERR`), as the message that says what to change.
/// `None`: no answer, or a passing error (Redis loading, failing over).
fn refusal(command: &str, e: &RedisError) -> Option<Arc<str>> {
    matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::NoPerm | ServerErrorKind::ResponseError)
    )
    .then(|| {
        // As Redis said it (`NOPERM this user has no permissions ...`).
        let said = match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => e.to_string(),
        };
        format!(
            "Redis refuses {command} ({said}), which AFFINITY_FORWARD=pubsub needs; use AFFINITY_FORWARD=http"
        )
        .into()
    })
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
    /// Why Redis refuses this worker's subscription, while it does.
    subscribe_refused: Mutex<Option<Arc<str>>>,
    /// A refused `PUBLISH` was logged (once until one is accepted again).
    publish_refusal_said: AtomicBool,
    /// Numbers this worker's answer channels.
    next_reply: AtomicU64,
}

/// A forward waiting for its answer.
struct Waiting {
    answer: oneshot::Sender<Result<Bytes, ForwardError>>,
    owner: String,
    since: Instant,
}

/// Why this worker could not subscribe.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    /// Redis answers but refuses (see [`refusal`]).
    #[error("{0}")]
    Refused(Arc<str>),
    #[error("{0}")]
    Down(String),
}

impl PubSub {
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn take(&self, channel: &str) -> Option<Waiting> {
        self.pending.lock().ok()?.remove(channel)
    }

    fn set_subscribe_refused(&self, why: Option<Arc<str>>) {
        if let Ok(mut r) = self.subscribe_refused.lock() {
            *r = why;
        }
    }

    /// Why a forward cannot be sent while this worker is not subscribed.
    fn not_subscribed(&self) -> ForwardError {
        match self.subscribe_refused.lock().ok().and_then(|r| r.clone()) {
            Some(why) => ForwardError::Refused(why),
            None => ForwardError::OwnerUnknown,
        }
    }

    /// Publishes a sealed request to `owner` and waits for its answer (head
    /// and body); `Ok(None)`: no answer before `timeout`.
    pub async fn request(
        &self,
        redis: &RedisOwners,
        owner: &str,
        sealed: &[u8],
        signature: &str,
        timeout: Duration,
    ) -> Result<Option<(PubAnswer, Bytes)>, ForwardError> {
        if !self.is_subscribed() {
            return Err(self.not_subscribed());
        }
        let n = self.next_reply.fetch_add(1, Ordering::Relaxed);
        let reply = format!("{RESPONSE_PREFIX}{}-{n}", redis.instance);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            let waiting = Waiting {
                answer: tx,
                owner: owner.to_owned(),
                since: Instant::now(),
            };
            p.insert(reply.clone(), waiting);
        }
        let payload = [reply.as_bytes(), b"\n", signature.as_bytes(), b"\n", sealed];
        let result = match publish(redis, &request_channel(owner), &payload).await {
            Err(_) => Err(ForwardError::OwnerUnknown),
            Ok(Err(why)) => {
                if !self.publish_refusal_said.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %why, "cannot forward over Redis pub/sub");
                }
                Err(ForwardError::Refused(why))
            }
            Ok(Ok(0)) => Err(ForwardError::Unreachable),
            Ok(Ok(_)) => {
                if self.publish_refusal_said.load(Ordering::Relaxed) {
                    self.publish_refusal_said.store(false, Ordering::Release);
                }
                match wait_for_owner(rx, timeout).await {
                    // An answer that does not parse is no answer: the forward times out.
                    Ok(Some(answer)) => Ok(PubAnswer::decode(&answer)),
                    other => other.map(|_| None),
                }
            }
        };
        self.take(&reply);
        result
    }
}

/// How often the owners of waiting pub/sub forwards are checked for life.
const OWNER_CHECK: Duration = Duration::from_millis(200);

/// How long a delivered forward waits for its answer while Redis does not
/// answer at all (frozen, or gone) before it is given up as lost.
const REDIS_GIVE_UP: Duration = Duration::from_secs(1);

/// Waits for the owner's answer, or for [`check_owners`] to find the owner
/// dead; `Ok(None)`: no answer before `timeout`.
async fn wait_for_owner(
    rx: oneshot::Receiver<Result<Bytes, ForwardError>>,
    timeout: Duration,
) -> Result<Option<Bytes>, ForwardError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(answer)) => answer.map(Some),
        // Dropped unanswered: the subscription was lost.
        Ok(Err(_)) => Err(ForwardError::OwnerUnknown),
        Err(_) => Ok(None),
    }
}

/// An owner that received a request may die before it answers (`PUBLISH`
/// only said it was listening then), so every [`OWNER_CHECK`] this worker
/// asks Redis whether the owners of forwards waiting longer than that still
/// listen ([`listening`]), once per owner, however many
/// forwards wait for it; the forwards of an owner that does not are failed
/// at once (the caller reclaims the session instead of waiting out the
/// forward timeout), and so are those waiting [`REDIS_GIVE_UP`] while Redis
/// does not answer the question (the answer could not come back through
/// it). A forward answered within the interval costs no check.
///
/// One clock for the worker, not a timer per forward: a timer that is due
/// before every other one makes tokio wake its own driver (an `eventfd`
/// write and an extra `epoll_wait` per forward); with this clock always
/// pending, a forward's own deadline never is.
async fn check_owners(redis: Arc<RedisOwners>, ps: Arc<PubSub>) {
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
            // An owner that stopped listening will not answer; neither can
            // one behind a Redis that stopped answering (answers travel
            // through it), once the forward has waited [`REDIS_GIVE_UP`].
            let gone: Box<dyn Fn(&Waiting) -> bool + Send> = match listening(&redis, &owner).await {
                Ok(false) => Box::new(due),
                Err(_) => Box::new(|w: &Waiting| w.since.elapsed() >= REDIS_GIVE_UP),
                Ok(true) => continue,
            };
            let Ok(mut p) = ps.pending.lock() else {
                continue;
            };
            // Each was delivered (PUBLISH counted its owner listening):
            // whether it ran is unknown, so it is lost, not re-sent.
            for (_, w) in p.extract_if(|_, w| w.owner == owner && gone(w)) {
                let _ = w.answer.send(Err(ForwardError::Lost(Arc::from(""))));
            }
        }
    }
}

/// A connection of its own subscribed to `channel` and `pattern`: the
/// messages that arrive on it, until it closes.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
    pattern: &str,
) -> Result<redis::aio::PubSubStream, SubscribeError> {
    let refused_or_down = |command: &str, e: redis::RedisError| match refusal(command, &e) {
        Some(why) => SubscribeError::Refused(why),
        None => SubscribeError::Down(e.to_string()),
    };
    let open = async {
        let mut conn = client
            .get_async_pubsub()
            .await
            .map_err(|e| SubscribeError::Down(e.to_string()))?;
        conn.subscribe(channel)
            .await
            .map_err(|e| refused_or_down("SUBSCRIBE", e))?;
        conn.psubscribe(pattern)
            .await
            .map_err(|e| refused_or_down("PSUBSCRIBE", e))?;
        Ok(conn.into_on_message())
    };
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, open).await {
        Ok(opened) => opened,
        Err(_) => Err(SubscribeError::Down(format!(
            "no answer within {} ms",
            SUBSCRIBE_TIMEOUT.as_millis()
        ))),
    }
}

/// Keeps this worker subscribed (reconnecting while Redis is away) and serves
/// what arrives.
pub fn spawn_subscriber<H: Handler>(owner: Owner<H>, redis: Arc<RedisOwners>, ps: Arc<PubSub>) {
    tokio::spawn(check_owners(redis.clone(), ps.clone()));
    tokio::spawn(async move {
        let requests = request_channel(&redis.worker_id);
        let answers = format!("{RESPONSE_PREFIX}{}-*", redis.instance);
        let mut failing = false;
        loop {
            let mut messages = match subscribe(redis.client(), &requests, &answers).await {
                Ok(messages) => messages,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot subscribe to the forwarding channel; retrying");
                        failing = true;
                    }
                    let again = match e {
                        SubscribeError::Refused(why) => {
                            ps.set_subscribe_refused(Some(why));
                            RESUBSCRIBE_REFUSED
                        }
                        SubscribeError::Down(_) => {
                            ps.set_subscribe_refused(None);
                            RESUBSCRIBE
                        }
                    };
                    tokio::time::sleep(again).await;
                    continue;
                }
            };
            if failing {
                tracing::info!("subscribed to the forwarding channel again");
                failing = false;
            }
            ps.set_subscribe_refused(None);
            ps.subscribed.store(true, Ordering::Release);
            while let Some(msg) = messages.next().await {
                if msg.get_channel_name() == requests {
                    let (owner, redis) = (owner.clone(), redis.clone());
                    tokio::spawn(async move {
                        serve(
                            owner,
                            redis,
                            Bytes::copy_from_slice(msg.get_payload_bytes()),
                        )
                        .await
                    });
                } else if let Some(w) = ps.take(msg.get_channel_name()) {
                    let _ = w
                        .answer
                        .send(Ok(Bytes::copy_from_slice(msg.get_payload_bytes())));
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
async fn serve<H: Handler>(owner: Owner<H>, redis: Arc<RedisOwners>, payload: Bytes) {
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
    // Nobody may be listening any more (the requester gave up): nothing to do.
    let _ = publish(&redis, &reply, &[&head.encode_head(), &body]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_parts_are_one_argument() {
        let mut cmd = redis::Cmd::new();
        cmd.arg("PUBLISH")
            .arg("ch")
            .arg(Joined(&[b"reply", b"\n", b"", b"a\r\nb"]));
        assert_eq!(
            cmd.get_packed_command(),
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$10\r\nreply\na\r\nb\r\n"
        );
    }

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
            let mut wire = head.encode_head();
            wire.extend_from_slice(body);
            let (got, got_body) = PubAnswer::decode(&Bytes::from(wire)).unwrap();
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
        .encode_head();
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

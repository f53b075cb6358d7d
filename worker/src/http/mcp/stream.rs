//! GET: the session's standalone server→client stream (one at a time), and
//! resuming any of its streams with `Last-Event-ID`: a POST answer's stream
//! is replayed from the store and followed until it completes; the GET
//! stream is replayed, then goes on live. A stream memory lacks is looked
//! for in Redis (a previous owner stored it). An id this session does not
//! know (never sent, or expired) opens a fresh GET stream, as a plain GET
//! would.

use super::run::sse_response;
use super::session::resolve;
use super::{accepts, header_str, Admitted, TransportError};
use crate::gateway::events;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::response::Response;
use fleetgate_mcp::protocol::{self, LAST_EVENT_ID};
use futures_util::stream;
use std::collections::VecDeque;
use std::convert::Infallible;
use tokio::sync::mpsc;

pub(super) async fn open(st: &AppState, req: Admitted) -> Result<Response, TransportError> {
    let h = &req.headers;
    if !accepts(h, protocol::CONTENT_TYPE_SSE) {
        return Err(TransportError::NotAcceptable);
    }
    let session = resolve(st, &req, None)?;
    let asked = header_str(h, LAST_EVENT_ID).and_then(events::parse_id);
    if let (Some((stream, _)), Some(redis_events)) = (asked, st.sessions.redis_events()) {
        redis_events
            .load_missing(&session.id, &session.events, stream)
            .await;
    }
    let resume = asked.filter(|(stream, _)| session.events.knows(stream));
    let mut replay = VecDeque::new();
    if let Some((stream, seq)) = resume {
        if stream != events::GET_STREAM {
            let body = events::follow(session.events.clone(), stream.to_owned(), seq);
            return Ok(sse_response(Body::from_stream(body)));
        }
        if let Some((stored, _)) = session.events.after(stream, seq) {
            replay.extend(stored.into_iter().map(|(seq, json)| {
                events::encode(&format!("{}_{seq}", events::GET_STREAM), &json)
            }));
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    if resume.is_some() {
        session.replace_stream(tx);
    } else if !session.open_stream(tx) {
        return Err(TransportError::StreamConflict);
    }
    let store = session.events.clone();
    let body = stream::unfold(
        (replay, rx, store),
        |(mut replay, mut rx, store)| async move {
            if let Some(ev) = replay.pop_front() {
                return Some((Ok::<_, Infallible>(ev), (replay, rx, store)));
            }
            let m = rx.recv().await?;
            let id = store.append(events::GET_STREAM, m.clone());
            Some((Ok(events::encode(&id, &m)), (replay, rx, store)))
        },
    );
    Ok(sse_response(Body::from_stream(body)))
}

//! Server → client messages: the [`ServerMessageHandler`] a request's caller
//! passes, its stock implementations ([`NoopHandler`], [`ChannelHandler`]),
//! and how a session hands the upstream's requests to it and sends the
//! handler's answer back, whatever the transport.

use std::future::Future;
use std::pin::Pin;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{Inner, UpstreamError};
use crate::jsonrpc::{self, ErrorObject, Notification, Request};
use crate::protocol::methods;

/// A boxed, `Send` future (what [`ServerMessageHandler`] methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives what the upstream sends before the final response of a request.
///
/// Both methods have defaults: notifications are dropped; `ping` is answered
/// with `{}` and other requests with -32601 (method not found).
pub trait ServerMessageHandler: Send + Sync {
    /// A notification (`notifications/progress`, `notifications/message`, …).
    fn on_notification(&self, notification: Notification) -> BoxFuture<'_, ()> {
        let _ = notification;
        Box::pin(async {})
    }

    /// A request (`sampling/createMessage`, `elicitation/create`,
    /// `roots/list`, `ping`, or an MRTR input request). What it returns is
    /// sent back as the `result` or the `error` of the response.
    fn on_request(&self, request: Request) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move { default_answer(&request) })
    }

    /// Whether the client this handler stands for takes `input_required`
    /// results itself (a 2026-07-28 client): a stateless upstream's are then
    /// returned untouched, not resolved through [`Self::on_request`].
    fn takes_input_required(&self) -> bool {
        false
    }
}

/// What a server request gets when nobody handles it: `ping` → `{}`, else
/// -32601.
pub(crate) fn default_answer(request: &Request) -> Result<Value, ErrorObject> {
    if request.method == methods::PING {
        Ok(json!({}))
    } else {
        Err(ErrorObject::method_not_found(&request.method))
    }
}

/// Drops notifications, answers `ping`, refuses other requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopHandler;

impl ServerMessageHandler for NoopHandler {}

/// A server → client message relayed through [`channel_handler`].
#[derive(Debug)]
pub enum ServerMessage {
    /// A notification; nothing to answer.
    Notification(Notification),
    /// A request; send the answer on `reply` (dropping it answers -32603).
    Request {
        /// The upstream's request.
        request: Request,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Value, ErrorObject>>,
    },
}

/// A [`ServerMessageHandler`] that sends every message into a channel.
#[derive(Debug, Clone)]
pub struct ChannelHandler {
    tx: mpsc::Sender<ServerMessage>,
}

/// A handler and the receiving end of its channel (bounded to `capacity`).
/// If the receiver is gone, notifications are dropped and requests get the
/// default answers of [`NoopHandler`].
pub fn channel_handler(capacity: usize) -> (ChannelHandler, mpsc::Receiver<ServerMessage>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ChannelHandler { tx }, rx)
}

impl ServerMessageHandler for ChannelHandler {
    fn on_notification(&self, notification: Notification) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self
                .tx
                .send(ServerMessage::Notification(notification))
                .await;
        })
    }

    fn on_request(&self, request: Request) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            match self
                .tx
                .send(ServerMessage::Request { request, reply })
                .await
            {
                Ok(()) => answer.await.unwrap_or_else(|_| {
                    Err(ErrorObject::internal_error(
                        "the client went away before answering this request",
                    ))
                }),
                Err(mpsc::error::SendError(ServerMessage::Request { request, .. })) => {
                    default_answer(&request)
                }
                Err(_) => Err(ErrorObject::internal_error("handler channel closed")),
            }
        })
    }
}

impl Inner {
    /// Hands a request the upstream sent on a request's stream to `handler`
    /// and POSTs the answer back on the session. Only a session that is gone
    /// (or an upstream gone silent) fails the request it arrived on; an
    /// upstream refusing the answer is logged.
    pub(super) async fn answer_server_request(
        &self,
        request: Request,
        handler: &dyn ServerMessageHandler,
    ) -> Result<(), UpstreamError> {
        if self.stateless {
            tracing::warn!(upstream = %self.url, method = %request.method,
                "ignoring a server-to-client request: stateless upstreams must use input_required results");
            return Ok(());
        }
        let rid = request.id.clone();
        let body = match handler.on_request(request).await {
            Ok(result) => jsonrpc::encode_response(&rid, &result),
            Err(error) => jsonrpc::encode_error(&rid, &error),
        };
        match self.post_message(&body, "", None).await {
            Ok(()) => Ok(()),
            Err(e @ (UpstreamError::SessionExpired { .. } | UpstreamError::Unreachable { .. })) => {
                Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %e, request = %rid, "the upstream refused our answer to its request");
                Ok(())
            }
        }
    }
}

//! Relaying a session owner's answer to the client, faithfully (seed 002).
//!
//! A 2xx JSON-RPC response or an SSE stream passes through. Anything else becomes
//! a JSON-RPC error carrying the request's id and the owner's HTTP status; a 2xx
//! that is not a JSON-RPC response is *not* a success (ContextForge turned some
//! into `{"result": {}}`). Contract: `tests/vectors/forward-answers.json`; a
//! non-2xx answer is read by `fleetgate_mcp::http_error`, the one policy for
//! them (its owner rows).

use bytes::Bytes;
use fleetgate_mcp::http_error::{self, Peer};
use fleetgate_mcp::jsonrpc::{self, ErrorObject, Id};
use serde_json::json;

/// What the owner did.
#[derive(Debug)]
pub enum OwnerAnswer {
    Answered {
        status: u16,
        content_type: String,
        body: Bytes,
    },
    /// No answer before the forward deadline.
    TimedOut { after_ms: u64 },
}

/// What the client gets.
#[derive(Debug, PartialEq)]
pub struct ClientAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

/// `request` is the forwarded request's body: its id (none for a notification
/// or a response) is read from it only when the answer needs one, which a
/// relayed success never does.
pub fn relay(answer: OwnerAnswer, request: &[u8]) -> ClientAnswer {
    let id = || jsonrpc::request_id(request);
    let (status, content_type, body) = match answer {
        OwnerAnswer::TimedOut { after_ms } => {
            return error(
                504,
                id().as_ref(),
                ErrorObject::upstream_unavailable(format!(
                    "Forwarded request timed out after {after_ms} ms waiting for the session owner"
                ))
                .with_data(json!({ "httpStatus": 504 })),
            )
        }
        OwnerAnswer::Answered {
            status,
            content_type,
            body,
        } => (status, content_type, body),
    };
    let pass = || ClientAnswer {
        status,
        content_type: content_type.clone(),
        body: body.clone(),
    };
    if (200..300).contains(&status) {
        if content_type.starts_with("text/event-stream") || is_jsonrpc_answer(&body) {
            return pass();
        }
        let Some(id) = id() else {
            return pass(); // a notification's 202
        };
        return error(
            502,
            Some(&id),
            ErrorObject::internal_error(format!(
                "Forwarded request got an invalid answer (HTTP {status}): {}",
                http_error::excerpt(&body)
            ))
            .with_data(json!({ "httpStatus": status })),
        );
    }
    // Non-2xx: never a success.
    let id = id();
    let err = http_error::to_error_object(Peer::Owner, status, &body, id.as_ref());
    error(status, id.as_ref(), err)
}

/// Whether `body` is a JSON-RPC answer: one response (`jsonrpc` and exactly one
/// of `result` and `error`) or a batch's array. Read shallowly: the result
/// itself is skipped, not built.
fn is_jsonrpc_answer(body: &[u8]) -> bool {
    use serde::de::IgnoredAny;
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        serde::Deserialize::deserialize(d).map(|IgnoredAny| true)
    }
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(default, deserialize_with = "present")]
        jsonrpc: bool,
        #[serde(default, deserialize_with = "present")]
        result: bool,
        #[serde(default, deserialize_with = "present")]
        error: bool,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return serde_json::from_slice::<IgnoredAny>(body).is_ok();
    }
    serde_json::from_slice::<Shape>(body).is_ok_and(|s| s.jsonrpc && (s.result ^ s.error))
}

fn error(status: u16, id: Option<&Id>, err: ErrorObject) -> ClientAnswer {
    ClientAnswer {
        status,
        content_type: "application/json".into(),
        body: Bytes::from(jsonrpc::encode_error(id.unwrap_or(&Id::Null), &err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every case of the contract, as data.
    #[test]
    fn forward_answer_vectors() {
        let raw = include_str!("../../tests/vectors/forward-answers.json");
        let doc: Value = serde_json::from_str(raw).unwrap();
        let id = Id::Number(doc["request_id"].as_i64().unwrap());
        for case in doc["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let owner = &case["owner"];
            let answer = if owner["timeout"] == true {
                OwnerAnswer::TimedOut { after_ms: 30_000 }
            } else {
                OwnerAnswer::Answered {
                    status: owner["status"].as_u64().unwrap() as u16,
                    content_type: owner["content_type"].as_str().unwrap().into(),
                    body: Bytes::from(owner["body"].as_str().unwrap().to_owned()),
                }
            };
            let request = match case["request_is_notification"] == true {
                true => json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                false => json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
            };
            let got = relay(answer, request.to_string().as_bytes());
            let want = &case["client"];
            assert_eq!(
                got.status as u64,
                want["status"].as_u64().unwrap(),
                "{name}"
            );
            if let Some(ct) = want["content_type"].as_str() {
                assert_eq!(got.content_type, ct, "{name}");
            }
            if let Some(body) = want["body"].as_str() {
                assert_eq!(got.body, body.as_bytes(), "{name}");
            }
            let Some(expect) = want.get("jsonrpc") else {
                continue;
            };
            let text = std::str::from_utf8(&got.body).unwrap();
            let msg: Value = if got.content_type.starts_with("text/event-stream") {
                let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                serde_json::from_str(data).unwrap()
            } else {
                serde_json::from_str(text).unwrap()
            };
            assert_eq!(msg["id"], expect["id"], "{name}: {msg}");
            if let Some(result) = expect.get("result") {
                assert_eq!(&msg["result"], result, "{name}");
                continue;
            }
            let (e, w) = (&msg["error"], &expect["error"]);
            assert_eq!(e["code"], w["code"], "{name}: {msg}");
            if let Some(m) = w.get("message") {
                assert_eq!(&e["message"], m, "{name}");
            }
            for frag in w["message_contains"].as_array().into_iter().flatten() {
                let m = e["message"].as_str().unwrap();
                assert!(
                    m.contains(frag.as_str().unwrap()),
                    "{name}: {m:?} lacks {frag}"
                );
            }
            if let Some(max) = w["detail_max_chars"].as_u64() {
                let m = e["message"].as_str().unwrap();
                let detail = m.split_once("): ").map_or("", |(_, d)| d);
                assert!(detail.chars().count() as u64 <= max, "{name}: {m}");
            }
            if let Some(data) = w.get("data") {
                assert_eq!(&e["data"], data, "{name}");
            }
        }
    }
}

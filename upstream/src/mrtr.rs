//! Multi-round-trip requests (SEP-2322, stateless draft): instead of sending requests to
//! the client, a tool (or prompt) answers with an `input_required` result listing what it
//! needs; the client retries the same call with `inputResponses` (and the opaque
//! `requestState` it was given). Names and behaviours follow the conformance scenarios.

use std::hash::BuildHasher;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::mcp::text_result;
use crate::rpc::{self, INVALID_PARAMS};
use crate::state::Shared;

/// The MRTR tools (stateless draft only).
pub const TOOLS: &[(&str, &str)] = &[
    (
        "test_input_required_result_elicitation",
        "MRTR: asks for the user's name (elicitation)",
    ),
    (
        "test_input_required_result_sampling",
        "MRTR: asks the client's LLM a question (sampling)",
    ),
    (
        "test_input_required_result_list_roots",
        "MRTR: asks for the client's roots",
    ),
    (
        "test_input_required_result_request_state",
        "MRTR: round-trips a signed requestState",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "MRTR: elicitation, sampling and roots in one round",
    ),
    (
        "test_input_required_result_multi_round",
        "MRTR: two rounds of elicitation with evolving requestState",
    ),
    (
        "test_input_required_result_tampered_state",
        "MRTR: rejects a tampered requestState",
    ),
    (
        "test_input_required_result_capabilities",
        "MRTR: only asks for what the client's capabilities allow",
    ),
];

pub const PROMPT: &str = "test_input_required_result_prompt";

fn elicit(message: &str, field: &str, kind: &str) -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": { field: { "type": kind } },
                "required": [field]
            }
        }
    })
}

fn sample(text: &str, max_tokens: u32) -> Value {
    json!({
        "method": "sampling/createMessage",
        "params": {
            "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
            "maxTokens": max_tokens
        }
    })
}

fn roots() -> Value {
    json!({ "method": "roots/list", "params": {} })
}

fn input_required(id: &Value, requests: Map<String, Value>, state: Option<String>) -> Bytes {
    let mut r = json!({ "resultType": "input_required", "inputRequests": requests });
    if let Some(s) = state {
        r["requestState"] = Value::String(s);
    }
    rpc::result_msg(id, &r)
}

fn invalid(id: &Value, why: &str) -> Bytes {
    rpc::error_msg(id, INVALID_PARAMS, why, None)
}

fn sign(shared: &Shared, payload: &str) -> String {
    format!("{payload}.{:016x}", shared.mac_key.hash_one(payload))
}

/// The payload of a requestState this server signed, if it is intact.
fn verify<'s>(shared: &Shared, state: Option<&'s Value>) -> Option<&'s str> {
    let (payload, mac) = state?.as_str()?.rsplit_once('.')?;
    (mac == format!("{:016x}", shared.mac_key.hash_one(payload))).then_some(payload)
}

/// `params.inputResponses`: `Ok(None)` when absent, an error when not an object.
fn responses(params: &Value) -> Result<Option<&Map<String, Value>>, &'static str> {
    match params.get("inputResponses") {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err("inputResponses must be an object"),
    }
}

/// One response by key: `Ok(None)` when missing, an error when it is not an object.
fn response<'p>(
    resps: Option<&'p Map<String, Value>>,
    key: &str,
) -> Result<Option<&'p Map<String, Value>>, String> {
    match resps.and_then(|r| r.get(key)) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("inputResponses.{key} must be an object")),
    }
}

fn elicited(r: &Map<String, Value>, field: &str) -> String {
    match r.get("content").and_then(|c| c.get(field)) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "(none)".into(),
    }
}

fn sampled(r: &Map<String, Value>) -> &str {
    r.get("content")
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
        .unwrap_or("(no text)")
}

fn root_uris(r: &Map<String, Value>) -> String {
    r.get("roots")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("uri").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A `tools/call` of one of [`TOOLS`] (`name` without prefix).
pub fn call_tool(shared: &Shared, id: &Value, name: &str, params: &Value, caps: &Value) -> Bytes {
    match run(shared, id, name, params, caps) {
        Ok(m) => m,
        Err(why) => invalid(id, &why),
    }
}

fn one(key: &str, request: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), request);
    m
}

fn run(
    shared: &Shared,
    id: &Value,
    name: &str,
    params: &Value,
    caps: &Value,
) -> Result<Bytes, String> {
    let resps = responses(params)?;
    let state = params.get("requestState");
    let done = |text: &str| text_result(id, text, false);
    Ok(match name {
        "test_input_required_result_elicitation" => match response(resps, "user_name")? {
            Some(r) => done(&format!("Hello, {}!", elicited(r, "name"))),
            None => input_required(
                id,
                one("user_name", elicit("What is your name?", "name", "string")),
                None,
            ),
        },
        "test_input_required_result_sampling" => match response(resps, "capital_question")? {
            Some(r) => done(&format!("Sampling response: {}", sampled(r))),
            None => input_required(
                id,
                one(
                    "capital_question",
                    sample("What is the capital of France?", 100),
                ),
                None,
            ),
        },
        "test_input_required_result_list_roots" => match response(resps, "client_roots")? {
            Some(r) => done(&format!("Client roots: {}", root_uris(r))),
            None => input_required(id, one("client_roots", roots()), None),
        },
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            let payload = if name.ends_with("request_state") {
                "request_state:1"
            } else {
                "tampered_state:1"
            };
            let confirm = || elicit("Please confirm", "ok", "boolean");
            match (response(resps, "confirm")?, state) {
                (None, None) => {
                    input_required(id, one("confirm", confirm()), Some(sign(shared, payload)))
                }
                (_, Some(_)) if verify(shared, state) != Some(payload) => {
                    return Err("requestState failed its integrity check".into())
                }
                (None, Some(_)) => {
                    input_required(id, one("confirm", confirm()), Some(sign(shared, payload)))
                }
                (Some(_), None) => {
                    return Err("requestState is required with inputResponses".into())
                }
                (Some(r), Some(_)) => done(&format!("state-ok: confirmed={}", elicited(r, "ok"))),
            }
        }
        "test_input_required_result_multiple_inputs" => {
            let wanted = [
                ("user_name", elicit("What is your name?", "name", "string")),
                ("greeting", sample("Generate a greeting", 50)),
                ("client_roots", roots()),
            ];
            let mut missing = Map::new();
            for (k, req) in wanted {
                if response(resps, k)?.is_none() {
                    missing.insert(k.into(), req);
                }
            }
            if state.is_some() && verify(shared, state) != Some("multiple_inputs:1") {
                return Err("requestState failed its integrity check".into());
            }
            if missing.is_empty() {
                let r = |k| response(resps, k).ok().flatten();
                let (n, g, c) = (r("user_name"), r("greeting"), r("client_roots"));
                done(&format!(
                    "name={}, greeting={}, roots={}",
                    n.map(|x| elicited(x, "name")).unwrap_or_default(),
                    g.map(sampled).unwrap_or_default(),
                    c.map(root_uris).unwrap_or_default()
                ))
            } else {
                input_required(id, missing, Some(sign(shared, "multiple_inputs:1")))
            }
        }
        "test_input_required_result_multi_round" => {
            let payload = verify(shared, state);
            if state.is_some() && payload.is_none() {
                return Err("requestState failed its integrity check".into());
            }
            let step1 = || elicit("Step 1: What is your name?", "name", "string");
            let step2 = || elicit("Step 2: What is your favorite color?", "color", "string");
            match payload {
                None => input_required(
                    id,
                    one("step1", step1()),
                    Some(sign(shared, "multi_round:1")),
                ),
                Some("multi_round:1") => match response(resps, "step1")? {
                    Some(r) => {
                        let name = elicited(r, "name").replace(['.', ':'], "_");
                        let next = sign(shared, &format!("multi_round:2:{name}"));
                        input_required(id, one("step2", step2()), Some(next))
                    }
                    None => input_required(
                        id,
                        one("step1", step1()),
                        Some(sign(shared, "multi_round:1")),
                    ),
                },
                Some(p) => {
                    let name = p.strip_prefix("multi_round:2:").unwrap_or("?");
                    match response(resps, "step2")? {
                        Some(r) => done(&format!(
                            "{name}'s favorite color is {}",
                            elicited(r, "color")
                        )),
                        None => input_required(id, one("step2", step2()), Some(sign(shared, p))),
                    }
                }
            }
        }
        "test_input_required_result_capabilities" => {
            if resps.is_some() {
                return Ok(done("Received the input the client could provide"));
            }
            let mut requests = Map::new();
            if caps.get("elicitation").is_some() {
                requests.insert(
                    "user_name".into(),
                    elicit("What is your name?", "name", "string"),
                );
            }
            if caps.get("sampling").is_some() {
                requests.insert("greeting".into(), sample("Generate a greeting", 50));
            }
            if caps.get("roots").is_some() {
                requests.insert("client_roots".into(), roots());
            }
            if requests.is_empty() {
                done("The client declared no capability to ask with; no input needed")
            } else {
                input_required(id, requests, None)
            }
        }
        _ => invalid(id, "unknown MRTR tool"),
    })
}

/// `prompts/get` of [`PROMPT`].
pub fn get_prompt(id: &Value, params: &Value) -> Bytes {
    let resps = match responses(params) {
        Ok(r) => r,
        Err(why) => return invalid(id, why),
    };
    match response(resps, "user_context") {
        Err(why) => invalid(id, &why),
        Ok(Some(r)) => rpc::result_msg(
            id,
            &json!({
                "description": "A prompt that requires elicitation input",
                "messages": [{ "role": "user", "content": {
                    "type": "text", "text": format!("Prompt with context: {}", elicited(r, "context"))
                } }]
            }),
        ),
        Ok(None) => input_required(
            id,
            one(
                "user_context",
                elicit("What context should the prompt use?", "context", "string"),
            ),
            None,
        ),
    }
}

//! Property tests: the JSON-RPC parser and the SSE decoder never panic, errors
//! carry only the two parse codes, and valid messages round-trip.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_mcp::jsonrpc::{
    self, ErrorObject, ErrorResponse, Id, Message, Notification, Parsed, Request, Response,
    INVALID_REQUEST, PARSE_ERROR,
};
use fleetgate_mcp::sse::{encode_event, SseDecoder};
use proptest::prelude::*;
use serde_json::{Map, Value};

const CASES: u32 = 2000;

/// JSON values without floats (serde_json's default float parsing is not
/// guaranteed to round-trip bit for bit), nested at most 4 deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Any JSON value, floats included.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("jsonrpc".to_owned()),
                    Just("id".to_owned()),
                    Just("method".to_owned()),
                    Just("params".to_owned()),
                    Just("result".to_owned()),
                    Just("error".to_owned()),
                    Just("code".to_owned()),
                    Just("message".to_owned()),
                    any::<String>(),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<i64>().prop_map(Id::Number),
        ".{0,16}".prop_map(Id::String),
    ]
}

fn params() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        prop::collection::btree_map("[a-zA-Z_/]{0,8}", json_value(), 0..5)
            .prop_map(|m| Some(Value::Object(m.into_iter().collect()))),
        prop::collection::vec(json_value(), 0..5).prop_map(|v| Some(Value::Array(v))),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let method = "[a-z/_]{1,24}|.{0,10}";
    prop_oneof![
        (id(), method, params()).prop_map(|(id, method, params)| Message::Request(Request {
            id,
            method,
            params
        })),
        (method, params())
            .prop_map(|(method, params)| Message::Notification(Notification { method, params })),
        (id(), json_value()).prop_map(|(id, result)| Message::Response(Response::new(id, &result))),
        (
            prop_oneof![id(), Just(Id::Null)],
            any::<i64>(),
            ".{0,20}",
            prop::option::of(json_value())
        )
            .prop_map(|(id, code, message, data)| {
                Message::Error(ErrorResponse {
                    id,
                    error: ErrorObject {
                        code,
                        message,
                        data,
                    },
                })
            }),
    ]
}

fn assert_parse_error_codes(r: &Result<Parsed, jsonrpc::ParseError>) {
    match r {
        Ok(Parsed::Batch(items)) => {
            for e in items.iter().filter_map(|i| i.as_ref().err()) {
                assert_eq!(e.code, INVALID_REQUEST);
                assert!(!e.message.is_empty());
            }
        }
        Ok(Parsed::Single(_)) => {}
        Err(e) => {
            assert!(e.code == PARSE_ERROR || e.code == INVALID_REQUEST, "{e:?}");
            assert!(!e.message.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let r = jsonrpc::parse(&bytes);
        assert_parse_error_codes(&r);
        let _ = jsonrpc::parse_message(&bytes);
    }

    #[test]
    fn json_ish_bytes_never_panic(s in r#"[\[\]{}":,0-9a-z\\. -]{0,200}"#) {
        assert_parse_error_codes(&jsonrpc::parse(s.as_bytes()));
    }

    #[test]
    fn arbitrary_json_is_never_a_parse_error(v in any_json()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let r = jsonrpc::parse(&bytes);
        assert_parse_error_codes(&r);
        if let Err(e) = &r {
            prop_assert_eq!(e.code, INVALID_REQUEST, "{}", e.message);
        }
        let _ = jsonrpc::from_value(v);
    }

    #[test]
    fn mutated_messages_never_panic(m in message(), key in "jsonrpc|id|method|params|result|error", replacement in any_json()) {
        let mut v: Value = serde_json::from_slice(&m.to_vec()).unwrap();
        v.as_object_mut().unwrap().insert(key, replacement);
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_parse_error_codes(&jsonrpc::parse(&bytes));
    }

    #[test]
    fn valid_messages_round_trip(m in message()) {
        let bytes = m.to_vec();
        let parsed = jsonrpc::parse_message(&bytes).unwrap();
        prop_assert_eq!(&parsed, &m);
        // The same through a pretty-printed body and as a Value.
        let pretty = serde_json::to_vec_pretty(&m).unwrap();
        prop_assert_eq!(&jsonrpc::parse_message(&pretty).unwrap(), &m);
        let v = serde_json::to_value(&m).unwrap();
        prop_assert_eq!(v.get("jsonrpc"), Some(&Value::from("2.0")));
        prop_assert_eq!(&jsonrpc::from_value(v).unwrap(), &m);
    }

    #[test]
    fn valid_batches_round_trip(ms in prop::collection::vec(message(), 1..6)) {
        let bytes = jsonrpc::encode_batch(&ms);
        match jsonrpc::parse(&bytes).unwrap() {
            Parsed::Batch(items) => {
                let items: Vec<Message> = items.into_iter().map(Result::unwrap).collect();
                prop_assert_eq!(items, ms);
            }
            Parsed::Single(_) => prop_assert!(false, "expected a batch"),
        }
    }

    #[test]
    fn sse_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
        let mut d = SseDecoder::with_max_event_size(256);
        let mut out = Vec::new();
        let cut = cut.min(bytes.len());
        if d.feed(&bytes[..cut], &mut out).is_ok() {
            let _ = d.feed(&bytes[cut..], &mut out);
        }
        let _ = d.finish();
    }

    #[test]
    fn sse_round_trips_across_any_chunking(
        events in prop::collection::vec((prop::option::of("[a-z0-9-]{1,8}"), prop::option::of("[a-z]{1,8}"), ".{0,40}"), 1..6),
        cuts in prop::collection::vec(0usize..1000, 0..8),
        crlf in any::<bool>(),
    ) {
        let mut stream = String::new();
        for (id, ev, data) in &events {
            stream.push_str(&encode_event(id.as_deref(), ev.as_deref(), data));
        }
        if crlf {
            stream = stream.replace('\n', "\r\n");
        }
        let bytes = stream.as_bytes();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut start = 0;
        for p in points.into_iter().chain(std::iter::once(bytes.len())) {
            d.feed(&bytes[start..p], &mut out).unwrap();
            start = p;
        }
        prop_assert_eq!(d.finish(), None);
        prop_assert_eq!(out.len(), events.len());
        let mut last_id: Option<String> = None;
        for (got, (id, ev, data)) in out.iter().zip(&events) {
            if id.is_some() {
                last_id = id.clone();
            }
            let want_data = data.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(&got.data, &want_data);
            prop_assert_eq!(&got.event, ev);
            prop_assert_eq!(&got.id, &last_id);
        }
    }
}

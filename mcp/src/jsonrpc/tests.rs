use super::*;
use serde_json::json;

fn single(s: &str) -> Result<Message, ParseError> {
    parse_message(s.as_bytes())
}

#[test]
fn request_notification_response_error() {
    let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#).unwrap();
    assert_eq!(
        m,
        Message::Request(Request {
            id: Id::Number(1),
            method: "tools/list".into(),
            params: Some(json!({}))
        })
    );
    let m = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert!(
        matches!(m, Message::Notification(ref n) if n.method == "notifications/initialized" && n.params.is_none())
    );
    let m = single(r#"{"jsonrpc":"2.0","id":"a","result":null}"#).unwrap();
    assert_eq!(
        m,
        Message::Response(Response::new("a".into(), &Value::Null))
    );
    let m =
        single(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x","data":[1]}}"#)
            .unwrap();
    assert_eq!(
        m,
        Message::Error(ErrorResponse {
            id: Id::Null,
            error: ErrorObject::new(-32700, "x").with_data(json!([1]))
        })
    );
    // id-less error body (HTTP 4xx) is accepted as id null
    let m = single(r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad"}}"#).unwrap();
    assert_eq!(m.id(), Some(&Id::Null));
}

#[test]
fn escaped_strings_and_unknown_members() {
    let m =
        single(r#"{"x":{"deep":[1,2,{"a":null}]},"jsonrpc":"2.0","id":"a\"b","method":"t\u00e9"}"#)
            .unwrap();
    assert_eq!(m.id(), Some(&Id::String("a\"b".into())));
    assert_eq!(m.method(), Some("té"));
}

#[test]
fn parse_errors() {
    for bad in [
        "",
        "   ",
        "{",
        "nul",
        "{\"jsonrpc\":\"2.0\",}",
        "\u{1}",
        "{} x",
    ] {
        let e = single(bad).unwrap_err();
        assert_eq!(e.code, PARSE_ERROR, "{bad:?}: {e}");
    }
    assert_eq!(parse_message(b"\xff\xfe").unwrap_err().code, PARSE_ERROR);
    assert_eq!(
        parse_message(b"{\"a\":\"\xff\"}").unwrap_err().code,
        PARSE_ERROR
    );
}

#[test]
fn invalid_requests_have_actionable_messages() {
    let cases = [
        (r#"{"id":1,"method":"a"}"#, "missing `jsonrpc`"),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"a"}"#,
            "exactly \"2.0\"",
        ),
        (r#"{"jsonrpc":2,"id":1,"method":"a"}"#, "the string \"2.0\""),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"a"}"#,
            "`id` must be a string or an integer",
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"a"}"#,
            "`id` must be a string or an integer",
        ),
        (
            r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#,
            "`id` must be a string or an integer",
        ),
        (
            r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"a"}"#,
            "too large",
        ),
        (r#"{"jsonrpc":"2.0","id":null,"method":"a"}"#, "not null"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            "`method` must be a string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":3}"#,
            "`params` must be an object or an array",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":null}"#,
            "`params` must be an object or an array",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"a","result":1}"#,
            "both `method`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
            "both `result` and `error`",
        ),
        (
            r#"{"jsonrpc":"2.0","result":1}"#,
            "needs the string or integer `id`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"result":1}"#,
            "needs the string or integer `id`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":"boom"}"#,
            "`error` must be an object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}"#,
            "missing its integer `code`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}"#,
            "`error.code` must be an integer",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#,
            "missing its string `message`",
        ),
        (r#"{"jsonrpc":"2.0","id":1}"#, "expected a `method`"),
        (
            r#"{"jsonrpc":"2.0","id":1,"params":{}}"#,
            "`params` without `method`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}"#,
            "more than once",
        ),
        ("[]", "empty batch"),
        ("3", "must be a JSON object"),
        ("\"x\"", "must be a JSON object"),
        ("null", "must be a JSON object"),
    ];
    for (input, needle) in cases {
        let e = parse(input.as_bytes()).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST, "{input}: {e}");
        assert!(
            e.message.contains(needle),
            "{input}: {e} (wanted {needle:?})"
        );
    }
}

#[test]
fn errors_carry_the_id_when_readable() {
    let e = single(r#"{"jsonrpc":"2.0","id":7,"method":"a","params":1}"#).unwrap_err();
    assert_eq!(e.id, Some(Id::Number(7)));
    let r = e.to_error_response();
    assert_eq!(r.id, Id::Number(7));
    assert_eq!(r.error.code, INVALID_REQUEST);
    let e = single(r#"{"jsonrpc":"1","id":"x","method":"a"}"#).unwrap_err();
    assert_eq!(e.id, Some(Id::String("x".into())));
}

#[test]
fn batches() {
    let p = parse(
        br#" [ {"jsonrpc":"2.0","id":1,"method":"a"}, 5, {"jsonrpc":"2.0","method":"n"}, [] ]"#,
    )
    .unwrap();
    let Parsed::Batch(items) = p else {
        panic!("not a batch")
    };
    assert_eq!(items.len(), 4);
    assert!(items[0].is_ok());
    assert_eq!(items[1].as_ref().unwrap_err().code, INVALID_REQUEST);
    assert!(items[2].is_ok());
    assert!(items[3].as_ref().unwrap_err().message.contains("nested"));
    // parse_message refuses batches
    assert_eq!(parse_message(b"[1]").unwrap_err().code, INVALID_REQUEST);
    // a syntactically broken batch is a parse error
    assert_eq!(parse(b"[{]").unwrap_err().code, PARSE_ERROR);
}

#[test]
fn serialization() {
    let bytes = encode_response(&Id::Number(3), &raw(&json!({"ok":true})));
    assert_eq!(bytes, br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#);
    let bytes = encode_error(&Id::Null, &ErrorObject::method_not_found("x/y"));
    assert_eq!(
        bytes,
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"Method not found: x/y"}}"#
    );
    let n = Message::Notification(Notification {
        method: "n".into(),
        params: None,
    });
    assert_eq!(n.to_vec(), br#"{"jsonrpc":"2.0","method":"n"}"#);
    let batch = encode_batch(&[n.clone(), n]);
    assert!(matches!(parse(&batch).unwrap(), Parsed::Batch(v) if v.len() == 2));
}

#[test]
fn a_result_keeps_the_senders_bytes() {
    let text = r#"{"jsonrpc":"2.0","id":7,"result":{"z":1,"a":[{"type":"text","text":"hi"}],"n":12345678901234567890123}}"#;
    let Ok(Parsed::Single(Message::Response(r))) = parse(text.as_bytes()) else {
        panic!("not a response");
    };
    assert_eq!(
        r.result.get(),
        r#"{"z":1,"a":[{"type":"text","text":"hi"}],"n":12345678901234567890123}"#
    );
    assert_eq!(encode_response(&r.id, &r.result), text.as_bytes());
}

#[test]
fn from_value_and_deserialize() {
    let v = json!({"jsonrpc":"2.0","id":"q","method":"ping"});
    let m = from_value(v.clone()).unwrap();
    assert_eq!(m.method(), Some("ping"));
    let m2: Message = serde_json::from_value(v).unwrap();
    assert_eq!(m, m2);
    assert!(serde_json::from_value::<Message>(json!({"id":1})).is_err());
    // A result read from a `Value` keeps its content.
    let r = from_value(json!({"jsonrpc":"2.0","id":2,"result":{"b":[1,2.5],"a":null}})).unwrap();
    assert_eq!(
        r,
        Message::Response(Response::new(Id::Number(2), &json!({"a":null,"b":[1,2.5]})))
    );
    let id: Id = serde_json::from_str("12").unwrap();
    assert_eq!(id, Id::Number(12));
    assert!(serde_json::from_str::<Id>("1.5").is_err());
}

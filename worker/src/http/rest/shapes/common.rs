//! What every resource's shapes share: tags, the masked secret, timestamps, and the
//! helpers and common components of the JSON Schemas (OpenAPI 3.0).

use crate::http::rest::error::tag_id;
use serde::Serialize;
use serde_json::{json, Value};

/// ContextForge's `settings.masked_auth_value`.
pub const MASKED: &str = "*****";

#[derive(Debug, Clone, Serialize)]
pub struct TagRead {
    pub id: String,
    pub label: String,
}

pub fn tags(labels: &[String]) -> Vec<TagRead> {
    labels
        .iter()
        .map(|l| TagRead {
            id: tag_id(l),
            label: l.clone(),
        })
        .collect()
}

pub(super) fn time<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

pub(super) fn s() -> Value {
    json!({"type": "string"})
}
pub(super) fn ns() -> Value {
    json!({"type": "string", "nullable": true})
}
pub(super) fn b() -> Value {
    json!({"type": "boolean"})
}
pub(super) fn int() -> Value {
    json!({"type": "integer"})
}
pub(super) fn dt() -> Value {
    json!({"type": "string", "format": "date-time"})
}
pub(super) fn obj() -> Value {
    json!({"type": "object", "additionalProperties": true})
}
pub(super) fn strs() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}
pub(super) fn tag_list() -> Value {
    json!({"type": "array", "items": {"$ref": "#/components/schemas/Tag"}})
}
pub(super) fn tags_in() -> Value {
    json!({"type": "array", "items": {"oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/Tag"}]}})
}

pub(super) fn object(props: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let map: serde_json::Map<String, Value> =
        props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    json!({"type": "object", "properties": map, "required": required})
}

/// `Tag`, `Detail`, `FieldError`, `Status`, `StateChange`.
pub(super) fn add_schemas(add: &mut impl FnMut(&str, Value)) {
    add(
        "Tag",
        object(vec![("id", s()), ("label", s())], &["id", "label"]),
    );
    add(
        "Detail",
        object(
            vec![(
                "detail",
                json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}]}),
            )],
            &["detail"],
        ),
    );
    add(
        "FieldError",
        object(
            vec![("type", s()), ("loc", strs()), ("msg", s())],
            &["type", "loc", "msg"],
        ),
    );
    add(
        "Status",
        object(
            vec![("status", s()), ("message", s())],
            &["status", "message"],
        ),
    );
    add(
        "StateChange",
        json!({
            "type": "object",
            "description": "ContextForge's state-change answer: status, message and the changed object under `gateway`, `tool`, `resource` or `prompt`.",
            "properties": {"status": s(), "message": s()},
            "required": ["status", "message"],
            "additionalProperties": true
        }),
    );
}

//! `x-mcp-header` tool parameters (2026-07-28, Streamable HTTP): a tool's
//! `inputSchema` may mark primitive properties, reachable from the root
//! through `properties` keys only, whose call arguments the client mirrors
//! as `Mcp-Param-{Name}` headers. A client rejects (leaves out of its tool
//! list) a tool whose annotations break the rules; [`ParamHeaders::of`]
//! says why.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::protocol::encode_header_value;

/// The schema keyword naming a mirrored parameter's header.
pub const X_MCP_HEADER: &str = "x-mcp-header";
/// The prefix of a mirrored parameter's header name.
pub const PARAM_HEADER_PREFIX: &str = "Mcp-Param-";

/// The largest integer JavaScript represents exactly (2^53 − 1): mirrored
/// integers must lie within ±this.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The mirrored parameters of one tool: where each sits in the arguments,
/// and its header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamHeaders {
    params: Vec<(Vec<String>, HeaderName)>,
}

impl ParamHeaders {
    /// Reads a tool's `inputSchema`. `Err(why)` when an annotation breaks
    /// the spec's rules (the tool must then not be offered).
    pub fn of(input_schema: &Value) -> Result<ParamHeaders, String> {
        let mut found = ParamHeaders::default();
        let mut path = Vec::new();
        collect(input_schema, &mut path, &mut found.params)?;
        let anywhere = count_annotations(input_schema, false);
        if anywhere != found.params.len() {
            return Err(format!(
                "an {X_MCP_HEADER} annotation sits where it is not statically reachable through `properties` (under items, a composition, a condition or $ref)"
            ));
        }
        for (i, (_, a)) in found.params.iter().enumerate() {
            if found.params[..i].iter().any(|(_, b)| a == b) {
                return Err(format!(
                    "{X_MCP_HEADER} {:?} is used twice (names are compared case-insensitively)",
                    a.as_str()
                ));
            }
        }
        Ok(found)
    }

    /// `true` when the tool mirrors nothing.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The headers for a call with `arguments`: one per annotated parameter
    /// that has a primitive value there (null or absent: no header).
    pub fn headers(&self, arguments: Option<&Value>) -> HeaderMap {
        let mut out = HeaderMap::new();
        let Some(arguments) = arguments else {
            return out;
        };
        for (path, name) in &self.params {
            let Some(v) = path.iter().try_fold(arguments, |v, k| v.get(k)) else {
                continue;
            };
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => match n.as_i64() {
                    Some(i) if i.abs() <= MAX_SAFE_INTEGER => i.to_string(),
                    _ => continue,
                },
                _ => continue,
            };
            if let Ok(v) = HeaderValue::from_str(&encode_header_value(&text)) {
                out.insert(name.clone(), v);
            }
        }
        out
    }
}

impl ParamHeaders {
    /// A server's check of a call's mirrored headers against its
    /// `arguments`: each annotated parameter with a primitive value needs its
    /// header, carrying that value (plain, or `=?base64?…?=` decoding to
    /// it); one without a value must have no header. `Err(why)` names the
    /// first header that fails.
    pub fn check(&self, headers: &HeaderMap, arguments: Option<&Value>) -> Result<(), String> {
        let expected = self.headers(arguments);
        for (_, name) in &self.params {
            let sent = headers.get(name);
            match (expected.get(name), sent) {
                (None, None) => {}
                (None, Some(_)) => {
                    return Err(format!("{name} is sent, but the call has no value for it"))
                }
                (Some(_), None) => {
                    return Err(format!("{name} is required by the tool and missing"))
                }
                (Some(want), Some(got)) => {
                    let decode = |v: &HeaderValue| {
                        v.to_str().ok().and_then(|t| {
                            crate::protocol::decode_header_value(t.trim()).map(|d| d.into_owned())
                        })
                    };
                    let Some(got) = decode(got) else {
                        return Err(format!(
                            "{name} is malformed (not valid base64 in =?base64?…?=)"
                        ));
                    };
                    if decode(want).as_deref() != Some(got.as_str()) {
                        return Err(format!("{name} value {got:?} does not match the argument"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Walks the `properties` chain from `schema`, collecting annotations.
fn collect(
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, HeaderName)>,
) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(annotation) = prop.get(X_MCP_HEADER) {
            let at = path.join(".");
            let name = annotation
                .as_str()
                .ok_or_else(|| format!("{X_MCP_HEADER} of {at:?} is not a string"))?;
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(format!(
                    "{X_MCP_HEADER} {name:?} of {at:?} is not an HTTP field-name token"
                ));
            }
            match prop.get("type").and_then(Value::as_str) {
                Some("string" | "integer" | "boolean") => {}
                other => {
                    return Err(format!(
                        "{X_MCP_HEADER} {name:?} marks {at:?} of type {}; only string, integer and boolean parameters may be mirrored",
                        other.map_or_else(|| "(none)".to_owned(), |t| format!("{t:?}"))
                    ))
                }
            }
            let header = HeaderName::try_from(format!("{PARAM_HEADER_PREFIX}{name}"))
                .map_err(|e| format!("{X_MCP_HEADER} {name:?} of {at:?}: {e}"))?;
            out.push((path.clone(), header));
        }
        collect(prop, path, out)?;
        path.pop();
    }
    Ok(())
}

/// How many `x-mcp-header` keywords the schema holds anywhere (a property
/// merely named `x-mcp-header` is not one).
fn count_annotations(v: &Value, is_properties_map: bool) -> usize {
    match v {
        Value::Object(m) if is_properties_map => {
            m.values().map(|c| count_annotations(c, false)).sum()
        }
        Value::Object(m) => m
            .iter()
            .map(|(k, c)| usize::from(k == X_MCP_HEADER) + count_annotations(c, k == "properties"))
            .sum(),
        Value::Array(a) => a.iter().map(|c| count_annotations(c, false)).sum(),
        _ => 0,
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotated_parameters_become_headers() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "query": {"type": "string"},
            "opts": {"type": "object", "properties": {
                "dry": {"type": "boolean", "x-mcp-header": "Dry"},
                "n": {"type": "integer", "x-mcp-header": "N"}
            }}
        }});
        let p = ParamHeaders::of(&schema).unwrap();
        let h = p.headers(Some(&json!({
            "region": "Hello, 世界", "query": "q",
            "opts": {"dry": true, "n": -7}
        })));
        assert_eq!(h.len(), 3);
        assert_eq!(h["mcp-param-region"], "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(h["mcp-param-dry"], "true");
        assert_eq!(h["mcp-param-n"], "-7");
        // Absent and null values: no header.
        let h = p.headers(Some(&json!({"region": null})));
        assert!(h.is_empty(), "{h:?}");
        assert!(ParamHeaders::of(&json!({"type": "object"}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_server_checks_mirrored_headers_against_the_arguments() {
        let p = ParamHeaders::of(&json!({"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}}}))
        .unwrap();
        let args = json!({"region": "Hello, 世界"});
        let mut h = p.headers(Some(&args));
        assert_eq!(p.check(&h, Some(&args)), Ok(()));
        let plain = json!({"region": "eu"});
        h.insert("mcp-param-region", HeaderValue::from_static("eu"));
        assert_eq!(p.check(&h, Some(&plain)), Ok(()));
        assert!(p.check(&h, Some(&args)).is_err(), "another value");
        h.insert(
            "mcp-param-region",
            HeaderValue::from_static("=?base64?SGVsbG8?="),
        ); // bad padding
        assert!(p.check(&h, Some(&json!({"region": "Hello"}))).is_err());
        h.insert(
            "mcp-param-region",
            HeaderValue::from_static("=?base64?S*?="),
        ); // bad character
        assert!(p.check(&h, Some(&plain)).is_err());
        assert!(p.check(&HeaderMap::new(), Some(&plain)).is_err(), "missing");
        assert_eq!(p.check(&HeaderMap::new(), Some(&json!({}))), Ok(()));
    }

    #[test]
    fn invalid_annotations_are_refused() {
        let bad = [
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "a b"}}}),
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "object", "x-mcp-header": "A"}}}),
            json!({"properties": {
                "a": {"type": "string", "x-mcp-header": "Same"},
                "b": {"type": "string", "x-mcp-header": "same"}}}),
            json!({"properties": {"a": {"type": "array",
                "items": {"type": "string", "x-mcp-header": "A"}}}}),
            json!({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
        ];
        for s in bad {
            assert!(ParamHeaders::of(&s).is_err(), "{s}");
        }
        // A property merely named like the keyword is no annotation.
        let ok = json!({"properties": {"x-mcp-header": {"type": "string"}}});
        assert!(ParamHeaders::of(&ok).unwrap().is_empty());
    }
}

//! Asking an upstream what it offers: connect (negotiating its era:
//! `server/discover`, else `initialize`; the era found is remembered by the
//! federation), list everything in that era, close; and turning the raw MCP
//! objects into the store's [`Discovered`]. A modern upstream's tool whose
//! `x-mcp-header` annotations break the spec's rules is left out, as the
//! spec requires of clients.

use crate::gateway::federation::Federation;
use fleetgate_mcp::upstream::ParamHeaders;
use fleetgate_mcp::{UpstreamError, UpstreamSession};
use fleetgate_store::{
    Discovered, DiscoveredPrompt, DiscoveredResource, DiscoveredResourceTemplate, DiscoveredTool,
    Transport,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a discovery found, plus the items that were skipped (and why).
pub struct Found {
    pub discovered: Discovered,
    pub skipped: Vec<String>,
}

/// Connects to `url` over `transport` with `headers` (probing its era
/// afresh), discovers everything and closes the session. Every error names
/// the URL. For [`Transport::Sse`],
/// `url` is the upstream's SSE endpoint (`http://host/sse`).
pub async fn discover(
    fed: &Federation,
    url: &str,
    transport: Transport,
    headers: &BTreeMap<String, String>,
) -> Result<Found, UpstreamError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        // Validated when the request was parsed; a stored bad header is skipped,
        // as the federation does.
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            map.insert(k, v);
        }
    }
    let session = fed
        .connect_probing(url, transport, headers, map, true)
        .await?;
    let result = from_session(&session).await;
    if let Err(e) = session.close().await {
        tracing::debug!(upstream = url, error = %e, "closing the discovery session failed");
    }
    result
}

async fn from_session(session: &UpstreamSession) -> Result<Found, UpstreamError> {
    let raw = session.discover().await?;
    let mut skipped = Vec::new();
    let stateless = session.is_stateless();
    let mut discovered = Discovered {
        tools: raw
            .tools
            .into_iter()
            .filter_map(|t| {
                keep(tool(&t), "tool", &t, &mut skipped)
                    .filter(|t| !stateless || headers_ok(t, &mut skipped))
            })
            .collect(),
        resources: raw
            .resources
            .into_iter()
            .filter_map(|r| keep(resource(&r), "resource", &r, &mut skipped))
            .collect(),
        resource_templates: raw
            .resource_templates
            .into_iter()
            .filter_map(|t| keep(template(&t), "resource template", &t, &mut skipped))
            .collect(),
        prompts: raw
            .prompts
            .into_iter()
            .filter_map(|p| keep(prompt(&p), "prompt", &p, &mut skipped))
            .collect(),
        capabilities: None,
    };
    let caps = session.server_capabilities();
    discovered.capabilities = Some(if caps.is_object() {
        caps.clone()
    } else {
        Value::Object(Default::default())
    });
    for s in &skipped {
        tracing::warn!(upstream = session.url(), "{s}");
    }
    Ok(Found {
        discovered,
        skipped,
    })
}

/// A modern upstream's tool whose `x-mcp-header` annotations are valid.
fn headers_ok(t: &DiscoveredTool, skipped: &mut Vec<String>) -> bool {
    match ParamHeaders::of(&t.input_schema) {
        Ok(_) => true,
        Err(why) => {
            skipped.push(format!("skipped the tool {:?}: {why}", t.name));
            false
        }
    }
}

fn keep<T>(item: Option<T>, what: &str, raw: &Value, skipped: &mut Vec<String>) -> Option<T> {
    if item.is_none() {
        let mut shown = raw.to_string();
        if shown.len() > 200 {
            let mut end = 200;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
        }
        skipped.push(format!(
            "skipped a {what} without a usable name/uri: {shown}"
        ));
    }
    item
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn non_empty(v: &Value, key: &str) -> Option<String> {
    str_of(v, key).filter(|s| !s.trim().is_empty())
}

fn tool(v: &Value) -> Option<DiscoveredTool> {
    Some(DiscoveredTool {
        name: non_empty(v, "name")?,
        title: str_of(v, "title"),
        description: str_of(v, "description"),
        input_schema: v.get("inputSchema").cloned().unwrap_or(Value::Null),
        output_schema: v.get("outputSchema").cloned().filter(|s| !s.is_null()),
        annotations: v.get("annotations").cloned().unwrap_or(Value::Null),
    })
}

fn resource(v: &Value) -> Option<DiscoveredResource> {
    let uri = non_empty(v, "uri")?;
    Some(DiscoveredResource {
        name: non_empty(v, "name").unwrap_or_else(|| uri.clone()),
        uri,
        description: str_of(v, "description"),
        mime_type: str_of(v, "mimeType"),
        size: v.get("size").and_then(Value::as_i64),
    })
}

fn template(v: &Value) -> Option<DiscoveredResourceTemplate> {
    let uri_template = non_empty(v, "uriTemplate")?;
    Some(DiscoveredResourceTemplate {
        name: non_empty(v, "name").unwrap_or_else(|| uri_template.clone()),
        uri_template,
        description: str_of(v, "description"),
        mime_type: str_of(v, "mimeType"),
    })
}

fn prompt(v: &Value) -> Option<DiscoveredPrompt> {
    Some(DiscoveredPrompt {
        name: non_empty(v, "name")?,
        title: str_of(v, "title"),
        description: str_of(v, "description"),
        arguments: v.get("arguments").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_objects_become_store_items() {
        let t =
            tool(&json!({"name": "echo", "description": "d", "inputSchema": {"type": "object"}}))
                .unwrap();
        assert_eq!(t.name, "echo");
        assert_eq!(t.input_schema, json!({"type": "object"}));
        assert!(tool(&json!({"description": "nameless"})).is_none());
        let r = resource(&json!({"uri": "test://x", "mimeType": "text/plain", "size": 3})).unwrap();
        assert_eq!((r.name.as_str(), r.size), ("test://x", Some(3)));
        let p = prompt(&json!({"name": "p", "arguments": [{"name": "a"}]})).unwrap();
        assert_eq!(p.arguments, json!([{"name": "a"}]));
        assert!(template(&json!({"name": "t"})).is_none());
    }
}

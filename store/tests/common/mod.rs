//! Shared test helpers: open a migrated store, build discovery payloads.
#![allow(dead_code)]

use fleetgate_store::{
    connect, Discovered, DiscoveredPrompt, DiscoveredResource, DiscoveredResourceTemplate,
    DiscoveredTool, NewGateway, Store,
};
use serde_json::{json, Value};

/// Connect to `url` and apply migrations.
pub async fn open(url: &str) -> Store {
    let store = connect(Some(url))
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    store.migrate().await.expect("migrate");
    store
}

pub fn tool(name: &str) -> DiscoveredTool {
    DiscoveredTool {
        name: name.to_owned(),
        description: Some(format!("the {name} tool")),
        input_schema: json!({"type": "object", "properties": {"x": {"type": "string"}}}),
        ..Default::default()
    }
}

pub fn resource(uri: &str) -> DiscoveredResource {
    DiscoveredResource {
        uri: uri.to_owned(),
        name: uri.rsplit('/').next().unwrap_or(uri).to_owned(),
        mime_type: Some("text/plain".to_owned()),
        ..Default::default()
    }
}

pub fn template(uri_template: &str) -> DiscoveredResourceTemplate {
    DiscoveredResourceTemplate {
        uri_template: uri_template.to_owned(),
        name: "tmpl".to_owned(),
        ..Default::default()
    }
}

pub fn prompt(name: &str) -> DiscoveredPrompt {
    DiscoveredPrompt {
        name: name.to_owned(),
        description: Some("a prompt".to_owned()),
        arguments: json!([{"name": "topic", "required": true}]),
        ..Default::default()
    }
}

pub fn discovered(tools: &[&str]) -> Discovered {
    Discovered {
        tools: tools.iter().map(|t| tool(t)).collect(),
        ..Default::default()
    }
}

pub fn full_discovery() -> Discovered {
    Discovered {
        tools: vec![tool("get_weather"), tool("Echo")],
        resources: vec![resource("file:///etc/motd"), resource("file:///readme.md")],
        resource_templates: vec![template("file:///logs/{date}")],
        prompts: vec![prompt("summarize")],
        capabilities: Some(json!({"tools": {"listChanged": true}})),
    }
}

pub fn gateway(name: &str) -> NewGateway {
    NewGateway {
        name: name.to_owned(),
        url: "http://127.0.0.1:9/mcp".to_owned(),
        description: Some(format!("{name} upstream")),
        ..Default::default()
    }
}

pub fn schema_default() -> Value {
    json!({"type": "object"})
}

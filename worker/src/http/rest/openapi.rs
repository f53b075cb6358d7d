//! The route table: one [`Route`] per method and path, used both to build the axum
//! router ([`super::routes`]) and to generate `/openapi.json`, so the document
//! cannot drift from what is served. `/docs` is a small self-contained page that
//! renders the document (no CDN assets).

use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }
}

/// What a successful answer carries.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// One object of this component schema.
    One(&'static str),
    /// An array of them (or, with `include_pagination=true`, `{key: [...], nextCursor}`).
    Many(&'static str),
    /// An HTML page.
    Html,
    /// Free-form JSON.
    Any,
}

/// A query parameter: name, JSON type, description.
pub type Param = (&'static str, &'static str, &'static str);

/// One method on one path.
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub query: &'static [Param],
    pub body: Option<&'static str>,
    pub status: u16,
    pub reply: Reply,
    pub errors: &'static [u16],
    /// Also served with a trailing `/` (undocumented), as ContextForge does for collections.
    pub slash: bool,
    /// Served but left out of the document (legacy aliases).
    pub hidden: bool,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    pub fn new(
        verb: Verb,
        path: &'static str,
        tag: &'static str,
        summary: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Route {
        Route {
            verb,
            path,
            tag,
            summary,
            query: &[],
            body: None,
            status: 200,
            reply: Reply::Any,
            errors: &[],
            slash: false,
            hidden: false,
            handler,
        }
    }

    pub fn query(mut self, q: &'static [Param]) -> Route {
        self.query = q;
        self
    }

    pub fn body(mut self, schema: &'static str) -> Route {
        self.body = Some(schema);
        self
    }

    pub fn reply(mut self, status: u16, reply: Reply) -> Route {
        self.status = status;
        self.reply = reply;
        self
    }

    pub fn errors(mut self, codes: &'static [u16]) -> Route {
        self.errors = codes;
        self
    }

    pub fn slash(mut self) -> Route {
        self.slash = true;
        self
    }

    pub fn hidden(mut self) -> Route {
        self.hidden = true;
        self
    }
}

/// The query parameters of every list endpoint (ContextForge's names).
pub const LIST_QUERY: &[Param] = &[
    (
        "include_inactive",
        "boolean",
        "Include disabled items (default false)",
    ),
    (
        "limit",
        "integer",
        "Page size (default 50, at most 500); 0 returns everything",
    ),
    ("cursor", "string", "The nextCursor of the previous page"),
    (
        "include_pagination",
        "boolean",
        "Answer {items, nextCursor} instead of a bare array",
    ),
    ("gateway_id", "string", "Only items of this gateway"),
    (
        "tags",
        "string",
        "Comma-separated tags; items with any of them",
    ),
];

/// `?activate=` of the state endpoints.
pub const STATE_QUERY: &[Param] = &[(
    "activate",
    "boolean",
    "true to enable (default), false to disable",
)];

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        404 => "Not found",
        409 => "Conflict (duplicate name or id)",
        422 => "Validation error (the field is named in detail)",
        502 => "The upstream could not be reached or is not an MCP server (the URL is named)",
        503 => "The database is unavailable",
        504 => "The upstream did not answer in time",
        _ => "Error",
    }
}

fn reply_schema(reply: Reply) -> Option<Value> {
    match reply {
        Reply::One(name) => Some(json!({"$ref": format!("#/components/schemas/{name}")})),
        Reply::Many(name) => Some(json!({
            "type": "array",
            "items": {"$ref": format!("#/components/schemas/{name}")}
        })),
        Reply::Html | Reply::Any => None,
    }
}

/// The OpenAPI 3.0 document for `routes`.
pub fn document(routes: &[Route], schemas: Value) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in routes.iter().filter(|r| !r.hidden) {
        let mut op = Map::new();
        op.insert("tags".into(), json!([r.tag]));
        op.insert("summary".into(), json!(r.summary));
        op.insert(
            "operationId".into(),
            json!(format!("{}_{}", r.verb.as_str(), operation_name(r.path))),
        );
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(r.query.iter().map(|(name, ty, desc)| {
            json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": ty}})
        }));
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = r.body {
            op.insert(
                "requestBody".into(),
                json!({
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}
                }),
            );
        }
        let mut responses = Map::new();
        let ok = match (r.reply, reply_schema(r.reply)) {
            (Reply::Html, _) => json!({
                "description": reason(r.status),
                "content": {"text/html": {"schema": {"type": "string"}}}
            }),
            (_, Some(schema)) => json!({
                "description": reason(r.status),
                "content": {"application/json": {"schema": schema}}
            }),
            (_, None) => json!({
                "description": reason(r.status),
                "content": {"application/json": {"schema": {"type": "object"}}}
            }),
        };
        responses.insert(r.status.to_string(), ok);
        for code in r.errors {
            responses.insert(
                code.to_string(),
                json!({
                    "description": reason(*code),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
                }),
            );
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.verb.as_str().to_owned(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "fleetgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "fleetgate's REST API: ContextForge-compatible paths and JSON shapes (camelCase answers; request bodies in snake_case or camelCase)."
        },
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn operation_name(path: &str) -> String {
    let name: String = path
        .trim_matches('/')
        .split('/')
        .map(|seg| seg.trim_matches(|c| c == '{' || c == '}'))
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() {
        "root".into()
    } else {
        name
    }
}

/// `GET /openapi.json`, generated once from the route table.
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| {
        let doc = document(&super::table(), super::shapes::schemas());
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into())
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}

/// `GET /docs`: renders `/openapi.json` as a plain listing.
pub async fn docs() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        DOCS_HTML,
    )
        .into_response()
}

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fleetgate API</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }
details { margin: .3rem 0; border: 1px solid #ddd; border-radius: 4px; padding: .3rem .6rem; }
summary { cursor: pointer; }
.m { display: inline-block; min-width: 4.5rem; font-weight: bold; font-family: monospace; }
.get { color: #0a7; } .post { color: #06c; } .put { color: #c70; } .delete { color: #c33; }
code, pre { font-family: monospace; background: #f6f6f6; }
pre { padding: .5rem; overflow-x: auto; }
</style>
</head>
<body>
<h1>fleetgate API</h1>
<p>Generated from <a href="/openapi.json">/openapi.json</a>.</p>
<div id="out">Loading…</div>
<script>
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function ref(s) { return s && s.$ref ? s.$ref.split('/').pop() : JSON.stringify(s); }
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const out = document.getElementById('out');
  out.textContent = '';
  const byTag = {};
  for (const path in doc.paths) for (const verb in doc.paths[path]) {
    const op = doc.paths[path][verb];
    const tag = (op.tags || ['other'])[0];
    (byTag[tag] = byTag[tag] || []).push([verb, path, op]);
  }
  for (const tag in byTag) {
    out.appendChild(el('h2', {}, tag));
    for (const [verb, path, op] of byTag[tag]) {
      const d = el('details');
      const s = el('summary');
      s.appendChild(el('span', {class: 'm ' + verb}, verb.toUpperCase()));
      s.appendChild(el('code', {}, path));
      s.appendChild(document.createTextNode(' — ' + (op.summary || '')));
      d.appendChild(s);
      for (const p of (op.parameters || []))
        d.appendChild(el('div', {}, p.in + ' ' + p.name + ' (' + p.schema.type + ')' + (p.description ? ': ' + p.description : '')));
      if (op.requestBody) {
        const name = ref(op.requestBody.content['application/json'].schema);
        d.appendChild(el('div', {}, 'body: ' + name));
        d.appendChild(el('pre', {}, JSON.stringify(doc.components.schemas[name], null, 2)));
      }
      for (const code in op.responses) {
        const resp = op.responses[code];
        const c = resp.content && (resp.content['application/json'] || resp.content['text/html']);
        const sch = c && c.schema;
        const what = sch ? (sch.type === 'array' ? '[' + ref(sch.items) + ']' : ref(sch)) : '';
        d.appendChild(el('div', {}, code + ' ' + resp.description + (what ? ': ' + what : '')));
      }
      out.appendChild(d);
    }
  }
  out.appendChild(el('h2', {}, 'Schemas'));
  for (const name in doc.components.schemas) {
    const d = el('details');
    d.appendChild(el('summary', {}, name));
    d.appendChild(el('pre', {}, JSON.stringify(doc.components.schemas[name], null, 2)));
    out.appendChild(d);
  }
}).catch(e => { document.getElementById('out').textContent = 'Could not load /openapi.json: ' + e; });
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_params_and_operation_names() {
        assert_eq!(path_params("/servers/{id}/tools"), vec!["id"]);
        assert_eq!(operation_name("/servers/{id}/tools"), "servers_id_tools");
    }

    #[test]
    fn document_covers_every_visible_route_and_resolves_refs() {
        let table = super::super::table();
        let schemas = super::super::shapes::schemas();
        let doc = document(&table, schemas.clone());
        for r in table.iter().filter(|r| !r.hidden) {
            assert!(
                doc["paths"][r.path][r.verb.as_str()].is_object(),
                "{:?} {} missing",
                r.verb,
                r.path
            );
        }
        // Every $ref points at a defined schema.
        let text = doc.to_string();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.get(&name).is_some(), "undefined schema {name}");
        }
    }
}

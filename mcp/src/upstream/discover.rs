//! Discovery: what an upstream offers (tools, resources, resource templates,
//! prompts), every page of it, in upstream order.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{NoopHandler, UpstreamError, UpstreamSession};
use crate::jsonrpc::METHOD_NOT_FOUND;
use crate::protocol::methods;

/// How many pages [`UpstreamSession::list_all`] follows.
pub const MAX_PAGES: usize = 1000;

/// What [`UpstreamSession::discover`] found: the raw objects, in upstream
/// order, across all pages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    /// `tools/list` → `tools`.
    pub tools: Vec<Value>,
    /// `resources/list` → `resources`.
    pub resources: Vec<Value>,
    /// `resources/templates/list` → `resourceTemplates`.
    pub resource_templates: Vec<Value>,
    /// `prompts/list` → `prompts`.
    pub prompts: Vec<Value>,
}

/// [`UpstreamSession::discover`] as a free function.
pub async fn discover(session: &UpstreamSession) -> Result<Discovered, UpstreamError> {
    session.discover().await
}

impl UpstreamSession {
    /// Lists tools, resources, resource templates and prompts, following
    /// `nextCursor`. Only what the server's capabilities announce is asked
    /// for; a -32601 to a list is read as an empty list. The four lists are
    /// fetched concurrently, each page with the session's deadline.
    pub async fn discover(&self) -> Result<Discovered, UpstreamError> {
        let caps = &self.server_capabilities;
        let has = |k: &str| caps.get(k).is_some_and(|v| !v.is_null());
        let (tools, resources, resource_templates, prompts) = tokio::try_join!(
            self.list_if(has("tools"), methods::TOOLS_LIST, "tools"),
            self.list_if(has("resources"), methods::RESOURCES_LIST, "resources"),
            self.list_if(
                has("resources"),
                methods::RESOURCE_TEMPLATES_LIST,
                "resourceTemplates"
            ),
            self.list_if(has("prompts"), methods::PROMPTS_LIST, "prompts"),
        )?;
        Ok(Discovered {
            tools,
            resources,
            resource_templates,
            prompts,
        })
    }

    async fn list_if(
        &self,
        wanted: bool,
        method: &str,
        key: &str,
    ) -> Result<Vec<Value>, UpstreamError> {
        if !wanted {
            return Ok(Vec::new());
        }
        match self.list_all(method, key).await {
            Err(UpstreamError::Rpc { error, .. }) if error.code == METHOD_NOT_FOUND => {
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// Calls a paginated list method until `nextCursor` runs out and returns
    /// the concatenated `key` arrays. A repeated cursor or more than
    /// [`MAX_PAGES`] pages is a protocol error.
    pub async fn list_all(&self, method: &str, key: &str) -> Result<Vec<Value>, UpstreamError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
            let mut result = self.request(method, params, &NoopHandler).await?;
            match result.get_mut(key).map(Value::take) {
                Some(Value::Array(page)) => items.extend(page),
                Some(Value::Null) | None => {}
                Some(_) => {
                    return Err(self
                        .inner
                        .protocol(format!("the {method} result's `{key}` is not an array")))
                }
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    if !seen.insert(next.to_owned()) {
                        return Err(self.inner.protocol(format!(
                            "{method} pagination loops (cursor {next:?} came back)"
                        )));
                    }
                    cursor = Some(next.to_owned());
                }
                _ => return Ok(items),
            }
        }
        Err(self
            .inner
            .protocol(format!("{method} returned more than {MAX_PAGES} pages")))
    }
}

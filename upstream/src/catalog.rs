//! What the server offers: tools, resources, resource templates, prompts and completions.
//!
//! The conformance tools, resources and prompts follow the names and behaviours the MCP
//! conformance suite's server scenarios expect; `echo`, `add`, `slow`, `echo_headers`,
//! `notify_*` are fleetgate's own test tools.

use std::collections::HashMap;

use serde_json::{json, Value};

/// A 1x1 red PNG.
pub const TEST_IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal (44-byte header + 2 sample bytes) WAV file.
pub const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// Every tool, by behaviour. The listing order is the order of [`TOOLS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Echo,
    Add,
    Slow,
    EchoHeaders,
    NotifyResourceUpdated,
    NotifyListChanged,
    NotifyLater,
    Reveal,
    EndStream,
    SimpleText,
    ImageContent,
    AudioContent,
    EmbeddedResource,
    MultipleContentTypes,
    WithLogging,
    WithProgress,
    ErrorHandling,
    Reconnection,
    Sampling,
    Elicitation,
    ElicitationDefaults,
    ElicitationEnums,
    JsonSchema2020,
}

pub struct ToolDef {
    pub tool: Tool,
    pub name: &'static str,
    pub description: &'static str,
    pub schema: fn() -> Value,
    pub output_schema: Option<fn() -> Value>,
}

fn empty_schema() -> Value {
    json!({ "type": "object", "properties": {} })
}

pub const TOOLS: &[ToolDef] = &[
    ToolDef {
        tool: Tool::Echo,
        name: "echo",
        description: "Returns its `text` argument unchanged as text content.",
        schema: || {
            json!({
                "type": "object",
                "properties": { "text": { "type": "string", "description": "Text to echo back" } },
                "required": ["text"]
            })
        },
        output_schema: None,
    },
    ToolDef {
        tool: Tool::Add,
        name: "add",
        description: "Adds two numbers `a` and `b`; returns the sum as text and as structuredContent {sum}.",
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "a": { "type": "number", "description": "First addend" },
                    "b": { "type": "number", "description": "Second addend" }
                },
                "required": ["a", "b"]
            })
        },
        output_schema: Some(|| {
            json!({
                "type": "object",
                "properties": { "sum": { "type": "number" } },
                "required": ["sum"]
            })
        }),
    },
    ToolDef {
        tool: Tool::Slow,
        name: "slow",
        description: "Sleeps `ms` milliseconds (default 100, at most 600000) then returns. Reports progress at start and end when the request carries a progressToken; can be cancelled with notifications/cancelled.",
        schema: || {
            json!({
                "type": "object",
                "properties": { "ms": { "type": "integer", "minimum": 0, "description": "Milliseconds to sleep" } }
            })
        },
        output_schema: None,
    },
    ToolDef {
        tool: Tool::EchoHeaders,
        name: "echo_headers",
        description: "Returns the HTTP request headers of this tools/call (lower-cased names) as structuredContent and as JSON text. `region` is marked `x-mcp-header: Region`: 2026-07-28 clients send it as `Mcp-Param-Region` too.",
        schema: || {
            json!({
                "type": "object",
                "properties": { "region": { "type": "string", "x-mcp-header": "Region" } }
            })
        },
        output_schema: None,
    },
    ToolDef {
        tool: Tool::NotifyResourceUpdated,
        name: "notify_resource_updated",
        description: "Sends notifications/resources/updated for `uri` (default test://watched-resource) on the session's standalone GET stream if the session subscribed to it; session-less (2026-07-28), to every subscriptions/listen stream whose resourceSubscriptions hold it.",
        schema: || {
            json!({
                "type": "object",
                "properties": { "uri": { "type": "string" } }
            })
        },
        output_schema: None,
    },
    ToolDef {
        tool: Tool::NotifyListChanged,
        name: "notify_list_changed",
        description: "Sends notifications/tools/list_changed, notifications/resources/list_changed and notifications/prompts/list_changed on the session's standalone GET stream (and to stateless subscriptions/listen streams).",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::Reveal,
        name: "reveal_tool",
        description: "Adds the tool `revealed` to this server's tools/list (for every session, from now on) and sends notifications/tools/list_changed on the calling session's standalone GET stream: an upstream whose catalog really changes.",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::EndStream,
        name: "end_stream",
        description: "Ends the calling session's standalone GET stream, as a server restarting its streams would; answers `ended` (or `no standalone GET stream is open`).",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::NotifyLater,
        name: "notify_later",
        description: "Answers `scheduled` at once; `delay_ms` (default 300) later sends, on the session's standalone GET stream and outside any request, notifications/message {level: info, logger: the server name, data: \"notify_later\"} (subject to logging/setLevel) and, if the session subscribed to `uri` (default test://watched-resource), notifications/resources/updated {uri}. Without an open standalone stream then, they are dropped.",
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "delay_ms": { "type": "integer", "minimum": 0, "default": 300, "description": "Milliseconds to wait before sending" },
                    "uri": { "type": "string", "default": "test://watched-resource", "description": "Resource whose update is announced if subscribed" }
                }
            })
        },
        output_schema: None,
    },
    ToolDef {
        tool: Tool::SimpleText,
        name: "test_simple_text",
        description: "Tests simple text content response",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::ImageContent,
        name: "test_image_content",
        description: "Tests image content response",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::AudioContent,
        name: "test_audio_content",
        description: "Tests audio content response",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::EmbeddedResource,
        name: "test_embedded_resource",
        description: "Tests embedded resource content response",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::MultipleContentTypes,
        name: "test_multiple_content_types",
        description: "Tests response with multiple content types (text, image, resource)",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::WithLogging,
        name: "test_tool_with_logging",
        description: "Tests tool that emits log messages during execution",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::WithProgress,
        name: "test_tool_with_progress",
        description: "Tests tool that reports progress notifications",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::ErrorHandling,
        name: "test_error_handling",
        description: "Tests error response handling",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::Reconnection,
        name: "test_reconnection",
        description: "Tests SSE stream disconnection and client reconnection (SEP-1699): the server closes the stream mid-call and sends the result after the client reconnects with Last-Event-ID.",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::Sampling,
        name: "test_sampling",
        description: "Tests server-initiated sampling (LLM completion request)",
        schema: || {
            json!({
                "type": "object",
                "properties": { "prompt": { "type": "string", "description": "The prompt to send to the LLM" } },
                "required": ["prompt"]
            })
        },
        output_schema: None,
    },
    ToolDef {
        tool: Tool::Elicitation,
        name: "test_elicitation",
        description: "Tests server-initiated elicitation (user input request)",
        schema: || {
            json!({
                "type": "object",
                "properties": { "message": { "type": "string", "description": "The message to show the user" } },
                "required": ["message"]
            })
        },
        output_schema: None,
    },
    ToolDef {
        tool: Tool::ElicitationDefaults,
        name: "test_elicitation_sep1034_defaults",
        description: "Tests elicitation with default values per SEP-1034",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::ElicitationEnums,
        name: "test_elicitation_sep1330_enums",
        description: "Tests elicitation with enum schema improvements per SEP-1330",
        schema: empty_schema,
        output_schema: None,
    },
    ToolDef {
        tool: Tool::JsonSchema2020,
        name: "json_schema_2020_12_tool",
        description: "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
        schema: || {
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": {
                            "street": { "type": "string" },
                            "city": { "type": "string" }
                        }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                    "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                    "phone": { "type": "string" },
                    "email": { "type": "string" }
                },
                "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
                "if": {
                    "properties": { "contactMethod": { "const": "phone" } },
                    "required": ["contactMethod"]
                },
                "then": { "required": ["phone"] },
                "else": { "required": ["email"] },
                "additionalProperties": false
            })
        },
        output_schema: None,
    },
];

/// Diagnostic tools of the stateless draft's conformance scenarios, listed (and served)
/// only to session-less 2026-07-28 requests.
pub const DRAFT_TOOLS: &[(&str, &str)] = &[
    (
        "test_missing_capability",
        "Requires the client's sampling capability (-32021 without it)",
    ),
    (
        "test_streaming_elicitation",
        "Streams a progress notification, then its result",
    ),
    (
        "test_logging_tool",
        "Sends a log message only when the request's _meta sets a logLevel",
    ),
    (
        "test_trigger_tool_change",
        "Adds the tool `revealed` to tools/list and sends notifications/tools/list_changed to subscriptions/listen streams",
    ),
    (
        "test_trigger_prompt_change",
        "Sends notifications/prompts/list_changed to subscriptions/listen streams",
    ),
];

/// The catalog as served: tool names (with prefix), their lookup table and pre-serialized
/// list results.
/// The tool `reveal_tool` adds to the listing.
pub const REVEALED: &str = "revealed";

pub struct Catalog {
    pub tool_names: Vec<String>,
    /// tools/list once `reveal_tool` was called: [`TOOLS`] plus [`REVEALED`].
    pub revealed_tools_list: Vec<u8>,
    lookup: HashMap<String, usize>,
    pub tools_list: Vec<u8>,
    /// tools/list for stateless draft requests: [`TOOLS`] plus [`DRAFT_TOOLS`].
    pub draft_tools_list: Vec<u8>,
    /// The same once `revealed` is listed.
    pub revealed_draft_tools_list: Vec<u8>,
    pub resources_list: Vec<u8>,
    pub templates_list: Vec<u8>,
    pub prompts_list: Vec<u8>,
    /// prompts/list for stateless draft requests (adds the MRTR prompt).
    pub draft_prompts_list: Vec<u8>,
}

impl Catalog {
    pub fn new(prefix: &str) -> Self {
        let tool_names: Vec<String> = TOOLS
            .iter()
            .map(|t| format!("{prefix}{}", t.name))
            .collect();
        let lookup = tool_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let tools: Vec<Value> = TOOLS
            .iter()
            .zip(&tool_names)
            .map(|(t, name)| {
                let mut v = json!({
                    "name": name,
                    "description": t.description,
                    "inputSchema": (t.schema)(),
                });
                if let Some(out) = t.output_schema {
                    v["outputSchema"] = out();
                }
                v
            })
            .collect();
        let to_vec = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
        let mut draft_tools = tools.clone();
        draft_tools.extend(DRAFT_TOOLS.iter().chain(crate::mrtr::TOOLS).chain(crate::tasks::TOOLS).map(|(name, description)| {
            json!({ "name": format!("{prefix}{name}"), "description": description, "inputSchema": empty_schema() })
        }));
        let revealed_tool = json!({
            "name": format!("{prefix}{REVEALED}"),
            "description": "Listed once reveal_tool was called; answers `revealed`.",
            "inputSchema": empty_schema(),
        });
        let mut revealed = tools.clone();
        revealed.push(revealed_tool.clone());
        let mut revealed_draft = draft_tools.clone();
        revealed_draft.push(revealed_tool);
        Self {
            revealed_tools_list: to_vec(json!({ "tools": revealed })),
            tool_names,
            lookup,
            tools_list: to_vec(json!({ "tools": tools })),
            draft_tools_list: to_vec(json!({ "tools": draft_tools })),
            revealed_draft_tools_list: to_vec(json!({ "tools": revealed_draft })),
            resources_list: to_vec(json!({ "resources": resources() })),
            templates_list: to_vec(json!({ "resourceTemplates": [{
                "uriTemplate": "test://template/{id}/data",
                "name": "template",
                "title": "Resource Template",
                "description": "A resource template with parameter substitution",
                "mimeType": "application/json"
            }] })),
            prompts_list: to_vec(json!({ "prompts": prompts() })),
            draft_prompts_list: {
                let mut p = prompts();
                if let Some(a) = p.as_array_mut() {
                    a.push(json!({
                        "name": crate::mrtr::PROMPT,
                        "description": "MRTR: a prompt that asks for context (elicitation) first"
                    }));
                }
                to_vec(json!({ "prompts": p }))
            },
        }
    }

    /// Index into [`TOOLS`] of the tool listed under `name`.
    #[inline]
    pub fn tool_index(&self, name: &str) -> Option<usize> {
        self.lookup.get(name).copied()
    }
}

fn resources() -> Value {
    json!([
        {
            "uri": "test://static-text",
            "name": "static-text",
            "title": "Static Text Resource",
            "description": "A static text resource for testing",
            "mimeType": "text/plain"
        },
        {
            "uri": "test://static-binary",
            "name": "static-binary",
            "title": "Static Binary Resource",
            "description": "A static binary resource (image) for testing",
            "mimeType": "image/png"
        },
        {
            "uri": "test://watched-resource",
            "name": "watched-resource",
            "title": "Watched Resource",
            "description": "A subscribable resource (notify_resource_updated sends its update notification)",
            "mimeType": "text/plain"
        }
    ])
}

fn prompts() -> Value {
    json!([
        {
            "name": "test_simple_prompt",
            "title": "Simple Test Prompt",
            "description": "A simple prompt without arguments"
        },
        {
            "name": "test_prompt_with_arguments",
            "title": "Prompt With Arguments",
            "description": "A prompt with required arguments",
            "arguments": [
                { "name": "arg1", "description": "First test argument", "required": true },
                { "name": "arg2", "description": "Second test argument", "required": true }
            ]
        },
        {
            "name": "test_prompt_with_embedded_resource",
            "title": "Prompt With Embedded Resource",
            "description": "A prompt that includes an embedded resource",
            "arguments": [
                { "name": "resourceUri", "description": "URI of the resource to embed", "required": true }
            ]
        },
        {
            "name": "test_prompt_with_image",
            "title": "Prompt With Image",
            "description": "A prompt that includes image content"
        }
    ])
}

/// `resources/read`: the contents, or `None` if there is no such resource.
pub fn read_resource(uri: &str) -> Option<Value> {
    let content = match uri {
        "test://static-text" => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource."
        }),
        "test://static-binary" => json!({
            "uri": uri,
            "mimeType": "image/png",
            "blob": TEST_IMAGE_BASE64
        }),
        "test://watched-resource" => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "Watched resource content"
        }),
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            let text =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
            json!({ "uri": uri, "mimeType": "application/json", "text": text.to_string() })
        }
    };
    Some(json!({ "contents": [content] }))
}

pub enum PromptError {
    Unknown,
    MissingArgument(&'static str),
}

/// `prompts/get`.
pub fn get_prompt(name: &str, args: Option<&Value>) -> Result<Value, PromptError> {
    let arg = |k: &'static str| -> Result<String, PromptError> {
        match args.and_then(|a| a.get(k)) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) if !v.is_null() => Ok(v.to_string()),
            _ => Err(PromptError::MissingArgument(k)),
        }
    };
    let text =
        |role: &str, t: &str| json!({ "role": role, "content": { "type": "text", "text": t } });
    Ok(match name {
        "test_simple_prompt" => json!({
            "description": "A simple prompt without arguments",
            "messages": [text("user", "This is a simple prompt for testing.")]
        }),
        "test_prompt_with_arguments" => {
            let (a1, a2) = (arg("arg1")?, arg("arg2")?);
            json!({
                "description": "A prompt with required arguments",
                "messages": [text("user", &format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'"))]
            })
        }
        "test_prompt_with_embedded_resource" => {
            let uri = arg("resourceUri")?;
            json!({
                "description": "A prompt that includes an embedded resource",
                "messages": [
                    { "role": "user", "content": { "type": "resource", "resource": {
                        "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."
                    } } },
                    text("user", "Please process the embedded resource above.")
                ]
            })
        }
        "test_prompt_with_image" => json!({
            "description": "A prompt that includes image content",
            "messages": [
                { "role": "user", "content": { "type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png" } },
                text("user", "Please analyze the image above.")
            ]
        }),
        _ => return Err(PromptError::Unknown),
    })
}

/// `completion/complete`: suggestions for prompt arguments and the template's `{id}`.
pub fn complete(params: &Value) -> Value {
    let reference = &params["ref"];
    let arg_name = params["argument"]["name"].as_str().unwrap_or("");
    let value = params["argument"]["value"].as_str().unwrap_or("");
    let candidates: &[&str] = match (reference["type"].as_str(), arg_name) {
        (Some("ref/prompt"), "arg1" | "arg2")
            if reference["name"] == "test_prompt_with_arguments" =>
        {
            &[
                "paris", "park", "party", "test", "testing", "hello", "world",
            ]
        }
        (Some("ref/prompt"), "resourceUri") => &[
            "test://static-text",
            "test://static-binary",
            "test://watched-resource",
        ],
        (Some("ref/resource"), "id") => &["1", "2", "3", "42", "123"],
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(value))
        .collect();
    json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } })
}

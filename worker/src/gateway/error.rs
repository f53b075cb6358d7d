//! The dispatcher's errors, mapped to a JSON-RPC error object and an HTTP status
//! in exactly one exhaustive `match` each: a new variant forces a decision.

use fleetgate_mcp::jsonrpc::{self, ErrorObject};
use fleetgate_mcp::UpstreamError;
use http::StatusCode;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    #[error("Tool not found: {0}")]
    ToolNotFound(String),
    #[error("Prompt not found: {0}")]
    PromptNotFound(String),
    #[error("Resource not found: {0}")]
    ResourceNotFound(String),
    #[error("Server not found: {0}")]
    ServerNotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("Internal error: {0}")]
    Internal(String),
    #[error("Missing required client capability: {0}")]
    MissingExtension(&'static str),
}

impl RpcError {
    pub fn to_error_object(&self) -> ErrorObject {
        let msg = self.to_string();
        match self {
            RpcError::MethodNotFound(_) | RpcError::ToolNotFound(_) => {
                ErrorObject::new(jsonrpc::METHOD_NOT_FOUND, msg)
            }
            RpcError::InvalidParams(_) | RpcError::PromptNotFound(_) => {
                ErrorObject::new(jsonrpc::INVALID_PARAMS, msg)
            }
            RpcError::ResourceNotFound(uri) => {
                ErrorObject::new(RESOURCE_NOT_FOUND, msg).with_data(json!({ "uri": uri }))
            }
            RpcError::ServerNotFound(_) => ErrorObject::new(jsonrpc::INVALID_PARAMS, msg),
            RpcError::Forbidden(_) => ErrorObject::new(jsonrpc::FORBIDDEN, msg),
            RpcError::Upstream(e) => e.to_error_object(),
            RpcError::Internal(_) => ErrorObject::new(jsonrpc::INTERNAL_ERROR, msg),
            RpcError::MissingExtension(ext) => missing_capability(
                json!({"extensions": {*ext: {}}}),
                &format!("{ext} (declare the extension in _meta[\"io.modelcontextprotocol/clientCapabilities\"].extensions)"),
            ),
        }
    }

    /// The status of a `/rpc` answer carrying this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            RpcError::Forbidden(_) => StatusCode::FORBIDDEN,
            RpcError::ServerNotFound(_) => StatusCode::NOT_FOUND,
            RpcError::MethodNotFound(_)
            | RpcError::InvalidParams(_)
            | RpcError::ToolNotFound(_)
            | RpcError::PromptNotFound(_)
            | RpcError::ResourceNotFound(_)
            | RpcError::Upstream(_)
            | RpcError::Internal(_) => StatusCode::OK,
            RpcError::MissingExtension(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// -32021 `MissingRequiredClientCapabilityError`: `required` is the
/// `ClientCapabilities` object that was missing (`data.requiredCapabilities`),
/// `detail` says what and how to declare it.
pub fn missing_capability(required: serde_json::Value, detail: &str) -> ErrorObject {
    ErrorObject::new(
        fleetgate_mcp::protocol::error_codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!("Missing required client capability: {detail}"),
    )
    .with_data(json!({ "requiredCapabilities": required }))
}

/// MCP's "resource not found" code.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

//! Errors as OpenAI's clients expect them: a status and `{"error": {"message", "type", "param",
//! "code"}}`. Every failure a request can meet ends here, so no handler panics or hangs.
//!
//! The library names a bad setting by its own field (`jielong_core::InvalidSetting::field`,
//! e.g. `max_new_tokens`); [`ApiError::from_library`] turns that into the request's own field
//! (`max_tokens`) as `param`, so a client sees which of *its* fields to fix.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jielong_core::{FeedError, InvalidSetting, PromptError};
use serde_json::json;

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`.
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds a client should wait before retrying (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 400: the request is wrong; `param` names the field to fix.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).with_param(param)
    }

    /// 400 for a body that is not JSON at all (no field to blame).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            .with_code("invalid_json")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    pub fn unknown_model(name: &str, served: &[&str]) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "The model `{name}` does not exist on this server; it serves {}",
                served.join(", ")
            ),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "this endpoint does not take that HTTP method",
        )
        .with_code("method_not_allowed")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than this server's limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    }

    /// 503: the queue of requests waiting to join the batch is full.
    pub fn busy(model: &str, waiting: usize) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!(
                "{waiting} requests are already waiting for model `{model}`: retry in a moment"
            ),
        )
        .with_code("overloaded");
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// An error from the library (building a job or running it). Bad settings and prompts are
    /// the client's (400, `param` renamed by `param_of`); anything else is the server's (500).
    /// `prompt` is the field that holds this endpoint's prompt (`prompt`, `messages`, `input`).
    pub fn from_library(
        e: &anyhow::Error,
        prompt: &str,
        param_of: &dyn Fn(&'static str) -> &'static str,
    ) -> Self {
        let text = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        for cause in e.chain() {
            if let Some(s) = cause.downcast_ref::<InvalidSetting>() {
                let param = param_of(s.field);
                return Self::bad(param, format!("`{param}` {}", s.message));
            }
            if let Some(p) = cause.downcast_ref::<PromptError>() {
                let e = Self::bad(prompt, text.clone());
                return match p {
                    PromptError::TooLong { .. } => e.with_code("context_length_exceeded"),
                    _ => e,
                };
            }
            if let Some(f) = cause.downcast_ref::<FeedError>() {
                return match f {
                    FeedError::TooLong { .. } => {
                        Self::bad(prompt, text.clone()).with_code("context_length_exceeded")
                    }
                    FeedError::UnknownToken { .. } => Self::bad(prompt, text.clone()),
                    _ => Self::internal(text.clone()),
                };
            }
        }
        Self::internal(text)
    }

    /// The JSON body, also sent as an SSE event when a stream fails after it started.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Library fields that every endpoint spells the same way (the sampler's); the others are
/// renamed by each endpoint's `param_of`.
pub fn common_param(field: &'static str) -> &'static str {
    match field {
        "count" => "n",
        "max_new_tokens" => "max_tokens",
        other => other,
    }
}

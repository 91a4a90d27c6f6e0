//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the
//! status codes its clients expect.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use openledger_openlora::ServeError;
use serde_json::json;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<String>,
    message: String,
}

impl ApiError {
    /// A malformed or out-of-range request (400), naming the parameter.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    /// A model (adapter or agent) that does not exist (404).
    pub fn unknown_model(name: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("model_not_found"),
            param: Some("model".into()),
            message: format!("The model `{name}` does not exist or you do not have access to it."),
        }
    }

    /// The model is still loading (503).
    pub fn loading() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code: Some("model_loading"),
            param: None,
            message: "the model is still loading; retry shortly".into(),
        }
    }

    /// A request without a valid API key (401).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: Some("invalid_api_key"),
            param: None,
            message: message.into(),
        }
    }

    /// A key past its request rate (429).
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "requests",
            code: Some("rate_limit_exceeded"),
            param: None,
            message: message.into(),
        }
    }

    /// A key or account that cannot pay for the request (429, as OpenAI answers).
    pub fn quota(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "insufficient_quota",
            code: Some("insufficient_quota"),
            param: None,
            message: message.into(),
        }
    }

    /// A request the key may not make (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            kind: "permission_error",
            code: None,
            param: None,
            message: message.into(),
        }
    }

    /// A request naming something of another account's (404, revealing nothing).
    pub fn not_found(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: None,
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    /// A service the answer needs is failing: retry later (503).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code: None,
            param: None,
            message: message.into(),
        }
    }

    /// The server's own failure (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            code: None,
            param: None,
            message: message.into(),
        }
    }
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::UnknownAdapter(name) => ApiError::unknown_model(&name),
            ServeError::QueueFull(_) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "rate_limit_error",
                code: Some("server_busy"),
                param: None,
                message: format!("{e}; retry shortly"),
            },
            ServeError::Invalid(_) | ServeError::ContextFull { .. } | ServeError::BadAdapter(_) => {
                ApiError {
                    status: StatusCode::BAD_REQUEST,
                    kind: "invalid_request_error",
                    code: None,
                    param: None,
                    message: e.to_string(),
                }
            }
            ServeError::Model(_) | ServeError::Unsupported(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }});
        let mut response = (self.status, Json(body)).into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

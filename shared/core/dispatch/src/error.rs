//! Why a subscription request was refused: each with the protocol's error code and status.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    UrlRejected(String),
    #[error("no such subscription")]
    NotFound,
    #[error("a subscription with this id exists with a different configuration")]
    Exists,
    #[error("the token is not valid for this subscription's wake")]
    TokenInvalid,
    #[error(
        "the wake is not the subscription's current one (stale wake_id or generation, or an expired lease)"
    )]
    Fenced,
    #[error("the subscription's wake is claimed by {holder}")]
    AlreadyClaimed { holder: String, generation: u64 },
    #[error("the subscription has no pending work")]
    NoPendingWork,
    #[error("{0}")]
    InvalidOffset(String),
    /// The token's scope or role does not cover the request.
    #[error("{0}")]
    Forbidden(String),
    /// Storage failed, or the subscription kept changing under the request.
    #[error("{0}")]
    Unavailable(String),
}

impl DispatchError {
    pub fn invalid(message: impl Into<String>) -> DispatchError {
        DispatchError::Invalid(message.into())
    }

    /// The protocol's error code.
    pub fn code(&self) -> &'static str {
        match self {
            DispatchError::Invalid(_) => "INVALID_REQUEST",
            DispatchError::UrlRejected(_) => "WEBHOOK_URL_REJECTED",
            DispatchError::NotFound => "SUBSCRIPTION_NOT_FOUND",
            DispatchError::Exists => "SUBSCRIPTION_ALREADY_EXISTS",
            DispatchError::TokenInvalid => "TOKEN_INVALID",
            DispatchError::Fenced => "FENCED",
            DispatchError::AlreadyClaimed { .. } => "ALREADY_CLAIMED",
            DispatchError::NoPendingWork => "NO_PENDING_WORK",
            DispatchError::InvalidOffset(_) => "INVALID_OFFSET",
            DispatchError::Forbidden(_) => "FORBIDDEN",
            DispatchError::Unavailable(_) => "UNAVAILABLE",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            DispatchError::Invalid(_) | DispatchError::UrlRejected(_) => 400,
            DispatchError::TokenInvalid => 401,
            DispatchError::Forbidden(_) => 403,
            DispatchError::NotFound => 404,
            DispatchError::Exists
            | DispatchError::Fenced
            | DispatchError::AlreadyClaimed { .. }
            | DispatchError::NoPendingWork
            | DispatchError::InvalidOffset(_) => 409,
            DispatchError::Unavailable(_) => 503,
        }
    }

    /// The error body: `{"error": {"code", "message", …}}`.
    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code(), "message": self.to_string()});
        if let DispatchError::AlreadyClaimed { holder, generation } = self {
            error["current_holder"] = json!(holder);
            error["generation"] = json!(generation);
        }
        json!({ "error": error })
    }
}

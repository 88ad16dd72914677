//! The one place where session errors become HTTP responses.

use agentwire_auth::AuthError;
use agentwire_session::{
    AppendError, CreateError, DeleteError, ProtocolError, ReadError, StorageError,
};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::headers::*;

/// An error on its way to the client: a status, protocol headers and a message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    fn new(status: StatusCode, error: &impl ToString) -> ApiError {
        ApiError {
            status,
            message: error.to_string(),
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl ToString) -> ApiError {
        self.headers.push((name, value.to_string()));
        self
    }

    /// A request body over the configured limit.
    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body exceeds the limit of {limit} bytes"),
            headers: Vec::new(),
        }
    }

    /// A request body that stopped arriving for longer than `pause`.
    pub fn request_timeout(pause: std::time::Duration) -> ApiError {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the request body stopped arriving for {} ms: send it without pauses",
                pause.as_millis()
            ),
            headers: Vec::new(),
        }
    }

    /// A client error not covered by the session errors (bad query parameters and the like).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "request failed");
        }
        let mut response = (self.status, format!("{}\n", self.message)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        if e.is_unauthenticated() {
            ApiError::new(StatusCode::UNAUTHORIZED, &e).with("www-authenticate", "Bearer")
        } else {
            ApiError::new(StatusCode::FORBIDDEN, &e)
        }
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, &e)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, &e)
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> ApiError {
        use CreateError::*;
        let status = match &e {
            Protocol(p) => return p.clone().into(),
            Storage(s) => return s.clone().into(),
            SourceNotFound(_) => StatusCode::NOT_FOUND,
            ForkOffsetBeyondTail { .. } | SubOffsetPastBoundary { .. } => StatusCode::BAD_REQUEST,
            ConfigMismatch { .. }
            | PathRetained(_)
            | SourceDeleted(_)
            | ForkContentTypeMismatch { .. } => StatusCode::CONFLICT,
        };
        ApiError::new(status, &e)
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        use AppendError::*;
        match &e {
            Protocol(p) => p.clone().into(),
            Storage(s) => s.clone().into(),
            NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, &e),
            Gone(_) => ApiError::new(StatusCode::GONE, &e),
            Closed { tail } => ApiError::new(StatusCode::CONFLICT, &e)
                .with(STREAM_CLOSED, "true")
                .with(STREAM_NEXT_OFFSET, tail),
            ContentTypeMismatch { .. } | SeqRegression { .. } => {
                ApiError::new(StatusCode::CONFLICT, &e)
            }
            StaleEpoch { current, .. } => {
                ApiError::new(StatusCode::FORBIDDEN, &e).with(PRODUCER_EPOCH, current)
            }
            SeqGap { expected, received } => ApiError::new(StatusCode::CONFLICT, &e)
                .with(PRODUCER_EXPECTED_SEQ, expected)
                .with(PRODUCER_RECEIVED_SEQ, received),
            EpochMustStartAtZero(_) => ApiError::new(StatusCode::BAD_REQUEST, &e),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match &e {
            ReadError::Protocol(p) => p.clone().into(),
            ReadError::Storage(s) => s.clone().into(),
            ReadError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, &e),
            ReadError::Gone(_) => ApiError::new(StatusCode::GONE, &e),
        }
    }
}

impl From<DeleteError> for ApiError {
    fn from(e: DeleteError) -> ApiError {
        match &e {
            DeleteError::Storage(s) => s.clone().into(),
            DeleteError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, &e),
            DeleteError::Gone(_) => ApiError::new(StatusCode::GONE, &e),
        }
    }
}

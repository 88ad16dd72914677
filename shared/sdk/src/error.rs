/// What went wrong talking to agentwire.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The server refused the request; `message` is its explanation.
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    /// The network failed, even after retries.
    #[error("network: {0}")]
    Network(String),
    /// The WebSocket API answered a request with an error frame.
    #[error("{code}: {message}")]
    Frame { code: String, message: String },
    /// The server said something this SDK does not understand.
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// The WebSocket closed.
    #[error("connection closed")]
    Closed,
}

impl From<reqwest::Error> for SdkError {
    fn from(e: reqwest::Error) -> SdkError {
        SdkError::Network(e.to_string())
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for SdkError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> SdkError {
        SdkError::Network(e.to_string())
    }
}

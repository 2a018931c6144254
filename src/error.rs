//! One error type for the store; mapped once to native HTTP statuses here and
//! once to S3 error codes in `s3::error`.

use actix_web::http::StatusCode;

use crate::index::IndexError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key not found")]
    NotFound,
    #[error("key exists")]
    Exists,
    #[error("another write or delete of this key is in progress")]
    Locked,
    #[error("key longer than the index allows")]
    KeyTooLong,
    #[error("empty body")]
    EmptyBody,
    #[error("protected: UNLINK the key before DELETE")]
    Protected,
    #[error("no replica of the key could be read")]
    NoReplica,
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("volume {url}: {reason}")]
    Volume { url: String, reason: String },
    #[error("volume {volume} stalled a write and does not answer now ({reason})")]
    Stalled { volume: String, reason: String },
    #[error("request body: {0}")]
    Body(String),
    #[error("request body stalled for longer than the I/O timeout")]
    BodyTimeout,
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn volume(url: &str, reason: impl std::fmt::Display) -> Error {
        Error::Volume { url: url.to_string(), reason: reason.to_string() }
    }

    /// The native API's status for this error.
    pub fn native_status(&self) -> StatusCode {
        match self {
            Error::NotFound | Error::NoReplica => StatusCode::NOT_FOUND,
            Error::Exists | Error::Protected => StatusCode::FORBIDDEN,
            Error::Locked => StatusCode::CONFLICT,
            Error::EmptyBody => StatusCode::LENGTH_REQUIRED,
            Error::KeyTooLong => StatusCode::URI_TOO_LONG,
            Error::Body(_) => StatusCode::BAD_REQUEST,
            Error::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::Stalled { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Index(_) | Error::Volume { .. } | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

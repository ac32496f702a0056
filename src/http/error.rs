//! The one error type at the HTTP edge. Every failure becomes a status code and a JSON
//! body `{"error": "..."}`; internals are logged, never sent.

use crate::storage::DbError;
use actix_web::{http::StatusCode, HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("{0}")]
    Conflict(String),
    /// The request cannot be done as asked: an `Idempotency-Key` reused for another one.
    #[error("{0}")]
    Unprocessable(String),
    /// The methods the resource does allow.
    #[error("method not allowed; allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error("database unavailable, try again later")]
    Unavailable,
    /// The schema or privileges do not fit: the message says what to run.
    #[error("{0}")]
    Schema(String),
    /// `--max-streams` event streams are open already.
    #[error("too many open event streams (this server allows {0}); try again later")]
    TooManyStreams(usize),
    /// The dead letters cannot be reached: RabbitMQ is out of reach or failed.
    #[error("dead letters unavailable: {0}")]
    Broker(String),
    #[error("no answer within {0:?} (the database is not answering); try again later")]
    Timeout(std::time::Duration),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable
            | Self::Schema(_)
            | Self::Timeout(_)
            | Self::TooManyStreams(_)
            | Self::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(
            self,
            Self::Unavailable | Self::Schema(_) | Self::Timeout(_) | Self::Broker(_)
        ) {
            response.insert_header(("Retry-After", "1"));
        }
        // A stream lasts as long as its dashboard stays open: no slot frees up in 1 s.
        if matches!(self, Self::TooManyStreams(_)) {
            response.insert_header(("Retry-After", STREAMS_RETRY_AFTER));
        }
        if matches!(self, Self::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Self::MethodNotAllowed(allow) = self {
            response.insert_header(("Allow", *allow));
        }
        response.json(ErrorBody {
            error: self.to_string(),
        })
    }
}

/// Seconds a client is told to wait when every event stream slot is taken.
pub const STREAMS_RETRY_AFTER: &str = "5";

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "work 7 not found"}))]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Self::Unavailable
            }
            e @ DbError::Schema(_) => {
                tracing::error!(error = %e, "database schema");
                Self::Schema(e.to_string())
            }
            DbError::Constraint(detail) => Self::Conflict(detail),
            DbError::InvalidInput(detail) => Self::BadRequest(detail),
            DbError::Other(detail) => {
                tracing::error!(%detail, "database error");
                Self::Internal
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::from(e).into()
    }
}

//! What went wrong talking to the database, sorted into what callers act on: an outage
//! (retry, or 503), a refusal of the data (dead-letter it, or 4xx), a schema that does
//! not fit (wait for an operator), or anything else.

use super::role;

/// What went wrong talking to the database, in the terms callers act on.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or the connection broke: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A constraint refused the data: the input was wrong.
    #[error("rejected by the database: {0}")]
    Constraint(String),
    /// A value the database cannot represent: the input was wrong.
    #[error("invalid value: {0}")]
    InvalidInput(String),
    /// The schema or the permissions are not what this binary needs (a missing table,
    /// a migration not applied, a privilege revoked): no retry helps until an operator
    /// acts, and no single demand is to blame.
    #[error("{0}")]
    Schema(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::PostCreateHook(
                deadpool_postgres::HookError::Backend(e),
            ) => e.into(),
            // The schema check of a new connection (`clock::check_new_connection`).
            deadpool_postgres::PoolError::PostCreateHook(
                deadpool_postgres::HookError::Message(m),
            ) => DbError::Schema(m.into_owned()),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if role::is_role_loss(&e) {
            // A read-only or shutting-down server, or a broken connection: an outage
            // for the caller (retry, or 503), and no pooled connection is reused.
            role::lost(&e.to_string());
            return DbError::Unavailable(with_causes(&e));
        }
        let Some(db) = e.as_db_error() else {
            // No server answer: the connection timed out or was never opened.
            return DbError::Unavailable(with_causes(&e));
        };
        let code = db.code();
        let class = &code.code()[..2];
        if class == "23" {
            DbError::Constraint(db.message().to_string())
        } else if class == "22" {
            // data exceptions: a value the database cannot hold (NUL in text, ...)
            DbError::InvalidInput(db.message().to_string())
        } else if matches!(class, "08" | "28" | "40" | "53" | "57")
            || *code == SqlState::UNDEFINED_DATABASE
        {
            // connection exceptions, a login refused (wrong password, missing
            // database), serialization failures and deadlocks, insufficient resources,
            // operator intervention (statement timeouts included)
            DbError::Unavailable(db.message().to_string())
        } else if matches!(class, "42" | "3F") {
            // syntax error or access rule violation (undefined table or column, missing
            // privilege), invalid schema name
            DbError::Schema(format!(
                "{}: the database schema or privileges do not fit this ppctl; run `ppctl db setup` (or grant the privileges)",
                db.message()
            ))
        } else {
            DbError::Other(db.message().to_string())
        }
    }
}

/// The error and what caused it: tokio-postgres's own text stops at "error performing
/// TLS handshake", and the why (a refused certificate, naming the host) is its source.
pub(crate) fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

impl DbError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }

    /// Retrying later may succeed, whatever the data: the database is out of reach, or
    /// waits for an operator (the schema). Workers retry these without limit.
    pub fn is_outage(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::Schema(_))
    }

    /// The data itself was refused: retrying the same data cannot succeed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, DbError::Constraint(_) | DbError::InvalidInput(_))
    }
}

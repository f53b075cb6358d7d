//! [`StoreError`]: what every store operation can fail with, and the mapping from
//! sea-orm/sqlx errors onto it.

use sea_orm::{DbErr, RuntimeErr, SqlErr, TransactionError};

/// Why a store operation failed.
///
/// Callers map these onto HTTP statuses: `NotFound` → 404, `Conflict` → 409,
/// `Invalid` → 422/400, `Unavailable` → 503, `Internal` → 500.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No row of that kind with that id (or name).
    #[error("{kind} not found: {id}")]
    NotFound { kind: &'static str, id: String },
    /// A uniqueness rule was broken (duplicate name, slug, id, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller sent something the store refuses (bad field, unknown referenced id).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The database cannot be reached or refused the connection; retrying later may help.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, a corrupt row, an unexpected database answer.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether retrying the same call later could succeed (the database was down or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(msg)) => {
                return StoreError::Conflict(format!("duplicate value ({msg})"))
            }
            Some(SqlErr::ForeignKeyConstraintViolation(msg)) => {
                return StoreError::invalid("reference", msg)
            }
            _ => {}
        }
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                StoreError::Unavailable(err.to_string())
            }
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if is_unavailable(e) =>
            {
                StoreError::Unavailable(err.to_string())
            }
            _ => StoreError::Internal(err.to_string()),
        }
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(err: TransactionError<StoreError>) -> Self {
        match err {
            TransactionError::Connection(e) => e.into(),
            TransactionError::Transaction(e) => e,
        }
    }
}

/// Errors that mean "the database is not there / too busy right now".
fn is_unavailable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => true,
        E::Database(db) => {
            // SQLite: SQLITE_BUSY (5) / SQLITE_LOCKED (6) and their extended codes.
            // PostgreSQL: class 08 (connection exception), 57P0x (shutdown), 53xxx
            // (insufficient resources), 40001/40P01 (serialization failure, deadlock:
            // retrying helps).
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let sqlite_busy = code
                .parse::<i64>()
                .map(|c| matches!(c & 0xff, 5 | 6))
                .unwrap_or(false);
            sqlite_busy
                || code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
        }
        _ => false,
    }
}

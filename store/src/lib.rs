//! fleetgate's persistence: gateways and what they offer (tools, resources, resource
//! templates, prompts), virtual servers, revoked tokens. sea-orm over SQLite (default:
//! `./fleetgate.db`, WAL, shared by all worker processes) or PostgreSQL.
//!
//! # Module map
//! - [`db`]: [`connect`]/[`connect_with`], URL parsing (`sqlite:…`, `postgres://…`),
//!   pool settings ([`StoreOptions`]), password redaction.
//! - [`types`]: the plain serde structs of the API ([`Gateway`], [`Tool`], [`Server`],
//!   [`Discovered`], [`Versions`], ...). Callers never see sea-orm types.
//! - [`error`]: [`StoreError`] and the mapping of database errors onto it.
//! - [`slug`]: ContextForge-compatible `slugify` and `{gateway_slug}{sep}{tool}` names.
//! - `gateways`, `catalog`, `servers`, `tokens`, `versions`: the [`Store`] methods, by
//!   subject (gateway registration/refresh; tools/resources/prompts; virtual servers;
//!   token revocation; change counters).
//! - `entity` (private): sea-orm entities, one per table.
//! - `migration` (private): the schema, applied by [`Store::migrate`].
//! - `testing` (feature `testing`): a throwaway PostgreSQL cluster and a temporary
//!   SQLite file, for this crate's tests and the whole binary's integration tests.
//!
//! # Concurrency
//! Every mutating method runs in one transaction whose *first* statement bumps a
//! change counter ([`Versions`]). That gives workers a cheap "did anything change?"
//! poll ([`Store::versions`], [`Store::changed_since`]) and, on SQLite, takes the
//! write lock up front so that concurrent writers from several processes wait for
//! each other (busy timeout) instead of failing with `SQLITE_BUSY`.

pub mod db;
pub mod error;
pub mod slug;
pub mod types;

mod catalog;
mod entity;
mod gateways;
mod migration;
mod servers;
mod tokens;
mod versions;

#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use sea_orm_migration::MigratorTrait;

pub use db::{redact_url, Backend, StoreOptions, DEFAULT_SQLITE_FILE};
pub use error::StoreError;
pub use slug::{slugify, DEFAULT_SEPARATOR};
pub use types::*;

/// A handle on the database: cheap to clone (a connection pool inside), `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    redacted_url: String,
    separator: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("url", &self.inner.redacted_url)
            .finish_non_exhaustive()
    }
}

/// Open the database with default [`StoreOptions`].
///
/// `None` (or an empty string) → the SQLite file [`DEFAULT_SQLITE_FILE`] in the working
/// directory, created if missing. Otherwise `sqlite:PATH` / `sqlite://PATH` /
/// `sqlite:///ABS/PATH` or `postgres://…` / `postgresql://…`. Does not migrate: call
/// [`Store::migrate`] once (the supervisor does, before starting workers).
pub async fn connect(database_url: Option<&str>) -> Result<Store, StoreError> {
    connect_with(database_url, StoreOptions::default()).await
}

/// [`connect`] with explicit options.
pub async fn connect_with(
    database_url: Option<&str>,
    options: StoreOptions,
) -> Result<Store, StoreError> {
    if options.tool_name_separator.is_empty() {
        return Err(StoreError::invalid(
            "tool_name_separator",
            "must not be empty (the default is \"-\")",
        ));
    }
    let opened = db::open(database_url, &options).await?;
    Ok(Store {
        db: opened.db,
        inner: Arc::new(Inner {
            backend: opened.backend,
            redacted_url: opened.redacted,
            separator: options.tool_name_separator,
        }),
    })
}

type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

impl Store {
    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The database URL with any password masked.
    pub fn redacted_url(&self) -> &str {
        &self.inner.redacted_url
    }

    /// The separator in `{gateway_slug}{sep}{tool_slug}` names.
    pub fn tool_name_separator(&self) -> &str {
        &self.inner.separator
    }

    /// Apply pending schema migrations. Idempotent, and safe if two processes race:
    /// the whole run is one transaction holding a database-wide lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let url = self.inner.redacted_url.clone();
        let wrap = |e: StoreError| match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Internal(format!(
                "migrating the database at {url} failed: {other}. If this database was \
                 used by a newer fleetgate, use that version (or a fresh database)"
            )),
        };
        let txn = self.db.begin().await.map_err(|e| wrap(e.into()))?;
        let lock = match self.inner.backend {
            // Serialise concurrent migrators (any constant key works; this is "fleetgat").
            Backend::Postgres => "SELECT pg_advisory_xact_lock(7380530436059046004)",
            // A write as the first statement takes SQLite's write lock now (waiting
            // for the busy timeout) rather than failing on upgrade later.
            Backend::Sqlite => "PRAGMA application_id = 1718379111",
        };
        txn.execute_unprepared(lock)
            .await
            .map_err(|e| wrap(e.into()))?;
        migration::Migrator::up(&txn, None)
            .await
            .map_err(|e| wrap(e.into()))?;
        txn.commit().await.map_err(|e| wrap(e.into()))?;
        tracing::debug!(url = %self.inner.redacted_url, "database schema is up to date");
        Ok(())
    }

    /// Check that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "database at {} does not answer: {e}",
                self.inner.redacted_url
            ))
        })
    }

    /// Close the pool (waits for connections in use to be returned).
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(Into::into)
    }

    /// Run `f` in a transaction that first bumps the change counter `counter`.
    /// Commits on `Ok`, rolls back on `Err`.
    pub(crate) async fn write<T, F>(&self, counter: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, T> + Send,
    {
        let txn = self.db.begin().await?;
        versions::bump(&txn, counter).await?;
        match f(&txn).await {
            Ok(v) => {
                txn.commit().await?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rb) = txn.rollback().await {
                    tracing::warn!(error = %rb, "rollback failed");
                }
                Err(e)
            }
        }
    }

    pub(crate) fn sep(&self) -> &str {
        &self.inner.separator
    }
}

/// Now, at the precision both backends store (microseconds), so values read back
/// compare equal to what was written.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A fresh id: uuid4 as 32 lowercase hex digits (ContextForge's `uuid.uuid4().hex`).
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Bound parameters per statement stay well below SQLite's and PostgreSQL's limits.
pub(crate) const CHUNK: usize = 200;

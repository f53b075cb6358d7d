//! Opening the database: URL parsing (SQLite and PostgreSQL), pool settings, and
//! error messages that name the URL (password masked) and say what to do.

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::ConnectOptions as _;
use sea_orm::{DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector};

use crate::StoreError;

/// The SQLite file used when no database URL is configured (in the working directory).
pub const DEFAULT_SQLITE_FILE: &str = "fleetgate.db";

/// Which database a [`crate::Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Knobs for [`crate::connect_with`]. `Default` is what [`crate::connect`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Pool size per process. Default: 5 (SQLite: WAL readers run in parallel,
    /// writers take turns).
    pub max_connections: u32,
    /// How long to wait for a pooled connection (and, for SQLite, for another
    /// process's write lock) before failing with [`StoreError::Unavailable`]. Default: 10 s.
    pub acquire_timeout: Duration,
    /// Joins a gateway's slug and a tool's / prompt's slug. Default `"-"`
    /// (ContextForge's `GATEWAY_TOOL_NAME_SEPARATOR`). Must not be empty.
    pub tool_name_separator: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 5,
            acquire_timeout: Duration::from_secs(10),
            tool_name_separator: crate::slug::DEFAULT_SEPARATOR.to_owned(),
        }
    }
}

/// `url` with any password replaced by `***`, safe to log and to put in errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.has_host() => {
            if u.password().is_none() {
                url.to_owned()
            } else if u.set_password(Some("***")).is_ok() {
                u.to_string()
            } else {
                "<unprintable database URL>".to_owned()
            }
        }
        // No authority we understand: hide everything between the scheme and any '@'.
        _ => match (url.split_once(':'), url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}:***@{}", &url[at + 1..]),
            _ => url.to_owned(),
        },
    }
}

pub(crate) struct Opened {
    pub db: DatabaseConnection,
    pub backend: Backend,
    pub redacted: String,
}

pub(crate) async fn open(url: Option<&str>, opts: &StoreOptions) -> Result<Opened, StoreError> {
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    let Some(url) = url else {
        let redacted = format!("sqlite://{DEFAULT_SQLITE_FILE}");
        let sqlite = SqliteConnectOptions::new()
            .filename(DEFAULT_SQLITE_FILE)
            .create_if_missing(true);
        return open_sqlite(sqlite, redacted, opts).await;
    };
    let redacted = redact_url(url);
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    // Accept SQLAlchemy-style driver suffixes (`postgresql+psycopg://`) for
    // ContextForge compatibility.
    let base = scheme.split('+').next().unwrap_or_default();
    match base {
        "sqlite" => {
            let sqlite = parse_sqlite_url(url).map_err(|e| StoreError::Invalid {
                field: "database_url".into(),
                message: format!(
                    "{redacted} is not a valid SQLite URL ({e}); use sqlite:PATH, \
                     e.g. sqlite://fleetgate.db or sqlite:///var/lib/fleetgate/fleetgate.db"
                ),
            })?;
            open_sqlite(sqlite, redacted, opts).await
        }
        "postgres" | "postgresql" => {
            let normalized = if scheme == base {
                url.to_owned()
            } else {
                format!("postgresql{}", &url[scheme.len()..])
            };
            let pg = PgConnectOptions::from_str(&normalized).map_err(|e| StoreError::Invalid {
                field: "database_url".into(),
                message: format!(
                    "{redacted} is not a valid PostgreSQL URL ({e}); use \
                     postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                ),
            })?;
            open_postgres(pg, redacted, opts).await
        }
        _ => Err(StoreError::Invalid {
            field: "database_url".into(),
            message: format!(
                "unsupported database URL {redacted}: use sqlite:PATH (the default is \
                 sqlite://{DEFAULT_SQLITE_FILE}) or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ),
        }),
    }
}

/// `sqlite:PATH`, `sqlite://PATH`, `sqlite:///ABSOLUTE/PATH`, `sqlite::memory:`, with
/// sqlx's query parameters (`?mode=ro` ...). SQLAlchemy's `sqlite:///./rel.db` (as in
/// ContextForge's default `DATABASE_URL`) means the relative path `./rel.db`.
/// The file is created when missing unless `mode=` says otherwise.
fn parse_sqlite_url(url: &str) -> Result<SqliteConnectOptions, String> {
    let rest = url.split_once(':').map(|(_, r)| r).unwrap_or_default();
    let (path_part, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = path_part.strip_prefix("//").unwrap_or(path_part);
    let path = if path.starts_with("/./") || path.starts_with("/../") {
        &path[1..]
    } else {
        path
    };
    if path.is_empty() {
        return Err("no file path".into());
    }
    let rebuilt = match query {
        Some(q) => format!("sqlite://{path}?{q}"),
        None => format!("sqlite://{path}"),
    };
    let opts = SqliteConnectOptions::from_str(&rebuilt).map_err(|e| e.to_string())?;
    let explicit_mode = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("mode=")));
    Ok(if explicit_mode {
        opts
    } else {
        opts.create_if_missing(true)
    })
}

async fn open_sqlite(
    sqlite: SqliteConnectOptions,
    redacted: String,
    opts: &StoreOptions,
) -> Result<Opened, StoreError> {
    let sqlite = sqlite
        // WAL: readers never block the writer; several worker processes share the file.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // Wait (rather than fail) while another process holds the write lock.
        .busy_timeout(opts.acquire_timeout)
        .foreign_keys(true)
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(sqlite)
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {redacted}: {e}. Check that its directory \
                 exists and is writable by this user, or set DATABASE_URL to another \
                 sqlite:PATH or a postgres:// URL"
            ))
        })?;
    Ok(Opened {
        db: SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
        backend: Backend::Sqlite,
        redacted,
    })
}

async fn open_postgres(
    pg: PgConnectOptions,
    redacted: String,
    opts: &StoreOptions,
) -> Result<Opened, StoreError> {
    let pg = pg.application_name("fleetgate").disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(pg)
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {redacted}: {e}. Check that the server \
                 is running and reachable and that DATABASE_URL names the right host, \
                 port, user, password and database (create it with `createdb` if needed)"
            ))
        })?;
    Ok(Opened {
        db: SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
        backend: Backend::Postgres,
        redacted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/fleet"),
            "postgres://app:***@db:5432/fleet"
        );
        assert_eq!(
            redact_url("postgres://app@db/fleet"),
            "postgres://app@db/fleet"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert!(!redact_url("weird:a:b@c").contains("a:b"));
    }

    #[test]
    fn sqlite_url_forms() {
        let p = |u: &str| {
            parse_sqlite_url(u)
                .unwrap()
                .get_filename()
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(p("sqlite:fleet.db"), "fleet.db");
        assert_eq!(p("sqlite://fleet.db"), "fleet.db");
        assert_eq!(p("sqlite:///tmp/fleet.db"), "/tmp/fleet.db");
        assert_eq!(p("sqlite:///./mcp.db"), "./mcp.db");
        assert_eq!(p("sqlite://fleet.db?mode=rwc"), "fleet.db");
        assert!(parse_sqlite_url("sqlite:").is_err());
    }
}

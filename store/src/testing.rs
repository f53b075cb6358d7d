//! Test helpers (feature `testing`): a throwaway PostgreSQL cluster and a temporary
//! SQLite file. Used by this crate's tests; meant for the whole binary's integration
//! tests too:
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use fleetgate_store::testing::{PgCluster, TempSqlite};
//! let pg = PgCluster::start()?;              // initdb + pg_ctl start, ~2 s
//! let url = pg.create_database("fleet")?;    // postgres://postgres@127.0.0.1:PORT/fleet
//! // ... DATABASE_URL=url for the process under test ...
//! drop(pg);                                   // stops the server by PID, removes its files
//! let lite = TempSqlite::new()?;             // sqlite://…/fleetgate.db in a temp dir
//! # let _ = (url, lite.url()); Ok(()) }
//! ```
//!
//! # How the PostgreSQL cluster works
//! - Binaries: `$FLEETGATE_PG_BIN` if set, else `pg_config --bindir`, else the newest
//!   `/usr/lib/postgresql/*/bin` (Debian), else `initdb` on `PATH`.
//! - Everything lives in a fresh temp dir (`/tmp/fleetgate-pg-XXXXXX`): `data/`, the
//!   unix socket, `postgres.log`. Never touches a server already running (5432 ...).
//! - `initdb -A trust -U postgres --no-sync`, then `pg_ctl start -w` with
//!   `-p PORT -k TMPDIR -c listen_addresses=127.0.0.1` on a free port (retried on a
//!   bind race), durability off (`fsync=off` ...) for speed.
//! - As root (initdb and postgres refuse to run as root), the temp dir is chowned to
//!   the `postgres` user and initdb/pg_ctl run through `runuser -u postgres --`.
//! - [`PgCluster::stop`] (also on drop, so on a panicking test too) sends SIGINT (fast
//!   shutdown) to the postmaster PID read from `postmaster.pid`, escalating to SIGQUIT
//!   and SIGKILL, waits for it to go, then deletes the temp dir.
//! - `FLEETGATE_TEST_PG=skip` makes [`pg_skip_requested`] true, for machines without
//!   PostgreSQL; tests should otherwise fail loudly when the cluster cannot start.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use tempfile::TempDir;

/// A temporary SQLite database file (deleted with its directory on drop).
pub struct TempSqlite {
    dir: TempDir,
}

impl TempSqlite {
    pub fn new() -> io::Result<Self> {
        Ok(TempSqlite {
            dir: tempfile::Builder::new()
                .prefix("fleetgate-sqlite-")
                .tempdir()?,
        })
    }

    /// The database file (not created until something connects).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("fleetgate.db")
    }

    /// `sqlite://<path>`.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
}

/// True when `FLEETGATE_TEST_PG=skip`: PostgreSQL tests may then pass without running.
pub fn pg_skip_requested() -> bool {
    std::env::var("FLEETGATE_TEST_PG").is_ok_and(|v| v.eq_ignore_ascii_case("skip"))
}

/// A private PostgreSQL cluster, stopped (by PID) and deleted on drop.
pub struct PgCluster {
    dir: Option<TempDir>,
    bin: PathBuf,
    port: u16,
    pid: Option<i32>,
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn has_initdb(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// Where initdb/pg_ctl/createdb are.
pub fn find_pg_bin() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLEETGATE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(other(format!(
                "FLEETGATE_PG_BIN={} has no initdb/pg_ctl",
                dir.display()
            )))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    has_initdb(&bin).then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_initdb(&dir) {
                return Ok(dir);
            }
        }
    }
    Err(other(
        "no PostgreSQL server binaries found (initdb, pg_ctl): install them \
         (Debian: apt-get install postgresql), set FLEETGATE_PG_BIN=<bindir>, or set \
         FLEETGATE_TEST_PG=skip to skip PostgreSQL tests",
    ))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn check(what: &str, out: Output) -> io::Result<Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(other(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => kill(Pid::from_raw(pid), None).is_ok(),
    }
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// initdb + start a private cluster on a free port. Blocking (a few seconds); from
    /// async code, fine in tests, or wrap in `spawn_blocking`.
    pub fn start() -> io::Result<PgCluster> {
        let bin = find_pg_bin()?;
        let root = is_root();
        let mut builder = tempfile::Builder::new();
        builder.prefix("fleetgate-pg-");
        // As root, TMPDIR may not be traversable by `postgres`; /tmp always is.
        let dir = if root {
            builder.tempdir_in("/tmp")?
        } else {
            builder.tempdir()?
        };
        let owner = if root {
            let user = User::from_name("postgres")
                .map_err(|e| other(format!("looking up the postgres user: {e}")))?
                .ok_or_else(|| {
                    other("running as root but there is no `postgres` user to run initdb as")
                })?;
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
            true
        } else {
            false
        };
        let mut cluster = PgCluster {
            dir: Some(dir),
            bin,
            port: 0,
            pid: None,
        };
        let data = cluster.dir().join("data");
        let out = cluster
            .pg_cmd(owner, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()?;
        check("initdb", out)?;

        let log = cluster.dir().join("postgres.log");
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                cluster.dir().display()
            );
            let out = cluster
                .pg_cmd(owner, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .output()?;
            if out.status.success() {
                cluster.port = port;
                let pidfile = std::fs::read_to_string(data.join("postmaster.pid"))?;
                let pid = pidfile
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i32>().ok())
                    .ok_or_else(|| other("postmaster.pid has no PID"))?;
                cluster.pid = Some(pid);
                return Ok(cluster);
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            let bind_race = log_text.contains("could not bind") || log_text.contains("in use");
            last_err = Some(other(format!(
                "pg_ctl start failed ({}): {}\n{}\n--- postgres.log ---\n{log_text}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
            if !bind_race {
                break;
            }
        }
        Err(last_err.unwrap_or_else(|| other("pg_ctl start failed")))
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .unwrap_or(Path::new("/"))
    }

    /// A command for a PostgreSQL binary, run as `postgres` when we are root.
    fn pg_cmd(&self, as_postgres: bool, prog: &str) -> Command {
        let path = self.bin.join(prog);
        let mut cmd = if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(self.dir());
        cmd
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.dir()
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>` (trust auth, no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Create a database and return its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        let out = Command::new(self.bin.join("createdb"))
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", "postgres", name])
            .current_dir(self.dir())
            .output()?;
        check(&format!("createdb {name}"), out)?;
        Ok(self.url(name))
    }

    /// Create a database with a fresh name (`fleetgate_test_<n>`) and return its URL.
    pub fn fresh_database(&self) -> io::Result<String> {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("fleetgate_test_{}_{n}", std::process::id()))
    }

    /// Stop the server (by PID) and delete its files. Idempotent.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let p = Pid::from_raw(pid);
            for (signal, wait) in [
                (Signal::SIGINT, Duration::from_secs(15)),
                (Signal::SIGQUIT, Duration::from_secs(5)),
                (Signal::SIGKILL, Duration::from_secs(5)),
            ] {
                if kill(p, signal).is_err() || wait_gone(pid, wait) {
                    break;
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

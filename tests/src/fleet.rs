//! The real `fleetgate` binary as a subprocess.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The JWT secret every test fleet uses.
pub const TEST_SECRET: &str = "fleetgate-test-secret-0123456789abcdef0123";

/// Path of the `fleetgate` binary under test, built with `test-hooks`.
///
/// `scripts/test.sh` builds it first; when a test runs alone (`cargo test …`), it
/// is built here, once per test process.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("FLEETGATE_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test-exe> → target/<profile>/fleetgate
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let bin = dir.join("fleetgate");
        if std::env::var_os("FLEETGATE_SKIP_BUILD").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "fleetgate", "--features", "test-hooks"])
                .status()
                .expect("run cargo build");
            assert!(
                status.success(),
                "building fleetgate with test-hooks failed"
            );
        }
        assert!(
            bin.exists(),
            "{} missing: run scripts/test.sh",
            bin.display()
        );
        bin
    })
    .clone()
}

/// Builder for a supervisor under test.
pub struct FleetBuilder {
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl FleetBuilder {
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    fn command(&self) -> (Command, tempdir::Dir) {
        let dir = tempdir::Dir::new("fleet");
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", "0")
            .env("LOG_LEVEL", "info")
            // Tests opt into authentication (`.env("AUTH_REQUIRED", "true")`);
            // the secret is always the test one.
            .env("AUTH_REQUIRED", "false")
            .env("MCP_REQUIRE_AUTH", "false")
            .env("JWT_SECRET_KEY", TEST_SECRET)
            .current_dir(self.cwd.clone().unwrap_or_else(|| dir.path.clone()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path.join("stderr.log")).expect("stderr log"),
            ))
            .process_group(0);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        (cmd, dir)
    }

    /// Starts the supervisor and waits for its address line.
    pub fn start(self) -> Fleet {
        let (mut cmd, dir) = self.command();
        let mut child = cmd.spawn().expect("spawn fleetgate");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let mut fleet = Fleet {
            pid: child.id(),
            child,
            addr: String::new(),
            dir,
            exited: None,
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "no address line from fleetgate (got {line:?}); stderr:\n{}",
                fleet.stderr()
            )
        });
        fleet.addr = v["addr"].as_str().expect("addr").to_owned();
        fleet
    }

    /// Runs the supervisor expecting it to exit by itself; returns (status, stderr).
    pub fn run_to_exit(self, within: Duration) -> (ExitStatus, String) {
        let (mut cmd, dir) = self.command();
        let mut child = cmd.spawn().expect("spawn fleetgate");
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                let err = std::fs::read_to_string(dir.path.join("stderr.log")).unwrap_or_default();
                return (st, err);
            }
            if Instant::now() > deadline {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                panic!("fleetgate did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running supervisor. Dropping it sends TERM to its process group, then KILL.
pub struct Fleet {
    pub pid: u32,
    child: Child,
    pub addr: String,
    pub dir: tempdir::Dir,
    exited: Option<ExitStatus>,
}

impl Fleet {
    pub fn builder() -> FleetBuilder {
        FleetBuilder {
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs the JSON-RPC `body` to `/rpc` on a fresh connection; the
    /// answer.
    pub async fn rpc(&self, body: serde_json::Value) -> serde_json::Value {
        crate::fresh_client()
            .post(self.url("/rpc"))
            .json(&body)
            .send()
            .await
            .expect("POST /rpc")
            .json()
            .await
            .expect("a JSON answer from /rpc")
    }

    /// Waits (up to 10 s) until a worker answers `/health`: with
    /// `REUSE_PORT` each worker listens on a socket of its own, once it is up.
    pub async fn listening(&self) {
        crate::eventually(
            std::time::Duration::from_secs(10),
            "a worker listening",
            || async {
                let r = crate::fresh_client()
                    .get(self.url("/health"))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
    }

    /// Sums the named counters over all `n` workers' `/metrics` (scraped on
    /// fresh connections, several at a time, until every worker answered).
    pub async fn metric_sums(&self, n: usize, names: &[&str]) -> Vec<u64> {
        let client = crate::fresh_client();
        let per_worker = std::sync::Mutex::new(std::collections::BTreeMap::new());
        crate::eventually(
            std::time::Duration::from_secs(15),
            "every worker's /metrics",
            || async {
                let scrapes = (0..8).map(|_| async {
                    let text = client
                        .get(self.url("/metrics"))
                        .send()
                        .await
                        .ok()?
                        .text()
                        .await
                        .ok()?;
                    let worker = text
                        .lines()
                        .find_map(|l| l.split("worker=\"").nth(1))?
                        .split('"')
                        .next()?
                        .to_owned();
                    Some((worker, text))
                });
                for (w, t) in futures_util::future::join_all(scrapes)
                    .await
                    .into_iter()
                    .flatten()
                {
                    per_worker
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(w, t);
                }
                (per_worker.lock().unwrap_or_else(|e| e.into_inner()).len() == n).then_some(())
            },
        )
        .await;
        let per_worker = per_worker.into_inner().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .map(|name| {
                per_worker
                    .values()
                    .flat_map(|t| t.lines())
                    .filter(|l| l.starts_with(&format!("{name}{{")))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            })
            .collect()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("stderr.log")).unwrap_or_default()
    }

    /// Live worker pids.
    pub fn workers(&self) -> std::collections::BTreeSet<u32> {
        crate::proc::children(self.pid)
    }

    pub fn signal(&self, sig: Signal) {
        crate::proc::signal(self.pid, sig);
    }

    /// Waits for the supervisor to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().ok().flatten() {
                self.exited = Some(st);
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.pid as i32);
        if self.exited.is_none() {
            let _ = killpg(group, Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = killpg(group, Signal::SIGKILL);
                let _ = self.child.wait();
            }
        }
        // Workers that outlived a killed supervisor are still in the group.
        let _ = killpg(group, Signal::SIGKILL);
        if std::thread::panicking() {
            eprintln!("--- fleetgate stderr ---\n{}", self.stderr());
        }
    }
}

/// A temporary directory removed on drop (no dependency needed for this much).
pub mod tempdir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct Dir {
        pub path: PathBuf,
    }

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "fleetgate-{prefix}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

//! The arbiter loop (gunicorn's model): wait for a signal, a worker message or a
//! tick → handle signals → read control pipes → reap → act on [`policy::plan`].
//!
//! State lives here; decisions live in [`crate::policy`].

use crate::bind::Listener;
use crate::policy::{self, Action, Backoff, ExitKind, Params, View};
use crate::signals::Signals;
use crate::spawn::spawn_worker;
use fleetgate_shared::config::Config;
use fleetgate_shared::contract::{ControlMsg, EXIT_BIND, EXIT_BOOT_ERROR};
use fleetgate_shared::telemetry::{self, LogHandle};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::signal::*;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(250);
const KILL_AFTER: Duration = Duration::from_secs(1);

struct Worker {
    view: View,
    pid: Pid,
    slot: usize,
    control: Option<OwnedFd>,
    buf: Vec<u8>,
    boot_error: Option<String>,
}

enum Stop {
    Graceful,
    Fast,
}

struct Arbiter {
    cfg: Config,
    config_json: String,
    exe: PathBuf,
    listener: Listener,
    signals: Signals,
    log: LogHandle,
    workers: Vec<Worker>,
    target: usize,
    generation: u64,
    next_seq: u64,
    backoff: Backoff,
    /// Set once we are stopping: (deadline, exit code).
    stopping: Option<(Instant, i32)>,
}

/// Runs the supervisor until it is stopped; returns the exit code.
pub fn run(cfg: Config) -> i32 {
    let log = match telemetry::init(&cfg.log, format!("supervisor:{}", std::process::id())) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("fleetgate: cannot open LOG_FILE: {e}");
            return fleetgate_shared::contract::EXIT_CONFIG;
        }
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return 1;
        }
    };
    if let Err(e) = crate::migrate::run(cfg.gateway.database_url.as_deref()) {
        eprintln!("fleetgate: {e}");
        return EXIT_BOOT_ERROR;
    }
    let s = &cfg.server;
    let listener = match Listener::bind(&s.host, s.port, s.reuse_port) {
        Ok(l) => l,
        Err(e) => {
            let what = if e.kind() == std::io::ErrorKind::AddrInUse {
                "the address is already in use (another fleetgate or program is listening there; pick another PORT or stop it)".to_owned()
            } else {
                e.to_string()
            };
            eprintln!("fleetgate: cannot listen on {}:{}: {what}", s.host, s.port);
            return EXIT_BIND;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fleetgate: cannot find my own executable to start workers: {e}");
            return 1;
        }
    };
    let mut cfg = cfg;
    let runtime_dir = match prepare_affinity(&mut cfg) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fleetgate: cannot create the workers' socket directory: {e}");
            return 1;
        }
    };
    if cfg.auth.is_default_secret() {
        tracing::warn!("JWT_SECRET_KEY is the well-known development default; set your own before exposing fleetgate");
    }
    announce(&listener, &cfg);
    let config_json = serde_json::to_string(&cfg).unwrap_or_default();
    let target = cfg.server.workers;
    tracing::info!(
        addr = %listener.addr,
        workers = target,
        reuse_port = cfg.server.reuse_port,
        "supervisor started"
    );
    let code = Arbiter {
        cfg,
        config_json,
        exe,
        listener,
        signals,
        log,
        workers: Vec::new(),
        target,
        generation: 0,
        next_seq: 0,
        backoff: Backoff::default(),
        stopping: None,
    }
    .run();
    let _ = std::fs::remove_dir_all(&runtime_dir);
    code
}

/// The fleet secret (drawn at random unless `FLEET_SECRET` is set) and a private
/// directory for the workers' forwarding sockets.
fn prepare_affinity(cfg: &mut Config) -> std::io::Result<PathBuf> {
    use std::io::Read;
    use std::os::unix::fs::DirBuilderExt;
    if cfg.affinity.fleet_secret.is_none() {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        cfg.affinity.fleet_secret = Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
    }
    let base = std::env::temp_dir();
    remove_stale_runtime_dirs(&base);
    let dir = base.join(format!("fleetgate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    cfg.affinity.socket_dir = Some(dir.clone());
    Ok(dir)
}

/// Removes the socket directories (`fleetgate-PID`, ours: same owner) of
/// supervisors that are gone without cleaning up (`kill -9`, a crash).
fn remove_stale_runtime_dirs(base: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    // Our own user id: the owner of this process's /proc entry.
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("fleetgate-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if ours && gone && pid > 0 {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(dir = %entry.path().display(), "removed the socket directory of a supervisor that is gone")
                }
                Err(e) => {
                    tracing::debug!(dir = %entry.path().display(), error = %e, "cannot remove a stale socket directory")
                }
            }
        }
    }
}

/// Where we listen: `ADDR_FILE` first, then one machine-readable line on stdout,
/// so whoever reads the line can rely on the file.
fn announce(listener: &Listener, cfg: &Config) {
    if let Some(path) = &cfg.server.addr_file {
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, format!("{}\n", listener.addr))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot write ADDR_FILE");
        }
    }
    let line = serde_json::json!({
        "event": "listening",
        "addr": listener.addr.to_string(),
        "url": format!("http://{}", listener.addr),
        "pid": std::process::id(),
        "workers": cfg.server.workers,
    })
    .to_string();
    println!("{line}");
}

impl Arbiter {
    fn run(mut self) -> i32 {
        loop {
            for sig in self.signals.take() {
                self.on_signal(sig);
            }
            self.read_control();
            self.reap();
            if let Some((deadline, code)) = self.stopping {
                if self.workers.is_empty() {
                    tracing::info!(code, "supervisor stopped");
                    return code;
                }
                if Instant::now() >= deadline {
                    self.kill_all_and_wait();
                    tracing::info!(code, "supervisor stopped (remaining workers killed)");
                    return code;
                }
            } else {
                self.manage();
            }
            self.wait();
        }
    }

    /// Blocks until a signal, a control message, or the next tick.
    fn wait(&mut self) {
        let mut timeout = TICK;
        if let Some(w) = self.backoff.wait(Instant::now()) {
            timeout = timeout.min(w.max(Duration::from_millis(1)));
        }
        let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
        fds.extend(
            self.workers
                .iter()
                .filter_map(|w| w.control.as_ref())
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
        );
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => tracing::warn!(error = %e, "poll failed"),
        }
    }

    fn on_signal(&mut self, sig: i32) {
        match sig {
            SIGTERM | SIGINT => self.begin_stop(Stop::Graceful, 0),
            SIGQUIT => self.begin_stop(Stop::Fast, 0),
            SIGHUP => self.reload(),
            SIGTTIN => {
                self.target += 1;
                tracing::info!(workers = self.target, "SIGTTIN: one more worker");
            }
            SIGTTOU => {
                self.target = self.target.saturating_sub(1).max(1);
                tracing::info!(workers = self.target, "SIGTTOU: one worker fewer");
            }
            SIGUSR1 => {
                if let Err(e) = self.log.reopen() {
                    tracing::error!(error = %e, "cannot reopen LOG_FILE");
                }
                self.signal_all(Signal::SIGUSR1);
            }
            _ => {} // SIGCHLD: reaping happens every turn.
        }
    }

    /// SIGHUP: re-read the configuration and roll the fleet onto it.
    fn reload(&mut self) {
        let mut cfg = match Config::from_process_env() {
            Ok(c) => c,
            Err(errors) => {
                tracing::error!("SIGHUP: keeping the running configuration: {errors}");
                return;
            }
        };
        let (old, new) = (&self.cfg.server, &cfg.server);
        if (old.host.as_str(), old.port, old.reuse_port)
            != (new.host.as_str(), new.port, new.reuse_port)
        {
            tracing::warn!("SIGHUP: HOST, PORT and REUSE_PORT changes need a restart; keeping the bound address");
            cfg.server.host = old.host.clone();
            cfg.server.port = self.listener.addr.port();
            cfg.server.reuse_port = old.reuse_port;
        }
        // The secret and socket directory are the running fleet's, not config.
        cfg.affinity.fleet_secret = self.cfg.affinity.fleet_secret.clone();
        cfg.affinity.socket_dir = self.cfg.affinity.socket_dir.clone();
        self.config_json = serde_json::to_string(&cfg).unwrap_or_default();
        self.target = cfg.server.workers;
        self.cfg = cfg;
        self.generation += 1;
        tracing::info!(
            generation = self.generation,
            workers = self.target,
            "SIGHUP: rolling the fleet"
        );
    }

    fn begin_stop(&mut self, how: Stop, code: i32) {
        let (grace, sig, what) = match how {
            Stop::Graceful => (
                self.cfg.server.graceful_timeout,
                Signal::SIGTERM,
                "draining",
            ),
            Stop::Fast => (KILL_AFTER, Signal::SIGQUIT, "stopping now"),
        };
        let deadline = Instant::now() + grace;
        match &mut self.stopping {
            // A second, faster stop shortens the first.
            Some((d, _)) if deadline < *d => *d = deadline,
            Some(_) => return,
            None => self.stopping = Some((deadline, code)),
        }
        tracing::info!(workers = self.workers.len(), "{what}");
        let now = Instant::now();
        for w in &mut self.workers {
            w.view.term_at.get_or_insert(now);
        }
        self.signal_all(sig);
    }

    fn signal_all(&self, sig: Signal) {
        for w in &self.workers {
            let _ = kill(w.pid, sig);
        }
    }

    fn read_control(&mut self) {
        let now = Instant::now();
        for w in &mut self.workers {
            for msg in drain_pipe(w) {
                w.view.last_seen = now;
                match msg {
                    ControlMsg::Ready => {
                        w.view.ready = true;
                        self.backoff.ready();
                        tracing::debug!(pid = w.pid.as_raw(), slot = w.slot, "worker ready");
                    }
                    ControlMsg::Beat => {}
                    ControlMsg::Retire => {
                        w.view.wants_retire = true;
                        tracing::info!(
                            pid = w.pid.as_raw(),
                            "worker reached MAX_REQUESTS; replacing it"
                        );
                    }
                    ControlMsg::BootError(reason) => w.boot_error = Some(reason),
                }
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, code, how) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Some(code), format!("exit code {code}")),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, None, format!("signal {sig}")),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid failed");
                    return;
                }
            };
            let Some(i) = self.workers.iter().position(|w| w.pid == pid) else {
                continue;
            };
            let mut w = self.workers.swap_remove(i);
            for msg in drain_pipe(&mut w) {
                if let ControlMsg::BootError(reason) = msg {
                    w.boot_error = Some(reason);
                }
            }
            let now = Instant::now();
            match policy::classify_exit(&w.view, code, now) {
                ExitKind::Expected => {
                    tracing::info!(pid = pid.as_raw(), slot = w.slot, "worker exited ({how})")
                }
                ExitKind::BootError => {
                    let reason = w.boot_error.unwrap_or_else(|| "no reason given".into());
                    tracing::error!(
                        pid = pid.as_raw(),
                        "worker failed to boot: {reason}; halting"
                    );
                    eprintln!("fleetgate: worker failed to boot: {reason}");
                    self.begin_stop(Stop::Graceful, EXIT_BOOT_ERROR);
                }
                ExitKind::Crashed { early } => {
                    tracing::warn!(
                        pid = pid.as_raw(),
                        slot = w.slot,
                        "worker died ({how}); replacing it"
                    );
                    self.backoff.crashed(early, now);
                }
            }
        }
    }

    fn manage(&mut self) {
        let now = Instant::now();
        let views: Vec<View> = self.workers.iter().map(|w| w.view.clone()).collect();
        let params = Params {
            target: self.target,
            generation: self.generation,
            timeout: self.cfg.server.worker_timeout,
            kill_after: KILL_AFTER,
            graceful: self.cfg.server.graceful_timeout,
        };
        for action in policy::plan(&views, &params, now) {
            match action {
                Action::Spawn => self.spawn(now),
                Action::Term(seq) => self.act(seq, |w| {
                    tracing::info!(pid = w.pid.as_raw(), slot = w.slot, "retiring worker");
                    w.view.term_at = Some(now);
                    Signal::SIGTERM
                }),
                Action::Abort(seq) => self.act(seq, |w| {
                    tracing::error!(
                        pid = w.pid.as_raw(),
                        "worker silent past WORKER_TIMEOUT; aborting it"
                    );
                    w.view.aborted_at = Some(now);
                    Signal::SIGABRT
                }),
                Action::Kill(seq) => self.act(seq, |w| {
                    tracing::error!(pid = w.pid.as_raw(), "worker did not exit; killing it");
                    w.view.killed = true;
                    Signal::SIGKILL
                }),
            }
        }
    }

    fn act(&mut self, seq: u64, f: impl FnOnce(&mut Worker) -> Signal) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.view.seq == seq) {
            let sig = f(w);
            let _ = kill(w.pid, sig);
        }
    }

    fn spawn(&mut self, now: Instant) {
        if !self.backoff.may_spawn(now) {
            return;
        }
        let slot = (0..)
            .find(|s| self.workers.iter().all(|w| w.slot != *s))
            .unwrap_or(0);
        let spawned = self.listener.for_worker().and_then(|sock| {
            spawn_worker(
                &self.exe,
                sock.fd(),
                slot,
                self.generation,
                &self.config_json,
            )
        });
        match spawned {
            Ok(s) => {
                self.next_seq += 1;
                tracing::info!(
                    pid = s.pid,
                    slot,
                    generation = self.generation,
                    "worker spawned"
                );
                self.workers.push(Worker {
                    view: View {
                        seq: self.next_seq,
                        generation: self.generation,
                        ready: false,
                        spawned_at: now,
                        last_seen: now,
                        term_at: None,
                        aborted_at: None,
                        killed: false,
                        wants_retire: false,
                    },
                    pid: Pid::from_raw(s.pid),
                    slot,
                    control: Some(s.control),
                    buf: Vec::new(),
                    boot_error: None,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot spawn a worker");
                self.backoff.crashed(true, now);
            }
        }
    }

    fn kill_all_and_wait(&mut self) {
        for w in self.workers.drain(..) {
            let _ = kill(w.pid, Signal::SIGKILL);
            let _ = waitpid(w.pid, None);
        }
    }
}

/// Reads what is in a worker's control pipe; closes our end at EOF.
fn drain_pipe(w: &mut Worker) -> Vec<ControlMsg> {
    let Some(fd) = &w.control else {
        return Vec::new();
    };
    let mut chunk = [0u8; 512];
    let mut eof = false;
    loop {
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => w.buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => continue,
            Err(_) => break, // EAGAIN: drained.
        }
    }
    if eof {
        w.control = None;
    }
    let mut msgs = Vec::new();
    while let Some(nl) = w.buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = w.buf.drain(..=nl).collect();
        if let Some(m) = std::str::from_utf8(&line[..nl])
            .ok()
            .and_then(ControlMsg::decode)
        {
            msgs.push(m);
        }
    }
    msgs
}

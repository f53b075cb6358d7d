//! From inherited file descriptors and env to a serving worker.
//!
//! `unsafe` in this file: adopting fds 3 and 4, which the supervisor opened
//! for this process (see `fleetgate_shared::contract`). The worker's only
//! other `unsafe` is in [`crate::cluster::quiet_unix`].

use crate::auth::Gate;
use crate::cluster::listener::Owner;
use crate::cluster::quiet_unix::QuietUnixListener;
use crate::cluster::redis_owners::{Heartbeat, RedisOwners, HEARTBEAT_TTL};
use crate::cluster::seal::Seal;
use crate::cluster::Cluster;
use crate::control::{Control, SendError};
use crate::gateway::dispatch::Core;
use crate::gateway::federation::Federation;
use crate::gateway::registry::Registry;
use crate::gateway::session::Sessions;
use crate::serve::{serve, Drain, ServeOptions};
use crate::state::{AppState, WorkerInfo};
use fleetgate_shared::config::Config;
use fleetgate_shared::contract::{self, ControlMsg, EXIT_BOOT_ERROR};
use fleetgate_shared::telemetry::{self, LogHandle};
use std::hash::{BuildHasher, RandomState};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Runs a worker to completion; returns the process exit code.
pub fn run() -> i32 {
    let control = match adopt(contract::CONTROL_FD) {
        Some(fd) => match Control::new(fd) {
            Ok(c) => Arc::new(c),
            Err(e) => return boot_error(&Control::detached(), &format!("control pipe: {e}")),
        },
        None => {
            eprintln!(
                "fleetgate worker: no control pipe on fd {}; workers are started by the supervisor (run `fleetgate`)",
                contract::CONTROL_FD
            );
            return EXIT_BOOT_ERROR;
        }
    };
    let cfg: Config = match std::env::var(contract::ENV_CONFIG)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => return boot_error(&control, &format!("bad {}: {e}", contract::ENV_CONFIG)),
    };
    let slot = std::env::var(contract::ENV_SLOT)
        .ok()
        .and_then(|s| s.split(':').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    #[cfg(feature = "test-hooks")]
    if let Ok(reason) = std::env::var("FLEETGATE_TEST_BOOT_FAIL") {
        return boot_error(&control, &reason);
    }
    let Some(listener) = adopt(contract::LISTEN_FD) else {
        return boot_error(&control, "no listening socket on fd 3");
    };
    let listener = std::net::TcpListener::from(listener);

    let pid = std::process::id();
    let max_requests = match cfg.server.max_requests {
        0 => 0,
        n => n + jitter(cfg.server.max_requests_jitter),
    };
    let info = Arc::new(WorkerInfo::new(pid, slot, max_requests));
    let log = match telemetry::init(&cfg.log, info.id.clone()) {
        Ok(h) => h,
        Err(e) => return boot_error(&control, &format!("cannot open LOG_FILE: {e}")),
    };
    // Workers are the unit of parallelism (one process per core by default);
    // a single-threaded runtime then spares every request the work-stealing
    // scheduler's cross-thread wake-ups.
    let mut builder = match cfg.server.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = match builder.enable_all().thread_name("fleetgate-worker").build() {
        Ok(rt) => rt,
        Err(e) => return boot_error(&control, &format!("cannot start the runtime: {e}")),
    };
    let code = runtime.block_on(serve_until_stopped(
        cfg,
        listener,
        control.clone(),
        info,
        log,
    ));
    // Do not wait for stragglers (a stuck upstream call, an SSE stream): the drain
    // deadline has passed.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

fn boot_error(control: &Control, reason: &str) -> i32 {
    eprintln!(
        "fleetgate worker {}: cannot boot: {reason}",
        std::process::id()
    );
    let _ = control.send(&ControlMsg::BootError(reason.to_owned()));
    EXIT_BOOT_ERROR
}

/// Takes ownership of an fd the supervisor opened for us, if it is open.
#[allow(unsafe_code)]
fn adopt(fd: i32) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    // SAFETY: the supervisor opened `fd` for this process alone and nothing else in
    // this process has claimed it (it is adopted once, at boot).
    open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A random number in `0..=max`, so workers started together do not all recycle at once.
fn jitter(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    RandomState::new().hash_one(std::process::id()) % (max + 1)
}

async fn serve_until_stopped(
    cfg: Config,
    listener: std::net::TcpListener,
    control: Arc<Control>,
    info: Arc<WorkerInfo>,
    log: LogHandle,
) -> i32 {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => return boot_error(&control, &format!("listening socket: {e}")),
    };
    let store = match fleetgate_store::connect(cfg.gateway.database_url.as_deref()).await {
        Ok(s) => s,
        Err(e) => return boot_error(&control, &format!("database: {e}")),
    };
    let gate = match Gate::new(cfg.auth.clone()) {
        Ok(g) => Arc::new(g),
        Err(e) => return boot_error(&control, &format!("auth: {e}")),
    };
    match store
        .revoked_since(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
        .await
    {
        Ok(all) => gate.add_revoked(all.into_iter().map(|r| r.jti)),
        Err(e) => return boot_error(&control, &format!("database: {e}")),
    }
    let registry = match Registry::load(store).await {
        Ok(r) => Arc::new(r),
        Err(e) => return boot_error(&control, &format!("database: {e}")),
    };
    spawn_registry_poll(registry.clone(), gate.clone(), cfg.gateway.registry_poll);
    let core = Arc::new(Core {
        registry,
        federation: Federation::new(cfg.gateway.upstream_timeout),
    });
    let seal = Seal::new(
        info.slot,
        cfg.affinity
            .fleet_secret
            .as_deref()
            .unwrap_or("fleetgate-single-process"),
        cfg.affinity.socket_dir.clone(),
        forward_timeout(&cfg),
    );
    let metrics: Arc<crate::metrics::Metrics> = Arc::default();
    let redis = match cfg.affinity.redis_url.as_deref() {
        Some(url) => match RedisOwners::new(
            url,
            info.id.clone(),
            cfg.affinity.forward,
            cfg.affinity.session_ttl,
            metrics.clone(),
        ) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => return boot_error(&control, &e),
        },
        None => None,
    };
    let sessions = Arc::new(Sessions::with_event_limits(
        cfg.gateway.max_events_per_stream,
        cfg.gateway.event_ttl,
    ));
    let passthrough = crate::state::passthrough_headers(&cfg.gateway.passthrough_headers);
    let cluster = Arc::new(Cluster::new(
        seal,
        redis.clone(),
        sessions.clone(),
        metrics.clone(),
        info.clone(),
        passthrough.clone(),
    ));
    let state = AppState::new(crate::state::Shared {
        worker: info.clone(),
        control: control.clone(),
        core,
        sessions,
        gateway_cfg: Arc::new(cfg.gateway.clone()),
        gate,
        metrics,
        cluster: cluster.clone(),
        passthrough,
    });
    let owner = Owner::new(
        cluster.clone(),
        crate::http::mcp::Here(state.clone()),
        cfg.gateway.max_body_bytes,
    );
    if let Some(r) = &redis {
        let events = crate::cluster::redis_events::RedisEvents::start(r.clone());
        state.sessions.mirror_events(events);
    }
    spawn_session_sweeper(state.sessions.clone(), cfg.gateway.session_idle_timeout);
    state.sessions.watch_registry(state.core.registry.clone());
    let refresher = crate::gateway::catalog::spawn_refresher(state.core.clone());
    let _ = state.core.federation.list_changed.set(refresher);
    let _ = state
        .core
        .federation
        .registry
        .set(state.core.registry.clone());
    crate::gateway::catalog::spawn_view_watch(
        state.core.registry.clone(),
        state.sessions.clone(),
        cfg.gateway.registry_poll,
    );
    // With Redis: an internal TCP listener other workers (of any host) forward
    // to, advertised in this worker's heartbeat.
    let internal_tcp = match &redis {
        Some(r) => {
            let host = cfg
                .affinity
                .internal_host
                .clone()
                .unwrap_or_else(|| cfg.server.host.clone());
            let listener = match tokio::net::TcpListener::bind((host.as_str(), 0)).await {
                Ok(l) => l,
                Err(e) => {
                    return boot_error(
                        &control,
                        &format!("cannot listen on {host}:0 for forwarded requests (AFFINITY_INTERNAL_HOST): {e}"),
                    )
                }
            };
            let addr = match listener.local_addr() {
                Ok(a) => a,
                Err(e) => return boot_error(&control, &format!("internal listener: {e}")),
            };
            if addr.ip().is_unspecified() {
                tracing::warn!(%addr, "the internal listener advertises an unspecified address; set AFFINITY_INTERNAL_HOST for other hosts to reach it");
            }
            r.set_heartbeat(&Heartbeat {
                addr: addr.to_string(),
                host: info.id.rsplit_once(':').map_or("", |(h, _)| h).to_owned(),
                pid: info.pid,
                instance: r.instance.clone(),
            });
            // The identity check (SET NX) before anything is served.
            if let Err(e) = r.beat().await {
                tracing::warn!(error = %e, "Redis unavailable at boot; serving local sessions until it is back");
            }
            cluster.spawn_subscriber(owner.clone());
            Some(listener)
        }
        None => None,
    };
    let internal = match cluster.seal.socket_path(info.slot) {
        Some(path) => match bind_internal(&path) {
            Ok(l) => Some(QuietUnixListener(l)),
            Err(e) => {
                return boot_error(
                    &control,
                    &format!("cannot listen on {}: {e}", path.display()),
                )
            }
        },
        None => None,
    };
    let app = crate::http::router(state.clone());

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let begin_drain = {
        let info = info.clone();
        move |stop: &watch::Sender<bool>, why: &str| {
            if !info.draining.swap(true, Ordering::AcqRel) {
                tracing::info!(reason = why, "draining");
            }
            let _ = stop.send(true);
        }
    };

    // Heartbeat, and the lifeline: a dead supervisor ends this worker.
    let beat_every =
        (cfg.server.worker_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    {
        let (control, stop, drain) = (control.clone(), stop_tx.clone(), begin_drain.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(beat_every);
            loop {
                tick.tick().await;
                if control.send(&ControlMsg::Beat) == Err(SendError::SupervisorGone) {
                    tracing::warn!("supervisor is gone; shutting down");
                    drain(&stop, "supervisor gone");
                    return;
                }
            }
        });
    }

    // Signals: TERM/INT drain, QUIT exits now, USR1 reopens the log file.
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
        signal(SignalKind::user_defined1()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut usr1)) = signals else {
        return boot_error(&control, "cannot install signal handlers");
    };
    {
        let (stop, drain) = (stop_tx.clone(), begin_drain.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => drain(&stop, "SIGTERM"),
                    _ = int.recv() => drain(&stop, "SIGINT"),
                    _ = quit.recv() => {
                        tracing::info!("SIGQUIT: exiting now");
                        std::process::exit(0);
                    }
                    _ = usr1.recv() => {
                        if let Err(e) = log.reopen() {
                            tracing::error!(error = %e, "cannot reopen LOG_FILE");
                        }
                    }
                }
            }
        });
    }

    if let Some(r) = &redis {
        let (r, mut stop) = (r.clone(), stop_tx.subscribe());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_TTL / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = tick.tick() => { let _ = r.beat().await; }
                    () = &mut stopped => {
                        // Draining: let the fleet take this worker's sessions over now.
                        r.unbeat().await;
                        return;
                    }
                }
            }
        });
    }
    if let Some(listener) = internal_tcp {
        spawn_internal(listener, owner.clone(), stop_tx.subscribe());
    }
    if let Some(listener) = internal {
        spawn_internal(listener, owner.clone(), stop_tx.subscribe());
    }
    let _ = control.send(&ControlMsg::Ready);
    tracing::info!(slot = info.slot, "worker ready");
    let opts = ServeOptions {
        graceful_timeout: cfg.server.graceful_timeout,
        header_read_timeout: Duration::from_secs(30),
        body_timeout: cfg.gateway.request_body_timeout,
        max_connections: max_connections(cfg.gateway.max_connections),
    };
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    match serve(listener, app, shutdown, opts).await {
        Drain::Complete => tracing::info!("drained; exiting"),
        Drain::TimedOut => tracing::warn!("GRACEFUL_TIMEOUT passed; closing remaining connections"),
    }
    close_upstreams(&state).await;
    0
}

/// How long a worker that is going spends ending its upstream sessions.
const CLOSE_UPSTREAMS_WITHIN: Duration = Duration::from_secs(2);

/// Ends the upstream sessions this worker opened (its sessions' and its
/// pool's), so that no upstream keeps state for a worker that is gone: a
/// session served on by another worker opens its own.
async fn close_upstreams(st: &AppState) {
    let mut closing = st.core.federation.pool.take_all();
    for s in st.sessions.all() {
        closing.extend(s.upstreams.take_all());
    }
    if closing.is_empty() {
        return;
    }
    let n = closing.len();
    let closed = tokio::time::timeout(
        CLOSE_UPSTREAMS_WITHIN,
        crate::gateway::federation::close_now(closing),
    )
    .await;
    match closed {
        Ok(()) => tracing::info!(sessions = n, "upstream sessions closed"),
        Err(_) => tracing::warn!(sessions = n, "not every upstream session closed in time"),
    }
}

/// Keeps the registry snapshot and the revoked token ids in step with the
/// database (changes made by other workers and hosts): one cheap counter read
/// per tick, more only when something changed.
fn spawn_registry_poll(registry: Arc<Registry>, gate: Arc<Gate>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut revocations = None;
        let mut since = chrono::Utc::now();
        loop {
            tick.tick().await;
            let polled = async {
                let v = registry.store.versions().await?;
                if v.registry != registry.snapshot().version {
                    registry.refresh(true).await?;
                }
                if revocations != Some(v.revocations) {
                    // Overlap the window: a revocation's timestamp precedes its commit.
                    let from = since - chrono::Duration::seconds(5);
                    since = chrono::Utc::now();
                    let fresh = registry.store.revoked_since(from).await?;
                    gate.add_revoked(fresh.into_iter().map(|r| r.jti));
                    revocations = Some(v.revocations);
                }
                Ok::<(), fleetgate_store::StoreError>(())
            };
            match polled.await {
                Ok(()) if failing => {
                    tracing::info!("database reachable again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "cannot poll the database; serving the last snapshot");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

/// Serves forwards from sibling workers on `listener` (the Unix socket, or
/// with Redis the internal TCP listener) until the worker stops.
fn spawn_internal<L>(
    listener: L,
    service: Owner<crate::http::mcp::Here>,
    mut stop: watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let _ = axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(service),
        )
        .with_graceful_shutdown(stopped)
        .await;
    });
}

/// The worker's socket for requests forwarded by its siblings. A previous
/// holder of this slot (crashed) may have left the file behind.
fn bind_internal(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    tokio::net::UnixListener::bind(path)
}

/// Ends downstream sessions nobody used for `SESSION_IDLE_TIMEOUT`, so a
/// long-running worker does not keep abandoned sessions (and their upstream
/// sessions) forever.
fn spawn_session_sweeper(sessions: Arc<Sessions>, max_idle: Duration) {
    let every = (max_idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let n = sessions.expire_idle(max_idle);
            if n > 0 {
                tracing::info!(sessions = n, "ended idle sessions");
            }
        }
    });
}

/// How much longer than the upstream timeout a forward waits for the owner:
/// the owner's own handling around the upstream call.
const FORWARD_MARGIN: Duration = Duration::from_secs(5);

/// `MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT`, raised to outlive the owner's
/// upstream timeout: a forwarded call whose upstream is too slow gets the
/// owner's JSON-RPC error, never the forward's bare timeout.
fn forward_timeout(cfg: &Config) -> Duration {
    let least = cfg.gateway.upstream_timeout + FORWARD_MARGIN;
    let asked = cfg.affinity.forward_timeout;
    if asked < least {
        tracing::info!(
            asked_s = asked.as_secs_f64(),
            used_s = least.as_secs_f64(),
            "MCPGATEWAY_POOL_RPC_FORWARD_TIMEOUT is raised to UPSTREAM_TIMEOUT + 5 s, so a forwarded call always gets its owner's answer"
        );
    }
    asked.max(least)
}

/// `MAX_CONNECTIONS`, or (0) three quarters of the open-files limit: the
/// rest is left for upstream connections (each session's standalone stream
/// among them), the database, Redis and the forwards.
fn max_connections(asked: usize) -> usize {
    if asked > 0 {
        return asked;
    }
    let files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let n = usize::try_from(files / 4 * 3).unwrap_or(usize::MAX).max(64);
    tracing::debug!(max_connections = n, "connections per worker");
    n
}

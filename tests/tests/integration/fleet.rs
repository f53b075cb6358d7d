//! The fleet: one supervisor, N workers on one socket, real signals.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::{eventually, fresh_client, proc};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn health_pid(client: &reqwest::Client, fleet: &Fleet) -> Option<u32> {
    let r = client.get(fleet.url("/health")).send().await.ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    assert_eq!(v["status"], "healthy");
    let pid = v["pid"].as_u64()? as u32;
    assert!(v["worker_id"].as_str()?.ends_with(&format!(":{pid}")));
    Some(pid)
}

/// Collects the pids answering `/health` over many fresh connections until `n`
/// distinct ones answered.
async fn distinct_pids(fleet: &Fleet, n: usize) -> BTreeSet<u32> {
    let client = fresh_client();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    eventually(
        Duration::from_secs(15),
        "distinct workers answering",
        || {
            let (client, seen) = (client.clone(), seen.clone());
            async move {
                let answers = futures_join(8, || health_pid(&client, fleet)).await;
                let mut s = seen.lock().unwrap();
                s.extend(answers.into_iter().flatten());
                (s.len() >= n).then(|| s.clone())
            }
        },
    )
    .await
}

/// Runs `k` copies of `f` concurrently.
async fn futures_join<T, F, Fut>(k: usize, f: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(k);
    let futs: Vec<_> = (0..k).map(|_| f()).collect();
    for fut in futs {
        out.push(fut.await);
    }
    out
}

async fn wait_workers(fleet: &Fleet, n: usize) -> BTreeSet<u32> {
    eventually(Duration::from_secs(10), &format!("{n} workers"), || async {
        let w = fleet.workers();
        (w.len() == n).then_some(w)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_the_socket() {
    let dir = fleetgate_tests::fleet::tempdir::Dir::new("addr");
    let addr_file = dir.path.join("addr");
    let fleet = Fleet::builder()
        .env("WORKERS", "3")
        .env("ADDR_FILE", addr_file.display().to_string())
        .start();
    let written = std::fs::read_to_string(&addr_file).unwrap();
    assert_eq!(
        written.trim(),
        fleet.addr,
        "ADDR_FILE holds the bound address"
    );
    let workers = wait_workers(&fleet, 3).await;
    let answered = distinct_pids(&fleet, 3).await;
    assert_eq!(
        answered, workers,
        "every worker answers, and only workers answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_gives_each_worker_its_own_socket() {
    let fleet = Fleet::builder()
        .env("WORKERS", "3")
        .env("REUSE_PORT", "true")
        .start();
    let workers = wait_workers(&fleet, 3).await;
    assert_eq!(distinct_pids(&fleet, 3).await, workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_within_two_seconds() {
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    let before = wait_workers(&fleet, 2).await;
    distinct_pids(&fleet, 2).await;
    let victim = *before.iter().next().unwrap();
    proc::signal(victim, Signal::SIGKILL);
    let client = fresh_client();
    eventually(Duration::from_secs(2), "a new worker answering", || async {
        let now = fleet.workers();
        let fresh: Vec<u32> = now.difference(&before).copied().collect();
        if now.len() != 2 || now.contains(&victim) || fresh.len() != 1 {
            return None;
        }
        // The new worker answers.
        for _ in 0..20 {
            if health_pid(&client, &fleet).await == Some(fresh[0]) {
                return Some(());
            }
        }
        None
    })
    .await;
}

/// Starts `GET /__test/slow?ms=…` and returns once the worker has it in flight.
async fn slow_request_in_flight(
    fleet: &Fleet,
    ms: u64,
) -> tokio::task::JoinHandle<reqwest::Result<serde_json::Value>> {
    let client = fresh_client();
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), fleet.url(&format!("/__test/slow?ms={ms}")));
        async move {
            client
                .get(url)
                .send()
                .await?
                .json::<serde_json::Value>()
                .await
        }
    });
    eventually(
        Duration::from_secs(5),
        "the slow request in flight",
        || async {
            let r = client
                .get(fleet.url("/__test/inflight"))
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            (v["in_flight"] == 1).then_some(())
        },
    )
    .await;
    slow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_lets_the_request_in_flight_finish_then_exits_zero() {
    let mut fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("GRACEFUL_TIMEOUT", "20")
        .start();
    let slow = slow_request_in_flight(&fleet, 1500).await;
    fleet.signal(Signal::SIGTERM);
    let body = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(body["slept_ms"], 1500);
    let status = tokio::task::block_in_place(|| fleet.wait_exit(Duration::from_secs(10)))
        .expect("supervisor exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", fleet.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_stops_fast_without_waiting_for_requests() {
    let mut fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("GRACEFUL_TIMEOUT", "60")
        .start();
    let slow = slow_request_in_flight(&fleet, 30_000).await;
    fleet.signal(Signal::SIGQUIT);
    let status = tokio::task::block_in_place(|| fleet.wait_exit(Duration::from_secs(5)))
        .expect("QUIT does not wait for the 30 s request");
    assert_eq!(status.code(), Some(0));
    assert!(slow.await.unwrap().is_err(), "the slow request was cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hup_rolls_every_worker_without_a_failed_request() {
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    let original = wait_workers(&fleet, 2).await;
    distinct_pids(&fleet, 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen_after = Arc::new(Mutex::new(BTreeSet::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, errors) = (stop.clone(), ok.clone(), failed.clone(), errors.clone());
        let (seen, url, client) = (seen_after.clone(), fleet.url("/health"), fresh_client());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        seen.lock()
                            .unwrap()
                            .insert(v["pid"].as_u64().unwrap_or(0) as u32);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status()));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.lock().unwrap().push(format!("{e:?}"));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    eventually(Duration::from_secs(10), "load running", || async {
        (ok.load(Ordering::Relaxed) >= 100).then_some(())
    })
    .await;
    fleet.signal(Signal::SIGHUP);
    let rolled = eventually(Duration::from_secs(20), "every worker replaced", || async {
        let now = fleet.workers();
        (now.len() == 2 && now.is_disjoint(&original)).then_some(now)
    })
    .await;
    seen_after.lock().unwrap().clear();
    let at_roll = ok.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(20),
        "500+ requests and the new workers serving",
        || async {
            let served = ok.load(Ordering::Relaxed);
            (served >= 500 && served >= at_roll + 100).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failures: {:?}",
        errors.lock().unwrap()
    );
    let seen = seen_after.lock().unwrap().clone();
    assert!(
        seen.is_subset(&rolled),
        "after the roll only new workers answer: {seen:?} vs {rolled:?}"
    );
    assert!(
        original.iter().all(|p| !proc::alive(*p)),
        "old workers are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttin_and_ttou_change_the_count_oldest_first_never_below_one() {
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    let two = wait_workers(&fleet, 2).await;
    fleet.signal(Signal::SIGTTIN);
    let three = wait_workers(&fleet, 3).await;
    let newest = *three.difference(&two).next().unwrap();
    let oldest = *two
        .iter()
        .min_by_key(|p| (proc::start_time(**p), **p))
        .unwrap();

    fleet.signal(Signal::SIGTTOU);
    let after = wait_workers(&fleet, 2).await;
    assert!(!after.contains(&oldest), "the oldest worker retires first");
    assert!(after.contains(&newest));

    fleet.signal(Signal::SIGTTOU);
    let one = wait_workers(&fleet, 1).await;
    fleet.signal(Signal::SIGTTOU);
    let third = eventually(Duration::from_secs(5), "the third TTOU handled", || async {
        let log = fleet.stderr();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("SIGTTOU")).collect();
        lines.get(2).map(|l| l.to_string())
    })
    .await;
    assert!(third.contains("workers=1"), "{third}");
    // Had the count gone to zero, TTIN would bring it back to one, not two.
    fleet.signal(Signal::SIGTTIN);
    let two_again = wait_workers(&fleet, 2).await;
    assert!(
        one.is_subset(&two_again),
        "the last worker was never retired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_aborted_and_replaced() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("WORKER_TIMEOUT", "1")
        .start();
    let client = fresh_client();
    let r: serde_json::Value = client
        .post(fleet.url("/__test/hang"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hung = r["hanging"].as_u64().unwrap() as u32;
    let replacement = eventually(
        Duration::from_secs(10),
        "a replacement answering",
        || async {
            let pid = health_pid(&client, &fleet).await?;
            (pid != hung).then_some(pid)
        },
    )
    .await;
    assert_ne!(replacement, hung);
    // ABRT stays pending on a stopped process; KILL follows.
    eventually(Duration::from_secs(5), "the hung worker killed", || async {
        (!proc::alive(hung)).then_some(())
    })
    .await;
    let log = fleet.stderr();
    assert!(log.contains("WORKER_TIMEOUT"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_recycles_workers_without_failures() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("MAX_REQUESTS", "20")
        .env("MAX_REQUESTS_JITTER", "5")
        .start();
    let client = fresh_client();
    let mut pids = BTreeSet::new();
    let mut sent = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "workers were not recycled: {pids:?} after {sent}"
        );
        let pid = health_pid(&client, &fleet).await;
        assert!(pid.is_some(), "request {sent} failed");
        pids.extend(pid);
        sent += 1;
    }
    // Two recycles: 20-25 requests each, plus what the replacements' boot overlapped.
    assert!(
        sent >= 40,
        "a worker served at least MAX_REQUESTS before recycling: {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usr1_reopens_the_log_file() {
    let dir = fleetgate_tests::fleet::tempdir::Dir::new("logs");
    let log = dir.path.join("fleetgate.log");
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("LOG_FILE", log.display().to_string())
        .start();
    wait_workers(&fleet, 1).await;
    let rotated = dir.path.join("fleetgate.log.1");
    eventually(
        Duration::from_secs(5),
        "worker ready in the log",
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("worker ready").then_some(())
        },
    )
    .await;
    std::fs::rename(&log, &rotated).unwrap();
    fleet.signal(Signal::SIGUSR1);
    eventually(Duration::from_secs(5), "the log file reopened", || async {
        log.exists().then_some(())
    })
    .await;
    fleet.signal(Signal::SIGTTIN); // something to log
    eventually(
        Duration::from_secs(5),
        "a new log file with new lines",
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("SIGTTIN").then_some(())
        },
    )
    .await;
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("supervisor started"));
}

#[test]
fn bad_config_exits_64_naming_every_bad_variable() {
    let (status, stderr) = Fleet::builder()
        .env("PORT", "http")
        .env("WORKERS", "zero")
        .env("LOG_FORMAT", "xml")
        .env("GRACEFUL_TIMEOUT", "soon")
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(64), "{stderr}");
    for var in [
        "PORT=http",
        "WORKERS=zero",
        "LOG_FORMAT=xml",
        "GRACEFUL_TIMEOUT=soon",
    ] {
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
    }
    assert!(!stderr.contains("spawned"), "nothing started: {stderr}");
}

#[test]
fn a_port_in_use_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (status, stderr) = Fleet::builder()
        .env("PORT", port.to_string())
        .env("WORKERS", "2")
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(
        !stderr.contains("worker spawned"),
        "no respawn loop: {stderr}"
    );
}

#[test]
fn a_worker_that_cannot_boot_halts_the_supervisor_with_its_reason() {
    let (status, stderr) = Fleet::builder()
        .env("WORKERS", "2")
        .env(
            "FLEETGATE_TEST_BOOT_FAIL",
            "database unreachable at db.example:5432",
        )
        .run_to_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("database unreachable at db.example:5432"),
        "{stderr}"
    );
    assert!(
        stderr.matches("worker spawned").count() <= 2,
        "no respawn loop: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_exit_when_the_supervisor_is_killed() {
    let mut fleet = Fleet::builder().env("WORKERS", "2").start();
    let workers = wait_workers(&fleet, 2).await;
    fleet.signal(Signal::SIGKILL);
    tokio::task::block_in_place(|| fleet.wait_exit(Duration::from_secs(5))).unwrap();
    eventually(
        Duration::from_secs(5),
        "orphaned workers to exit",
        || async { workers.iter().all(|p| !proc::alive(*p)).then_some(()) },
    )
    .await;
}

/// A supervisor killed with SIGKILL leaves its workers' socket directory
/// (`fleetgate-PID` in the temporary directory); the next supervisor to start
/// there removes it (and leaves a live one's alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_directories_are_removed_at_start() {
    let tmp = fleetgate_tests::fleet::tempdir::Dir::new("tmpdir");
    let tmpdir = tmp.path.to_str().unwrap().to_owned();
    // A pid that is gone: a child that ran and was reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = tmp.path.join(format!("fleetgate-{dead}"));
    std::fs::create_dir_all(stale.join("sockets")).unwrap();
    // One whose process lives (this test).
    let live = tmp.path.join(format!("fleetgate-{}", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("TMPDIR", tmpdir)
        .start();
    eventually(Duration::from_secs(10), "the fleet serving", || async {
        let r = fresh_client().get(fleet.url("/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    assert!(!stale.exists(), "the dead supervisor's directory is gone");
    assert!(live.exists(), "a live process's directory stays");
    assert!(
        tmp.path.join(format!("fleetgate-{}", fleet.pid)).exists(),
        "this supervisor's own directory is there"
    );
}

/// A worker that drains ends the upstream sessions it opened (its MCP
/// sessions' and its pool's): no upstream keeps state for a worker that is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_workers_close_their_upstream_sessions() {
    use fleetgate_tests::{gateway, mcp::McpClient};
    let up = fleetgate_test_upstream::Upstream::builder()
        .name("drained")
        .stateless_draft(false)
        .spawn()
        .await
        .unwrap();
    let mut fleet = Fleet::builder().env("WORKERS", "1").start();
    gateway::register(&fleet, "drained", &up.url()).await;
    let mut c = McpClient::new(fleet.url("/mcp"));
    assert_eq!(c.initialize().await.status, 200);
    c.call_tool("drained-echo", serde_json::json!({"text": "x"}))
        .await;
    let rpc = fleet
        .rpc(
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "drained-echo", "arguments": {"text": "y"}}}),
        )
        .await;
    assert_eq!(rpc["result"]["content"][0]["text"], "y", "{rpc}");
    let open = up.stats();
    assert!(
        open.live_sessions >= 2,
        "the session's and the pool's: {open:?}"
    );
    fleet.signal(Signal::SIGTERM);
    let status = tokio::task::block_in_place(|| fleet.wait_exit(Duration::from_secs(10)))
        .expect("the supervisor exits after the drain");
    assert_eq!(status.code(), Some(0));
    let closed = up.stats();
    assert_eq!(
        closed.live_sessions, 0,
        "every upstream session was ended: {closed:?}"
    );
}

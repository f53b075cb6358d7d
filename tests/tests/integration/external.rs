//! External checks: the official MCP conformance suite and the official
//! TypeScript SDK client, against fleetgate federating the test upstream.
//!
//! Both need Node; `scripts/test.sh` installs the npm packages
//! (`tests/node`, and the suite through `scripts/conformance.sh`).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::Upstream;
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the suite against `url`; returns (scenarios passed, scenarios failed, output).
fn conformance(url: &str) -> (BTreeSet<String>, BTreeSet<String>, String) {
    let out = Command::new("bash")
        .arg(repo().join("scripts/conformance.sh"))
        .arg(url)
        .output()
        .expect("run scripts/conformance.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let scenario = |l: &str, mark: &str| {
        l.strip_prefix(mark)
            .and_then(|r| r.split(':').next())
            .map(|s| s.trim().to_owned())
    };
    let passed = text.lines().filter_map(|l| scenario(l, "✓ ")).collect();
    let failed = text.lines().filter_map(|l| scenario(l, "✗ ")).collect();
    (passed, failed, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_fleetgate_as_it_does_directly() {
    let up = Upstream::builder()
        .name("everything")
        .spawn()
        .await
        .unwrap();
    // Two workers: every request of a session reaches its owner, whichever
    // worker accepted the connection.
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    gateway::register(&fleet, "everything", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "everything").await;
    let probe = fleet.url(&format!("/servers/{sid}/mcp"));
    let (direct_ok, direct_failed, direct_text) = tokio::task::spawn_blocking({
        let url = up.url();
        move || conformance(&url)
    })
    .await
    .unwrap();
    assert!(
        !direct_ok.is_empty(),
        "the suite ran directly:\n{direct_text}"
    );
    assert!(
        direct_failed.is_empty(),
        "baseline: the upstream passes directly:\n{direct_text}"
    );
    let (via_ok, via_failed, via_text) = tokio::task::spawn_blocking(move || conformance(&probe))
        .await
        .unwrap();
    let lost: Vec<&String> = direct_ok.difference(&via_ok).collect();
    assert!(lost.is_empty(), "scenarios that pass directly but not through fleetgate: {lost:?} (failed: {via_failed:?})\n{via_text}");
    assert!(via_failed.is_empty(), "{via_failed:?}\n{via_text}");
}

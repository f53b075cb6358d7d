//! The official MCP conformance suite, both its lines, against fleetgate
//! federating the test upstream (the official SDK clients are in `clients`).
//!
//! Needs Node; the suite installs itself through `scripts/conformance.sh`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_test_upstream::Upstream;
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::gateway;
use fleetgate_tests::proxy::FreshProxy;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The suite's release lines, each with the arguments that select its scenarios: the
/// stable line runs everything it has (pending scenarios too); the alpha line runs
/// exactly what a revision requires, 2025-11-25 and 2026-07-28.
const LINES: &[(&str, &[&str])] = &[
    ("0.1.16", &["--suite", "all"]),
    ("0.2.0-alpha.12", &["--requirements", "2025-11-25"]),
    ("0.2.0-alpha.12", &["--requirements", "2026-07-28"]),
];

/// What the test upstream itself does not pass of a line (directly): tasks
/// that ask for input (it has no such task), and the server-side check of
/// `Mcp-Param-*` headers against a tool's `x-mcp-header`s.
fn upstream_lacks(args: &[&str], scenario: &str) -> bool {
    const LACKS: [&str; 4] = [
        "tasks-mrtr-input",
        "tasks-mrtr-composition",
        "tasks-dispatch-and-envelope",
        "http-custom-header-server-validation",
    ];
    args.contains(&"2026-07-28") && LACKS.contains(&scenario)
}

/// What fleetgate passes of a line by its own behaviour, whatever the
/// upstream does: it checks `Mcp-Param-*` headers itself.
fn gateway_passes(args: &[&str]) -> &'static [&'static str] {
    match args.contains(&"2026-07-28") {
        true => &["http-custom-header-server-validation"],
        false => &[],
    }
}

/// One run of the suite.
struct Run {
    passed: BTreeSet<String>,
    failed: BTreeSet<String>,
    /// Checks passed, by scenario.
    checks: BTreeMap<String, u32>,
    text: String,
    took: Duration,
}

/// Runs suite `version` with `args` against `url` through `scripts/conformance.sh`.
fn conformance(version: &str, args: &[&str], url: &str) -> Run {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("scripts/conformance.sh"))
        .arg(url)
        .arg("--")
        .args(args)
        .env("FLEETGATE_CONFORMANCE_VERSION", version)
        .output()
        .expect("run scripts/conformance.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Summary lines: `✓ name: …` / `✗ name: …` (the indented "Not scored" list repeats
    // names already counted).
    let scenario = |l: &str, mark: &str| {
        l.strip_prefix(mark)
            .and_then(|r| r.split(':').next())
            .map(|s| s.trim().to_owned())
    };
    let checks = text
        .lines()
        .filter_map(|l| {
            let (name, counts) = l.strip_prefix(['✓', '✗'])?.split_once(": ")?;
            let passed = counts.split(' ').next()?.parse().ok()?;
            Some((name.trim().to_owned(), passed))
        })
        .collect();
    Run {
        passed: text.lines().filter_map(|l| scenario(l, "✓ ")).collect(),
        failed: text.lines().filter_map(|l| scenario(l, "✗ ")).collect(),
        checks,
        text,
        took: started.elapsed(),
    }
}

/// The suite's server scenarios, both release lines, run against the test upstream in
/// its reference-like mode (server-to-client requests on the standalone GET stream)
/// three ways: directly, through fleetgate's `/servers/{id}/mcp` with two workers, and
/// the same with a fresh connection per HTTP request (so a session's requests land on
/// both workers and are forwarded to the owner). Whatever passes directly must pass
/// through fleetgate both ways (for the 2026-07-28 line, where the upstream itself
/// fails a scenario, fleetgate may too). The nine runs are independent and run side
/// by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_fleetgate_as_it_does_directly() {
    let up = Upstream::builder()
        .name("everything")
        .standalone_requests(true)
        .spawn()
        .await
        .unwrap();
    let fleet = Fleet::builder().env("WORKERS", "2").start();
    gateway::register(&fleet, "everything", &up.url()).await;
    let sid = gateway::server_with_everything(&fleet, "everything").await;
    let path = format!("/servers/{sid}/mcp");
    gateway::known_everywhere(&fleet.url(&path), 2).await;
    let proxy = FreshProxy::start(&fleet.addr).await;
    let targets = [
        ("directly", up.url()),
        ("through fleetgate", fleet.url(&path)),
        ("through fleetgate, spread", proxy.url(&path)),
    ];

    let started = Instant::now();
    let mut runs = Vec::new();
    for (n, &(version, args)) in LINES.iter().enumerate() {
        for (how, url) in &targets {
            let url = url.clone();
            runs.push((
                n,
                *how,
                tokio::task::spawn_blocking(move || conformance(version, args, &url)),
            ));
        }
    }
    let mut results: Vec<(usize, &str, Run)> = Vec::new();
    for (n, how, run) in runs {
        results.push((n, how, run.await.unwrap()));
    }
    eprintln!(
        "conformance: {} runs in {:.1?}",
        results.len(),
        started.elapsed()
    );

    let mut problems = Vec::new();
    for (n, &(version, args)) in LINES.iter().enumerate() {
        let version = format!("{version} {}", args.join(" "));
        let line: Vec<&(usize, &str, Run)> = results.iter().filter(|(l, _, _)| *l == n).collect();
        let direct = &line[0].2;
        assert!(
            !direct.passed.is_empty(),
            "suite {version} ran directly:\n{}",
            direct.text
        );
        let unexpected: Vec<&String> = direct
            .failed
            .iter()
            .filter(|s| !upstream_lacks(args, s))
            .collect();
        assert!(
            unexpected.is_empty(),
            "baseline: the upstream passes suite {version} directly: {unexpected:?}\n{}",
            direct.text
        );
        for (_, how, run) in &line {
            eprintln!(
                "conformance {version} {how}: {} passed, {} failed, {:.1?}",
                run.passed.len(),
                run.failed.len(),
                run.took
            );
            // A scenario can pass with fewer checks than directly (e.g. one whose checks
            // apply only to SSE answers, answered with JSON): shown, not failed.
            let thinner: Vec<String> = run
                .checks
                .iter()
                .filter(|(name, n)| direct.checks.get(*name).is_some_and(|d| d > n))
                .filter(|(name, _)| run.passed.contains(*name))
                .map(|(name, n)| format!("{name} ({n} of {} checks)", direct.checks[name]))
                .collect();
            if !thinner.is_empty() {
                eprintln!("conformance {version} {how}: passed with fewer checks than directly: {thinner:?}");
            }
            let gained: Vec<&String> = run.passed.difference(&direct.passed).collect();
            if !gained.is_empty() {
                eprintln!("conformance {version} {how}: passes what the upstream alone does not: {gained:?}");
            }
            let owed: Vec<&&str> = gateway_passes(args)
                .iter()
                .filter(|s| *how != "directly" && !run.passed.contains(**s))
                .collect();
            if !owed.is_empty() {
                problems.push(format!(
                    "suite {version} {how}: fleetgate's own checks should pass {owed:?}\n{}",
                    run.text
                ));
            }
            let lost: Vec<&String> = direct.passed.difference(&run.passed).collect();
            let failed: Vec<&String> = run
                .failed
                .iter()
                .filter(|s| !direct.failed.contains(*s))
                .collect();
            if !lost.is_empty() || !failed.is_empty() {
                problems.push(format!(
                    "suite {version} {how}: pass directly but not here: {lost:?}; failed: {failed:?}\n{}",
                    run.text
                ));
            }
        }
    }
    let workers = proxy.workers();
    eprintln!("conformance: spread requests by accepting worker: {workers:?}");
    let spread = workers.keys().filter(|w| !matches!(w.as_str(), "?" | "!"));
    assert!(
        spread.count() >= 2 && !workers.contains_key("!"),
        "the spread runs reached both workers through the proxy: {workers:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

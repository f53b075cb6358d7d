//! Real worker *processes* sharing one SQLite file: this test binary re-runs itself
//! twice (the `child_writer` test, ignored unless asked for) and both children write
//! at the same time. Nobody may fail with "database is locked".

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use common::*;
use fleetgate_store::testing::TempSqlite;

const URL_VAR: &str = "FLEETGATE_STORE_CHILD_URL";
const TAG_VAR: &str = "FLEETGATE_STORE_CHILD_TAG";
const ROUNDS: usize = 25;

#[tokio::test]
#[ignore = "run by sqlite_two_processes_write_concurrently in a child process"]
async fn child_writer() {
    let (Ok(url), Ok(tag)) = (std::env::var(URL_VAR), std::env::var(TAG_VAR)) else {
        return;
    };
    let store = fleetgate_store::connect(Some(&url)).await.unwrap();
    for i in 0..ROUNDS {
        store
            .register_gateway(gateway(&format!("{tag}-{i}")), discovered(&["a", "b"]))
            .await
            .unwrap_or_else(|e| panic!("{tag}-{i}: {e}"));
        store
            .revoke(&format!("{tag}-{i}"), &tag, None)
            .await
            .unwrap_or_else(|e| panic!("revoke {tag}-{i}: {e}"));
        // Reads between writes, as a worker refreshing its cache would.
        store.versions().await.unwrap();
        store.list_tools(false).await.unwrap();
    }
}

#[tokio::test]
async fn sqlite_two_processes_write_concurrently() {
    let db = TempSqlite::new().unwrap();
    let store = open(&db.url()).await; // the supervisor migrates first
    let before = store.versions().await.unwrap();

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|tag| {
            Command::new(&exe)
                .args(["--exact", "child_writer", "--ignored", "--nocapture"])
                .env(URL_VAR, db.url())
                .env(TAG_VAR, tag)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child writer failed: {}",
            out.status
        );
    }

    let after = store.versions().await.unwrap();
    assert_eq!(after.registry, before.registry + 2 * ROUNDS as i64);
    assert_eq!(after.revocations, before.revocations + 2 * ROUNDS as i64);
    assert_eq!(store.list_gateways(true).await.unwrap().len(), 2 * ROUNDS);
    assert_eq!(store.list_tools(true).await.unwrap().len(), 4 * ROUNDS);
    assert!(store
        .is_revoked(&format!("p2-{}", ROUNDS - 1))
        .await
        .unwrap());
}

const DEFAULT_DB_VAR: &str = "FLEETGATE_STORE_CHILD_DEFAULT_DB";

#[tokio::test]
#[ignore = "run by no_url_means_fleetgate_db_in_the_working_directory in a child process"]
async fn child_default_db() {
    if std::env::var(DEFAULT_DB_VAR).is_err() {
        return;
    }
    let store = fleetgate_store::connect(None).await.unwrap();
    assert_eq!(store.redacted_url(), "sqlite://fleetgate.db");
    store.migrate().await.unwrap();
    store
        .register_gateway(gateway("default"), discovered(&["t"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn no_url_means_fleetgate_db_in_the_working_directory() {
    let dir = TempSqlite::new().unwrap();
    let cwd = dir.path().parent().unwrap().to_path_buf();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_default_db", "--ignored"])
        .env(DEFAULT_DB_VAR, "1")
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = cwd.join(fleetgate_store::DEFAULT_SQLITE_FILE);
    assert!(file.exists(), "{} was created", file.display());
    let store = open(&format!("sqlite://{}", file.display())).await;
    assert_eq!(store.list_tools(true).await.unwrap()[0].name, "default-t");
}

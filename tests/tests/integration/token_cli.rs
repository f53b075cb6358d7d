//! `fleetgate token …` mints tokens the gateway accepts, with the scopes asked for.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_tests::fleet::{binary, Fleet, TEST_SECRET};
use std::process::Command;

fn mint(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .arg("token")
        .args(args)
        .env_clear()
        .env("JWT_SECRET_KEY", TEST_SECRET)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_are_accepted_with_their_scopes() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("AUTH_REQUIRED", "true")
        .env("MCP_REQUIRE_AUTH", "true")
        .start();
    let http = reqwest::Client::new();
    let get = |token: Option<String>, path: &'static str| {
        let (http, url) = (http.clone(), fleet.url(path));
        async move {
            let mut r = http.get(url);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(get(None, "/tools").await, 401);

    let (code, admin, err) = mint(&["--username", "ops@example.com", "--exp", "10", "--admin"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(admin.matches('.').count(), 2, "a JWT: {admin}");
    assert_eq!(get(Some(admin.clone()), "/tools").await, 200);

    let (_, reader, _) = mint(&[
        "--username",
        "r@example.com",
        "--exp",
        "10",
        "--permissions",
        "tools.read",
    ]);
    assert_eq!(get(Some(reader.clone()), "/tools").await, 200);
    assert_eq!(
        get(Some(reader), "/gateways").await,
        403,
        "only tools.read was granted"
    );

    let (_, elsewhere, _) = mint(&[
        "--username",
        "x@example.com",
        "--exp",
        "10",
        "--ip",
        "10.0.0.0/8",
    ]);
    assert_eq!(
        get(Some(elsewhere), "/tools").await,
        403,
        "not valid from 127.0.0.1"
    );

    let (code, _, err) = mint(&["--exp", "10"]);
    assert_eq!(code, 64, "a missing --username is a usage error");
    assert!(err.contains("--username"), "{err}");
}

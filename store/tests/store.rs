//! The same scenarios against SQLite (one temp file per scenario) and PostgreSQL (one
//! throwaway cluster for the whole run, one fresh database per scenario).

// Scenario bodies are plain async fns (not #[test]), so clippy's test exemption
// does not reach them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use common::*;
use fleetgate_store::testing::{pg_skip_requested, PgCluster, TempSqlite};
use fleetgate_store::{
    Backend, DiscoveredTool, GatewayUpdate, NewServer, ServerUpdate, StoreError, Transport,
};
use serde_json::json;

/// Declares every scenario once: one `#[tokio::test]` per scenario on SQLite, and one
/// PostgreSQL test running them all on a single cluster.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = fleetgate_store::testing::TempSqlite::new().unwrap();
                    super::$name(&db.url(), fleetgate_store::Backend::Sqlite).await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres_all_scenarios() {
            if pg_skip_requested() {
                eprintln!("FLEETGATE_TEST_PG=skip: not running the PostgreSQL scenarios");
                return;
            }
            let pg = tokio::task::spawn_blocking(PgCluster::start)
                .await
                .unwrap()
                .expect("start a throwaway PostgreSQL cluster");
            $(
                let url = pg.fresh_database().unwrap();
                eprintln!("postgres scenario {} on {url}", stringify!($name));
                $name(&url, Backend::Postgres).await;
            )*
            drop(pg);
        }
    };
}

scenarios!(
    register_with_discovery,
    duplicate_and_invalid,
    delete_cascades,
    refresh_keeps_ids,
    servers_and_associations,
    revocation,
    migrations_idempotent,
    two_workers_share_one_database,
    gateway_update_enable_reachable,
);

async fn register_with_discovery(url: &str, backend: Backend) {
    let store = open(url).await;
    assert_eq!(store.backend(), backend);
    let v0 = store.versions().await.unwrap();
    assert_eq!(store.changed_since(v0).await.unwrap(), None);

    let mut d = full_discovery();
    // A duplicate upstream tool is ignored; a null schema gets the default.
    d.tools.push(tool("Echo"));
    d.tools.push(DiscoveredTool {
        name: "no schema".into(),
        ..Default::default()
    });
    let mut new = gateway("My Gateway");
    new.transport = Transport::Sse;
    new.auth_type = Some("bearer".into());
    new.auth_headers = BTreeMap::from([("Authorization".into(), "Bearer t".into())]);
    new.tags = vec!["prod".into()];
    let gw = store.register_gateway(new, d).await.unwrap();
    assert_eq!(gw.id.len(), 32);
    assert_eq!(gw.slug, "my-gateway");
    assert_eq!(gw.transport, Transport::Sse);
    assert_eq!(gw.auth_headers["Authorization"], "Bearer t");
    assert_eq!(gw.tags, vec!["prod".to_string()]);
    assert_eq!(gw.capabilities, json!({"tools": {"listChanged": true}}));
    assert!(gw.enabled && gw.reachable);
    assert_eq!(store.get_gateway(&gw.id).await.unwrap(), gw);
    assert_eq!(store.list_gateways(false).await.unwrap(), vec![gw.clone()]);

    let tools = store.list_tools(false).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "my-gateway-echo",
            "my-gateway-get-weather",
            "my-gateway-no-schema"
        ]
    );
    let weather = &tools[1];
    assert_eq!(weather.original_name, "get_weather");
    assert_eq!(weather.gateway_id, gw.id);
    assert_eq!(weather.gateway_slug, "my-gateway");
    assert_eq!(weather.annotations, json!({}));
    assert!(weather.enabled && weather.reachable);
    assert_eq!(tools[2].input_schema, schema_default());
    assert_eq!(
        &store
            .get_tool_by_name("my-gateway-get-weather")
            .await
            .unwrap(),
        weather
    );
    assert_eq!(&store.get_tool(&weather.id).await.unwrap(), weather);
    assert!(matches!(
        store.get_tool_by_name("nope").await,
        Err(StoreError::NotFound { kind: "tool", .. })
    ));

    let resources = store.list_resources(false).await.unwrap();
    assert_eq!(resources.len(), 2);
    assert_eq!(resources[0].uri, "file:///etc/motd");
    assert_eq!(
        store
            .get_resource_by_uri("file:///readme.md")
            .await
            .unwrap()
            .name,
        "readme.md"
    );
    assert_eq!(
        store.get_resource(&resources[0].id).await.unwrap(),
        resources[0]
    );
    let templates = store.list_resource_templates(false).await.unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].uri_template, "file:///logs/{date}");
    assert_eq!(
        store.get_resource_template(&templates[0].id).await.unwrap(),
        templates[0]
    );
    let prompts = store.list_prompts(false).await.unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].name, "my-gateway-summarize");
    assert_eq!(prompts[0].arguments[0]["name"], "topic");
    assert_eq!(
        store
            .get_prompt_by_name("my-gateway-summarize")
            .await
            .unwrap(),
        prompts[0]
    );
    assert_eq!(store.get_prompt(&prompts[0].id).await.unwrap(), prompts[0]);

    let v1 = store.changed_since(v0).await.unwrap().expect("a change");
    assert!(v1.registry > v0.registry);
    assert_eq!(v1.revocations, v0.revocations);
    // Serializable plain structs.
    let js = serde_json::to_value(&gw).unwrap();
    assert_eq!(js["transport"], "SSE");
}

async fn duplicate_and_invalid(url: &str, _backend: Backend) {
    let store = open(url).await;
    store
        .register_gateway(gateway("alpha"), discovered(&["b-c"]))
        .await
        .unwrap();

    let err = store
        .register_gateway(gateway("alpha"), discovered(&["x"]))
        .await
        .unwrap_err();
    match &err {
        StoreError::Conflict(m) => assert!(m.contains("gateway name \"alpha\""), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    // Same slug from a different name.
    assert!(matches!(
        store
            .register_gateway(gateway("Alpha!"), discovered(&[]))
            .await,
        Err(StoreError::Conflict(_))
    ));

    let before = store.versions().await.unwrap();
    // "alpha-b" + "c" → "alpha-b-c", which gateway "alpha" already has: nothing of
    // the new gateway may remain.
    let err = store
        .register_gateway(gateway("alpha-b"), discovered(&["zzz", "c"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("alpha-b-c")),
        "{err:?}"
    );
    assert_eq!(store.list_gateways(true).await.unwrap().len(), 1);
    assert_eq!(store.list_tools(true).await.unwrap().len(), 1);
    assert_eq!(store.versions().await.unwrap(), before, "rolled back");

    // Two upstream names with one slug.
    assert!(matches!(
        store.register_gateway(gateway("beta"), discovered(&["a_b", "a-b"])).await,
        Err(StoreError::Conflict(m)) if m.contains("beta-a-b")
    ));

    let mut bad = gateway("gamma");
    bad.url = "ftp://example.org".into();
    assert!(matches!(
        store.register_gateway(bad, discovered(&[])).await,
        Err(StoreError::Invalid { field, .. }) if field == "url"
    ));
    assert!(matches!(
        store.register_gateway(gateway("  "), discovered(&[])).await,
        Err(StoreError::Invalid { field, .. }) if field == "name"
    ));
    assert!(matches!(
        store.register_gateway(gateway("日本"), discovered(&[])).await,
        Err(StoreError::Invalid { field, .. }) if field == "name"
    ));
    assert!(matches!(
        store.get_gateway("missing").await,
        Err(StoreError::NotFound {
            kind: "gateway",
            ..
        })
    ));
}

async fn delete_cascades(url: &str, _backend: Backend) {
    let store = open(url).await;
    let gw = store
        .register_gateway(gateway("doomed"), full_discovery())
        .await
        .unwrap();
    let keep = store
        .register_gateway(gateway("keeper"), discovered(&["stay"]))
        .await
        .unwrap();
    let tools = store.list_tools(true).await.unwrap();
    let doomed_tool = tools
        .iter()
        .find(|t| t.gateway_id == gw.id)
        .unwrap()
        .clone();
    let kept_tool = tools
        .iter()
        .find(|t| t.gateway_id == keep.id)
        .unwrap()
        .clone();
    let res = store.list_resources(true).await.unwrap();
    let prompts = store.list_prompts(true).await.unwrap();
    let server = store
        .create_server(NewServer {
            name: "mix".into(),
            tool_ids: vec![doomed_tool.id.clone(), kept_tool.id.clone()],
            resource_ids: vec![res[0].id.clone()],
            prompt_ids: vec![prompts[0].id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(server.associated_tools.len(), 2);

    store.delete_gateway(&gw.id).await.unwrap();
    assert!(matches!(
        store.get_gateway(&gw.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_tool(&doomed_tool.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.list_tools(true).await.unwrap(),
        vec![kept_tool.clone()]
    );
    assert!(store.list_resources(true).await.unwrap().is_empty());
    assert!(store
        .list_resource_templates(true)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_prompts(true).await.unwrap().is_empty());

    let server = store.get_server(&server.id).await.unwrap();
    assert_eq!(server.associated_tools, vec![kept_tool.id.clone()]);
    assert!(server.associated_resources.is_empty());
    assert!(server.associated_prompts.is_empty());
    assert_eq!(
        store.server_tools(&server.id).await.unwrap(),
        vec![kept_tool.clone()]
    );

    // Deleting the server leaves the tool alone.
    store.delete_server(&server.id).await.unwrap();
    assert!(store.get_tool(&kept_tool.id).await.is_ok());
    assert!(matches!(
        store.server_tools(&server.id).await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    assert!(matches!(
        store.delete_gateway(&gw.id).await,
        Err(StoreError::NotFound {
            kind: "gateway",
            ..
        })
    ));
    assert!(matches!(
        store.delete_server(&server.id).await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
}

async fn refresh_keeps_ids(url: &str, _backend: Backend) {
    let store = open(url).await;
    let mut d = discovered(&["t1", "t2", "t3"]);
    d.resources = vec![resource("r://one"), resource("r://two")];
    d.prompts = vec![prompt("p1"), prompt("p2")];
    d.resource_templates = vec![template("r://{x}")];
    let gw = store.register_gateway(gateway("up"), d).await.unwrap();
    let by_name = |tools: &[fleetgate_store::Tool], n: &str| {
        tools.iter().find(|t| t.original_name == n).cloned()
    };
    let tools = store.list_tools(true).await.unwrap();
    let t1 = by_name(&tools, "t1").unwrap();
    let t2 = by_name(&tools, "t2").unwrap();
    let t3 = by_name(&tools, "t3").unwrap();
    let p1 = store.get_prompt_by_name("up-p1").await.unwrap();
    let r1 = store.get_resource_by_uri("r://one").await.unwrap();
    store.set_tool_enabled(&t2.id, false).await.unwrap();
    let server = store
        .create_server(NewServer {
            name: "s".into(),
            tool_ids: vec![t1.id.clone(), t2.id.clone(), t3.id.clone()],
            resource_ids: vec![r1.id.clone()],
            prompt_ids: vec![p1.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let before = store.versions().await.unwrap();

    let mut fresh = discovered(&["t1", "t2", "t4"]);
    fresh.tools[0].description = Some("new description".into());
    fresh.resources = vec![resource("r://one"), resource("r://three")];
    fresh.prompts = vec![prompt("p1")];
    fresh.resource_templates = vec![template("r://{x}")];
    fresh.capabilities = Some(json!({"tools": {}}));
    let summary = store.replace_discovered(&gw.id, fresh).await.unwrap();
    // tools: +t4 ~t1 -t3; resources: +three -two; prompts: -p2.
    assert_eq!(summary.added, 2);
    assert_eq!(summary.updated, 1);
    assert_eq!(summary.removed, 3);
    assert!(store.versions().await.unwrap().registry > before.registry);

    let tools = store.list_tools(true).await.unwrap();
    assert_eq!(tools.len(), 3);
    let n1 = by_name(&tools, "t1").unwrap();
    assert_eq!(n1.id, t1.id);
    assert_eq!(n1.description.as_deref(), Some("new description"));
    let n2 = by_name(&tools, "t2").unwrap();
    assert_eq!(n2.id, t2.id);
    assert!(
        !n2.enabled,
        "a disabled tool stays disabled across refreshes"
    );
    assert!(by_name(&tools, "t3").is_none());
    assert!(by_name(&tools, "t4").unwrap().enabled);
    assert_eq!(store.get_prompt_by_name("up-p1").await.unwrap().id, p1.id);
    assert!(store.get_prompt_by_name("up-p2").await.is_err());
    assert_eq!(
        store.get_resource_by_uri("r://one").await.unwrap().id,
        r1.id
    );

    let server = store.get_server(&server.id).await.unwrap();
    let mut expect = vec![t1.id.clone(), t2.id.clone()];
    expect.sort();
    assert_eq!(server.associated_tools, expect);
    assert_eq!(server.associated_resources, vec![r1.id.clone()]);
    assert_eq!(server.associated_prompts, vec![p1.id.clone()]);
    assert_eq!(
        store.get_gateway(&gw.id).await.unwrap().capabilities,
        json!({"tools": {}})
    );

    // A refresh that does not change anything changes nothing.
    let again = discovered(&["t1", "t2", "t4"]);
    let mut again = again;
    again.tools[0].description = Some("new description".into());
    again.resources = vec![resource("r://one"), resource("r://three")];
    again.prompts = vec![prompt("p1")];
    again.resource_templates = vec![template("r://{x}")];
    let summary = store.replace_discovered(&gw.id, again).await.unwrap();
    assert_eq!(summary, Default::default());
    assert!(matches!(
        store.replace_discovered("nope", Default::default()).await,
        Err(StoreError::NotFound {
            kind: "gateway",
            ..
        })
    ));
}

async fn servers_and_associations(url: &str, _backend: Backend) {
    let store = open(url).await;
    store
        .register_gateway(gateway("g"), full_discovery())
        .await
        .unwrap();
    let tools = store.list_tools(true).await.unwrap();
    let resources = store.list_resources(true).await.unwrap();
    let prompts = store.list_prompts(true).await.unwrap();

    let err = store
        .create_server(NewServer {
            name: "bad".into(),
            tool_ids: vec![tools[0].id.clone(), "no-such-tool".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    match err {
        StoreError::Invalid { field, message } => {
            assert_eq!(field, "associated_tools");
            assert!(message.contains("no-such-tool"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        store.create_server(NewServer {
            name: "bad".into(),
            resource_ids: vec!["nope".into()],
            ..Default::default()
        }).await,
        Err(StoreError::Invalid { field, .. }) if field == "associated_resources"
    ));
    assert!(matches!(
        store.create_server(NewServer {
            name: "bad".into(),
            prompt_ids: vec!["nope".into()],
            ..Default::default()
        }).await,
        Err(StoreError::Invalid { field, .. }) if field == "associated_prompts"
    ));
    assert!(
        store.list_servers(true).await.unwrap().is_empty(),
        "nothing half-created"
    );

    let s = store
        .create_server(NewServer {
            id: Some("my-server".into()),
            name: "main".into(),
            description: Some("d".into()),
            icon: Some("https://example.org/i.png".into()),
            tags: vec!["t".into()],
            tool_ids: vec![tools[0].id.clone(), tools[0].id.clone()],
            resource_ids: vec![resources[0].id.clone()],
            prompt_ids: vec![prompts[0].id.clone()],
        })
        .await
        .unwrap();
    assert_eq!(s.id, "my-server");
    assert_eq!(
        s.associated_tools,
        vec![tools[0].id.clone()],
        "deduplicated"
    );
    assert_eq!(store.get_server("my-server").await.unwrap(), s);
    assert_eq!(
        store.server_tools(&s.id).await.unwrap(),
        vec![tools[0].clone()]
    );
    assert_eq!(
        store.server_resources(&s.id).await.unwrap(),
        vec![resources[0].clone()]
    );
    assert_eq!(
        store.server_prompts(&s.id).await.unwrap(),
        vec![prompts[0].clone()]
    );

    assert!(matches!(
        store.create_server(NewServer { name: "main".into(), ..Default::default() }).await,
        Err(StoreError::Conflict(m)) if m.contains("server name")
    ));
    assert!(matches!(
        store.create_server(NewServer {
            id: Some("my-server".into()),
            name: "other".into(),
            ..Default::default()
        }).await,
        Err(StoreError::Conflict(m)) if m.contains("server id")
    ));
    assert!(matches!(
        store.create_server(NewServer {
            id: Some("bad id!".into()),
            name: "other".into(),
            ..Default::default()
        }).await,
        Err(StoreError::Invalid { field, .. }) if field == "id"
    ));

    // Update: replace tools, clear the icon, keep the rest.
    let all_tool_ids: Vec<String> = tools.iter().map(|t| t.id.clone()).collect();
    let u = store
        .update_server(
            &s.id,
            ServerUpdate {
                name: Some("main2".into()),
                icon: Some(None),
                tool_ids: Some(all_tool_ids.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.name, "main2");
    assert_eq!(u.icon, None);
    assert_eq!(u.description.as_deref(), Some("d"));
    let mut sorted = all_tool_ids.clone();
    sorted.sort();
    assert_eq!(u.associated_tools, sorted);
    assert_eq!(u.associated_resources, s.associated_resources);

    // A bad update changes nothing.
    assert!(matches!(
        store.update_server(&s.id, ServerUpdate {
            name: Some("main3".into()),
            prompt_ids: Some(vec!["ghost".into()]),
            ..Default::default()
        }).await,
        Err(StoreError::Invalid { field, message }) if field == "associated_prompts" && message.contains("ghost")
    ));
    assert_eq!(store.get_server(&s.id).await.unwrap(), u);

    let other = store
        .create_server(NewServer {
            name: "zzz".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(other.id.len(), 32);
    assert!(matches!(
        store
            .update_server(
                &other.id,
                ServerUpdate {
                    name: Some("main2".into()),
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let off = store.set_server_enabled(&other.id, false).await.unwrap();
    assert!(!off.enabled);
    let names: Vec<String> = store
        .list_servers(false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["main2"]);
    assert_eq!(store.list_servers(true).await.unwrap().len(), 2);
    assert!(matches!(
        store.update_server("ghost", ServerUpdate::default()).await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
}

async fn revocation(url: &str, _backend: Backend) {
    let store = open(url).await;
    let t0 = Utc::now() - Duration::seconds(1);
    let v0 = store.versions().await.unwrap();
    assert!(!store.is_revoked("jti-1").await.unwrap());
    let r = store
        .revoke("jti-1", "admin@example.com", Some("leaked"))
        .await
        .unwrap();
    assert_eq!(r.jti, "jti-1");
    assert_eq!(r.revoked_by, "admin@example.com");
    assert_eq!(r.reason.as_deref(), Some("leaked"));
    assert!(store.is_revoked("jti-1").await.unwrap());
    assert!(!store.is_revoked("jti-2").await.unwrap());

    let again = store.revoke("jti-1", "someone-else", None).await.unwrap();
    assert_eq!(again, r, "revoking twice keeps the first revocation");

    store.revoke("jti-2", "admin", None).await.unwrap();
    let since = store.revoked_since(t0).await.unwrap();
    let jtis: Vec<&str> = since.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(jtis, ["jti-1", "jti-2"]);
    assert_eq!(since[0], r);
    let later = store
        .revoked_since(Utc::now() + Duration::seconds(5))
        .await
        .unwrap();
    assert!(later.is_empty());
    // Exactly at the revocation time: included.
    assert_eq!(
        store.revoked_since(r.revoked_at).await.unwrap()[0].jti,
        "jti-1"
    );

    let v1 = store.versions().await.unwrap();
    assert!(v1.revocations >= v0.revocations + 2);
    assert_eq!(
        v1.registry, v0.registry,
        "revocations do not touch the registry"
    );
    assert!(matches!(
        store.revoke(" ", "x", None).await,
        Err(StoreError::Invalid { field, .. }) if field == "jti"
    ));
}

async fn migrations_idempotent(url: &str, _backend: Backend) {
    let store = open(url).await;
    store.migrate().await.unwrap();
    let gw = store
        .register_gateway(gateway("persist"), discovered(&["a"]))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // A second process migrating the same database: no-op, data intact.
    let other = open(url).await;
    other.migrate().await.unwrap();
    assert_eq!(other.get_gateway(&gw.id).await.unwrap(), gw);
    assert_eq!(other.list_tools(true).await.unwrap().len(), 1);
    // Both migrate at once.
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
}

async fn two_workers_share_one_database(url: &str, backend: Backend) {
    let a = open(url).await;
    let b = open(url).await;
    if backend == Backend::Sqlite {
        let wal = format!("{}-wal", url.trim_start_matches("sqlite://"));
        assert!(
            std::path::Path::new(&wal).exists(),
            "WAL mode: {wal} exists"
        );
    }
    let seen_by_b = b.versions().await.unwrap();

    let gw = a
        .register_gateway(gateway("shared"), discovered(&["x", "y"]))
        .await
        .unwrap();
    let now_b = b
        .changed_since(seen_by_b)
        .await
        .unwrap()
        .expect("b sees a's change");
    assert!(now_b.registry > seen_by_b.registry);
    assert_eq!(b.get_gateway(&gw.id).await.unwrap(), gw);
    let tool = b.get_tool_by_name("shared-x").await.unwrap();
    let s = b
        .create_server(NewServer {
            name: "from-b".into(),
            tool_ids: vec![tool.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.server_tools(&s.id).await.unwrap(), vec![tool]);

    // Concurrent writers in both "processes": nobody fails with a busy/locked error.
    let before = a.versions().await.unwrap();
    let write = |store: fleetgate_store::Store, who: &'static str| async move {
        for i in 0..8 {
            store
                .register_gateway(gateway(&format!("{who}-{i}")), discovered(&["t1", "t2"]))
                .await
                .unwrap_or_else(|e| panic!("{who}-{i}: {e}"));
            store
                .revoke(&format!("{who}-jti-{i}"), who, None)
                .await
                .unwrap_or_else(|e| panic!("{who} revoke {i}: {e}"));
        }
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(write(a.clone(), "a")),
        tokio::spawn(write(b.clone(), "b"))
    );
    ra.unwrap();
    rb.unwrap();
    let after = b.versions().await.unwrap();
    assert_eq!(after.registry, before.registry + 16);
    assert_eq!(after.revocations, before.revocations + 16);
    assert_eq!(a.list_gateways(true).await.unwrap().len(), 17);
    assert_eq!(b.list_tools(true).await.unwrap().len(), 34);
}

async fn gateway_update_enable_reachable(url: &str, _backend: Backend) {
    let store = open(url).await;
    let gw = store
        .register_gateway(gateway("old"), full_discovery())
        .await
        .unwrap();
    let before = store.list_tools(true).await.unwrap();
    let prompt_before = store.get_prompt_by_name("old-summarize").await.unwrap();

    // Rename: slug, tool names and prompt names follow; ids stay.
    let up = store
        .update_gateway(
            &gw.id,
            GatewayUpdate {
                name: Some("New Name".into()),
                url: Some("https://example.org/mcp".into()),
                description: Some(None),
                transport: Some(Transport::StreamableHttp),
                auth_headers: Some(BTreeMap::from([("X-Key".into(), "k".into())])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(up.slug, "new-name");
    assert_eq!(up.url, "https://example.org/mcp");
    assert_eq!(up.description, None);
    assert_eq!(up.auth_headers["X-Key"], "k");
    let after = store.list_tools(true).await.unwrap();
    assert_eq!(after.len(), before.len());
    for t in &after {
        assert!(t.name.starts_with("new-name-"), "{}", t.name);
        assert_eq!(t.gateway_slug, "new-name");
        assert!(before.iter().any(|b| b.id == t.id));
    }
    let p = store
        .get_prompt_by_name("new-name-summarize")
        .await
        .unwrap();
    assert_eq!(p.id, prompt_before.id);

    // Renaming onto another gateway's name is a conflict and changes nothing.
    let other = store
        .register_gateway(gateway("other"), discovered(&[]))
        .await
        .unwrap();
    assert!(matches!(
        store
            .update_gateway(
                &other.id,
                GatewayUpdate {
                    name: Some("New Name".into()),
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.update_gateway(&gw.id, GatewayUpdate { url: Some("nope".into()), ..Default::default() }).await,
        Err(StoreError::Invalid { field, .. }) if field == "url"
    ));

    // Disable cascades (ContextForge semantics); enable restores.
    let off = store.set_gateway_enabled(&gw.id, false).await.unwrap();
    assert!(!off.enabled);
    assert!(store.list_tools(false).await.unwrap().is_empty());
    assert!(store
        .list_tools(true)
        .await
        .unwrap()
        .iter()
        .all(|t| !t.enabled));
    assert!(store.list_prompts(false).await.unwrap().is_empty());
    assert!(store.list_resources(false).await.unwrap().is_empty());
    assert!(store
        .list_resource_templates(false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.list_gateways(false).await.unwrap(),
        vec![other.clone()]
    );
    store.set_gateway_enabled(&gw.id, true).await.unwrap();
    assert_eq!(store.list_tools(false).await.unwrap().len(), before.len());

    // One tool off, then on.
    let t = &after[0];
    assert!(!store.set_tool_enabled(&t.id, false).await.unwrap().enabled);
    assert_eq!(
        store.list_tools(false).await.unwrap().len(),
        before.len() - 1
    );
    assert!(store.set_tool_enabled(&t.id, true).await.unwrap().enabled);
    let r = &store.list_resources(true).await.unwrap()[0];
    assert!(
        !store
            .set_resource_enabled(&r.id, false)
            .await
            .unwrap()
            .enabled
    );
    assert!(
        !store
            .set_prompt_enabled(&p.id, false)
            .await
            .unwrap()
            .enabled
    );
    assert!(matches!(
        store.set_tool_enabled("ghost", true).await,
        Err(StoreError::NotFound { kind: "tool", .. })
    ));

    // Reachability: only a change bumps the registry version.
    let v = store.versions().await.unwrap();
    let same = store.set_gateway_reachable(&gw.id, true).await.unwrap();
    assert!(same.reachable && same.last_seen.is_some());
    assert_eq!(store.versions().await.unwrap(), v);
    let down = store.set_gateway_reachable(&gw.id, false).await.unwrap();
    assert!(!down.reachable);
    assert!(store.versions().await.unwrap().registry > v.registry);
    assert!(!store.get_tool(&t.id).await.unwrap().reachable);
}

// ---------------------------------------------------------------------------
// Connection handling (no scenario database needed).
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_urls_are_explained() {
    let err = fleetgate_store::connect(Some("mysql://u:pw@h/db"))
        .await
        .unwrap_err();
    match err {
        StoreError::Invalid { field, message } => {
            assert_eq!(field, "database_url");
            assert!(message.contains("mysql://u:***@h/db"), "{message}");
            assert!(!message.contains("pw"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // Nothing listens on port 9 on loopback: Unavailable, URL named, password masked.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://fleet:secret@127.0.0.1:{port}/fleet");
    let opts = fleetgate_store::StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let err = fleetgate_store::connect_with(Some(&url), opts)
        .await
        .unwrap_err();
    match err {
        StoreError::Unavailable(m) => {
            assert!(m.contains(&format!("fleet:***@127.0.0.1:{port}")), "{m}");
            assert!(!m.contains("secret"), "{m}");
            assert!(m.contains("Check that the server"), "{m}");
        }
        other => panic!("{other:?}"),
    }

    let dir = TempSqlite::new().unwrap();
    let bad = format!("sqlite://{}/no/such/dir/x.db", dir.path().display());
    assert!(matches!(
        fleetgate_store::connect(Some(&bad)).await,
        Err(StoreError::Unavailable(m)) if m.contains("no/such/dir")
    ));
}

#[tokio::test]
async fn unmigrated_database_says_so() {
    let db = TempSqlite::new().unwrap();
    let store = fleetgate_store::connect(Some(&db.url())).await.unwrap();
    let err = store
        .register_gateway(gateway("x"), discovered(&[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Internal(m) if m.contains("run migrations")),
        "{err:?}"
    );
}

/// Every public future is `Send` (workers call them from spawned tasks). Compile-time only.
#[allow(dead_code)]
fn futures_are_send(s: fleetgate_store::Store) {
    fn send<T: Send>(_: T) {}
    send(fleetgate_store::connect(None));
    send(s.migrate());
    send(s.ping());
    send(s.versions());
    send(s.changed_since(Default::default()));
    send(s.register_gateway(gateway("x"), Default::default()));
    send(s.get_gateway("x"));
    send(s.list_gateways(true));
    send(s.update_gateway("x", GatewayUpdate::default()));
    send(s.delete_gateway("x"));
    send(s.set_gateway_enabled("x", true));
    send(s.set_gateway_reachable("x", true));
    send(s.replace_discovered("x", Default::default()));
    send(s.list_tools(true));
    send(s.get_tool("x"));
    send(s.get_tool_by_name("x"));
    send(s.set_tool_enabled("x", true));
    send(s.list_resources(true));
    send(s.get_resource("x"));
    send(s.get_resource_by_uri("x"));
    send(s.set_resource_enabled("x", true));
    send(s.list_resource_templates(true));
    send(s.get_resource_template("x"));
    send(s.list_prompts(true));
    send(s.get_prompt("x"));
    send(s.get_prompt_by_name("x"));
    send(s.set_prompt_enabled("x", true));
    send(s.create_server(NewServer::default()));
    send(s.get_server("x"));
    send(s.list_servers(true));
    send(s.update_server("x", ServerUpdate::default()));
    send(s.delete_server("x"));
    send(s.set_server_enabled("x", true));
    send(s.server_tools("x"));
    send(s.server_resources("x"));
    send(s.server_prompts("x"));
    send(s.revoke("x", "y", None));
    send(s.is_revoked("x"));
    send(s.revoked_since(Utc::now()));
    send(s.close());
}

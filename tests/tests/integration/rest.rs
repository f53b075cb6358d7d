//! The REST API (ContextForge-compatible) against the real binary and real
//! upstreams, on SQLite (the fleet's temp cwd) and on PostgreSQL (a private
//! cluster; `FLEETGATE_TEST_PG=skip` skips those).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_store::testing::{pg_skip_requested, PgCluster};
use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::fresh_client;
use fleetgate_tests::gateway;
use fleetgate_tests::mcp::McpClient;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A fleet and a client for its REST API.
struct Api {
    fleet: Fleet,
    http: reqwest::Client,
}

impl Api {
    /// One worker, on SQLite in the fleet's temp dir, or on `database_url`.
    fn start(database_url: Option<&str>) -> Api {
        let mut b = Fleet::builder().env("WORKERS", "1");
        if let Some(url) = database_url {
            b = b.env("DATABASE_URL", url);
        }
        Api {
            fleet: b.start(),
            http: fresh_client(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.fleet.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.fleet.url(path)).json(&body))
            .await
    }

    async fn post_empty(&self, path: &str) -> (u16, Value) {
        self.send(self.http.post(self.fleet.url(path))).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.put(self.fleet.url(path)).json(&body))
            .await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.fleet.url(path))).await
    }

    /// `GET path`, expecting 200 and an array.
    async fn list(&self, path: &str) -> Vec<Value> {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v.as_array()
            .unwrap_or_else(|| panic!("GET {path}: not an array: {v}"))
            .clone()
    }

    /// Registers `up` as gateway `name`; returns the GatewayRead.
    async fn register(&self, name: &str, up: &RunningUpstream) -> Value {
        let (s, v) = self
            .post(
                "/gateways",
                json!({"name": name, "url": up.url(), "transport": "STREAMABLEHTTP"}),
            )
            .await;
        assert_eq!(s, 200, "register {name}: {v}");
        v
    }

    /// The tool names `tools/list` shows on `path` (`/mcp`, `/servers/{id}/mcp`).
    async fn mcp_tools(&self, path: &str) -> BTreeSet<String> {
        let mut c = McpClient::new(self.fleet.url(path));
        let init = c.initialize().await;
        assert_eq!(init.status, 200, "initialize on {path}: {init:?}");
        let list = c.request("tools/list", json!({})).await;
        assert_eq!(list.status, 200, "tools/list on {path}: {list:?}");
        let names = list.result()["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("tools/list on {path}: {list:?}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        c.delete().await;
        names
    }
}

async fn upstream(name: &str) -> RunningUpstream {
    Upstream::builder()
        .stateless_draft(false)
        .name(name)
        .spawn()
        .await
        .unwrap()
}

fn names(items: &[Value], key: &str) -> BTreeSet<String> {
    items
        .iter()
        .map(|t| t[key].as_str().unwrap().to_owned())
        .collect()
}

fn upstream_tools(prefix: &str) -> BTreeSet<String> {
    fleetgate_test_upstream::tool_names()
        .into_iter()
        .map(|n| format!("{prefix}{n}"))
        .collect()
}

/// What `/mcp` shows for a gateway slug and upstream tool names (ContextForge's
/// `{slug}-{slugified name}`).
fn qualified(slug: &str, tools: &BTreeSet<String>) -> BTreeSet<String> {
    tools
        .iter()
        .map(|n| format!("{slug}-{}", n.to_lowercase().replace(['_', '.', '/'], "-")))
        .collect()
}

/// Whether the 422 body names `field` in some `loc`.
fn names_field(body: &Value, field: &str) -> bool {
    body["detail"].as_array().is_some_and(|errs| {
        errs.iter().any(|e| {
            e["loc"]
                .as_array()
                .is_some_and(|l| l.iter().any(|p| p == field))
        })
    })
}

async fn info_of_resource(api: &Api, id: &str) -> Value {
    api.get(&format!("/resources/{id}/info")).await.1
}

/// The keys of `obj` must be properties of `schema`, and its required keys present.
fn conforms(doc: &Value, schema: &str, obj: &Value) {
    let s = &doc["components"]["schemas"][schema];
    let props = s["properties"].as_object().unwrap();
    for k in obj.as_object().unwrap().keys() {
        assert!(props.contains_key(k), "{schema} lacks {k} (in {obj})");
    }
    for r in s["required"].as_array().unwrap() {
        assert!(
            obj.get(r.as_str().unwrap()).is_some(),
            "{obj} lacks required {r}"
        );
    }
}

// ---------------------------------------------------------------------------
// Scenarios, run on both databases.
// ---------------------------------------------------------------------------

/// Register, list, read, virtual servers, enable/disable as seen on `/mcp`,
/// delete with its cascade.
async fn lifecycle(database_url: Option<&str>) {
    let api = Api::start(database_url);
    let up = upstream("alpha").await;
    let all = upstream_tools("");

    let gw = api.register("Alpha One", &up).await;
    let gw_id = gw["id"].as_str().unwrap().to_owned();
    // The registry went where it was meant to.
    let sqlite_file = api.fleet.dir.path.join("fleetgate.db");
    assert_eq!(
        sqlite_file.exists(),
        database_url.is_none(),
        "{sqlite_file:?}"
    );
    assert_eq!(gw["name"], "Alpha One");
    assert_eq!(gw["slug"], "alpha-one");
    assert_eq!(gw["url"], up.url());
    assert_eq!(gw["transport"], "STREAMABLEHTTP");
    assert_eq!(gw["enabled"], true);
    assert_eq!(gw["reachable"], true);
    assert_eq!(gw["toolCount"], all.len());
    assert!(gw["capabilities"]["tools"].is_object(), "{gw}");
    assert!(gw["resourceCount"].as_u64().unwrap() > 0, "{gw}");
    assert!(gw["promptCount"].as_u64().unwrap() > 0, "{gw}");

    // Tools: prefixed names, original names, the gateway named.
    let tools = api.list("/tools?limit=0").await;
    assert_eq!(names(&tools, "originalName"), all);
    assert_eq!(names(&tools, "name"), qualified("alpha-one", &all));
    for t in &tools {
        assert_eq!(t["gatewayId"], gw_id.as_str());
        assert_eq!(t["gatewaySlug"], "alpha-one");
        assert_eq!(t["enabled"], true);
        assert!(t["inputSchema"].is_object(), "{t}");
    }
    let echo = tools.iter().find(|t| t["originalName"] == "echo").unwrap();
    let echo_id = echo["id"].as_str().unwrap().to_owned();
    let add_id = tools.iter().find(|t| t["originalName"] == "add").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, one) = api.get(&format!("/tools/{echo_id}")).await;
    assert_eq!(s, 200);
    assert_eq!(one["name"], "alpha-one-echo");
    assert_eq!(one["url"], up.url());

    // Paging: the default page and explicit limits and cursors.
    let page = api.list("/tools?limit=2").await;
    assert_eq!(page.len(), 2);
    let (s, paged) = api.get("/tools?limit=2&include_pagination=true").await;
    assert_eq!(s, 200);
    assert_eq!(paged["tools"].as_array().unwrap().len(), 2);
    let next = paged["nextCursor"].as_str().unwrap();
    let rest = api.list(&format!("/tools?limit=0&cursor={next}")).await;
    assert_eq!(rest.len(), all.len() - 2);

    // Resources, templates, prompts were discovered too.
    let resources = api.list("/resources").await;
    assert!(!resources.is_empty());
    assert!(resources.iter().all(|r| r["gatewayId"] == gw_id.as_str()));
    let text_res = resources
        .iter()
        .find(|r| r["uri"] == "test://static-text")
        .unwrap();
    let res_id = text_res["id"].as_str().unwrap().to_owned();
    let (s, info) = api.get(&format!("/resources/{res_id}/info")).await;
    assert_eq!(
        (s, &info["uri"]),
        (200, &json!("test://static-text")),
        "{info}"
    );
    assert_eq!(info["mimeType"], "text/plain");
    // GET /resources/{id} reads the content through the upstream, as ContextForge does.
    let (s, content) = api.get(&format!("/resources/{res_id}")).await;
    assert_eq!(s, 200, "{content}");
    assert_eq!(content["type"], "resource");
    assert_eq!(content["id"], res_id.as_str());
    assert_eq!(
        content["text"],
        "This is the content of the static text resource."
    );
    assert!(!api.list("/resources/templates").await.is_empty());
    let (s, tl) = api.get("/resources/templates/list").await;
    assert_eq!(s, 200);
    assert!(
        tl["resourceTemplates"][0]["uriTemplate"].is_string(),
        "{tl}"
    );
    let prompts = api.list("/prompts").await;
    assert!(!prompts.is_empty());
    assert!(prompts.iter().all(|p| p["gatewaySlug"] == "alpha-one"));
    let prompt_id = |original: &str| {
        prompts
            .iter()
            .find(|p| p["originalName"] == original)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let simple_id = prompt_id("test_simple_prompt");
    let args_id = prompt_id("test_prompt_with_arguments");
    let (s, info) = api.get(&format!("/prompts/{args_id}/info")).await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["name"], "alpha-one-test-prompt-with-arguments");
    assert_eq!(info["arguments"][0]["name"], "arg1");
    // GET renders without arguments, POST with the body's, as ContextForge does.
    let (s, rendered) = api.get(&format!("/prompts/{simple_id}")).await;
    assert_eq!(s, 200, "{rendered}");
    assert_eq!(
        rendered["messages"][0]["content"]["text"],
        "This is a simple prompt for testing."
    );
    let (s, rendered) = api
        .post(
            &format!("/prompts/{args_id}"),
            json!({"arg1": "x", "arg2": 2}),
        )
        .await;
    assert_eq!(s, 200, "{rendered}");
    assert_eq!(
        rendered["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='x', arg2='2'"
    );
    let (s, v) = api
        .post(&format!("/prompts/{args_id}"), json!({"arg1": "x"}))
        .await;
    assert_eq!(s, 422, "the upstream refuses a missing argument: {v}");
    assert!(v["detail"].as_str().unwrap().contains("arg2"), "{v}");
    let prompt_id = simple_id;

    // Gateways.
    let gws = api.list("/gateways").await;
    assert_eq!(gws.len(), 1);
    assert_eq!(gws[0]["id"], gw_id.as_str());
    assert_eq!(
        api.get(&format!("/gateways/{gw_id}")).await.1["name"],
        "Alpha One"
    );

    // The shapes match the published document.
    let (s, doc) = api.get("/openapi.json").await;
    assert_eq!(s, 200);
    conforms(&doc, "GatewayRead", &gw);
    conforms(&doc, "ToolRead", echo);
    conforms(&doc, "ResourceRead", &resources[0]);
    conforms(&doc, "ResourceRead", &info_of_resource(&api, &res_id).await);
    conforms(&doc, "PromptRead", &prompts[0]);

    // /mcp shows the qualified names at once (this worker reloaded on write).
    assert_eq!(api.mcp_tools("/mcp").await, qualified("alpha-one", &all));

    // A virtual server, ContextForge 1.x's wrapped form.
    let (s, server) = api
        .post(
            "/servers",
            json!({
                "server": {
                    "name": "Pair",
                    "description": "echo and add",
                    "associated_tools": [echo_id, add_id],
                    "associated_prompts": [prompt_id],
                    "tags": ["Demo Tag"]
                },
                "team_id": null,
                "visibility": "public"
            }),
        )
        .await;
    assert_eq!(s, 201, "{server}");
    conforms(&doc, "ServerRead", &server);
    let server_id = server["id"].as_str().unwrap().to_owned();
    assert_eq!(
        server["associatedToolIds"].as_array().unwrap().len(),
        2,
        "{server}"
    );
    let assoc: BTreeSet<String> = server["associatedTools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        assoc,
        BTreeSet::from(["alpha-one-add".to_owned(), "alpha-one-echo".to_owned()])
    );
    assert_eq!(
        server["tags"],
        json!([{"id": "demo-tag", "label": "Demo Tag"}])
    );
    // The bare form, camelCase keys, tools by qualified name.
    let (s, bare) = api
        .post(
            "/servers",
            json!({"name": "Bare", "associatedTools": ["alpha-one-echo"]}),
        )
        .await;
    assert_eq!(s, 201, "{bare}");
    assert_eq!(bare["associatedToolIds"], json!([echo_id]));
    let bare_id = bare["id"].as_str().unwrap().to_owned();

    let servers = api.list("/servers").await;
    assert_eq!(
        names(&servers, "name"),
        BTreeSet::from(["Bare".into(), "Pair".into()])
    );
    let (s, got) = api.get(&format!("/servers/{server_id}")).await;
    assert_eq!((s, &got["name"]), (200, &json!("Pair")));
    let stools = api.list(&format!("/servers/{server_id}/tools")).await;
    assert_eq!(
        names(&stools, "serverToolName"),
        BTreeSet::from(["add".into(), "echo".into()])
    );
    assert_eq!(
        api.list(&format!("/servers/{server_id}/prompts"))
            .await
            .len(),
        1
    );
    assert!(api
        .list(&format!("/servers/{server_id}/resources"))
        .await
        .is_empty());
    assert_eq!(
        api.mcp_tools(&format!("/servers/{server_id}/mcp")).await,
        BTreeSet::from(["add".into(), "echo".into()])
    );

    // Update the server: only add remains.
    let (s, upd) = api
        .put(
            &format!("/servers/{server_id}"),
            json!({"description": "just add", "associated_tools": [add_id]}),
        )
        .await;
    assert_eq!(s, 200, "{upd}");
    assert_eq!(upd["associatedToolIds"], json!([add_id]));
    assert_eq!(upd["description"], "just add");
    assert_eq!(
        api.mcp_tools(&format!("/servers/{server_id}/mcp")).await,
        BTreeSet::from(["add".into()])
    );

    // Disabling a tool hides it from /mcp and from the default listing.
    let (s, v) = api
        .post_empty(&format!("/tools/{echo_id}/state?activate=false"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["tool"]["enabled"], false);
    assert!(!api.mcp_tools("/mcp").await.contains("alpha-one-echo"));
    assert_eq!(api.list("/tools?limit=0").await.len(), all.len() - 1);
    assert_eq!(
        api.list("/tools?limit=0&include_inactive=true").await.len(),
        all.len()
    );
    let (s, v) = api.post_empty(&format!("/tools/{echo_id}/activate")).await;
    assert_eq!((s, &v["tool"]["enabled"]), (200, &json!(true)));
    assert!(api.mcp_tools("/mcp").await.contains("alpha-one-echo"));

    // A disabled resource is not read.
    let (s, v) = api
        .post_empty(&format!("/resources/{res_id}/deactivate"))
        .await;
    assert_eq!((s, &v["resource"]["enabled"]), (200, &json!(false)), "{v}");
    assert_eq!(api.get(&format!("/resources/{res_id}")).await.0, 404);
    let (s, _) = api
        .post_empty(&format!("/resources/{res_id}/state?activate=true"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(api.get(&format!("/resources/{res_id}")).await.0, 200);

    // Disabling the gateway hides everything it offers.
    let (s, v) = api
        .post_empty(&format!("/gateways/{gw_id}/state?activate=false"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["gateway"]["enabled"], false);
    assert!(api.mcp_tools("/mcp").await.is_empty());
    assert!(api.list("/gateways").await.is_empty());
    assert_eq!(api.list("/gateways?include_inactive=true").await.len(), 1);
    assert!(api.list("/tools?limit=0").await.is_empty());
    let (s, _) = api.post_empty(&format!("/gateways/{gw_id}/activate")).await;
    assert_eq!(s, 200);
    assert_eq!(api.mcp_tools("/mcp").await, qualified("alpha-one", &all));

    // Disabling a server makes its endpoint unknown.
    let (s, v) = api
        .post_empty(&format!("/servers/{bare_id}/state?activate=false"))
        .await;
    assert_eq!((s, &v["enabled"]), (200, &json!(false)), "{v}");
    assert_eq!(api.list("/servers").await.len(), 1);
    let r = api
        .http
        .post(api.fleet.url(&format!("/servers/{bare_id}/mcp")))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Deleting the gateway takes its tools, resources, prompts and associations.
    let (s, v) = api.delete(&format!("/gateways/{gw_id}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(api.get(&format!("/gateways/{gw_id}")).await.0, 404);
    assert_eq!(api.get(&format!("/tools/{echo_id}")).await.0, 404);
    assert!(api
        .list("/tools?limit=0&include_inactive=true")
        .await
        .is_empty());
    assert!(api
        .list("/resources?include_inactive=true")
        .await
        .is_empty());
    assert!(api.list("/prompts?include_inactive=true").await.is_empty());
    let (_, pair) = api.get(&format!("/servers/{server_id}")).await;
    assert_eq!(pair["associatedToolIds"], json!([]));
    assert_eq!(pair["associatedPrompts"], json!([]));
    assert!(api.mcp_tools("/mcp").await.is_empty());

    // Deleting a server.
    let (s, v) = api.delete(&format!("/servers/{server_id}")).await;
    assert_eq!((s, &v["status"]), (200, &json!("success")));
    assert_eq!(api.get(&format!("/servers/{server_id}")).await.0, 404);
    assert_eq!(api.delete(&format!("/servers/{server_id}")).await.0, 404);
}

/// 404, 409 and 422 answers name what is wrong.
async fn errors(database_url: Option<&str>) {
    let api = Api::start(database_url);
    let up = upstream("beta").await;

    // 422: missing and mistyped fields, by name.
    let (s, v) = api.post("/gateways", json!({"url": up.url()})).await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "name"), "{v}");
    let (s, v) = api
        .post("/gateways", json!({"name": 7, "url": up.url()}))
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "name"), "{v}");
    let (s, v) = api
        .post("/gateways", json!({"name": "x", "url": "not a url"}))
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "url"), "{v}");
    let (s, v) = api
        .post(
            "/gateways",
            json!({"name": "x", "url": up.url(), "transport": "pigeon"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "transport"), "{v}");
    let (s, v) = api
        .post(
            "/gateways",
            json!({"name": "x", "url": up.url(), "auth_type": "bearer"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "auth_token"), "{v}");
    // Not JSON at all.
    let (s, v) = api
        .send(
            api.http
                .post(api.fleet.url("/gateways"))
                .header("content-type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["detail"].is_array(), "{v}");
    // Not an object.
    let (s, v) = api.post("/servers", json!(["a"])).await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = api
        .post("/servers", json!({"server": {"description": "no name"}}))
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "server") && names_field(&v, "name"), "{v}");
    let (s, v) = api
        .post(
            "/servers",
            json!({"name": "s", "associated_tools": ["nope"]}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "associated_tools"), "{v}");
    assert!(v.to_string().contains("nope"), "{v}");
    assert!(api.list("/servers?include_inactive=true").await.is_empty());

    // Registration with an auth header the upstream ignores still works; the
    // secret is never echoed.
    let (s, gw) = api
        .post(
            "/gateways",
            json!({
                "name": "beta",
                "url": up.url(),
                "authType": "authheaders",
                "authHeaders": [{"key": "X-Api-Key", "value": "s3cret"}],
                "tags": ["One", "two"]
            }),
        )
        .await;
    assert_eq!(s, 200, "{gw}");
    assert_eq!(gw["authType"], "authheaders");
    assert!(!gw.to_string().contains("s3cret"), "{gw}");
    assert_eq!(gw["authHeaders"][0]["key"], "X-Api-Key");
    let gw_id = gw["id"].as_str().unwrap();

    // 409: the same name (or one with the same slug), a duplicate server name.
    let (s, v) = api
        .post("/gateways", json!({"name": "beta", "url": up.url()}))
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("beta"), "{v}");
    let (s, v) = api
        .post("/gateways", json!({"name": "BETA", "url": up.url()}))
        .await;
    assert_eq!(s, 409, "{v}");
    // 409: the same upstream reached the same way under another name,
    // naming the gateway that has it.
    let same = json!({
        "name": "gamma",
        "url": up.url(),
        "authType": "authheaders",
        "authHeaders": [{"key": "X-Api-Key", "value": "s3cret"}],
    });
    let (s, v) = api.post("/gateways", same).await;
    assert_eq!(s, 409, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("beta") && detail.contains(gw_id), "{v}");
    assert_eq!(api.list("/gateways?include_inactive=true").await.len(), 1);
    assert_eq!(api.post("/servers", json!({"name": "dup"})).await.0, 201);
    let (s, v) = api.post("/servers", json!({"name": "dup"})).await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = api
        .post(
            "/servers",
            json!({"server": {"id": "fixed-id", "name": "one"}}),
        )
        .await;
    assert_eq!((s, &v["id"]), (201, &json!("fixed-id")), "{v}");
    let (s, v) = api
        .post(
            "/servers",
            json!({"server": {"id": "fixed-id", "name": "two"}}),
        )
        .await;
    assert_eq!(s, 409, "{v}");

    // A bad query parameter.
    let (s, v) = api
        .post_empty(&format!("/gateways/{gw_id}/state?activate=maybe"))
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "activate"), "{v}");
    let (s, v) = api.get("/tools?limit=-1").await;
    assert_eq!(s, 422, "{v}");
    assert!(names_field(&v, "limit"), "{v}");

    // 404 for unknown ids, everywhere.
    for path in [
        "/gateways/nope",
        "/tools/nope",
        "/resources/nope",
        "/resources/nope/info",
        "/prompts/nope",
        "/prompts/nope/info",
        "/servers/nope",
        "/servers/nope/tools",
        "/servers/nope/resources",
        "/servers/nope/prompts",
    ] {
        let (s, v) = api.get(path).await;
        assert_eq!(s, 404, "GET {path}: {v}");
        assert!(v["detail"].as_str().unwrap().contains("nope"), "{v}");
    }
    for path in [
        "/gateways/nope/state?activate=false",
        "/tools/nope/state?activate=false",
        "/resources/nope/state?activate=false",
        "/prompts/nope/state?activate=false",
        "/servers/nope/state?activate=false",
        "/gateways/nope/refresh",
    ] {
        let (s, v) = api.post_empty(path).await;
        assert_eq!(s, 404, "POST {path}: {v}");
    }
    assert_eq!(api.delete("/gateways/nope").await.0, 404);
    assert_eq!(
        api.put("/gateways/nope", json!({"description": "x"}))
            .await
            .0,
        404
    );
    assert_eq!(api.put("/servers/nope", json!({"name": "x"})).await.0, 404);
}

/// An upstream that is not there, or not MCP: 502 naming the URL, nothing stored.
async fn bad_upstreams(database_url: Option<&str>) {
    let api = Api::start(database_url);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/mcp", l.local_addr().unwrap())
    };
    let (s, v) = api
        .post("/gateways", json!({"name": "dead", "url": dead}))
        .await;
    assert_eq!(s, 502, "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&dead), "{v}");

    // Something that answers HTTP, but not MCP.
    let not_mcp = api.fleet.url("/health");
    let (s, v) = api
        .post("/gateways", json!({"name": "not-mcp", "url": not_mcp}))
        .await;
    assert_eq!(s, 502, "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&not_mcp), "{v}");

    assert!(api.list("/gateways?include_inactive=true").await.is_empty());
    assert!(api
        .list("/tools?limit=0&include_inactive=true")
        .await
        .is_empty());
    assert!(api.mcp_tools("/mcp").await.is_empty());
}

/// Refresh picks up what changed upstream; a new URL re-discovers.
async fn refresh(database_url: Option<&str>) {
    let api = Api::start(database_url);
    let first = upstream("gamma").await;
    let port = first.addr().port();
    let gw = api.register("gamma", &first).await;
    let gw_id = gw["id"].as_str().unwrap().to_owned();
    let all = upstream_tools("");

    let (s, v) = api.post_empty(&format!("/gateways/{gw_id}/refresh")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(
        (&v["toolsAdded"], &v["toolsUpdated"], &v["toolsRemoved"]),
        (&json!(0), &json!(0), &json!(0)),
        "{v}"
    );
    let echo_id = api
        .list("/tools?limit=0")
        .await
        .iter()
        .find(|t| t["originalName"] == "echo")
        .unwrap()["id"]
        .clone();

    // The same address now serves tools under other names.
    first.shutdown().await;
    let second = Upstream::builder()
        .stateless_draft(false)
        .name("gamma")
        .port(port)
        .tools_prefix("v2_")
        .unwrap()
        .spawn()
        .await
        .unwrap();
    let (s, v) = api
        .post_empty(&format!("/gateways/{gw_id}/tools/refresh"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["toolsAdded"], all.len(), "{v}");
    assert_eq!(v["toolsRemoved"], all.len(), "{v}");
    assert_eq!(v["resourcesAdded"], 0, "{v}");
    let v2 = upstream_tools("v2_");
    assert_eq!(names(&api.list("/tools?limit=0").await, "originalName"), v2);
    assert_eq!(api.mcp_tools("/mcp").await, qualified("gamma", &v2));
    assert_eq!(
        api.get(&format!("/tools/{}", echo_id.as_str().unwrap()))
            .await
            .0,
        404
    );

    // The upstream goes away: refresh fails naming it and marks the gateway unreachable.
    second.shutdown().await;
    let (s, v) = api.post_empty(&format!("/gateways/{gw_id}/refresh")).await;
    assert_eq!(s, 502, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains(&format!(":{port}")),
        "{v}"
    );
    assert_eq!(
        api.get(&format!("/gateways/{gw_id}")).await.1["reachable"],
        false
    );
    // Nothing was removed by the failed refresh.
    assert_eq!(api.list("/tools?limit=0").await.len(), v2.len());

    // A new URL is discovered before it is stored; a dead one changes nothing.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/mcp", l.local_addr().unwrap())
    };
    let (s, v) = api
        .put(&format!("/gateways/{gw_id}"), json!({"url": dead}))
        .await;
    assert_eq!(s, 502, "{v}");
    assert_ne!(
        api.get(&format!("/gateways/{gw_id}")).await.1["url"],
        dead.as_str()
    );
    let third = Upstream::builder()
        .stateless_draft(false)
        .name("gamma3")
        .tools_prefix("v3_")
        .unwrap()
        .spawn()
        .await
        .unwrap();
    let (s, v) = api
        .put(
            &format!("/gateways/{gw_id}"),
            json!({"url": third.url(), "description": "moved", "name": "Gamma Moved"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["url"], third.url());
    assert_eq!(v["description"], "moved");
    assert_eq!(v["slug"], "gamma-moved");
    assert_eq!(v["reachable"], true);
    let v3 = upstream_tools("v3_");
    assert_eq!(api.mcp_tools("/mcp").await, qualified("gamma-moved", &v3));
    let tools = api.list("/tools?limit=0").await;
    assert!(tools.iter().all(|t| t["gatewaySlug"] == "gamma-moved"));
}

// ---------------------------------------------------------------------------
// SQLite: one fleet per scenario.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lifecycle() {
    lifecycle(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_errors() {
    errors(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bad_upstreams() {
    bad_upstreams(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refresh() {
    refresh(None).await;
}

// ---------------------------------------------------------------------------
// PostgreSQL: one private cluster, a fresh database per scenario.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_all_scenarios() {
    if pg_skip_requested() {
        eprintln!("FLEETGATE_TEST_PG=skip: PostgreSQL scenarios skipped");
        return;
    }
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .expect("start a private PostgreSQL cluster (FLEETGATE_TEST_PG=skip to skip)");
    let url = pg.fresh_database().unwrap();
    lifecycle(Some(&url)).await;
    let url = pg.fresh_database().unwrap();
    errors(Some(&url)).await;
    let url = pg.fresh_database().unwrap();
    bad_upstreams(Some(&url)).await;
    let url = pg.fresh_database().unwrap();
    refresh(Some(&url)).await;
}

// ---------------------------------------------------------------------------
// The API description.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_docs() {
    let api = Api::start(None);
    let (s, doc) = api.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, verb) in [
        ("/gateways", "post"),
        ("/gateways", "get"),
        ("/gateways/{id}", "put"),
        ("/gateways/{id}/state", "post"),
        ("/gateways/{id}/refresh", "post"),
        ("/tools", "get"),
        ("/tools/{id}/state", "post"),
        ("/resources", "get"),
        ("/prompts/{id}", "get"),
        ("/servers", "post"),
        ("/servers/{id}/tools", "get"),
    ] {
        assert!(
            doc["paths"][path][verb].is_object(),
            "{verb} {path} undocumented"
        );
    }
    assert_eq!(
        doc["paths"]["/servers"]["post"]["responses"]["201"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/ServerRead"
    );
    let r = api.http.get(api.fleet.url("/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("/openapi.json"));
    // Trailing slashes on collections, as ContextForge serves them.
    assert_eq!(api.get("/tools/").await.0, 200);
}

/// Read your writes across the fleet: once `POST /gateways` and `POST
/// /servers` have answered, an `initialize` and a `tools/list` on fresh
/// connections (any of four workers, none of which has polled the registry
/// since) find the new server with all its tools, round after round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_seen_by_the_next_request_on_every_worker() {
    // REUSE_PORT: fresh connections spread over the workers by the kernel
    // (one shared socket may give them all to one).
    let fleet = Fleet::builder()
        .env("WORKERS", "4")
        .env("REUSE_PORT", "true")
        .env("REGISTRY_POLL_INTERVAL", "60")
        .start();
    fleet.listening().await;
    let up = Upstream::builder().name("ryw").spawn().await.unwrap();
    let http = fleetgate_tests::fresh_client();
    let mut workers = std::collections::BTreeSet::new();
    for round in 0..25 {
        // The same upstream behind other auth headers: another gateway.
        let r = http
            .post(fleet.url("/gateways"))
            .json(&json!({"name": format!("ryw{round}"), "url": up.url(),
                "authType": "authheaders",
                "authHeaders": [{"key": "X-Round", "value": round.to_string()}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "round {round}");
        let gw: Value = r.json().await.unwrap();
        // A list through /rpc at once, on whichever worker accepts.
        let prompts = fleet
            .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/list"}))
            .await;
        let prefix = format!("ryw{round}-");
        assert!(
            prompts["result"]["prompts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"].as_str().unwrap().starts_with(&prefix)),
            "round {round}: the new gateway's prompts are listed: {prompts}"
        );
        let tools: Vec<String> = gateway::list(&fleet, "/tools?limit=0")
            .await
            .iter()
            .filter(|t| t["gatewayId"] == gw["id"])
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(!tools.is_empty(), "round {round}");
        let sid = gateway::create_server(&fleet, &format!("ryw{round}"), &tools, &[], &[]).await;
        let mut c = McpClient::fresh(fleet.url(&format!("/servers/{sid}/mcp")));
        let init = c.initialize().await;
        assert_eq!(init.status, 200, "round {round}: {init:?}");
        let listed = c.request("tools/list", json!({})).await;
        assert_eq!(
            listed.result()["tools"].as_array().map(Vec::len),
            Some(tools.len()),
            "round {round}: {listed:?}"
        );
        // And a call through /rpc, on another fresh connection.
        let called = fleet
            .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": format!("ryw{round}-echo"), "arguments": {"text": "r"}}}))
            .await;
        assert_eq!(
            called["result"]["content"][0]["text"], "r",
            "round {round}: {called}"
        );
        if let Some(w) = listed.headers.get("x-fleetgate-worker") {
            workers.insert(w.to_str().unwrap().to_owned());
        }
    }
    assert!(
        workers.len() >= 2,
        "the rounds reached several workers: {workers:?}"
    );
}

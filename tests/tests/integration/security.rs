//! Authentication and token scoping against the real binary, as one table.
//!
//! [`ROWS`] (token kinds) × [`COLUMNS`] (path and method): every cell is the
//! expected answer, written as the HTTP status followed by the JSON-RPC error
//! code, or `{detail}` for a REST error body, or, for a `tools/list` that
//! succeeded, which tools came back: `(all)`, only server A's `(A)`, only
//! server B's `(B)`. Each row runs against a real fleet:
//!
//! - fleetgate-minted rows on a `WORKERS=2` fleet signed with the test secret,
//!   which also checks revocation on every worker, that a server-scoped token
//!   learns nothing about other servers, and session binding whichever worker
//!   answers;
//! - ContextForge-minted rows (the vectors in
//!   `worker/tests/vectors/contextforge-tokens.json`) on a fleet signed with
//!   the vectors' secret.
//!
//! The same table is docs/security.md: `docs_security_md_is_up_to_date` fails
//! when the two differ; `FLEETGATE_BLESS=1` regenerates the document's table.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_shared::config::{AuthConfig, Config};
use fleetgate_test_upstream::{RunningUpstream, Upstream};
use fleetgate_tests::eventually;
use fleetgate_tests::fleet::{Fleet, TEST_SECRET};
use fleetgate_tests::mcp::{Answer, McpClient};
use fleetgate_tests::security::{
    answered_by, bearer, create_server_as, health_pid, list_as, pinned, register_as, tool_ids,
};
use fleetgate_worker::auth::{mint_at, unix_now, MintRequest, Verifier};
use futures_util::future::join_all;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// Server A (holds the upstream's `echo`), server B (holds `add`), and an id
/// no server has.
const A: &str = "srv-a";
const B: &str = "srv-b";
const MISSING: &str = "srv-x";

/// Columns: 16 on JSON-RPC paths, then 3 REST routes, then 4 general endpoints.
const N: usize = 23;
const JSONRPC: usize = 16;
const GUARDED: usize = 19;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    JsonRpc,
    Rest,
}

struct Column {
    table: Table,
    head: &'static str,
    what: &'static str,
}

const fn col(table: Table, head: &'static str, what: &'static str) -> Column {
    Column { table, head, what }
}

use Table::{JsonRpc as J, Rest as R};

#[rustfmt::skip]
const COLUMNS: [Column; N] = [
    col(J, "/rpc list", "`POST /rpc` `tools/list`"),
    col(J, "/rpc list A", "`POST /rpc` `tools/list` with `params.server_id` = A"),
    col(J, "/rpc list B", "`POST /rpc` `tools/list` with `params.server_id` = B"),
    col(J, "/rpc call A", "`POST /rpc` `tools/call` of A's tool `echo`, by the name the caller's view gives it (`echo` for a token scoped to a server, `<gateway>-echo` otherwise)"),
    col(J, "/rpc call B", "`POST /rpc` `tools/call` of B's tool `add`, named likewise"),
    col(J, "/mcp init", "`POST /mcp` `initialize`"),
    col(J, "/mcp list", "`tools/list` in that session (sent without a session when `initialize` was refused)"),
    col(J, "/mcp call A", "`tools/call` of A's tool in that session, named as in `/rpc call A`"),
    col(J, "/mcp call B", "`tools/call` of B's tool in that session, named as in `/rpc call B`"),
    col(J, "A init", "`POST /servers/A/mcp` `initialize`"),
    col(J, "A list", "`tools/list` in that session"),
    col(J, "A call", "`tools/call` `echo` in that session"),
    col(J, "B init", "`POST /servers/B/mcp` `initialize`"),
    col(J, "B list", "`tools/list` in that session"),
    col(J, "B call", "`tools/call` `add` in that session"),
    col(J, "X init", "`POST /servers/X/mcp` `initialize`, where no server X exists"),
    col(R, "GET /tools", "`GET /tools`"),
    col(R, "POST /gateways", "`POST /gateways` with the invalid body `{}`: 422 means it got past authorization"),
    col(R, "GET /servers/A", "`GET /servers/A`"),
    col(R, "/health", "`GET /health`"),
    col(R, "/ready", "`GET /ready`"),
    col(R, "/openapi.json", "`GET /openapi.json`"),
    col(R, "/docs", "`GET /docs`"),
];

const OK: &str = "200";

/// Refused at the one gate: every guarded column answers `jsonrpc` on JSON-RPC
/// paths and `rest` on REST routes; general endpoints stay open.
const fn refused(jsonrpc: &'static str, rest: &'static str) -> [&'static str; N] {
    let mut cells = [OK; N];
    let mut i = 0;
    while i < GUARDED {
        cells[i] = if i < JSONRPC { jsonrpc } else { rest };
        i += 1;
    }
    cells
}

const UNAUTHENTICATED: [&str; N] = refused("401 -32003", "401 {detail}");
const FORBIDDEN: [&str; N] = refused("403 -32003", "403 {detail}");

#[rustfmt::skip]
const EVERYTHING: [&str; N] = [
    // /rpc: list, list A, list B, call A, call B
    "200 (all)", "200 (A)", "200 (B)", OK, OK,
    // /mcp: init, list, call A, call B
    OK, "200 (all)", OK, OK,
    // /servers/A/mcp, /servers/B/mcp: init, list, call; /servers/X/mcp init
    OK, "200 (A)", OK, OK, "200 (B)", OK, "404 {detail}",
    // GET /tools, POST /gateways, GET /servers/A; general endpoints
    OK, "422 {detail}", OK, OK, OK, OK, OK,
];

#[rustfmt::skip]
const SERVER_A: [&str; N] = [
    "200 (A)", "200 (A)", "403 -32003", OK, "200 -32601",
    OK, "200 (A)", OK, "200 -32601",
    OK, "200 (A)", OK, "403 -32003", "403 -32003", "403 -32003", "403 -32003",
    "403 {detail}", "403 {detail}", OK, OK, OK, OK, OK,
];

#[rustfmt::skip]
const SERVER_B: [&str; N] = [
    "200 (B)", "403 -32003", "200 (B)", "200 -32601", OK,
    OK, "200 (B)", "200 -32601", OK,
    "403 -32003", "403 -32003", "403 -32003", OK, "200 (B)", OK, "403 -32003",
    "403 {detail}", "403 {detail}", "403 {detail}", OK, OK, OK, OK,
];

/// ContextForge's `server_scoped` vector: server A, `tools.read` and
/// `tools.execute` only (so not `servers.read` for `GET /servers/A`).
#[rustfmt::skip]
const SERVER_A_TOOLS: [&str; N] = [
    "200 (A)", "200 (A)", "403 -32003", OK, "200 -32601",
    OK, "200 (A)", OK, "200 -32601",
    OK, "200 (A)", OK, "403 -32003", "403 -32003", "403 -32003", "403 -32003",
    "403 {detail}", "403 {detail}", "403 {detail}", OK, OK, OK, OK,
];

#[rustfmt::skip]
const TOOLS_READ: [&str; N] = [
    "200 (all)", "200 (A)", "200 (B)", "403 -32003", "403 -32003",
    OK, "200 (all)", "200 -32003", "200 -32003",
    OK, "200 (A)", "200 -32003", OK, "200 (B)", "200 -32003", "404 {detail}",
    OK, "403 {detail}", "403 {detail}", OK, OK, OK, OK,
];

/// Which fleet a row runs on: whose secret signed its token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Signer {
    Fleetgate,
    ContextForge,
}

/// How a row's token is made.
#[derive(Clone, Copy, Debug)]
enum Tok {
    /// No `Authorization` header.
    Nothing,
    /// This `Authorization` header, verbatim.
    Header(&'static str),
    /// Minted in-test with `fleetgate_worker::auth::mint_at`.
    Mint(Mint),
    /// A ContextForge vector, by name.
    Vector(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum Mint {
    Expired,
    WrongAudience,
    WrongIssuer,
    WrongKey,
    Revoked,
    User,
    ServerA,
    ServerB,
    ToolsRead,
    IpAllowed,
    IpDenied,
    OutsideHours,
    Admin,
}

/// The view a token confines `/mcp` and `/rpc` to (its `server_id`), which
/// decides the names its tools have there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    All,
    Server,
}

struct Row {
    kind: &'static str,
    what: &'static str,
    signer: Signer,
    token: Tok,
    view: View,
    expect: [&'static str; N],
}

const fn row(
    kind: &'static str,
    what: &'static str,
    signer: Signer,
    token: Tok,
    view: View,
    expect: [&'static str; N],
) -> Row {
    Row {
        kind,
        what,
        signer,
        token,
        view,
        expect,
    }
}

use Signer::{ContextForge as CF, Fleetgate as FG};
use View::{All, Server};

#[rustfmt::skip]
const ROWS: &[Row] = &[
    row("none", "no `Authorization` header", FG, Tok::Nothing, All, UNAUTHENTICATED),
    row("malformed", "`Authorization: Bearer abc.def`", FG, Tok::Header("Bearer abc.def"), All, UNAUTHENTICATED),
    row("empty bearer", "`Authorization: Bearer ` (no token)", FG, Tok::Header("Bearer "), All, UNAUTHENTICATED),
    row("expired", "valid signature, `exp` an hour ago", FG, Tok::Mint(Mint::Expired), All, UNAUTHENTICATED),
    row("wrong audience", "`aud` is not `JWT_AUDIENCE`", FG, Tok::Mint(Mint::WrongAudience), All, UNAUTHENTICATED),
    row("wrong issuer", "`iss` is not `JWT_ISSUER`", FG, Tok::Mint(Mint::WrongIssuer), All, UNAUTHENTICATED),
    row("wrong key", "signed with another secret", FG, Tok::Mint(Mint::WrongKey), All, UNAUTHENTICATED),
    row("revoked", "a user token whose `jti` an admin revoked (`POST /tokens/revoke`)", FG, Tok::Mint(Mint::Revoked), All, UNAUTHENTICATED),
    row("user", "a user token without scopes", FG, Tok::Mint(Mint::User), All, EVERYTHING),
    row("server A", "`scopes.server_id` = A", FG, Tok::Mint(Mint::ServerA), Server, SERVER_A),
    row("server B", "`scopes.server_id` = B", FG, Tok::Mint(Mint::ServerB), Server, SERVER_B),
    row("tools.read", "`scopes.permissions` = `[\"tools.read\"]`", FG, Tok::Mint(Mint::ToolsRead), All, TOOLS_READ),
    row("IP allowed", "`scopes.ip_restrictions` = `[\"127.0.0.1/32\"]` (the test's address)", FG, Tok::Mint(Mint::IpAllowed), All, EVERYTHING),
    row("IP denied", "`scopes.ip_restrictions` = `[\"10.0.0.0/8\"]`", FG, Tok::Mint(Mint::IpDenied), All, FORBIDDEN),
    row("outside hours", "`scopes.time_restrictions.business_hours_only`, while now is outside `TOKEN_BUSINESS_HOURS` in `TOKEN_TIME_ZONE`", FG, Tok::Mint(Mint::OutsideHours), All, FORBIDDEN),
    row("admin", "`is_admin`", FG, Tok::Mint(Mint::Admin), All, EVERYTHING),
    row("CF user", "ContextForge vector `user` (no scopes)", CF, Tok::Vector("user"), All, EVERYTHING),
    row("CF admin", "ContextForge vector `admin`", CF, Tok::Vector("admin"), All, EVERYTHING),
    row("CF server_scoped", "ContextForge vector `server_scoped`: server A (`srv-a`), `tools.read` + `tools.execute`", CF, Tok::Vector("server_scoped"), Server, SERVER_A_TOOLS),
    row("CF permission_limited", "ContextForge vector `permission_limited`: `tools.read`", CF, Tok::Vector("permission_limited"), All, TOOLS_READ),
    row("CF ip_restricted", "ContextForge vector `ip_restricted`: `10.1.0.0/16`, `192.0.2.7`", CF, Tok::Vector("ip_restricted"), All, FORBIDDEN),
    row("CF teams", "ContextForge vector `teams`: two teams", CF, Tok::Vector("teams"), All, EVERYTHING),
    row("CF expired", "ContextForge vector `expired`", CF, Tok::Vector("expired"), All, UNAUTHENTICATED),
    row("CF no_exp", "ContextForge vector `no_exp`: no `exp` (`REQUIRE_TOKEN_EXPIRATION` is on)", CF, Tok::Vector("no_exp"), All, UNAUTHENTICATED),
];

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// The ContextForge vectors: (secret, name → token).
fn vectors() -> (String, HashMap<String, String>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../worker/tests/vectors/contextforge-tokens.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let tokens = v["tokens"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t["token"].as_str().unwrap().to_owned()))
        .collect();
    (v["secret"].as_str().unwrap().to_owned(), tokens)
}

/// The fleet's `AuthConfig` as `Config::load` builds it from its secret.
fn auth_config(secret: &str) -> AuthConfig {
    let env = HashMap::from([("JWT_SECRET_KEY".to_owned(), secret.to_owned())]);
    Config::load(&env).unwrap().auth
}

fn user(name: &str) -> MintRequest {
    MintRequest {
        username: format!("{name}@example.com"),
        exp_minutes: 60,
        ..MintRequest::default()
    }
}

/// A token of kind `m`, for `<kind>@example.com` (so `Mint::User` is
/// `user@example.com`, as is [`user`]`("user")`).
fn mint(cfg: &AuthConfig, m: Mint) -> String {
    let (mut cfg, mut at) = (cfg.clone(), unix_now());
    let mut req = user(&format!("{m:?}").to_lowercase());
    match m {
        Mint::Expired => (req.exp_minutes, at) = (1, at - 3600),
        Mint::WrongAudience => cfg.audience = "another-api".into(),
        Mint::WrongIssuer => cfg.issuer = "another-issuer".into(),
        Mint::WrongKey => cfg.secret_key = "not-this-fleets-secret-0123456789abcdef".into(),
        Mint::Revoked | Mint::User => {}
        Mint::ServerA => req.server_id = Some(A.into()),
        Mint::ServerB => req.server_id = Some(B.into()),
        Mint::ToolsRead => req.permissions = vec!["tools.read".into()],
        Mint::IpAllowed => req.ip_restrictions = vec!["127.0.0.1/32".into()],
        Mint::IpDenied => req.ip_restrictions = vec!["10.0.0.0/8".into()],
        Mint::OutsideHours => req.time_restrictions.business_hours_only = true,
        Mint::Admin => req.admin = true,
    }
    mint_at(&cfg, &req, at).unwrap()
}

/// `TOKEN_TIME_ZONE` of the fleetgate fleet.
const TIME_ZONE: &str = "+02:00";

/// A `TOKEN_BUSINESS_HOURS` window that starts two hours from now (local to
/// [`TIME_ZONE`]) and lasts one: now is outside it for the next two hours.
fn closed_hours() -> String {
    let local_hour = (unix_now() / 3600 + 2) % 24;
    let (start, end) = ((local_hour + 2) % 24, (local_hour + 3) % 24);
    format!("{start:02}:00-{end:02}:00")
}

// ---------------------------------------------------------------------------
// A fleet with an upstream, server A and server B
// ---------------------------------------------------------------------------

/// Tool names as each view exposes them.
struct Names {
    /// A's and B's tools by their gateway-wide names (`<gateway>-echo`, `<gateway>-add`).
    a_global: String,
    b_global: String,
    all: BTreeSet<String>,
    a: BTreeSet<String>,
    b: BTreeSet<String>,
}

impl Names {
    fn class(&self, listed: &BTreeSet<String>) -> String {
        if *listed == self.all {
            "all".into()
        } else if *listed == self.a {
            "A".into()
        } else if *listed == self.b {
            "B".into()
        } else {
            format!("{listed:?}")
        }
    }
}

struct Setup {
    fleet: Fleet,
    _upstream: RunningUpstream,
    cfg: AuthConfig,
    admin: String,
    names: Names,
    /// The token revoked by [`revocation_reaches_every_worker`].
    revoked: Option<String>,
}

impl Setup {
    async fn start(signer: Signer) -> Setup {
        let (secret, cf) = vectors();
        let fleet = match signer {
            Signer::Fleetgate => Fleet::builder()
                .env("WORKERS", "2")
                .env("TOKEN_TIME_ZONE", TIME_ZONE)
                .env("TOKEN_BUSINESS_HOURS", closed_hours()),
            Signer::ContextForge => Fleet::builder()
                .env("WORKERS", "1")
                .env("JWT_SECRET_KEY", secret.as_str()),
        }
        .env("AUTH_REQUIRED", "true")
        .env("MCP_REQUIRE_AUTH", "true")
        .start();
        let workers = match signer {
            Signer::Fleetgate => 2,
            Signer::ContextForge => 1,
        };
        eventually(Duration::from_secs(10), "every worker started", || async {
            (fleet.workers().len() == workers).then_some(())
        })
        .await;
        let cfg = auth_config(match signer {
            Signer::Fleetgate => TEST_SECRET,
            Signer::ContextForge => &secret,
        });
        let admin = match signer {
            Signer::Fleetgate => mint(&cfg, Mint::Admin),
            Signer::ContextForge => cf["admin"].clone(),
        };
        let up = Upstream::builder().name("up").spawn().await.unwrap();
        let gw = register_as(&fleet, &admin, "up", &up.url()).await;
        let gw_id = gw["id"].as_str().unwrap();
        let tools = list_as(&fleet, &admin, "/tools?limit=0").await;
        let a_ids = tool_ids(&tools, gw_id, &["echo"]);
        let b_ids = tool_ids(&tools, gw_id, &["add"]);
        assert_eq!((a_ids.len(), b_ids.len()), (1, 1), "{tools:?}");
        assert_eq!(create_server_as(&fleet, &admin, A, "A", &a_ids).await, A);
        assert_eq!(create_server_as(&fleet, &admin, B, "B", &b_ids).await, B);
        let name_of = |id: &str| {
            let t = tools.iter().find(|t| t["id"] == id).unwrap();
            t["name"].as_str().unwrap().to_owned()
        };
        let names = Names {
            a_global: name_of(&a_ids[0]),
            b_global: name_of(&b_ids[0]),
            all: tools
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect(),
            a: BTreeSet::from(["echo".to_owned()]),
            b: BTreeSet::from(["add".to_owned()]),
        };
        assert!(names.all.len() > 2, "{:?}", names.all);
        let s = Setup {
            fleet,
            _upstream: up,
            cfg,
            admin,
            names,
            revoked: None,
        };
        s.wait_every_worker_knows_the_servers().await;
        s
    }

    fn token(&self, t: Tok) -> Option<String> {
        match t {
            Tok::Nothing => None,
            Tok::Header(h) => Some(h.to_owned()),
            Tok::Mint(Mint::Revoked) => Some(self.revoked.clone().expect("revoked first")),
            Tok::Mint(m) => Some(bearer(&mint(&self.cfg, m))),
            Tok::Vector(name) => Some(bearer(&vectors().1[name])),
        }
    }

    /// Workers poll the registry: wait until each one serves A and B.
    async fn wait_every_worker_knows_the_servers(&self) {
        let admin = bearer(&self.admin);
        let fleet = &self.fleet;
        on_every_worker(
            fleet,
            Duration::from_secs(10),
            "servers A and B known to every worker",
            |c, _| {
                let admin = admin.clone();
                async move {
                    for id in [A, B] {
                        let r = rpc(
                            &c,
                            fleet,
                            Some(&admin),
                            "tools/list",
                            json!({"server_id": id}),
                        )
                        .await;
                        if r.status != 200 {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                }
            },
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// Requests and cells
// ---------------------------------------------------------------------------

/// One HTTP answer: status, headers, and the body as JSON (a JSON-RPC answer
/// or `{"detail"}`), or as a string when it is not JSON.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    async fn of(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    fn from_answer(a: &Answer) -> Reply {
        Reply {
            status: a.status,
            headers: a.headers.clone(),
            body: a.response().clone(),
        }
    }

    fn error_code(&self) -> Option<i64> {
        self.body["error"]["code"].as_i64()
    }

    fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

fn with_auth(rb: reqwest::RequestBuilder, auth: Option<&str>) -> reqwest::RequestBuilder {
    match auth {
        Some(a) => rb.header("authorization", a),
        None => rb,
    }
}

async fn rpc(
    c: &reqwest::Client,
    fleet: &Fleet,
    auth: Option<&str>,
    method: &str,
    params: Value,
) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let rb = c.post(fleet.url("/rpc")).json(&body);
    Reply::of(with_auth(rb, auth).send().await.unwrap()).await
}

async fn get(c: &reqwest::Client, fleet: &Fleet, auth: Option<&str>, path: &str) -> Reply {
    Reply::of(
        with_auth(c.get(fleet.url(path)), auth)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// One MCP POST carrying `session`, on `c`'s connection.
async fn mcp_post(
    c: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    session: &str,
    body: Value,
) -> Reply {
    let rb = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", session)
        .json(&body);
    Reply::of(with_auth(rb, auth).send().await.unwrap()).await
}

/// The cell for `r`: status, then the JSON-RPC error code, `{detail}`, or for
/// a listing `(all)`/`(A)`/`(B)`. Header rules go to `problems`.
fn cell(r: &Reply, names: &Names, problems: &mut Vec<String>) -> String {
    let challenge = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok());
    match (r.status, challenge) {
        (401, Some(c)) if c == "Bearer" || c.starts_with("Bearer ") => {}
        (401, other) => problems.push(format!("401 with WWW-Authenticate {other:?}")),
        (_, Some(c)) => problems.push(format!("{} with WWW-Authenticate {c:?}", r.status)),
        (_, None) => {}
    }
    let mut out = r.status.to_string();
    if let Some(code) = r.error_code() {
        if r.body["jsonrpc"] != "2.0" || r.error_message().is_empty() {
            problems.push(format!("not a JSON-RPC error: {}", r.body));
        }
        out.push_str(&format!(" {code}"));
    } else if r.body.get("detail").is_some() {
        out.push_str(" {detail}");
    } else if let Some(tools) = r.body["result"]["tools"].as_array() {
        let listed = tools
            .iter()
            .map(|t| t["name"].as_str().unwrap_or("?").to_owned())
            .collect();
        out.push_str(&format!(" ({})", names.class(&listed)));
    }
    out
}

/// Runs every column for one token; returns the cells and the problems seen.
async fn observe(s: &Setup, auth: Option<&str>, view: View) -> (Vec<String>, Vec<String>) {
    let (fleet, names) = (&s.fleet, &s.names);
    let http = reqwest::Client::new();
    let mut problems = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    let (a_name, b_name) = match view {
        View::All => (names.a_global.as_str(), names.b_global.as_str()),
        View::Server => ("echo", "add"),
    };
    let call_a = json!({"name": a_name, "arguments": {"text": "x"}});
    let call_b = json!({"name": b_name, "arguments": {"a": 1, "b": 2}});

    replies.push(rpc(&http, fleet, auth, "tools/list", json!({})).await);
    replies.push(rpc(&http, fleet, auth, "tools/list", json!({"server_id": A})).await);
    replies.push(rpc(&http, fleet, auth, "tools/list", json!({"server_id": B})).await);
    replies.push(rpc(&http, fleet, auth, "tools/call", call_a.clone()).await);
    replies.push(rpc(&http, fleet, auth, "tools/call", call_b.clone()).await);

    let flows: [(String, Vec<Value>); 4] = [
        ("/mcp".into(), vec![call_a, call_b]),
        (
            format!("/servers/{A}/mcp"),
            vec![json!({"name": "echo", "arguments": {"text": "x"}})],
        ),
        (
            format!("/servers/{B}/mcp"),
            vec![json!({"name": "add", "arguments": {"a": 1, "b": 2}})],
        ),
        (format!("/servers/{MISSING}/mcp"), vec![]),
    ];
    for (i, (path, calls)) in flows.into_iter().enumerate() {
        let mut c = McpClient::new(fleet.url(&path));
        if let Some(a) = auth {
            c = c.header("authorization", a);
        }
        replies.push(Reply::from_answer(&c.initialize().await));
        if i == 3 {
            break; // X: initialize only
        }
        replies.push(Reply::from_answer(
            &c.request("tools/list", json!({})).await,
        ));
        for call in calls {
            replies.push(Reply::from_answer(&c.request("tools/call", call).await));
        }
    }
    assert_eq!(replies.len(), JSONRPC);

    replies.push(get(&http, fleet, auth, "/tools").await);
    let rb = http.post(fleet.url("/gateways")).json(&json!({}));
    replies.push(Reply::of(with_auth(rb, auth).send().await.unwrap()).await);
    replies.push(get(&http, fleet, auth, &format!("/servers/{A}")).await);
    for path in ["/health", "/ready", "/openapi.json", "/docs"] {
        replies.push(get(&http, fleet, auth, path).await);
    }
    assert_eq!(replies.len(), N);

    let mut cells = Vec::new();
    for (r, column) in replies.iter().zip(&COLUMNS) {
        let mut p = Vec::new();
        cells.push(cell(r, names, &mut p));
        problems.extend(p.into_iter().map(|p| format!("{}: {p}", column.head)));
    }
    (cells, problems)
}

/// Runs `signer`'s rows on `s`; panics with every cell that differs.
async fn check_rows(s: &Setup, signer: Signer) {
    let mut wrong = Vec::new();
    for row in ROWS.iter().filter(|r| r.signer == signer) {
        let auth = s.token(row.token);
        let (cells, problems) = observe(s, auth.as_deref(), row.view).await;
        for ((got, want), column) in cells.iter().zip(row.expect).zip(&COLUMNS) {
            if got != want {
                wrong.push(format!(
                    "{:<22} {:<15} expected {want:<14} got {got}",
                    row.kind, column.head
                ));
            }
        }
        wrong.extend(problems.iter().map(|p| format!("{:<22} {p}", row.kind)));
    }
    assert!(
        wrong.is_empty(),
        "{} cell(s) differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Every worker
// ---------------------------------------------------------------------------

/// Runs `check` on fresh connections, eight at a time, until it has passed on
/// every worker of the fleet (the worker on each connection's other end comes
/// from `/health` before and after on that same connection). `Ok(false)`:
/// not yet, try again; `Err`: a wrong answer, fail now.
async fn on_every_worker<F, Fut>(fleet: &Fleet, within: Duration, what: &str, check: F)
where
    F: Fn(reqwest::Client, u32) -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let workers = fleet.workers();
    assert!(!workers.is_empty(), "no workers");
    let passed = Mutex::new(BTreeSet::new());
    let (passed_ref, check, workers) = (&passed, &check, &workers);
    eventually(within, what, move || async move {
        let attempts = (0..8).map(|_| async move {
            let (c, pid) = pinned(fleet).await?;
            let ok = check(c.clone(), pid)
                .await
                .unwrap_or_else(|e| panic!("{what}: worker {pid}: {e}"));
            (ok && health_pid(&c, fleet).await == Some(pid)).then_some(pid)
        });
        let done = join_all(attempts).await;
        let mut p = passed_ref.lock().unwrap();
        p.extend(done.into_iter().flatten());
        (*p == *workers).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// Revokes a user token and checks every worker refuses it within a second;
/// returns its `Authorization` header.
async fn revocation_reaches_every_worker(s: &Setup) -> String {
    let fleet = &s.fleet;
    let token = bearer(&mint(&s.cfg, Mint::Revoked));
    let jti = Verifier::new(&s.cfg)
        .unwrap()
        .verify(&token["Bearer ".len()..], unix_now())
        .unwrap()
        .jti
        .unwrap();
    let t = token.clone();
    on_every_worker(
        fleet,
        Duration::from_secs(10),
        "the token accepted by every worker",
        |c, _| {
            let t = t.clone();
            async move {
                let r = get(&c, fleet, Some(&t), "/tools").await;
                (r.status == 200).then_some(true).ok_or(format!("{r:?}"))
            }
        },
    )
    .await;

    let http = reqwest::Client::new();
    let revoke = |auth: String| {
        let rb = http
            .post(fleet.url("/tokens/revoke"))
            .header("authorization", auth)
            .json(&json!({"jti": jti}));
        async move { Reply::of(rb.send().await.unwrap()).await }
    };
    let by_user = revoke(bearer(&mint(&s.cfg, Mint::User))).await;
    assert_eq!(by_user.status, 403, "only admins revoke: {by_user:?}");
    assert!(by_user.body["detail"].is_string(), "{by_user:?}");
    let by_admin = revoke(bearer(&s.admin)).await;
    assert_eq!(by_admin.status, 200, "{by_admin:?}");
    assert_eq!(by_admin.body, json!({"status": "revoked", "jti": jti}));

    on_every_worker(
        fleet,
        Duration::from_secs(1),
        "every worker refusing the revoked token within a second",
        |c, pid| {
            let t = t.clone();
            async move {
                let r = get(&c, fleet, Some(&t), "/tools").await;
                match r.status {
                    401 if answered_by(&r.headers) == Some(pid) => Ok(true),
                    // The pinned connection was not back in the client's pool
                    // yet, so this request went out on a new one that another
                    // worker accepted: not this worker's answer, try again.
                    401 => Ok(false),
                    200 => Ok(false), // this worker has not polled yet
                    _ => Err(format!("{r:?}")),
                }
            }
        },
    )
    .await;
    token
}

/// A token scoped to A cannot reach B, and cannot tell B from a server that
/// does not exist.
async fn server_scoped_token_learns_nothing_about_others(s: &Setup) {
    let fleet = &s.fleet;
    let a = bearer(&mint(&s.cfg, Mint::ServerA));
    let http = reqwest::Client::new();
    let tools = s.names.a.iter().cloned().collect::<Vec<_>>();
    assert_eq!(tools, ["echo"]);

    let call_b = json!({"name": "add", "arguments": {"a": 1, "b": 2}});
    for (method, params) in [("tools/list", json!({})), ("tools/call", call_b.clone())] {
        // /rpc with params.server_id
        let mut answers = Vec::new();
        for id in [B, MISSING] {
            let mut p = params.clone();
            p["server_id"] = json!(id);
            answers.push(rpc(&http, fleet, Some(&a), method, p).await);
        }
        assert_eq!(
            (answers[0].status, answers[0].error_code()),
            (403, Some(-32003)),
            "/rpc {method} on B with an A token: {:?}",
            answers[0]
        );
        assert_eq!(
            (answers[0].status, &answers[0].body),
            (answers[1].status, &answers[1].body),
            "/rpc {method}: B and a missing server answer alike"
        );
        // /servers/{id}/mcp
        let mut answers = Vec::new();
        for id in [B, MISSING] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            let r = http
                .post(fleet.url(&format!("/servers/{id}/mcp")))
                .header("authorization", &a)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .json(&body)
                .send()
                .await
                .unwrap();
            answers.push(Reply::of(r).await);
        }
        assert_eq!(answers[0].status, 403, "{:?}", answers[0]);
        assert_eq!(
            (answers[0].status, &answers[0].body),
            (answers[1].status, &answers[1].body),
            "/servers/B/mcp {method}: B and a missing server answer alike"
        );
    }
    // B's tool by its gateway-wide name on /rpc and /mcp: not in A's view.
    let r = rpc(
        &http,
        fleet,
        Some(&a),
        "tools/call",
        json!({"name": s.names.b_global, "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!((r.status, r.error_code()), (200, Some(-32601)), "{r:?}");
    let mut c = McpClient::new(fleet.url("/mcp")).header("authorization", &a);
    assert_eq!(c.initialize().await.status, 200);
    let r = c
        .request(
            "tools/call",
            json!({"name": s.names.b_global, "arguments": {"a": 1, "b": 2}}),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (200, Some(-32601)), "{r:?}");
    // REST: GET /servers/B is refused like GET /servers/<missing>.
    let b = get(&http, fleet, Some(&a), &format!("/servers/{B}")).await;
    let x = get(&http, fleet, Some(&a), &format!("/servers/{MISSING}")).await;
    assert_eq!(b.status, 403, "{b:?}");
    assert_eq!((b.status, &b.body), (x.status, &x.body));
}

/// A session belongs to the principal that initialized it: another user gets
/// 403 "Session access denied" whichever worker receives the request; an admin
/// may use it.
async fn sessions_are_bound_to_their_principal(s: &Setup) {
    let fleet = &s.fleet;
    let url = fleet.url("/mcp");
    let owner = bearer(&mint(&s.cfg, Mint::User));
    let stranger = bearer(&mint_at(&s.cfg, &user("stranger"), unix_now()).unwrap());
    let admin = bearer(&s.admin);
    let mut c = McpClient::new(url.clone()).header("authorization", &owner);
    c.http = fleetgate_tests::fresh_client();
    assert_eq!(c.initialize().await.status, 200);
    let sid = c.session.clone().unwrap();
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}});

    let (u, sid_ref, list_ref) = (&url, &sid, &list);
    let stranger_ref = &stranger;
    on_every_worker(
        fleet,
        Duration::from_secs(10),
        "another user refused the session on every worker",
        |c, _| async move {
            let r = mcp_post(&c, u, Some(stranger_ref), sid_ref, list_ref.clone()).await;
            let refused = r.status == 403
                && r.error_code() == Some(-32003)
                && r.error_message() == "Session access denied";
            refused.then_some(true).ok_or(format!("{r:?}"))
        },
    )
    .await;
    // Its GET stream, too.
    let r = c
        .http
        .get(&url)
        .header("authorization", &stranger)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    let r = Reply::of(r).await;
    assert_eq!(
        (r.status, r.error_message()),
        (403, "Session access denied"),
        "{r:?}"
    );
    for (who, auth) in [("an admin", &admin), ("its owner", &owner)] {
        on_every_worker(
            fleet,
            Duration::from_secs(10),
            &format!("{who} using the session on every worker"),
            |c, _| async move {
                let r = mcp_post(&c, u, Some(auth), sid_ref, list_ref.clone()).await;
                let ok = r.status == 200 && r.body["result"]["tools"].is_array();
                ok.then_some(true).ok_or(format!("{r:?}"))
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleetgate_tokens_on_two_workers() {
    let mut s = Setup::start(Signer::Fleetgate).await;
    s.revoked = Some(revocation_reaches_every_worker(&s).await);
    check_rows(&s, Signer::Fleetgate).await;
    server_scoped_token_learns_nothing_about_others(&s).await;
    sessions_are_bound_to_their_principal(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contextforge_tokens() {
    let s = Setup::start(Signer::ContextForge).await;
    check_rows(&s, Signer::ContextForge).await;
}

// ---------------------------------------------------------------------------
// Session binding beyond the table: each needs only a one-worker fleet with
// authentication on, no upstream.
// ---------------------------------------------------------------------------

fn one_worker_with_auth() -> (Fleet, AuthConfig) {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("AUTH_REQUIRED", "true")
        .env("MCP_REQUIRE_AUTH", "true")
        .start();
    (fleet, auth_config(TEST_SECRET))
}

/// An MCP session on `/mcp` initialized with `token`.
async fn session_of(fleet: &Fleet, token: &str) -> McpClient {
    let mut c = McpClient::new(fleet.url("/mcp")).header("authorization", &bearer(token));
    let init = c.initialize().await;
    assert_eq!(init.status, 200, "{init:?}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_end_a_session() {
    let (fleet, cfg) = one_worker_with_auth();
    let owner = session_of(&fleet, &mint(&cfg, Mint::User)).await;
    let sid = owner.session.clone().unwrap();
    let stranger = bearer(&mint_at(&cfg, &user("stranger"), unix_now()).unwrap());
    let r = reqwest::Client::new()
        .delete(fleet.url("/mcp"))
        .header("authorization", &stranger)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    let r = Reply::of(r).await;
    assert_eq!(r.status, 403, "DELETE of another user's session: {r:?}");
    let still = owner.request("tools/list", json!({})).await;
    assert_eq!(still.status, 200, "the owner's session survives: {still:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_does_not_widen_a_narrower_token() {
    let (fleet, cfg) = one_worker_with_auth();
    // The same user, first with a token without restrictions, then with one
    // limited to tools.read, presenting the session the first one opened.
    let mut narrow = session_of(&fleet, &mint(&cfg, Mint::User)).await;
    let reader = MintRequest {
        permissions: vec!["tools.read".into()],
        ..user("user")
    };
    narrow.headers = vec![(
        "authorization".into(),
        bearer(&mint_at(&cfg, &reader, unix_now()).unwrap()),
    )];
    let call = narrow
        .request("tools/call", json!({"name": "anything", "arguments": {}}))
        .await;
    assert_eq!(
        (call.status, call.error_code()),
        (200, Some(-32003)),
        "tools/call needs tools.execute, which this request's token lacks: {call:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_scoped_token_cannot_widen_its_server() {
    // ContextForge's own server_scoped vector carries permissions; this one,
    // as `fleetgate token --server-id srv-a` mints it, has none.
    let s = Setup::start(Signer::ContextForge).await;
    let a = bearer(&mint(&s.cfg, Mint::ServerA));
    let every_tool: Vec<String> = list_as(&s.fleet, &s.admin, "/tools?limit=0")
        .await
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let http = reqwest::Client::new();
    let r = http
        .put(s.fleet.url(&format!("/servers/{A}")))
        .header("authorization", &a)
        .json(&json!({"associated_tools": every_tool}))
        .send()
        .await
        .unwrap();
    let r = Reply::of(r).await;
    let list = rpc(&http, &s.fleet, Some(&a), "tools/list", json!({})).await;
    let seen = cell(&list, &s.names, &mut Vec::new());
    assert_eq!(
        (r.status, seen.as_str()),
        (403, "200 (A)"),
        "a token scoped to A rewrote A: {r:?}"
    );
}

// ---------------------------------------------------------------------------
// docs/security.md
// ---------------------------------------------------------------------------

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md");
const BEGIN: &str =
    "<!-- BEGIN GENERATED by tests/tests/integration/security.rs: FLEETGATE_BLESS=1 regenerates -->";
const END: &str = "<!-- END GENERATED -->";

fn table(out: &mut String, which: Table) {
    let cols: Vec<&Column> = COLUMNS.iter().filter(|c| c.table == which).collect();
    let first = COLUMNS.iter().position(|c| c.table == which).unwrap();
    out.push_str("| token |");
    for c in &cols {
        out.push_str(&format!(" {} |", c.head));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(cols.len()));
    out.push('\n');
    for r in ROWS {
        out.push_str(&format!("| {} |", r.kind));
        for cell in &r.expect[first..first + cols.len()] {
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
}

/// The generated part of docs/security.md.
fn render() -> String {
    let mut out = String::new();
    out.push_str(BEGIN);
    out.push_str("\n\n### Token kinds (rows)\n\n| token | what it is |\n|---|---|\n");
    for r in ROWS {
        out.push_str(&format!("| {} | {} |\n", r.kind, r.what));
    }
    out.push_str("\n### Requests (columns)\n\n| column | request |\n|---|---|\n");
    for c in &COLUMNS {
        out.push_str(&format!("| {} | {} |\n", c.head, c.what));
    }
    out.push_str("\n### JSON-RPC paths\n\n");
    table(&mut out, Table::JsonRpc);
    out.push_str("\n### REST API and general endpoints\n\n");
    table(&mut out, Table::Rest);
    out.push('\n');
    out.push_str(END);
    out.push('\n');
    out
}

#[test]
fn docs_security_md_is_up_to_date() {
    let doc = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("{DOC}: {e}"));
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{DOC} lacks the markers {BEGIN:?} … {END:?}");
    };
    let end = end + END.len() + usize::from(doc[end + END.len()..].starts_with('\n'));
    let fresh = render();
    if doc[begin..end] == fresh {
        return;
    }
    if std::env::var_os("FLEETGATE_BLESS").is_some_and(|v| v == "1") {
        let updated = format!("{}{fresh}{}", &doc[..begin], &doc[end..]);
        std::fs::write(DOC, updated).unwrap();
        return;
    }
    panic!(
        "docs/security.md is out of date with the table in tests/tests/integration/security.rs: \
         regenerate it with\n  FLEETGATE_BLESS=1 cargo test -p fleetgate-tests --test integration \
         security::docs_security_md_is_up_to_date\n--- expected generated part ---\n{fresh}"
    );
}

/// One origin policy on every browser-reachable JSON-RPC path: with auth off,
/// a cross-site page's `text/plain` POST (no preflight) runs nothing on `/rpc`
/// either; a page of an allowed origin, or a non-browser client, does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_origin_is_refused_on_rpc_as_on_mcp() {
    let fleet = Fleet::builder()
        .env("WORKERS", "1")
        .env("AUTH_REQUIRED", "false")
        .start();
    let c = reqwest::Client::new();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let post = |path: &str, origin: Option<&str>, content_type: &str| {
        let mut r = c
            .post(fleet.url(path))
            .header("content-type", content_type)
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    for path in ["/rpc", "/mcp"] {
        let r = post(path, Some("https://evil.example"), "text/plain")
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("https://evil.example"),
            "{path}: {v}"
        );
    }
    let r = post("/rpc", Some("http://localhost:5173"), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/rpc", None, "application/json").await.unwrap();
    assert_eq!(r.status(), 200);
}

//! `fleetgate-load`: a small closed-loop HTTP load generator for `scripts/bench*`.
//!
//! C connections each send one request, wait for the answer, and send the next,
//! for D seconds. Keep-alive by default; `--fresh` opens a new connection per
//! request. Prints one JSON object: requests, errors, req/s, latency percentiles
//! (µs), and how the answers spread over workers (the `x-fleetgate-worker` header).
//!
//! ```text
//! fleetgate-load --url http://127.0.0.1:4444/health -c 32 -d 5 [--fresh]
//!                [--post BODY] [-H 'name: value']...
//!                [--mcp-session [--forwarded | --spread [--workers N]]]
//! ```
//! `--mcp-session`: each client first sends MCP `initialize` (+
//! `notifications/initialized`, both independent of BODY) and then carries its
//! `Mcp-Session-Id`. Where the load goes:
//!
//! - default (all-local): the load follows the handshake on the same keep-alive
//!   connection, so the worker that holds the connection owns the session and
//!   serves every request itself;
//! - `--forwarded`: the load goes on another connection that landed on a
//!   *different* worker (chosen by probing `/health`), so every request is
//!   forwarded to the session's owner;
//! - `--spread`: sessions spread over N workers (`--workers`, default 2) as an
//!   even load balancer spreads them: client k keeps its load on its owner when
//!   k is a multiple of N and sends it to another worker otherwise, so exactly
//!   (N-1)/N of the clients are forwarded in every run (leaving it to where the
//!   kernel puts fresh connections measured anywhere from 13 to 20 of 32).
//!
//! A forwarded answer names the owner in `x-fleetgate-worker`, so the worker that
//! accepted a load connection is learnt with one `/health` probe on it before the
//! timed requests; `forwarded_clients` / `forwarded_requests` in the output count
//! the clients (sessions) and requests whose connection was not on the owner.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Where a client's load goes relative to its session's owner (`--mcp-session`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// The handshake's own connection: served by the owner.
    Local,
    /// A connection on another worker: always forwarded.
    Forwarded,
    /// Every `workers`-th client local, the others forwarded.
    Spread { workers: usize },
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::Local => "local",
            Placement::Forwarded => "forwarded",
            Placement::Spread { .. } => "spread",
        }
    }

    /// Where client `index`'s load goes: `Local` or `Forwarded`.
    fn for_client(self, index: usize) -> Placement {
        match self {
            Placement::Spread { workers } if index.is_multiple_of(workers) => Placement::Local,
            Placement::Spread { .. } => Placement::Forwarded,
            p => p,
        }
    }
}

#[derive(Clone)]
struct Opts {
    url: hyper::Uri,
    conns: usize,
    secs: f64,
    fresh: bool,
    body: Option<Bytes>,
    headers: Vec<(String, String)>,
    mcp_session: bool,
    placement: Placement,
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut conns, mut secs, mut fresh, mut body) = (None, 32, 5.0, false, None);
    let (mut headers, mut mcp_session) = (Vec::new(), false);
    let (mut forwarded, mut spread, mut workers) = (false, false, 2usize);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--url" => url = Some(val()?),
            "-c" | "--connections" => conns = val()?.parse().map_err(|e| format!("-c: {e}"))?,
            "-d" | "--duration" => secs = val()?.parse().map_err(|e| format!("-d: {e}"))?,
            "--fresh" => fresh = true,
            "--post" => body = Some(Bytes::from(val()?)),
            "--mcp-session" => mcp_session = true,
            "--forwarded" => forwarded = true,
            "--spread" => spread = true,
            "--workers" => workers = val()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "-H" | "--header" => {
                let h = val()?;
                let (k, v) = h.split_once(':').ok_or("-H expects 'name: value'")?;
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let url = url
        .ok_or("--url is required")?
        .parse()
        .map_err(|e| format!("--url: {e}"))?;
    let placement = match (forwarded, spread) {
        (true, true) => return Err("--forwarded and --spread exclude each other".into()),
        (true, false) => Placement::Forwarded,
        (false, true) if workers >= 2 => Placement::Spread { workers },
        (false, true) => return Err("--workers must be at least 2 for --spread".into()),
        (false, false) => Placement::Local,
    };
    if placement != Placement::Local && (!mcp_session || fresh) {
        return Err(format!(
            "--{} needs --mcp-session and keep-alive (no --fresh)",
            placement.name()
        ));
    }
    if conns == 0 {
        return Err("-c must be at least 1".into());
    }
    Ok(Opts {
        url,
        conns,
        secs,
        fresh,
        body,
        headers,
        mcp_session,
        placement,
    })
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    workers: BTreeMap<String, u64>,
    /// Sessions with at least one request sent on a connection not on their owner.
    forwarded_clients: u64,
    /// Successful requests sent on a connection not on the session's owner.
    forwarded_requests: u64,
}

impl Stats {
    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(url: &hyper::Uri) -> Result<Sender, String> {
    let host = url.host().ok_or("no host")?;
    let port = url.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

fn request(o: &Opts, session: Option<&str>, body: Option<Bytes>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .uri(o.url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(
            "host",
            o.url.authority().map(|a| a.as_str()).unwrap_or("localhost"),
        );
    if o.fresh {
        b = b.header("connection", "close");
    }
    for (k, v) in &o.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
    }
    let req = match body {
        Some(body) => b
            .method("POST")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(body)),
        None => b.method("GET").body(Full::new(Bytes::new())),
    };
    req.expect("valid request")
}

/// Sends one request; returns (status, worker header, session header, body).
async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Option<String>, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (worker, session) = (header("x-fleetgate-worker"), header("mcp-session-id"));
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, worker, session, body))
}

/// A JSON-RPC error answer (plain JSON or an SSE `data:` line): a 200 that did
/// not do the work (e.g. an unknown tool) must not count as a served request.
fn jsonrpc_error(body: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = br#""error":{"#;
    body.windows(NEEDLE.len())
        .any(|w| w == NEEDLE)
        .then(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

/// Initializes a session; returns it and the worker that owns it.
async fn mcp_handshake(o: &Opts, sender: &mut Sender) -> Result<(String, String), String> {
    // Two requests on one connection, even with --fresh.
    let o = &Opts {
        fresh: false,
        ..o.clone()
    };
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fleetgate-load","version":"0"}}}"#;
    let (status, owner, session, _) =
        send(sender, request(o, None, Some(Bytes::from(init)))).await?;
    if status != 200 {
        return Err(format!("initialize answered {status}"));
    }
    let session = session.ok_or("initialize answered no mcp-session-id")?;
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, _, _) =
        send(sender, request(o, Some(&session), Some(Bytes::from(note)))).await?;
    if !(200..300).contains(&status) {
        return Err(format!("notifications/initialized answered {status}"));
    }
    // Upstream servers without the header (the direct row) count as one "worker".
    Ok((session, owner.unwrap_or_default()))
}

/// The worker that accepted this keep-alive connection (a `/health` probe on it;
/// empty without the header, e.g. straight to an upstream).
async fn accepting_worker(o: &Opts, sender: &mut Sender) -> Result<String, String> {
    let authority = o.url.authority().map(|a| a.as_str()).unwrap_or("localhost");
    let health: hyper::Uri = format!("http://{authority}/health")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let probe = Opts {
        url: health,
        body: None,
        fresh: false,
        ..o.clone()
    };
    let (_, worker, _, _) = send(sender, request(&probe, None, None)).await?;
    Ok(worker.unwrap_or_default())
}

/// A fresh keep-alive connection and the worker that accepted it; with `avoid`,
/// one accepted by a worker other than `avoid`.
async fn load_connection(o: &Opts, avoid: Option<&str>) -> Result<(Sender, String), String> {
    for _ in 0..200 {
        let mut s = connect(&o.url).await?;
        let worker = accepting_worker(o, &mut s).await?;
        match avoid {
            Some(owner) if worker.is_empty() || worker == owner => continue,
            _ => return Ok((s, worker)),
        }
    }
    Err("no connection reached another worker (is WORKERS > 1?)".into())
}

/// A client's session: its id, its owner, and whether it has counted as forwarded.
struct Session {
    id: String,
    owner: String,
    counted: bool,
}

async fn client(o: Opts, index: usize, until: Instant) -> Stats {
    let placement = o.placement.for_client(index);
    let mut st = Stats::default();
    let mut sender: Option<Sender> = None;
    // The worker that accepted `sender` (learnt only with --mcp-session).
    let mut conn_worker = String::new();
    let mut session: Option<Session> = None;
    while Instant::now() < until {
        if o.mcp_session && session.is_none() {
            // One handshake per client, on a connection of its own unless all-local.
            let mut init = match sender.take() {
                Some(s) if placement == Placement::Local => s,
                _ => match connect(&o.url).await {
                    Ok(s) => s,
                    Err(e) => {
                        st.fail(format!("connect: {e}"));
                        continue;
                    }
                },
            };
            let (id, owner) = match mcp_handshake(&o, &mut init).await {
                Ok(x) => x,
                Err(e) => {
                    st.fail(e);
                    continue;
                }
            };
            let placed = match placement {
                // --fresh: the next block opens a new connection per request.
                Placement::Local if o.fresh => Ok(None),
                Placement::Local => Ok(Some((init, owner.clone()))),
                _ => load_connection(&o, Some(&owner)).await.map(Some),
            };
            match placed {
                Ok(Some((s, w))) => {
                    sender = Some(s);
                    conn_worker = w;
                }
                Ok(None) => {}
                Err(e) => {
                    st.fail(e);
                    return st;
                }
            }
            session = Some(Session {
                id,
                owner,
                counted: false,
            });
        }
        if sender.is_none() || o.fresh {
            // Without --mcp-session (or with --fresh) the connection is not probed;
            // a broken keep-alive load connection is replaced like the first one.
            let next = match (&session, o.fresh) {
                (Some(x), false) => {
                    let avoid = (placement == Placement::Forwarded).then_some(x.owner.as_str());
                    load_connection(&o, avoid).await
                }
                _ => connect(&o.url).await.map(|s| (s, String::new())),
            };
            match next {
                Ok((s, w)) => {
                    sender = Some(s);
                    conn_worker = w;
                }
                Err(e) => {
                    st.fail(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let sid = session.as_ref().map(|x| x.id.as_str());
        let t0 = Instant::now();
        let (status, worker, body) = match send(s, request(&o, sid, o.body.clone())).await {
            Ok((status, worker, _, body)) => (status, worker, body),
            Err(e) => {
                st.fail(e);
                sender = None;
                continue;
            }
        };
        let elapsed = t0.elapsed();
        if !(200..300).contains(&status) {
            st.fail(format!("HTTP {status}"));
            continue;
        }
        if o.body.is_some() {
            if let Some(e) = jsonrpc_error(&body) {
                st.fail(format!("JSON-RPC error: {e}"));
                continue;
            }
        }
        st.latencies_us
            .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
        *st.workers
            .entry(worker.unwrap_or_else(|| "-".into()))
            .or_default() += 1;
        if let Some(x) = session.as_mut() {
            if !o.fresh && conn_worker != x.owner {
                st.forwarded_requests += 1;
                if !x.counted {
                    x.counted = true;
                    st.forwarded_clients += 1;
                }
            }
        }
    }
    st
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fleetgate-load: {e}");
            std::process::exit(64);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (all, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(o.secs);
        let tasks: Vec<_> = (0..o.conns)
            .map(|k| tokio::spawn(client(o.clone(), k, until)))
            .collect();
        let mut all = Stats::default();
        for t in tasks {
            let Ok(s) = t.await else { continue };
            all.latencies_us.extend(s.latencies_us);
            all.errors += s.errors;
            if all.first_error.is_none() {
                all.first_error = s.first_error;
            }
            for (w, n) in s.workers {
                *all.workers.entry(w).or_default() += n;
            }
            all.forwarded_clients += s.forwarded_clients;
            all.forwarded_requests += s.forwarded_requests;
        }
        (all, start.elapsed())
    });
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let session_mode = o.mcp_session.then(|| o.placement.name());
    let out = serde_json::json!({
        "url": o.url.to_string(),
        "connections": o.conns,
        "fresh_connections": o.fresh,
        "seconds": elapsed.as_secs_f64(),
        "requests": lat.len(),
        "errors": all.errors,
        "first_error": all.first_error,
        "rps": (lat.len() as f64 / elapsed.as_secs_f64()).round(),
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "max_us": lat.last().copied().unwrap_or(0),
        "workers": all.workers,
        "forwarded": o.placement == Placement::Forwarded,
        "spread": matches!(o.placement, Placement::Spread { .. }),
        "session_placement": session_mode,
        "forwarded_clients": all.forwarded_clients,
        "forwarded_requests": all.forwarded_requests,
    });
    println!("{out}");
}

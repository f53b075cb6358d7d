//! `fleetgate-load`: a small closed-loop HTTP load generator for `scripts/bench*`.
//!
//! C connections each send one request, wait for the answer, and send the next,
//! for D seconds. Keep-alive by default; `--fresh` opens a new connection per
//! request. Prints one JSON object: requests, errors, req/s, latency percentiles
//! (µs), and how the answers spread over workers (the `x-fleetgate-worker` header).
//!
//! ```text
//! fleetgate-load --url http://127.0.0.1:4444/health -c 32 -d 5 [--fresh]
//!                [--post BODY] [-H 'name: value']... [--mcp-session]
//! ```
//! `--mcp-session`: each connection first sends BODY-independent MCP `initialize`
//! (+ `notifications/initialized`) and then carries its `Mcp-Session-Id`. With
//! keep-alive, the worker that holds the connection owns the session: every
//! request is served locally. `--forwarded` (with `--mcp-session`): each client
//! initializes on one connection, then sends its load on another connection that
//! landed on a *different* worker, so every request is forwarded to its owner.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Clone)]
struct Opts {
    url: hyper::Uri,
    conns: usize,
    secs: f64,
    fresh: bool,
    body: Option<Bytes>,
    headers: Vec<(String, String)>,
    mcp_session: bool,
    forwarded: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut conns, mut secs, mut fresh, mut body) = (None, 32, 5.0, false, None);
    let (mut headers, mut mcp_session, mut forwarded) = (Vec::new(), false, false);
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
    Ok(Opts {
        url,
        conns,
        secs,
        fresh,
        body,
        headers,
        mcp_session,
        forwarded,
    })
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    workers: BTreeMap<String, u64>,
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

/// Sends one request; returns (status, worker header, session header).
async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Option<String>), String> {
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
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, worker, session))
}

/// Initializes a session; returns it and the worker that owns it.
async fn mcp_handshake(
    o: &Opts,
    sender: &mut Sender,
) -> Result<(Option<String>, Option<String>), String> {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fleetgate-load","version":"0"}}}"#;
    let (status, owner, session) = send(sender, request(o, None, Some(Bytes::from(init)))).await?;
    if status != 200 {
        return Err(format!("initialize answered {status}"));
    }
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    send(
        sender,
        request(o, session.as_deref(), Some(Bytes::from(note))),
    )
    .await?;
    Ok((session, owner))
}

/// A connection accepted by a worker other than `owner` (probing `/health`).
async fn connection_elsewhere(o: &Opts, owner: &str) -> Result<Sender, String> {
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
    for _ in 0..200 {
        let mut s = connect(&o.url).await?;
        let (_, worker, _) = send(&mut s, request(&probe, None, None)).await?;
        if worker.as_deref().is_some_and(|w| w != owner) {
            return Ok(s);
        }
    }
    Err("no connection reached another worker (is WORKERS > 1?)".into())
}

async fn client(o: Opts, until: Instant) -> Stats {
    let mut st = Stats::default();
    let mut sender: Option<Sender> = None;
    let mut session = None;
    let fail = |st: &mut Stats, e: String| {
        st.errors += 1;
        st.first_error.get_or_insert(e);
    };
    while Instant::now() < until {
        if sender.is_none() || o.fresh {
            match connect(&o.url).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    fail(&mut st, format!("connect: {e}"));
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        if o.mcp_session && session.is_none() {
            match mcp_handshake(&o, s).await {
                Ok((sid, owner)) => {
                    session = sid;
                    if o.forwarded {
                        match connection_elsewhere(&o, owner.as_deref().unwrap_or("")).await {
                            Ok(other) => sender = Some(other),
                            Err(e) => {
                                fail(&mut st, e);
                                return st;
                            }
                        }
                    }
                }
                Err(e) => {
                    fail(&mut st, e);
                    sender = None;
                    continue;
                }
            }
            if o.fresh {
                continue;
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let t0 = Instant::now();
        match send(s, request(&o, session.as_deref(), o.body.clone())).await {
            Ok((status, worker, _)) if (200..300).contains(&status) => {
                st.latencies_us
                    .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *st.workers
                    .entry(worker.unwrap_or_else(|| "-".into()))
                    .or_default() += 1;
            }
            Ok((status, _, _)) => fail(&mut st, format!("HTTP {status}")),
            Err(e) => {
                fail(&mut st, e);
                sender = None;
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
            .map(|_| tokio::spawn(client(o.clone(), until)))
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
        "forwarded": o.forwarded,
    });
    println!("{out}");
}

//! `fleetgate-test-upstream [--port N] [--host ADDR] [--sse] [--legacy-sse] [--name NAME]
//! [--tools-prefix P] [--no-dns-rebinding-protection] [--sse-retry-ms MS]
//! [--no-stateless-draft] [--standalone-requests] [--workers N]`
//!
//! `--standalone-requests`: see `UpstreamBuilder::standalone_requests` (sampling and
//! elicitation requests go on the session's standalone GET stream, as the reference
//! server sends them).
//!
//! Prints one line `{"event":"listening","url":"http://127.0.0.1:PORT/mcp"}` (plus
//! `"sse_url":"http://127.0.0.1:PORT/sse"` with `--legacy-sse`) on stdout once
//! it accepts connections, then serves until SIGINT or SIGTERM.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use fleetgate_test_upstream::{Upstream, UpstreamBuilder};

const USAGE: &str =
    "usage: fleetgate-test-upstream [--port N] [--host ADDR] [--sse] [--legacy-sse] [--name NAME] \
[--tools-prefix P] [--no-dns-rebinding-protection] [--allow-host HOST] [--sse-retry-ms MS] \
[--no-stateless-draft] [--standalone-requests] [--workers N]";

struct Cli {
    builder: UpstreamBuilder,
    legacy: bool,
    workers: Option<usize>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Cli, String> {
    let mut b = Upstream::builder();
    let mut host: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port: u16 = 0;
    let mut workers = None;
    let mut legacy = false;
    let value = |args: &mut dyn Iterator<Item = String>, flag: &str| {
        args.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let val = |args: &mut dyn Iterator<Item = String>| match &inline {
            Some(v) => Ok(v.clone()),
            None => value(args, &flag),
        };
        match flag.as_str() {
            "--port" | "-p" => {
                port = val(&mut args)?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?;
            }
            "--host" => {
                host = val(&mut args)?
                    .parse()
                    .map_err(|e| format!("--host: {e}"))?
            }
            "--sse" => b = b.sse(true),
            "--json" => b = b.sse(false),
            "--legacy-sse" => {
                legacy = true;
                b = b.legacy_sse(true)
            }
            "--name" => b = b.name(val(&mut args)?),
            "--tools-prefix" => b = b.tools_prefix(val(&mut args)?).map_err(|e| e.to_string())?,
            "--no-dns-rebinding-protection" => b = b.dns_rebinding_protection(false),
            "--allow-host" => b = b.allow_host(val(&mut args)?),
            "--sse-retry-ms" => {
                b = b.sse_retry_ms(
                    val(&mut args)?
                        .parse()
                        .map_err(|e| format!("--sse-retry-ms: {e}"))?,
                )
            }
            "--no-stateless-draft" => b = b.stateless_draft(false),
            "--modern-only" => b = b.stateful(false),
            "--standalone-requests" => b = b.standalone_requests(true),
            "--workers" => {
                workers = Some(
                    val(&mut args)?
                        .parse()
                        .map_err(|e| format!("--workers: {e}"))?,
                )
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Cli {
        builder: b.bind(SocketAddr::new(host, port)),
        legacy,
        workers,
    })
}

fn main() -> ExitCode {
    let cli = match parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            if e.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("fleetgate-test-upstream: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetgate-test-upstream: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let legacy = cli.legacy;
    rt.block_on(async move {
        let up = match cli.builder.spawn().await {
            Ok(up) => up,
            Err(e) => {
                eprintln!("fleetgate-test-upstream: {e}");
                return ExitCode::FAILURE;
            }
        };
        {
            let mut line = serde_json::json!({ "event": "listening", "url": up.url() });
            if legacy {
                line["sse_url"] = serde_json::Value::String(up.sse_url());
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        wait_for_signal().await;
        up.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

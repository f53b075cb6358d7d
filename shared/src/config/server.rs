//! The process model's settings: where to listen, how many workers, their
//! lifecycle, and logging.

use super::Loader;
use serde::{Deserialize, Serialize};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerConfig {
    /// `HOST` (default 127.0.0.1).
    pub host: String,
    /// `PORT` (default 4444; 0 binds an ephemeral port).
    pub port: u16,
    /// `WORKERS` | `GUNICORN_WORKERS` | `WEB_CONCURRENCY`: a number or `auto` (cores).
    pub workers: usize,
    /// `WORKER_TIMEOUT` (s, default 30): a worker silent this long is replaced.
    pub worker_timeout: Duration,
    /// `GRACEFUL_TIMEOUT` (s, default 30): how long in-flight requests may finish.
    pub graceful_timeout: Duration,
    /// `MAX_REQUESTS` (default 0 = never): recycle a worker after this many requests.
    pub max_requests: u64,
    /// `MAX_REQUESTS_JITTER` (default 0): add up to this many to `MAX_REQUESTS`.
    pub max_requests_jitter: u64,
    /// `WORKER_THREADS` (default: cores / workers, at least 1): runtime threads
    /// per worker. 1 runs each worker on a single-threaded runtime, the
    /// cheapest per request when workers already fill the cores.
    pub worker_threads: usize,
    /// `REUSE_PORT` (default false): one `SO_REUSEPORT` socket per worker.
    pub reuse_port: bool,
    /// `ADDR_FILE`: where to write the bound address.
    pub addr_file: Option<PathBuf>,
}

impl ServerConfig {
    pub fn load(l: &mut Loader<'_>) -> ServerConfig {
        let host = l.string("HOST", "127.0.0.1");
        let port = l.parse("PORT", 4444u16, "a port number 0-65535");
        if (host.as_str(), port).to_socket_addrs().is_err() {
            l.error("HOST", &host, "not an address or a resolvable host name");
        }
        let workers = match l.raw_any(&["WORKERS", "GUNICORN_WORKERS", "WEB_CONCURRENCY"]) {
            None => 1,
            Some((_, v)) if v.eq_ignore_ascii_case("auto") => cores(),
            Some((name, v)) => match v.parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    l.error(name, &v, "expected a number of workers 1-1024, or `auto`");
                    1
                }
            },
        };
        let worker_threads = l.parse(
            "WORKER_THREADS",
            cores().div_ceil(workers).max(1),
            "a number of threads 1-1024",
        );
        if !(1..=1024).contains(&worker_threads) {
            l.error(
                "WORKER_THREADS",
                &worker_threads.to_string(),
                "expected a number of threads 1-1024",
            );
        }
        ServerConfig {
            host,
            port,
            workers,
            worker_threads,
            worker_timeout: l.secs("WORKER_TIMEOUT", 30.0),
            graceful_timeout: l.secs("GRACEFUL_TIMEOUT", 30.0),
            max_requests: l.parse("MAX_REQUESTS", 0u64, "a non-negative integer"),
            max_requests_jitter: l.parse("MAX_REQUESTS_JITTER", 0u64, "a non-negative integer"),
            reuse_port: l.bool("REUSE_PORT", false),
            addr_file: l.opt_string("ADDR_FILE").map(PathBuf::from),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogConfig {
    /// `LOG_LEVEL`: trace, debug, info (default), warning/warn, error, critical.
    pub level: String,
    /// `LOG_FORMAT`: text (default) or json.
    pub format: LogFormat,
    /// `LOG_FILE`: append logs here instead of stderr; reopened on `SIGUSR1`.
    pub file: Option<PathBuf>,
}

impl LogConfig {
    pub fn load(l: &mut Loader<'_>) -> LogConfig {
        let level = l.with("LOG_LEVEL", "info".to_owned(), |v| {
            match v.to_ascii_lowercase().as_str() {
                "trace" => Ok("trace"),
                "debug" => Ok("debug"),
                "info" => Ok("info"),
                "warn" | "warning" => Ok("warn"),
                "error" | "critical" => Ok("error"),
                _ => Err("expected one of trace, debug, info, warning, error, critical".into()),
            }
            .map(str::to_owned)
        });
        let format = match l.choice("LOG_FORMAT", &["text", "json"], "text") {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
        LogConfig {
            level,
            format,
            file: l.opt_string("LOG_FILE").map(PathBuf::from),
        }
    }
}

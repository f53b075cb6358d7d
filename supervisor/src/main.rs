//! `fleetgate`: the supervisor binary (and, as `fleetgate worker`, its workers).
//!
//! `main` only parses the command line and maps failures to exit codes; the work
//! is in [`arbiter::run`] (supervisor) and `fleetgate_worker::run` (worker).

mod arbiter;
mod bind;
mod migrate;
mod policy;
mod signals;
mod spawn;

use fleetgate_shared::config::Config;
use fleetgate_shared::contract::{EXIT_CONFIG, WORKER_SUBCOMMAND};
use std::process::ExitCode;

/// The request path allocates small, short-lived buffers all the time (JSON,
/// headers, futures); mimalloc serves those markedly faster than glibc's malloc
/// (measured: docs/perf.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
fleetgate: a multi-process MCP gateway

USAGE:
    fleetgate [serve]      run the supervisor and its workers (configured by env / .env)
    fleetgate token --username U --exp MINUTES [--admin] [--server-id ID]
                    [--permissions a,b] [--ip CIDR,...] [--teams a,b]
                           print a JWT signed with JWT_SECRET_KEY (or JWT_PRIVATE_KEY_PATH)
    fleetgate --version
    fleetgate --help

Every setting is an environment variable (see README.md), e.g.
    HOST=0.0.0.0 PORT=4444 WORKERS=auto fleetgate
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some(cmd) if cmd == WORKER_SUBCOMMAND => fleetgate_worker::run(),
        Some("token") => token(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            0
        }
        Some("-V" | "--version") => {
            println!("fleetgate {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(other) => {
            eprintln!("fleetgate: unknown command {other:?}\n\n{USAGE}");
            EXIT_CONFIG
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `fleetgate token …`: mints a token with the configured key.
fn token(args: &[String]) -> i32 {
    let cfg = match Config::from_process_env() {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("fleetgate: {errors}");
            return EXIT_CONFIG;
        }
    };
    match fleetgate_worker::auth::token_cli(args, &cfg.auth) {
        Ok(token) => {
            println!("{token}");
            0
        }
        Err(e) => {
            eprintln!("fleetgate token: {e}");
            EXIT_CONFIG
        }
    }
}

fn serve() -> i32 {
    let cfg = match Config::from_process_env() {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("fleetgate: {errors}");
            return EXIT_CONFIG;
        }
    };
    raise_fd_limit();
    arbiter::run(cfg)
}

/// Raises the soft limit on open files to the hard one, for the supervisor
/// and the workers it forks: every client connection, and every upstream
/// session's standalone stream, holds a descriptor, and the soft limit many
/// systems start with (1,024) would cap a worker near a thousand sessions.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!(
                    "fleetgate: could not raise the open-files limit from {soft} to {hard}: {e}"
                );
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("fleetgate: could not read the open-files limit: {e}"),
    }
}

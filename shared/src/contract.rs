//! The supervisor ↔ worker contract.
//!
//! A worker is the supervisor's own executable started as `fleetgate worker`. It
//! inherits two file descriptors and two environment variables:
//!
//! | what | where |
//! |---|---|
//! | the listening socket (shared, or its own `SO_REUSEPORT` one) | fd [`LISTEN_FD`] |
//! | the write end of its control pipe | fd [`CONTROL_FD`] |
//! | its resolved configuration, as JSON | env [`ENV_CONFIG`] |
//! | its slot and generation, `slot:generation` | env [`ENV_SLOT`] |
//!
//! Over the control pipe the worker sends newline-terminated [`ControlMsg`]s. The
//! pipe doubles as a lifeline: when the supervisor dies, the worker's next write
//! fails with `EPIPE` and the worker shuts down.

/// The inherited listening socket.
pub const LISTEN_FD: i32 = 3;
/// The write end of the worker's control pipe.
pub const CONTROL_FD: i32 = 4;
/// The worker's configuration (JSON of [`crate::config::Config`]).
pub const ENV_CONFIG: &str = "FLEETGATE_WORKER_CONFIG";
/// `slot:generation` of the worker.
pub const ENV_SLOT: &str = "FLEETGATE_WORKER_SLOT";
/// The hidden subcommand that turns the executable into a worker.
pub const WORKER_SUBCOMMAND: &str = "worker";

/// Exit code of a process whose configuration is invalid (sysexits `EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code of a worker that cannot boot; the supervisor halts instead of
/// respawning it (gunicorn's `WORKER_BOOT_ERROR`). The supervisor exits with it too.
pub const EXIT_BOOT_ERROR: i32 = 3;
/// Exit code of a supervisor that cannot bind its address (sysexits `EX_UNAVAILABLE`).
pub const EXIT_BIND: i32 = 69;

/// A message from a worker to its supervisor, one per line on the control pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMsg {
    /// The worker is accepting connections.
    Ready,
    /// The worker's runtime is alive (sent every `WORKER_TIMEOUT / 4`).
    Beat,
    /// The worker served `MAX_REQUESTS` (+ jitter): replace it, then retire it.
    Retire,
    /// The worker cannot boot; the reason follows. It exits with [`EXIT_BOOT_ERROR`].
    BootError(String),
}

impl ControlMsg {
    /// The wire form, newline included.
    pub fn encode(&self) -> String {
        match self {
            ControlMsg::Ready => "ready\n".to_owned(),
            ControlMsg::Beat => "beat\n".to_owned(),
            ControlMsg::Retire => "retire\n".to_owned(),
            ControlMsg::BootError(reason) => {
                format!("boot-error {}\n", reason.replace(['\n', '\r'], " "))
            }
        }
    }

    /// Parses one line (without its newline). Unknown lines are `None`.
    pub fn decode(line: &str) -> Option<ControlMsg> {
        match line {
            "ready" => Some(ControlMsg::Ready),
            "beat" => Some(ControlMsg::Beat),
            "retire" => Some(ControlMsg::Retire),
            _ => line
                .strip_prefix("boot-error ")
                .map(|r| ControlMsg::BootError(r.to_owned())),
        }
    }
}

/// `{hostname}:{pid}`: ContextForge's worker identity format. Unique on a host by
/// construction (pids are), and across hosts as long as hostnames are.
pub fn worker_identity(pid: u32) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{pid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        for msg in [
            ControlMsg::Ready,
            ControlMsg::Beat,
            ControlMsg::Retire,
            ControlMsg::BootError("database unreachable: x".into()),
        ] {
            let wire = msg.encode();
            assert!(wire.ends_with('\n'));
            assert_eq!(ControlMsg::decode(wire.trim_end_matches('\n')), Some(msg));
        }
        assert_eq!(ControlMsg::decode("nonsense"), None);
    }

    #[test]
    fn boot_error_reason_stays_on_one_line() {
        let wire = ControlMsg::BootError("a\nb".into()).encode();
        assert_eq!(wire.matches('\n').count(), 1);
    }
}

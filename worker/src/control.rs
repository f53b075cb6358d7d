//! The worker's end of the control pipe (see `fleetgate_shared::contract`).
//!
//! Writes are non-blocking: a full pipe drops a heartbeat rather than stalling a
//! runtime thread. `EPIPE` means the supervisor is gone; the heartbeat task then
//! starts the worker's shutdown, so no orphan keeps serving.

use fleetgate_shared::contract::ControlMsg;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Outcome of a send that did not go through.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The supervisor closed its end: it is dead.
    SupervisorGone,
}

#[derive(Debug)]
pub struct Control {
    pipe: Option<Mutex<File>>,
    retire_sent: AtomicBool,
}

impl Control {
    /// A control pipe over `fd` (made non-blocking here).
    pub fn new(fd: OwnedFd) -> io::Result<Control> {
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
        flags.insert(nix::fcntl::OFlag::O_NONBLOCK);
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(Control {
            pipe: Some(Mutex::new(File::from(fd))),
            retire_sent: AtomicBool::new(false),
        })
    }

    /// A worker without a supervisor (in-process tests): every send succeeds.
    pub fn detached() -> Control {
        Control {
            pipe: None,
            retire_sent: AtomicBool::new(false),
        }
    }

    pub fn send(&self, msg: &ControlMsg) -> Result<(), SendError> {
        let Some(pipe) = &self.pipe else {
            return Ok(());
        };
        let mut file = pipe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match file.write(msg.encode().as_bytes()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(SendError::SupervisorGone),
            // A full pipe (the supervisor is busy) drops this message; the next beat
            // comes soon. Any other error is as good as a dead supervisor.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(_) => Err(SendError::SupervisorGone),
        }
    }

    /// Asks once to be replaced (after `MAX_REQUESTS`).
    pub fn request_retirement(&self) {
        if !self.retire_sent.swap(true, Ordering::AcqRel) {
            tracing::info!("max requests reached; asking the supervisor for a replacement");
            let _ = self.send(&ControlMsg::Retire);
        }
    }
}

//! Signals, gunicorn style: handlers only record. Each handler writes its signal's
//! number, one byte, into a self-pipe; the arbiter's `poll` wakes on the pipe and
//! handles the signals in the order they arrived (TTOU then TTIN is not TTIN then
//! TTOU). No logging, no reaping, no allocation in a handler.

use signal_hook::consts::signal::*;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

/// The signals the arbiter handles.
pub const HANDLED: [i32; 8] = [
    SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGCHLD,
];

pub struct Signals {
    queue: UnixStream,
    // Keeps the write end open for the handlers.
    _notify: UnixStream,
}

impl Signals {
    #[allow(unsafe_code)]
    pub fn install() -> io::Result<Signals> {
        let (queue, notify) = UnixStream::pair()?;
        queue.set_nonblocking(true)?;
        // A full pipe drops the byte rather than blocking inside a handler.
        notify.set_nonblocking(true)?;
        let fd = notify.as_raw_fd();
        for sig in HANDLED {
            let byte = [sig as u8];
            // SAFETY: the action only calls write(2), which is async-signal-safe,
            // on a descriptor that lives as long as `Signals` (the handlers are
            // never unregistered and the supervisor exits when `run` returns).
            unsafe {
                signal_hook::low_level::register(sig, move || {
                    libc::write(fd, byte.as_ptr().cast(), 1);
                })?;
            }
        }
        Ok(Signals {
            queue,
            _notify: notify,
        })
    }

    /// The fd to poll for "a signal arrived".
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.queue.as_fd()
    }

    /// The signals that arrived since the last call, in arrival order.
    pub fn take(&mut self) -> Vec<i32> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = self.queue.read(&mut buf) {
            out.extend(buf[..n].iter().map(|b| i32::from(*b)));
        }
        out
    }
}

//! Fork + exec of one worker: the supervisor's own executable as `fleetgate worker`,
//! with the listening socket on fd 3 and its control pipe's write end on fd 4.
//!
//! `unsafe` in this file: the `pre_exec` hook below, which runs in the forked
//! child before `exec` and only calls async-signal-safe functions, and taking
//! ownership of a freshly created descriptor. The supervisor's only other
//! `unsafe` is the signal handler in `signals.rs`.

use fleetgate_shared::contract::{CONTROL_FD, ENV_CONFIG, ENV_SLOT, LISTEN_FD, WORKER_SUBCOMMAND};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

pub struct Spawned {
    pub pid: i32,
    /// Read end of the worker's control pipe (non-blocking).
    pub control: OwnedFd,
}

/// Starts one worker.
#[allow(unsafe_code)]
pub fn spawn_worker(
    exe: &Path,
    listener: BorrowedFd<'_>,
    slot: usize,
    generation: u64,
    config_json: &str,
) -> io::Result<Spawned> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    // Copies above the contract's range, so the child's dup2 onto 3 and 4 can never
    // overwrite a source descriptor. Close-on-exec: only the dup2'd copies survive.
    let listen_src = high_copy(listener)?;
    let write_src = high_copy(std::os::fd::AsFd::as_fd(&write))?;
    drop(write);
    let (listen_raw, write_raw) = (listen_src.as_raw_fd(), write_src.as_raw_fd());
    let parent = std::process::id() as libc::pid_t;

    let mut cmd = Command::new(exe);
    cmd.arg(WORKER_SUBCOMMAND)
        .env(ENV_CONFIG, config_json)
        .env(ENV_SLOT, format!("{slot}:{generation}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: runs between fork and exec in the child; dup2, prctl and getppid are
    // async-signal-safe, and nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(listen_raw, LISTEN_FD) == -1 || libc::dup2(write_raw, CONTROL_FD) == -1 {
                return Err(io::Error::last_os_error());
            }
            // A worker must not outlive its supervisor, even after `kill -9`.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(io::Error::other("supervisor exited"));
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(Spawned {
        pid: child.id() as i32,
        control: read,
    })
}

fn high_copy(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10)).map(|raw| {
        // fcntl(F_DUPFD_CLOEXEC) returned a new descriptor that we own.
        owned(raw)
    })?)
}

#[allow(unsafe_code)]
fn owned(raw: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `raw` was just created by F_DUPFD_CLOEXEC and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

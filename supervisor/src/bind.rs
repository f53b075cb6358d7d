//! Binding the listening address, once, before any worker exists.
//!
//! Shared mode: one listening socket, inherited by every worker; the kernel queues
//! connections once and whichever worker is free accepts. `REUSE_PORT` mode: the
//! supervisor holds a bound, non-listening `SO_REUSEPORT` socket (it reserves the
//! port across worker restarts) and gives each worker a listening socket of its own;
//! the kernel hashes connections over them.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const BACKLOG: i32 = 2048;

pub struct Listener {
    socket: Socket,
    pub addr: SocketAddr,
    reuse_port: bool,
}

impl Listener {
    pub fn bind(host: &str, port: u16, reuse_port: bool) -> io::Result<Listener> {
        let addr = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let socket = new_socket(addr, reuse_port)?;
        socket.bind(&addr.into())?;
        if !reuse_port {
            socket.listen(BACKLOG)?;
        }
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))?;
        Ok(Listener {
            socket,
            addr,
            reuse_port,
        })
    }

    /// The socket a new worker gets: the shared one, or a fresh `SO_REUSEPORT` one.
    pub fn for_worker(&self) -> io::Result<WorkerSocket<'_>> {
        if !self.reuse_port {
            return Ok(WorkerSocket::Shared(self.socket.as_fd()));
        }
        let s = new_socket(self.addr, true)?;
        s.bind(&self.addr.into())?;
        s.listen(BACKLOG)?;
        Ok(WorkerSocket::Own(OwnedFd::from(s)))
    }
}

pub enum WorkerSocket<'a> {
    Shared(BorrowedFd<'a>),
    Own(OwnedFd),
}

impl WorkerSocket<'_> {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            WorkerSocket::Shared(fd) => *fd,
            WorkerSocket::Own(fd) => fd.as_fd(),
        }
    }
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}

//! Unix stream connections between workers (embedded mode's forwards) that
//! wake their worker only for what it waits for.
//!
//! tokio registers a `UnixStream` for readability and writability at once.
//! On a Unix stream socket every read by the peer makes room in the sender's
//! buffer and raises `EPOLLOUT` for it, so each forwarded request and each
//! answer woke the worker that wrote it once more, for nothing (seen in
//! strace: three `epoll_wait`s per forward on each side, one of them
//! `EPOLLOUT` alone). Here the socket is registered for readability only;
//! writes go straight to the socket, and a write that finds the buffer full
//! (a large forward) registers a duplicate descriptor for writability and
//! waits on that.

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

pub struct QuietUnix {
    read: AsyncFd<UnixStream>,
    /// Registered for writability once a write has found the buffer full.
    write: Option<AsyncFd<OwnedFd>>,
}

impl QuietUnix {
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<QuietUnix> {
        let stream = stream.into_std()?;
        stream.set_nonblocking(true)?;
        Ok(QuietUnix {
            read: register(stream, Interest::READABLE)?,
            write: None,
        })
    }

    /// Writes with `op` until it does not find the buffer full.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match op(self.read.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
            let write = match &mut self.write {
                Some(w) => w,
                None => {
                    let dup = self.read.get_ref().as_fd().try_clone_to_owned()?;
                    self.write.insert(register(dup, Interest::WRITABLE)?)
                }
            };
            let mut guard = ready!(write.poll_write_ready(cx))?;
            // Full when asked: wait for the next edge before trying again.
            guard.clear_ready();
        }
    }
}

/// One `read(2)` into the unfilled part of `buf`, not zeroed first: a
/// reader hands over its whole spare capacity (16 KiB and more), and zeroing
/// it on every read cost more than the read (tokio's own streams do not
/// zero it either).
#[allow(unsafe_code)]
fn read_into(s: &UnixStream, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: `read(2)` writes at most `len` bytes at `ptr`, which is the
    // unfilled part of `buf` (never read here); `assume_init` then covers
    // exactly the bytes it wrote.
    unsafe {
        let unfilled = buf.unfilled_mut();
        let n = libc::read(s.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len());
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        buf.assume_init(n);
        buf.advance(n);
        Ok(n)
    }
}

/// Registers a descriptor this process owns with the runtime's reactor.
#[allow(unsafe_code)]
fn register<T: AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `UnixStream` and `OwnedFd` own their descriptor, which stays
    // open and the same until they are dropped, with the `AsyncFd`; nothing
    // here swaps it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

impl AsyncRead for QuietUnix {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            let wanted = buf.remaining();
            match guard.try_io(|s| read_into(s.get_ref(), buf)) {
                Ok(Ok(n)) => {
                    // Less than asked for: the socket is drained (as tokio's
                    // own streams assume), so no read is tried just to
                    // learn it would block. (0 is the end: it stays ready.)
                    if 0 < n && n < wanted {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for QuietUnix {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.read.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// The owner's listener for its siblings' forwards, handing out [`QuietUnix`]
/// connections.
pub struct QuietUnixListener(pub tokio::net::UnixListener);

impl axum::serve::Listener for QuietUnixListener {
    type Io = QuietUnix;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (QuietUnix, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, addr)) => match QuietUnix::new(s) {
                    Ok(s) => return (s, addr),
                    Err(e) => tracing::warn!(error = %e, "cannot set up a forwarding connection"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a forwarding connection failed");
                    // Out of descriptors, say: let some close first.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both ways, small and far larger than the socket buffers (the writer
    /// waits for room; nothing is lost or reordered), then end of stream.
    #[tokio::test]
    async fn carries_everything_both_ways() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (mut a, mut b) = (QuietUnix::new(a).unwrap(), QuietUnix::new(b).unwrap());
        a.write_all(b"ping").await.unwrap();
        let mut small = [0u8; 4];
        b.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"ping");
        let big: Vec<u8> = (0..(8 << 20)).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            b.write_all(&sent).await.unwrap();
            b.shutdown().await.unwrap();
            b
        });
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        assert!(
            got == big,
            "{} of {} bytes, or reordered",
            got.len(),
            big.len()
        );
        writer.await.unwrap();
    }
}

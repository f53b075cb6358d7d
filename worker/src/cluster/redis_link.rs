//! The pub/sub forward's own Redis connections: RESP2 read and written
//! directly on a socket, for the two commands on the forwarding hot path
//! (`PUBLISH`, and the messages of `SUBSCRIBE`/`PSUBSCRIBE`). Everything else
//! (ownership scripts, heartbeats, events) uses the `redis` crate.
//!
//! Why: a forwarded request is two messages (request, answer), each one
//! `PUBLISH` and one delivery. Through the `redis` crate's multiplexed
//! connection and pub/sub stream they cost about 25k instructions per forward
//! (a parser built of combinators, a `Value` tree, a driver task a command is
//! handed to and answered from); this link writes a `PUBLISH` from the calling
//! task and reads a message as slices of the bytes read, with no copy of the
//! payload.
//!
//! Address and credentials come from the same `REDIS_URL`, parsed by the
//! `redis` crate.

use super::quiet_unix::QuietUnix;
use bytes::{Bytes, BytesMut};
use redis::{ConnectionAddr, IntoConnectionInfo};
use std::io;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Largest bulk string accepted (Redis's own limit is 512 MiB).
const MAX_BULK: usize = 512 << 20;
/// Largest array accepted: pub/sub frames have three or four elements.
const MAX_ARRAY: usize = 1024;
/// Arrays within arrays: pub/sub frames are flat.
const MAX_DEPTH: u8 = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One RESP2 value, its strings as views of the bytes read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Int(i64),
    Bulk(Bytes),
    Nil,
    Array(Vec<Frame>),
}

/// Bytes that are not RESP2 (or exceed the limits above).
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

/// A frame's shape with offsets, found in one pass before any allocation.
enum Shape {
    Simple(usize, usize),
    Error(usize, usize),
    Int(i64),
    Bulk(usize, usize),
    Nil,
    Array(Vec<Shape>),
}

/// The end of the line starting at `pos` (the index of its `\r`).
fn line_end(b: &[u8], pos: usize) -> Option<usize> {
    let i = pos + memchr::memchr(b'\r', b.get(pos..)?)?;
    (b.get(i + 1)? == &b'\n').then_some(i)
}

fn int(text: &[u8]) -> Result<i64, ProtocolError> {
    const NAN: ProtocolError = ProtocolError("not a number");
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(NAN); // 18 digits cannot overflow an i64
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(NAN);
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Ok(if negative { -n } else { n })
}

/// The frame at `pos`, and where the next one starts; `None`: incomplete.
fn scan(b: &[u8], pos: usize, depth: u8) -> Result<Option<(Shape, usize)>, ProtocolError> {
    let Some(&kind) = b.get(pos) else {
        return Ok(None);
    };
    let Some(end) = line_end(b, pos + 1) else {
        return Ok(None);
    };
    let (start, next) = (pos + 1, end + 2);
    Ok(Some(match kind {
        b'+' => (Shape::Simple(start, end), next),
        b'-' => (Shape::Error(start, end), next),
        b':' => (Shape::Int(int(&b[start..end])?), next),
        b'$' => match int(&b[start..end])? {
            -1 => (Shape::Nil, next),
            n if (0..=MAX_BULK as i64).contains(&n) => {
                let stop = next + n as usize;
                match b.get(stop..stop + 2) {
                    None => return Ok(None),
                    Some(b"\r\n") => (Shape::Bulk(next, stop), stop + 2),
                    Some(_) => return Err(ProtocolError("bulk string without its CRLF")),
                }
            }
            _ => return Err(ProtocolError("bad bulk string length")),
        },
        b'*' => match int(&b[start..end])? {
            -1 => (Shape::Nil, next),
            n if (0..=MAX_ARRAY as i64).contains(&n) => {
                if depth >= MAX_DEPTH {
                    return Err(ProtocolError("arrays nested too deep"));
                }
                let mut items = Vec::with_capacity(n as usize);
                let mut at = next;
                for _ in 0..n {
                    match scan(b, at, depth + 1)? {
                        Some((s, after)) => {
                            items.push(s);
                            at = after;
                        }
                        None => return Ok(None),
                    }
                }
                (Shape::Array(items), at)
            }
            _ => return Err(ProtocolError("bad array length")),
        },
        _ => return Err(ProtocolError("unknown frame type")),
    }))
}

fn build(s: Shape, b: &Bytes) -> Frame {
    match s {
        Shape::Simple(x, y) => Frame::Simple(b.slice(x..y)),
        Shape::Error(x, y) => Frame::Error(b.slice(x..y)),
        Shape::Int(n) => Frame::Int(n),
        Shape::Bulk(x, y) => Frame::Bulk(b.slice(x..y)),
        Shape::Nil => Frame::Nil,
        Shape::Array(items) => Frame::Array(items.into_iter().map(|s| build(s, b)).collect()),
    }
}

/// Takes one complete frame off the front of `buf`; `Ok(None)`: more bytes needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
    let Some((shape, len)) = scan(buf, 0, 0)? else {
        return Ok(None);
    };
    let bytes = buf.split_to(len).freeze();
    Ok(Some(build(shape, &bytes)))
}

/// A command as RESP2: an array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, args);
    out
}

/// [`encode`], appended to `out`.
pub fn encode_into(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.reserve(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    let head = |prefix: u8, n: usize, out: &mut Vec<u8>| {
        out.push(prefix);
        fleetgate_http1::push_decimal(out, n as u64);
        out.extend_from_slice(b"\r\n");
    };
    head(b'*', args.len(), out);
    for a in args {
        head(b'$', a.len(), out);
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A connection's reading half with its buffer.
pub struct Reader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R) -> Self {
        Reader {
            io,
            buf: BytesMut::with_capacity(16 << 10),
        }
    }

    /// The next frame; an error when the connection closed or spoke nonsense.
    pub async fn next(&mut self) -> io::Result<Frame> {
        loop {
            match decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(ProtocolError(why)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why))
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 << 10);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Where and as whom to connect: read from `REDIS_URL`.
#[derive(Clone, Debug)]
pub struct Target {
    addr: ConnectionAddr,
    username: Option<String>,
    password: Option<String>,
}

/// A connected socket, TCP or Unix (the HTTP client's notion of one).
pub type Stream = Box<dyn fleetgate_http1::Io>;

impl Target {
    pub fn from_url(url: &str) -> Result<Target, String> {
        let info = url
            .into_connection_info()
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        let addr = info.addr().clone();
        if !matches!(addr, ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_)) {
            return Err("REDIS_URL: only redis:// and unix:// are supported".into());
        }
        let r = info.redis_settings();
        Ok(Target {
            addr,
            username: r.username().map(str::to_owned),
            password: r.password().map(str::to_owned),
        })
    }

    /// A new connection, authenticated when the URL has credentials.
    pub async fn connect(
        &self,
    ) -> io::Result<(
        Reader<tokio::io::ReadHalf<Stream>>,
        tokio::io::WriteHalf<Stream>,
    )> {
        let io = tokio::time::timeout(CONNECT_TIMEOUT, async {
            match &self.addr {
                ConnectionAddr::Tcp(host, port) => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Box::new(s) as Stream)
                }
                // Registered for readability only: a Unix socket raises
                // `EPOLLOUT` each time Redis reads what was written, which
                // would wake the worker once more after every `PUBLISH`.
                ConnectionAddr::Unix(path) => {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok(Box::new(QuietUnix::new(s)?) as Stream)
                }
                _ => Err(io::Error::other("unsupported Redis address")),
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting to Redis timed out"))??;
        let (r, mut w) = tokio::io::split(io);
        let mut r = Reader::new(r);
        if let Some(pass) = &self.password {
            let cmd = match &self.username {
                Some(user) => encode(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
                None => encode(&[b"AUTH", pass.as_bytes()]),
            };
            w.write_all(&cmd).await?;
            match tokio::time::timeout(CONNECT_TIMEOUT, r.next()).await {
                Ok(Ok(Frame::Simple(_))) => {}
                Ok(Ok(Frame::Error(e))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("Redis refused AUTH: {}", String::from_utf8_lossy(&e)),
                    ))
                }
                Ok(Ok(_)) => return Err(io::Error::other("unexpected answer to AUTH")),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer to AUTH")),
            }
        }
        Ok((r, w))
    }
}

/// A publishing connection: its writing half, and the task that watches the
/// reading half for the connection's end.
struct Open {
    w: tokio::io::WriteHalf<Stream>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Commands queued for one write, and that write's outcome once it is made
/// (each caller whose command is in the batch gets it).
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    outcome: Arc<OnceLock<Result<(), PublishError>>>,
}

/// Why a `PUBLISH` was not written.
#[derive(Clone)]
pub enum PublishError {
    /// No connection to Redis.
    Io(Arc<io::Error>),
    /// Redis is up but refuses to turn replies off (its ACL denies `CLIENT`):
    /// a configuration to change, said once in the log and to each caller.
    Refused(Arc<str>),
}

/// How long a refusal is believed before the next connection asks again.
const REFUSAL_RETRY: Duration = Duration::from_secs(10);

/// One connection for `PUBLISH`, opened on first use and again after a
/// failure, with replies turned off (`CLIENT REPLY OFF`): a command is one
/// write by its caller and nothing comes back. Each reply would cost Redis a
/// write and the worker a wake-up and a read, on both sides of every forward,
/// and the one thing it says, how many subscribers got the message, is asked
/// only when an answer is slow (`pubsub::check_owners`: `PUBSUB NUMSUB`).
pub struct Publisher {
    target: Target,
    conn: tokio::sync::Mutex<Option<Open>>,
    /// Commands not yet written: each caller appends its own, and whoever
    /// holds the connection next writes all there are in one write.
    queued: Mutex<Batch>,
    refused: Mutex<Option<(Instant, Arc<str>)>>,
}

impl Publisher {
    pub fn new(target: Target) -> Publisher {
        Publisher {
            target,
            conn: tokio::sync::Mutex::new(None),
            queued: Mutex::default(),
            refused: Mutex::new(None),
        }
    }

    /// The refusal Redis gave less than [`REFUSAL_RETRY`] ago.
    fn refusal(&self) -> Option<Arc<str>> {
        let r = self.refused.lock().ok()?;
        r.as_ref()
            .filter(|(at, _)| at.elapsed() < REFUSAL_RETRY)
            .map(|(_, why)| why.clone())
    }

    /// A new connection that Redis will not answer.
    async fn open(&self) -> Result<Open, PublishError> {
        let opened = self.try_open().await;
        if let Err(PublishError::Refused(why)) = &opened {
            tracing::error!(error = %why, "cannot forward over Redis pub/sub");
            if let Ok(mut r) = self.refused.lock() {
                *r = Some((Instant::now(), why.clone()));
            }
        }
        opened
    }

    async fn try_open(&self) -> Result<Open, PublishError> {
        let io = |e| PublishError::Io(Arc::new(e));
        let (mut r, mut w) = self.target.connect().await.map_err(io)?;
        // `CLIENT REPLY OFF` has no reply when it works; `ON` answers +OK. An
        // error instead: this Redis does not let clients turn replies off.
        let mut probe = encode(&[b"CLIENT", b"REPLY", b"OFF"]);
        probe.extend_from_slice(&encode(&[b"CLIENT", b"REPLY", b"ON"]));
        w.write_all(&probe).await.map_err(io)?;
        match tokio::time::timeout(CONNECT_TIMEOUT, r.next()).await {
            Ok(Ok(Frame::Simple(_))) => {}
            Ok(Ok(Frame::Error(e))) => {
                return Err(PublishError::Refused(
                    format!(
                        "Redis refuses CLIENT REPLY ({}), which AFFINITY_FORWARD=pubsub needs; use AFFINITY_FORWARD=http",
                        String::from_utf8_lossy(&e)
                    )
                    .into(),
                ))
            }
            Ok(Ok(other)) => {
                let why = format!("unexpected answer to CLIENT REPLY: {other:?}");
                return Err(io(io::Error::other(why)));
            }
            Ok(Err(e)) => return Err(io(e)),
            Err(_) => {
                let why = "no answer to CLIENT REPLY";
                return Err(io(io::Error::new(io::ErrorKind::TimedOut, why)));
            }
        }
        w.write_all(&encode(&[b"CLIENT", b"REPLY", b"OFF"]))
            .await
            .map_err(io)?;
        // Nothing more arrives; the read ends when the connection does.
        let watch = tokio::spawn(async move {
            while let Ok(f) = r.next().await {
                tracing::warn!(frame = ?f, "unexpected data on the Redis publishing connection");
            }
        });
        Ok(Open { w, watch })
    }

    /// `PUBLISH channel payload`, written (Redis does not say whether anyone
    /// received it). Under load, the commands of the forwards that are ready
    /// together go out in one write (one syscall here, one read in Redis):
    /// the caller queues its command and lets the other ready tasks run
    /// ([`requeue`]), so that they queue theirs, before it writes what is
    /// queued; a caller that finds the queue already written is done.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), PublishError> {
        if let Some(why) = self.refusal() {
            return Err(PublishError::Refused(why));
        }
        let outcome = {
            let mut q = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
            encode_into(&mut q.bytes, &[b"PUBLISH", channel.as_bytes(), payload]);
            q.outcome.clone()
        };
        requeue().await;
        let mut conn = self.conn.lock().await;
        if let Some(done) = outcome.get() {
            return done.clone(); // written by another caller, with its own
        }
        let batch =
            std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner));
        if !Arc::ptr_eq(&batch.outcome, &outcome) {
            // This command's batch was taken by a caller that was cancelled
            // before it wrote it: it is lost. The batch taken here is others'.
            let done = self.write(&mut conn, &batch.bytes).await;
            let _ = batch.outcome.set(done);
            let lost = io::Error::other("the write of this PUBLISH was abandoned");
            return Err(PublishError::Io(Arc::new(lost)));
        }
        // Not written yet: the batch being filled is the one this command is in.
        let done = self.write(&mut conn, &batch.bytes).await;
        let _ = batch.outcome.set(done.clone());
        done
    }

    /// Writes `bytes` on the connection, opened first if need be.
    /// The connection is out of `conn` while it is written to: a write
    /// cancelled halfway (the caller's deadline) drops it, and with it the
    /// half-written command, instead of leaving it to garble the next one.
    async fn write(&self, conn: &mut Option<Open>, bytes: &[u8]) -> Result<(), PublishError> {
        let mut open = match conn.take() {
            Some(open) if !open.watch.is_finished() => open,
            _ => self.open().await?,
        };
        match open.w.write_all(bytes).await {
            Ok(()) => {
                *conn = Some(open);
                Ok(())
            }
            Err(e) => Err(PublishError::Io(Arc::new(e))),
        }
    }
}

/// A message received on a subscribed connection.
pub struct Message {
    pub channel: Bytes,
    pub payload: Bytes,
}

/// A subscribed connection: channels and patterns subscribed at once.
pub struct Subscriber {
    r: Reader<tokio::io::ReadHalf<Stream>>,
    /// Kept open: closing the writing half would end the subscription.
    _w: tokio::io::WriteHalf<Stream>,
}

impl Subscriber {
    pub async fn open(target: &Target, channel: &str, pattern: &str) -> io::Result<Subscriber> {
        let (mut r, mut w) = target.connect().await?;
        let mut cmds = encode(&[b"SUBSCRIBE", channel.as_bytes()]);
        cmds.extend_from_slice(&encode(&[b"PSUBSCRIBE", pattern.as_bytes()]));
        w.write_all(&cmds).await?;
        for kind in [&b"subscribe"[..], b"psubscribe"] {
            let confirmed = tokio::time::timeout(CONNECT_TIMEOUT, r.next())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer to SUBSCRIBE"))??;
            match confirmed {
                Frame::Array(items)
                    if items.first() == Some(&Frame::Bulk(Bytes::from_static(kind))) => {}
                Frame::Error(e) => {
                    return Err(io::Error::other(format!(
                        "Redis refused to subscribe: {}",
                        String::from_utf8_lossy(&e)
                    )))
                }
                other => {
                    return Err(io::Error::other(format!(
                        "unexpected answer to SUBSCRIBE: {other:?}"
                    )))
                }
            }
        }
        Ok(Subscriber { r, _w: w })
    }

    /// The next message (`message` or `pmessage`); an error when the
    /// connection is gone.
    pub async fn next(&mut self) -> io::Result<Message> {
        loop {
            let Frame::Array(items) = self.r.next().await? else {
                continue;
            };
            let rest = match items.split_first() {
                Some((Frame::Bulk(k), rest)) if k.as_ref() == b"message" => rest,
                Some((Frame::Bulk(k), rest)) if k.as_ref() == b"pmessage" => {
                    rest.get(1..).unwrap_or_default() // after the pattern
                }
                _ => continue, // a later (un)subscribe confirmation, a pong
            };
            match rest {
                [Frame::Bulk(channel), Frame::Bulk(payload)] => {
                    return Ok(Message {
                        channel: channel.clone(),
                        payload: payload.clone(),
                    })
                }
                [_, _] => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed message",
                    ))
                }
            }
        }
    }
}

/// Lets the tasks that are ready now run before the caller goes on: the
/// caller wakes itself and goes to the back of the run queue. Not
/// `tokio::task::yield_now`: that defers the task until the runtime has
/// polled its I/O driver, which is an `epoll_wait` syscall more on every
/// call, on the path of every forward.
async fn requeue() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if queued {
            return Poll::Ready(());
        }
        queued = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Result<Vec<Frame>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = vec![];
        while let Some(f) = decode(&mut buf)? {
            out.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn bulk(s: &'static str) -> Frame {
        Frame::Bulk(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn decodes_every_kind() {
        let got = all(b"+OK\r\n-ERR no\r\n:42\r\n:-1\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$-1\r\n*-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:7\r\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                Frame::Simple(Bytes::from_static(b"OK")),
                Frame::Error(Bytes::from_static(b"ERR no")),
                Frame::Int(42),
                Frame::Int(-1),
                bulk("a\r\nb"),
                bulk(""),
                Frame::Nil,
                Frame::Nil,
                Frame::Array(vec![bulk("x"), Frame::Array(vec![Frame::Int(7)])]),
            ]
        );
    }

    #[test]
    fn waits_for_a_whole_frame_at_every_cut() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n";
        for cut in 0..msg.len() {
            let mut buf = BytesMut::from(&msg[..cut]);
            assert_eq!(decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
            buf.extend_from_slice(&msg[cut..]);
            assert_eq!(
                decode(&mut buf),
                Ok(Some(Frame::Array(vec![
                    bulk("message"),
                    bulk("chan"),
                    bulk("hello")
                ])))
            );
        }
    }

    #[test]
    fn refuses_what_is_not_resp() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*-5\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$99999999999\r\n",
            b"*99999\r\n",
        ] {
            assert!(decode(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_integers() {
        assert_eq!(int(b"0"), Ok(0));
        assert_eq!(int(b"-1"), Ok(-1));
        assert_eq!(int(b"123456789012345678"), Ok(123456789012345678));
        for bad in [&b""[..], b"-", b"+1", b"1 ", b"1234567890123456789", b"--1"] {
            assert!(int(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"PUBLISH", b"ch", b"a\r\nb"]),
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n"
        );
        let mut buf = BytesMut::from(&encode(&[b"x", b""])[..]);
        assert_eq!(
            decode(&mut buf),
            Ok(Some(Frame::Array(vec![bulk("x"), bulk("")])))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode(&mut buf) {}
        }
    }
}

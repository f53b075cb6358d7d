//! The HTTP client under [`crate::client`]: HTTP/1.1 on pooled keep-alive
//! connections, and nothing else.
//!
//! Every upstream call goes through here, so its cost is the gateway's. reqwest
//! (used first) put layers on each request that an MCP upstream call never
//! needs: a redirect policy that re-parsed the URL (IDNA included), a proxy
//! matcher, a retry policy and header copies, about a fifth of a worker's
//! instructions per `tools/call` (callgrind). hyper's connection (used next)
//! runs as a task of its own: each request crossed two channels to reach it
//! and the answer's head and body crossed two more back, and every answer
//! woke two tasks (~16k of a session's ~72k instructions per `tools/call`).
//!
//! Here the caller's task does the exchange itself on a connection it holds
//! while the exchange lasts: it writes the request (head and, when small, body
//! in one write), reads the answer's head (httparse, as hyper does) and reads
//! the body as the caller asks for it (`Content-Length`, chunked, or up to
//! the close). The connection goes back to its pool ([`IdleConnections`])
//! when the body has been read to its end; an answer dropped earlier closes
//! it, so a cancelled call can never leave half an answer for the next.
//!
//! An upstream is reached directly, at its URL: redirects are not followed (a
//! 3xx is an HTTP error naming the upstream) and `HTTP(S)_PROXY` is not read.
//! The same pool and [`send`] carry worker-to-worker forwards.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// What a connection runs on: TCP, a Unix socket, TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// One HTTP/1.1 connection: its stream and what was read from it but not
/// yet used.
pub struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
}

/// Free room below which a read first grows the buffer.
const MIN_READ_ROOM: usize = 4 << 10;
/// How much a read buffer grows by.
const READ_GROWTH: usize = 16 << 10;
/// Largest answer head (status line and headers) accepted.
const MAX_HEAD: usize = 64 << 10;
/// Most headers an answer may have.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_LINE: usize = 4 << 10;
/// Bodies up to this size go out in the same write as the request's head.
const INLINE_BODY: usize = 16 << 10;

impl Conn {
    pub fn new(io: impl Io) -> Conn {
        Conn {
            io: Box::new(io),
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry a request: nothing is readable
    /// on it. A peer that closed it made it readable (end of stream), and
    /// bytes nobody asked for make it unusable. No system call when the
    /// stream is known not readable, which is the usual case.
    fn reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            Pin::new(&mut *self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.reserve(READ_GROWTH);
        }
        // tokio's `read_buf` reads only what is ready: dropping it pending
        // loses nothing.
        let read = self.io.read_buf(&mut self.buf);
        std::pin::pin!(read).poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Writes the request and reads the answer's head (1xx heads skipped).
    async fn exchange(&mut self, req: &Encoded<'_>) -> Result<Head, Failure> {
        let written = async {
            self.io.write_all(&req.head).await?;
            self.io.write_all(req.rest).await?;
            self.io.flush().await
        }
        .await;
        if let Err(e) = written {
            // A server can answer before it has read the whole request and
            // close the connection (413 for a body over its limit): the write
            // fails, and that answer is the one to give. The connection is
            // not used again.
            return match self.read_head().await {
                Ok(head) => Ok(Head {
                    keep_alive: false,
                    ..head
                }),
                Err(_) => Err(Failure::Unanswered(Error::io(
                    "sending the request failed",
                    e,
                ))),
            };
        }
        self.read_head().await
    }

    /// Reads the answer's head (1xx heads skipped).
    async fn read_head(&mut self) -> Result<Head, Failure> {
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                received = true;
                if let Some(head) = parse_head(&mut self.buf).map_err(Failure::Broken)? {
                    if head.status.is_informational() {
                        continue;
                    }
                    return Ok(head);
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(Failure::Broken(Error::new(format!(
                        "the answer's head is larger than {} KiB",
                        MAX_HEAD >> 10
                    ))));
                }
            }
            match self.fill().await {
                Ok(0) if !received => {
                    return Err(Failure::Unanswered(Error::new(
                        "the connection was closed before an answer arrived".to_owned(),
                    )))
                }
                Ok(0) => {
                    return Err(Failure::Broken(Error::new(
                        "the connection was closed in the middle of the answer's head".to_owned(),
                    )))
                }
                Ok(_) => {}
                Err(e) if !received => {
                    return Err(Failure::Unanswered(Error::io(
                        "reading the answer failed",
                        e,
                    )))
                }
                Err(e) => return Err(Failure::Broken(Error::io("reading the answer failed", e))),
            }
        }
    }
}

/// Why an exchange failed.
enum Failure {
    /// Nothing came back: on a connection that had been idle, the peer
    /// closed it in the meantime, and a fresh connection may succeed.
    Unanswered(Error),
    /// The answer broke off or is not HTTP.
    Broken(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Unanswered(e) | Failure::Broken(e) => e,
        }
    }
}

/// An answer's head, and how its body is framed.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this point of a chunk.
    Chunked(Chunk),
    /// Up to the end of the stream (no length, not chunked).
    Close,
    /// Read to its end.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// This many data bytes of the chunk are left.
    Data(u64),
    /// Before the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// Parses a complete head off the front of `buf`; `None` while incomplete.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::new(format!("its answer is not HTTP/1.1: {e}"))),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| Error::new("its answer has an invalid status code".to_owned()))?;
    let http11 = parsed.version == Some(1);
    // Values are slices of the head, kept as it is (not copied one by one).
    let base = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            Error::new(format!(
                "its answer has an invalid header name {:?}",
                h.name
            ))
        })?;
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start, start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end)).map_err(|_| {
            Error::new(format!("its answer has an invalid value for header {name}"))
        })?;
        headers.append(name, value);
    }
    let mut keep_alive = http11;
    for v in headers.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                keep_alive = true;
            }
        }
    }
    let framing = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Done
    } else if let Some(te) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let last = te.to_str().unwrap_or("").rsplit(',').next().unwrap_or("");
        if last.trim().eq_ignore_ascii_case("chunked") {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        }
    } else {
        let mut length = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::new("its answer has an invalid Content-Length".to_owned()))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::new(
                    "its answer has conflicting Content-Length headers".to_owned(),
                ));
            }
            length = Some(n);
        }
        match length {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive,
    }))
}

/// One request as it goes on the wire.
pub struct Request<'a> {
    pub method: &'a Method,
    /// Origin-form: path and query.
    pub target: &'a str,
    /// Host included; framing headers (`Content-Length`, `Transfer-Encoding`,
    /// `Connection`…) are this module's and are not copied from here.
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// A request's bytes: the head, with the body when it is small, and what of
/// the body goes in a second write (empty when it is small).
struct Encoded<'a> {
    head: Vec<u8>,
    rest: &'a [u8],
}

/// Headers that describe a connection or a message's framing: set here.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

impl<'a> Request<'a> {
    fn encode(&self) -> Encoded<'a> {
        let inlined = self.body.len() <= INLINE_BODY;
        let mut head = Vec::with_capacity(256 + if inlined { self.body.len() } else { 0 });
        for part in [self.method.as_str(), " ", self.target, " HTTP/1.1\r\n"] {
            head.extend_from_slice(part.as_bytes());
        }
        for (name, value) in self.headers {
            if hop_by_hop(name) {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        let bodiless = matches!(*self.method, Method::GET | Method::HEAD | Method::DELETE);
        if !self.body.is_empty() || !bodiless {
            head.extend_from_slice(b"content-length: ");
            push_decimal(&mut head, self.body.len() as u64);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        if inlined {
            head.extend_from_slice(self.body);
        }
        Encoded {
            head,
            rest: if inlined { &[] } else { self.body },
        }
    }
}

/// Appends `n` in decimal (no formatting machinery: every request has a
/// length to write).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Idle keep-alive HTTP/1.1 connections by where they lead (an origin, a
/// worker's socket): a request reuses one instead of paying a connect.
pub struct IdleConnections {
    idle: Mutex<foldhash::HashMap<String, Vec<(Conn, Instant)>>>,
    max_per_key: usize,
}

/// How long a connection may sit idle before it is closed rather than reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl IdleConnections {
    /// Keeps at most `max_per_key` idle connections per key; more are closed.
    pub fn new(max_per_key: usize) -> IdleConnections {
        IdleConnections {
            idle: Mutex::new(foldhash::HashMap::default()),
            max_per_key,
        }
    }

    /// The most recently used idle connection for `key` still open.
    fn take(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        while let Some((mut c, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT && c.reusable() {
                return Some(c);
            }
        }
        None
    }

    /// Takes a connection back once its answer has been read in full.
    fn put(&self, key: &str, c: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = idle.get_mut(key) {
            if list.len() < self.max_per_key {
                list.push((c, Instant::now()));
            }
        } else {
            idle.insert(key.to_owned(), vec![(c, Instant::now())]);
        }
    }
}

/// Why [`send`] got no answer.
#[derive(Debug)]
pub enum SendError<E> {
    /// No connection could be opened.
    Connect(E),
    /// The exchange failed before an answer's head arrived.
    Http(Error),
}

/// Sends one request on an idle connection for `key` if there is one, else on
/// a fresh one from `open`. A pooled connection that turns out closed (the
/// peer dropped it while idle) costs one retry on a fresh connection. The
/// answer takes its connection back to `pool` when its body has been read.
pub async fn send<F, Fut, E>(
    pool: &Arc<IdleConnections>,
    key: String,
    open: F,
    request: &Request<'_>,
) -> Result<Response, SendError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Conn, E>>,
{
    let encoded = request.encode();
    if let Some(mut conn) = pool.take(&key) {
        match conn.exchange(&encoded).await {
            Ok(head) => return Ok(Response::new(head, conn, pool.clone(), key)),
            Err(Failure::Unanswered(_)) => {}
            Err(Failure::Broken(e)) => return Err(SendError::Http(e)),
        }
    }
    let mut conn = open().await.map_err(SendError::Connect)?;
    match conn.exchange(&encoded).await {
        Ok(head) => Ok(Response::new(head, conn, pool.clone(), key)),
        Err(f) => Err(SendError::Http(f.into_error())),
    }
}

/// A pooled client; clones share the pool.
#[derive(Clone)]
pub struct Client {
    pool: Arc<IdleConnections>,
    #[cfg(feature = "rustls")]
    tls: hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("net::Client")
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per upstream origin.
const MAX_IDLE_PER_ORIGIN: usize = 256;

impl Client {
    /// Keep-alive connections, idle ones closed after 90 s; `TCP_NODELAY`.
    pub fn new() -> Client {
        Client {
            pool: Arc::new(IdleConnections::new(MAX_IDLE_PER_ORIGIN)),
            #[cfg(feature = "rustls")]
            tls: {
                let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
                http.set_nodelay(true);
                http.set_connect_timeout(Some(CONNECT_TIMEOUT));
                http.enforce_http(false);
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_webpki_roots()
                    .https_only()
                    .enable_http1()
                    .wrap_connector(http)
            },
        }
    }

    pub fn get(&self, uri: impl IntoUri) -> RequestBuilder {
        self.request(Method::GET, uri)
    }

    pub fn post(&self, uri: impl IntoUri) -> RequestBuilder {
        self.request(Method::POST, uri)
    }

    pub fn delete(&self, uri: impl IntoUri) -> RequestBuilder {
        self.request(Method::DELETE, uri)
    }

    fn request(&self, method: Method, uri: impl IntoUri) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            uri: uri.into_uri(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, Error> {
        let host = uri.host().unwrap_or("");
        match uri.scheme_str() {
            Some("http") => {
                let port = uri.port_u16().unwrap_or(80);
                // `[::1]` names an address, `::1` is what connect takes.
                let ip_host = host.trim_start_matches('[').trim_end_matches(']');
                let stream = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect((ip_host, port)),
                )
                .await
                .map_err(|_| {
                    Error::new(format!(
                        "connecting to {host}:{port} took longer than {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|e| Error::io(&format!("connecting to {host}:{port} failed"), e))?;
                stream
                    .set_nodelay(true)
                    .map_err(|e| Error::io("setting TCP_NODELAY failed", e))?;
                Ok(Conn::new(stream))
            }
            #[cfg(feature = "rustls")]
            Some("https") => {
                use tower_service::Service;
                let mut tls = self.tls.clone();
                let io = tls.call(uri.clone()).await.map_err(|e| {
                    let e: Box<dyn std::error::Error + Send + Sync> = e;
                    Error::from_source(&*e)
                })?;
                Ok(Conn::new(hyper_util::rt::TokioIo::new(io)))
            }
            #[cfg(not(feature = "rustls"))]
            Some("https") => Err(Error::new(
                "https:// upstreams need fleetgate built with the `rustls` feature".to_owned(),
            )),
            other => Err(Error::new(format!(
                "unsupported URL scheme {:?}: use http:// or https://",
                other.unwrap_or("")
            ))),
        }
    }
}

/// What can name a request's target.
pub trait IntoUri {
    fn into_uri(self) -> Result<Uri, Error>;
}

impl IntoUri for &Uri {
    fn into_uri(self) -> Result<Uri, Error> {
        Ok(self.clone())
    }
}

impl IntoUri for &str {
    fn into_uri(self) -> Result<Uri, Error> {
        parse_uri(self)
    }
}

impl IntoUri for &String {
    fn into_uri(self) -> Result<Uri, Error> {
        parse_uri(self)
    }
}

/// An absolute `http`/`https` URI.
pub fn parse_uri(s: &str) -> Result<Uri, Error> {
    let uri: Uri = s
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::new(format!("not a valid URL: {e}")))?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(Error::new(format!("not an absolute URL: {s:?}")));
    }
    Ok(uri)
}

/// One request, built.
pub struct RequestBuilder {
    client: Client,
    method: Method,
    uri: Result<Uri, Error>,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestBuilder {
    /// The request's headers (Host and Content-Length are set here).
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub async fn send(self) -> Result<Response, Error> {
        let uri = self.uri?;
        let authority = uri.authority().map_or("", |a| a.as_str());
        let scheme = uri.scheme_str().unwrap_or("http");
        // The pool's key, `scheme://authority` (pushed, not `format!`ed: this
        // runs on every upstream call).
        let mut key = String::with_capacity(scheme.len() + 3 + authority.len());
        for part in [scheme, "://", authority] {
            key.push_str(part);
        }
        // Origin-form on the wire, the authority (less any userinfo) as Host.
        let mut headers = self.headers;
        if !headers.contains_key(header::HOST) {
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let host =
                HeaderValue::from_str(host).map_err(|e| Error::new(format!("bad host: {e}")))?;
            headers.insert(header::HOST, host);
        }
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let request = Request {
            method: &self.method,
            target,
            headers: &headers,
            body: &self.body,
        };
        let client = &self.client;
        // Boxed: connecting is a large future, needed only when no pooled
        // connection is idle; inline, every request's future would carry it.
        let open = || Box::pin(client.connect(&uri));
        match send(&client.pool, key, open, &request).await {
            Ok(resp) => Ok(resp),
            Err(SendError::Connect(e) | SendError::Http(e)) => Err(e),
        }
    }
}

/// An answer, its body read as it comes. Its connection goes back to the pool
/// as soon as the body has been read to its end (dropped earlier, it is
/// closed).
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
    conn: Option<Conn>,
    /// The pool and key the connection goes back to (taken when it does).
    home: Option<(Arc<IdleConnections>, String)>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .finish()
    }
}

impl Response {
    fn new(head: Head, conn: Conn, pool: Arc<IdleConnections>, key: String) -> Response {
        let mut resp = Response {
            status: head.status,
            headers: head.headers,
            framing: head.framing,
            keep_alive: head.keep_alive,
            conn: Some(conn),
            home: Some((pool, key)),
        };
        if resp.framing == Framing::Done {
            resp.finished();
        }
        resp
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The `Content-Length` the answer announces.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// The whole body, at most `limit` bytes of it.
    pub async fn bytes(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        let Some(first) = self.chunk().await.map_err(BodyError::Broken)? else {
            return Ok(Bytes::new());
        };
        // Usually the whole body comes in one piece: kept, not copied.
        let mut pieces = Vec::new();
        let mut len = first.len();
        loop {
            if len > limit {
                return Err(BodyError::TooLarge);
            }
            let Some(c) = self.chunk().await.map_err(BodyError::Broken)? else {
                break;
            };
            len += c.len();
            if pieces.is_empty() {
                pieces.extend_from_slice(&first);
            }
            pieces.extend_from_slice(&c);
        }
        Ok(if pieces.is_empty() {
            first
        } else {
            Bytes::from(pieces)
        })
    }

    /// The body read to its end: the connection goes home if it may.
    fn finished(&mut self) {
        self.framing = Framing::Done;
        let conn = self.conn.take();
        if let (Some(conn), Some((pool, key)), true) = (conn, self.home.take(), self.keep_alive) {
            if conn.buf.is_empty() {
                pool.put(&key, conn);
            }
        }
    }

    fn broken(&mut self, e: Error) -> Poll<Result<Option<Bytes>, Error>> {
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Err(e))
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            let buf = &mut conn.buf;
            // What the buffered bytes allow: data, a new state, or a read.
            let step = match self.framing {
                Framing::Done => Step::End,
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) if !buf.is_empty() => {
                    let n = (buf.len() as u64).min(left);
                    let data = buf.split_to(n as usize).freeze();
                    let left = left - n;
                    self.framing = match self.framing {
                        Framing::Length(_) if left == 0 => Framing::Done,
                        Framing::Length(_) => Framing::Length(left),
                        _ if left == 0 => Framing::Chunked(Chunk::DataEnd),
                        _ => Framing::Chunked(Chunk::Data(left)),
                    };
                    Step::Data(data)
                }
                Framing::Close if !buf.is_empty() => Step::Data(buf.split().freeze()),
                Framing::Length(_) | Framing::Chunked(Chunk::Data(_)) | Framing::Close => {
                    Step::Read
                }
                Framing::Chunked(at) => match take_line(buf) {
                    Err(e) => Step::Broken(e),
                    Ok(None) => Step::Read,
                    Ok(Some(line)) => match at {
                        Chunk::Size => match chunk_size(&line) {
                            Some(0) => Step::Next(Framing::Chunked(Chunk::Trailers)),
                            Some(n) => Step::Next(Framing::Chunked(Chunk::Data(n))),
                            None => Step::Broken(Error::new(
                                "its chunked body has an invalid chunk size".to_owned(),
                            )),
                        },
                        Chunk::DataEnd if line.is_empty() => {
                            Step::Next(Framing::Chunked(Chunk::Size))
                        }
                        Chunk::DataEnd => Step::Broken(Error::new(
                            "its chunked body has data past a chunk's size".to_owned(),
                        )),
                        Chunk::Trailers if line.is_empty() => Step::Next(Framing::Done),
                        // A trailer line, skipped (data was taken above).
                        Chunk::Trailers | Chunk::Data(_) => Step::Next(self.framing),
                    },
                },
            };
            match step {
                Step::Data(data) => {
                    if self.framing == Framing::Done {
                        self.finished();
                    }
                    return Poll::Ready(Ok(Some(data)));
                }
                Step::Next(framing) => self.framing = framing,
                Step::End => {
                    self.finished();
                    return Poll::Ready(Ok(None));
                }
                Step::Broken(e) => return self.broken(e),
                Step::Read => match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) if self.framing == Framing::Close => {
                        self.keep_alive = false;
                        self.finished();
                        return Poll::Ready(Ok(None));
                    }
                    Poll::Ready(Ok(0)) => {
                        return self.broken(Error::new(
                            "the connection was closed before the answer's body ended".to_owned(),
                        ))
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => {
                        return self.broken(Error::io("reading the answer's body failed", e))
                    }
                },
            }
        }
    }
}

/// One step of reading a body.
enum Step {
    Data(Bytes),
    Next(Framing),
    Read,
    End,
    Broken(Error),
}

/// A complete line off the front of `buf` (without its CRLF or LF).
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(Error::new(format!(
            "its chunked body has a line longer than {} KiB",
            MAX_LINE >> 10
        ))),
        None => Ok(None),
    }
}

/// The size on a chunk-size line (hex, extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = std::str::from_utf8(&line[..end])
        .ok()?
        .trim_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Why [`Response::bytes`] gave no body.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit.
    TooLarge,
    /// The body broke off.
    Broken(Error),
}

/// The answer as a body for a response of our own (a relayed stream).
impl http_body::Body for Response {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        self.get_mut()
            .poll_chunk(cx)
            .map(|r| r.transpose().map(|r| r.map(http_body::Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }
}

/// A request that got no answer, or an answer whose body broke off.
#[derive(Debug)]
pub struct Error {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    fn new(message: String) -> Error {
        Error {
            message,
            source: None,
        }
    }

    fn io(during: &str, e: io::Error) -> Error {
        Error {
            message: format!("{during}: {e}"),
            source: None,
        }
    }

    /// Keeps the error's text and its sources'.
    #[cfg(feature = "rustls")]
    fn from_source(e: &(dyn std::error::Error + 'static)) -> Error {
        let mut causes = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        Error {
            message: e.to_string(),
            source: (!causes.is_empty()).then(|| causes.join(": ").into()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A server that answers each request on a connection with the next of
    /// `answers` (raw bytes), after reading the request's head and body.
    async fn raw_server(
        answers: Vec<&'static [u8]>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            let mut seen = Vec::new();
            for answer in answers {
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                r.read_exact(&mut body).await.unwrap();
                seen.push(head + &String::from_utf8(body).unwrap());
                w.write_all(answer).await.unwrap();
            }
            seen
        });
        (url, task)
    }

    /// Accepts one connection, reads a request off it, writes `answer` and
    /// closes it.
    async fn answer_once(listener: &TcpListener, answer: &[u8]) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(answer).await.unwrap();
    }

    async fn body_of(resp: &mut Response) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(c) = resp.chunk().await.unwrap() {
            all.extend_from_slice(&c);
        }
        all
    }

    #[tokio::test]
    async fn length_and_chunked_bodies_on_one_kept_alive_connection() {
        let (url, server) = raw_server(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: t\r\n\r\n",
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let client = Client::new();
        let mut r = client.post(&url).body("one").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(body_of(&mut r).await, b"hello");
        let mut r = client.post(&url).body("two").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(body_of(&mut r).await, b"abc0123456789abcdef");
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        drop(r);
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3, "all three on one connection: {seen:?}");
        assert!(seen[0].starts_with("POST /mcp HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[0].contains("content-length: 3\r\n") && seen[0].ends_with("\r\n\r\none"));
        assert!(
            seen[2].starts_with("GET /mcp HTTP/1.1\r\n") && !seen[2].contains("content-length")
        );
    }

    #[tokio::test]
    async fn an_answer_given_before_the_body_was_read_is_the_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        // Reads the head, refuses the body and closes with most of it unread
        // (which resets the connection while the client still writes).
        tokio::spawn(async move {
            let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\n\r\ntoo large";
            answer_once(&listener, answer).await;
        });
        let client = Client::new();
        let body = vec![b'x'; 64 << 20]; // more than loopback buffers take
        let mut r = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body_of(&mut r).await, b"too large");
    }

    #[tokio::test]
    async fn an_answer_dropped_early_closes_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                n += 1;
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(k) = s.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789")
                            .await;
                    }
                });
            }
            n
        });
        let client = Client::new();
        let r = client.post(&url).send().await.unwrap();
        drop(r); // body unread: the connection cannot carry another request
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"0123456789");
        let mut r = client.post(&url).send().await.unwrap(); // reuses the second
        assert_eq!(body_of(&mut r).await, b"0123456789");
        assert_eq!(accepted.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_and_a_close_delimited_body_is_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            // First connection: one answer, then closed while idle.
            answer_once(&listener, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            // Second: an answer delimited by the close.
            answer_once(&listener, b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
        });
        let client = Client::new();
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"until the end");
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_unanswered_is_retried_once_on_a_fresh_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            // One answer; the next request is read and the connection closed
            // unanswered (a keep-alive timeout racing the request).
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            drop(s);
            answer_once(
                &listener,
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh",
            )
            .await;
            // A fresh connection that closes unanswered is an error, not retried.
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
        });
        let client = Client::new();
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"first");
        let mut r = client.post(&url).send().await.unwrap();
        assert_eq!(body_of(&mut r).await, b"fresh");
        drop(r); // not kept: the server closes it
        let e = client.post(&url).send().await.unwrap_err();
        assert!(e.to_string().contains("closed before an answer"), "{e}");
    }

    #[tokio::test]
    async fn broken_answers_are_errors_not_bodies() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            b"SMTP ready\r\n\r\n",
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            tokio::spawn(async move { answer_once(&listener, answer).await });
            let outcome = match Client::new().post(&url).send().await {
                Err(e) => Err(e),
                Ok(mut r) => r.bytes(1 << 20).await.map_err(|e| match e {
                    BodyError::Broken(e) => e,
                    BodyError::TooLarge => panic!("not too large"),
                }),
            };
            assert!(
                outcome.is_err(),
                "{:?} gave {outcome:?}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn writes_lengths_in_decimal() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = vec![];
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn hop_by_hop_headers_from_the_caller_are_not_sent() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("up:1"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-pass", HeaderValue::from_static("yes"));
        let req = Request {
            method: &Method::POST,
            target: "/mcp?x=1",
            headers: &h,
            body: b"{}",
        };
        let e = req.encode();
        assert_eq!(
            String::from_utf8(e.head).unwrap(),
            "POST /mcp?x=1 HTTP/1.1\r\nhost: up:1\r\nx-pass: yes\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}

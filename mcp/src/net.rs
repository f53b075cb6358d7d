//! The HTTP client under [`crate::client`]: HTTP/1.1 keep-alive connections
//! from hyper, pooled here, and nothing else.
//!
//! Every upstream call goes through here, so its cost is the gateway's. reqwest
//! (used before) put layers on each request that an MCP upstream call never
//! needs: a redirect policy that re-parsed the URL (IDNA included), a proxy
//! matcher, a retry policy and header copies, about a fifth of a worker's
//! instructions per `tools/call` (callgrind). hyper-util's pooled client (used
//! next) still hashed the origin with SipHash several times per request and
//! spawned a task per request to return the connection to its pool; the pool
//! here ([`IdleConnections`]) takes a connection back when its answer has been
//! read. An upstream is reached directly, at its URL: redirects are not
//! followed (a 3xx is an HTTP error naming the upstream) and `HTTP(S)_PROXY`
//! is not read.
//!
//! The same pool and [`send`] carry worker-to-worker forwards.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tower_service::Service;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// The sending half of one HTTP/1.1 connection.
pub type Sender = http1::SendRequest<Full<Bytes>>;

/// Idle keep-alive HTTP/1.1 connections by where they lead (an origin, a
/// worker's socket): a request reuses one instead of paying a connect, a
/// handshake and a new connection task.
pub struct IdleConnections {
    idle: Mutex<foldhash::HashMap<String, Vec<(Sender, Instant)>>>,
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
    fn take(&self, key: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        while let Some((s, since)) = list.pop() {
            if !s.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(s);
            }
        }
        None
    }

    /// Gives a connection back once its answer has been read in full.
    pub fn put(&self, key: &str, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = idle.get_mut(key) {
            if list.len() < self.max_per_key {
                list.push((s, Instant::now()));
            }
        } else {
            idle.insert(key.to_owned(), vec![(s, Instant::now())]);
        }
    }
}

/// Starts HTTP/1.1 on a fresh connection; the connection runs as its own task.
pub async fn handshake<T>(io: T) -> Result<Sender, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Why [`send`] got no answer.
#[derive(Debug)]
pub enum SendError<E> {
    /// No connection could be opened.
    Connect(E),
    /// The connection failed before an answer's head arrived.
    Http(hyper::Error),
}

/// Sends one request on an idle connection for `key` if there is one, else on
/// a fresh one from `open`. A pooled connection that turns out closed (the
/// peer dropped it while idle) costs one retry on a fresh connection. The
/// connection comes back with the answer: [`IdleConnections::put`] it when
/// the answer's body has been read.
pub async fn send<F, Fut, E>(
    pool: &IdleConnections,
    key: &str,
    open: F,
    request: impl Fn() -> http::Request<Full<Bytes>>,
) -> Result<(http::Response<Incoming>, Sender), SendError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Sender, E>>,
{
    if let Some(mut s) = pool.take(key) {
        let sent = match s.ready().await {
            Ok(()) => s.send_request(request()).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(resp) => return Ok((resp, s)),
            Err(e) if e.is_canceled() || e.is_closed() || e.is_incomplete_message() => {}
            Err(e) => return Err(SendError::Http(e)),
        }
    }
    let mut s = open().await.map_err(SendError::Connect)?;
    match s.send_request(request()).await {
        Ok(resp) => Ok((resp, s)),
        Err(e) => Err(SendError::Http(e)),
    }
}

/// A pooled client; clones share the pool.
#[derive(Clone)]
pub struct Client {
    pool: Arc<IdleConnections>,
    connector: Connector,
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
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        #[cfg(feature = "rustls")]
        let connector = {
            http.enforce_http(false);
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "rustls"))]
        let connector = http;
        Client {
            pool: Arc::new(IdleConnections::new(MAX_IDLE_PER_ORIGIN)),
            connector,
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

    async fn connect(&self, uri: Uri) -> Result<Sender, Error> {
        let mut connector = self.connector.clone();
        let io = connector.call(uri).await.map_err(|e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            Error::from_source(&*e)
        })?;
        handshake(io).await.map_err(|e| Error::from_source(&e))
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
    /// The request's headers (Host and Content-Length are hyper's).
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
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = HeaderValue::from_str(host).map_err(|e| Error::new(format!("bad host: {e}")))?;
        let target = match uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
        let mut headers = self.headers;
        headers.entry(http::header::HOST).or_insert(host);
        let (method, body) = (self.method, self.body);
        let request = || {
            let mut req = http::Request::new(Full::new(body.clone()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = target.clone();
            *req.headers_mut() = headers.clone();
            req
        };
        let client = &self.client;
        // Boxed: connecting is a large future, needed only when no pooled
        // connection is idle; inline, every request's future would carry it.
        let open = || Box::pin(client.connect(uri.clone()));
        match send(&client.pool, &key, open, request).await {
            Ok((resp, sender)) => Ok(Response {
                inner: resp,
                checkin: Some(Checkin {
                    pool: client.pool.clone(),
                    key,
                    sender,
                }),
            }),
            Err(SendError::Connect(e)) => Err(e),
            Err(SendError::Http(e)) => Err(Error::from_source(&e)),
        }
    }
}

/// A connection to give back to its pool once the answer is read.
struct Checkin {
    pool: Arc<IdleConnections>,
    key: String,
    sender: Sender,
}

impl Checkin {
    fn give_back(self) {
        self.pool.put(&self.key, self.sender);
    }
}

/// An answer, its body read as it comes. Its connection goes back to the pool
/// when the body has been read to its end (dropped earlier, it is closed).
pub struct Response {
    inner: http::Response<Incoming>,
    checkin: Option<Checkin>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.inner.status())
            .finish()
    }
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The `Content-Length` the answer announces.
    pub fn content_length(&self) -> Option<u64> {
        self.inner
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.inner.body_mut().frame().await {
                None => {
                    if let Some(c) = self.checkin.take() {
                        c.give_back();
                    }
                    return Ok(None);
                }
                Some(Err(e)) => {
                    self.checkin = None;
                    return Err(Error::from_source(&e));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        // An answer with nothing (left) to read leaves its connection reusable.
        if self.inner.body().is_end_stream() {
            if let Some(c) = self.checkin.take() {
                c.give_back();
            }
        }
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

    /// Keeps the error's text and its sources' (hyper's own say little:
    /// "client error (Connect)"; the cause is further down).
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

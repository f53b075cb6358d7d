//! The HTTP client under [`crate::client`]: hyper's pooled HTTP/1.1 client and
//! nothing else.
//!
//! Every upstream call goes through here, so its cost is the gateway's. reqwest
//! (used before) put layers on each request that an MCP upstream call never
//! needs: a redirect policy that re-parsed the URL (IDNA included), a proxy
//! matcher, a retry policy and header copies, about a fifth of a worker's
//! instructions per `tools/call` (callgrind). An upstream is reached directly,
//! at its URL: redirects are not followed (a 3xx is an HTTP error naming the
//! upstream) and `HTTP(S)_PROXY` is not read.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::time::Duration;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// A pooled client; clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
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
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Client { inner }
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
        let mut req = http::Request::new(Full::new(self.body));
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri?;
        *req.headers_mut() = self.headers;
        match self.client.inner.request(req).await {
            Ok(resp) => Ok(Response(resp)),
            Err(e) => Err(Error::from_source(e)),
        }
    }
}

/// An answer, its body read as it comes.
#[derive(Debug)]
pub struct Response(http::Response<Incoming>);

impl Response {
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.0.headers()
    }

    /// The `Content-Length` the answer announces.
    pub fn content_length(&self) -> Option<u64> {
        self.0
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.0.body_mut().frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(Error::from_source(e)),
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
    fn from_source(e: impl std::error::Error) -> Error {
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

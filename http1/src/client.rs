//! [`Client`]: requests by URL on its own pool, one per origin
//! (`scheme://authority`); connects over TCP, or TLS with the `rustls`
//! feature.

use crate::conn::Conn;
use crate::error::{Error, SendError};
use crate::head::Request;
use crate::pool::IdleConnections;
use crate::response::Response;
use crate::send::send;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Uri};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A pooled client; clones share the pool.
#[derive(Clone)]
pub struct Client {
    pool: Arc<IdleConnections>,
    #[cfg(feature = "rustls")]
    tls: hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fleetgate_http1::Client")
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
    /// Keep-alive connections, idle ones closed after
    /// [`IDLE_TIMEOUT`](crate::IDLE_TIMEOUT); `TCP_NODELAY`.
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
                .map_err(|_| Error::ConnectTimeout {
                    host: host.to_owned(),
                    port,
                    after: CONNECT_TIMEOUT,
                })?
                .map_err(|error| Error::Connect {
                    host: host.to_owned(),
                    port,
                    error,
                })?;
                stream.set_nodelay(true).map_err(Error::NoDelay)?;
                Ok(Conn::new(stream))
            }
            #[cfg(feature = "rustls")]
            Some("https") => {
                use tower_service::Service;
                let mut tls = self.tls.clone();
                let io = tls.call(uri.clone()).await.map_err(|e| {
                    let e: Box<dyn std::error::Error + Send + Sync> = e;
                    Error::tls(&*e)
                })?;
                Ok(Conn::new(hyper_util::rt::TokioIo::new(io)))
            }
            #[cfg(not(feature = "rustls"))]
            Some("https") => Err(Error::HttpsNotBuilt),
            other => Err(Error::UnsupportedScheme(other.unwrap_or("").to_owned())),
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
    let uri: Uri = s.parse().map_err(Error::InvalidUrl)?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(Error::NotAbsolute(s.to_owned()));
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
            let host = HeaderValue::from_str(host).map_err(Error::InvalidHost)?;
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
            Err(SendError::Connect(e) | SendError::Http(e) | SendError::Unanswered(e)) => Err(e),
        }
    }
}

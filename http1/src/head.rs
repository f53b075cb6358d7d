//! Heads: the request's as it goes on the wire ([`Request`]), the answer's
//! as it is parsed ([`Head`], httparse) with the framing of its body.

use crate::body::{Chunk, Framing};
use crate::error::Malformed;
use bytes::BytesMut;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// Largest answer head (status line and headers) accepted, whatever pieces
/// it arrives in.
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// Most headers an answer may have.
const MAX_HEADERS: usize = 100;
/// Bodies up to this size go out in the same write as the request's head.
const INLINE_BODY: usize = 16 << 10;

/// One request as it goes on the wire.
pub struct Request<'a> {
    pub method: &'a Method,
    /// Origin-form: path and query.
    pub target: &'a str,
    /// Host included; framing headers (`Content-Length`, `Transfer-Encoding`,
    /// `Connection`…) are this crate's and are not copied from here.
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// A request's bytes: the head, with the body when it is small, and what of
/// the body goes in a second write (empty when it is small).
pub(crate) struct Encoded<'a> {
    pub(crate) head: Vec<u8>,
    pub(crate) rest: &'a [u8],
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
    pub(crate) fn encode(&self) -> Encoded<'a> {
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

/// An answer's head, and how its body is framed.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

/// Parses a complete head off the front of `buf`; `None` while incomplete.
pub(crate) fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Malformed> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(None),
        Ok(_) => return Err(Malformed::HeadTooLarge),
        Err(e) => return Err(Malformed::NotHttp(e)),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Malformed::Status)?;
    let http11 = parsed.version == Some(1);
    // Values are slices of the head, kept as it is (not copied one by one).
    let base = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| Malformed::HeaderName(h.name.to_owned()))?;
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start, start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| Malformed::HeaderValue(name.clone()))?;
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
        // Both framings named: Transfer-Encoding wins, and the connection is
        // not reused, since a peer that disagrees about where this answer
        // ends would read the next one from the wrong place (RFC 9112 §6.3).
        if headers.contains_key(header::CONTENT_LENGTH) {
            keep_alive = false;
        }
        let last = te.to_str().unwrap_or("").rsplit(',').next().unwrap_or("");
        if last.trim().eq_ignore_ascii_case("chunked") {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        }
    } else {
        let mut length = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            let n = decimal(v.as_bytes()).ok_or(Malformed::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(Malformed::ConflictingContentLength);
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

/// A `Content-Length` value: decimal digits only (`str::parse` would also
/// take a sign), no more than a `u64` holds.
pub(crate) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn content_lengths_are_digits_only() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5,5",
            b"0x10",
            b"18446744073709551616",
        ] {
            assert_eq!(decimal(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_answer_framed_both_ways_is_chunked_and_ends_its_connection() {
        let framed = |head: &str| {
            let mut buf = BytesMut::from(head.as_bytes());
            let h = parse_head(&mut buf).unwrap().unwrap();
            (h.framing == Framing::Chunked(Chunk::Size), h.keep_alive)
        };
        assert_eq!(
            framed("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            (true, true)
        );
        assert_eq!(
            framed("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"),
            (true, false)
        );
    }
}

//! Property tests: answers of every shape, their bytes arriving in any
//! pieces. The head parser and the body decoders never panic; a malformed or
//! cut-off answer is an error, never a body; a valid answer
//! (`Content-Length`, chunked with any chunk sizes, extensions and trailers,
//! or up to the close) decodes to exactly the body that was encoded, or is
//! refused as too large past the caller's limit.
//!
//! The answer comes from an in-memory stream: tokio's `chain` of the pieces
//! for reading (each read returns at most one piece), joined with a sink
//! that takes the request. The crate's own [`send`] runs on it as it would
//! on a socket.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use bytes::Bytes;
use fleetgate_http1::{
    send, BodyError, Conn, Error, IdleConnections, Malformed, Request, SendError,
};
use http::{HeaderMap, Method};
use proptest::prelude::*;
use proptest::sample::Index;
use std::convert::Infallible;
use std::io::Cursor;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest answer head the crate accepts.
const MAX_HEAD: usize = 64 << 10;
/// Longest chunk-size or trailer line the crate accepts (before its LF).
const MAX_LINE: usize = 4 << 10;
/// An interim head, skipped by the client.
const INTERIM: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A connection whose reads give `wire` cut at `cuts` (one piece per read at
/// most), then the end of the stream.
fn conn_of(wire: &[u8], cuts: &[Index]) -> Conn {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
    at.push(wire.len());
    at.sort_unstable();
    let mut reader: Box<dyn AsyncRead + Unpin + Send> = Box::new(Cursor::new(Vec::new()));
    let mut from = 0;
    for to in at {
        if to > from {
            reader = Box::new(reader.chain(Cursor::new(wire[from..to].to_vec())));
            from = to;
        }
    }
    Conn::new(tokio::io::join(reader, tokio::io::sink()))
}

/// What reading an answer gave.
#[derive(Debug)]
enum Outcome {
    Body(Bytes),
    /// No head: [`send`] failed.
    NoAnswer(Error),
    BadBody(BodyError),
}

impl Outcome {
    /// What is malformed, if that is why there is no body.
    fn malformed(&self) -> Option<&Malformed> {
        match self {
            Outcome::NoAnswer(Error::Malformed(m))
            | Outcome::BadBody(BodyError::Broken(Error::Malformed(m))) => Some(m),
            _ => None,
        }
    }

    /// An error that is not the caller's limit.
    fn is_broken(&self) -> bool {
        matches!(
            self,
            Outcome::NoAnswer(_) | Outcome::BadBody(BodyError::Broken(_))
        )
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().build().unwrap();
}

/// Sends a request on `wire` cut at `cuts` and reads the whole answer, at
/// most `limit` bytes of body.
fn read_answer(wire: &[u8], cuts: &[Index], limit: usize) -> Outcome {
    let conn = conn_of(wire, cuts);
    RUNTIME.with(|rt| {
        rt.block_on(async move {
            let pool = Arc::new(IdleConnections::new(1));
            let headers = HeaderMap::new();
            let request = Request {
                method: &Method::POST,
                target: "/mcp",
                headers: &headers,
                body: b"{}",
            };
            let open = || async { Ok::<_, Infallible>(conn) };
            match send(&pool, "peer".to_owned(), open, &request).await {
                Err(SendError::Connect(never)) => match never {},
                Err(SendError::Http(e) | SendError::Unanswered(e)) => Outcome::NoAnswer(e),
                Ok(mut resp) => match resp.bytes(limit).await {
                    Ok(body) => Outcome::Body(body),
                    Err(e) => Outcome::BadBody(e),
                },
            }
        })
    })
}

/// Where the bytes are cut (any number of places, none included).
fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..16)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

/// Headers that say nothing about framing.
fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("x-[a-z0-9-]{1,12}", "[!-~]([ !-~]{0,30}[!-~])?"), 0..6)
}

/// Any final status whose answer has a body.
fn status() -> impl Strategy<Value = u16> {
    (200u16..600).prop_filter("no body", |s| *s != 204 && *s != 304)
}

/// A head: status line, headers, the blank line; an interim `100 Continue`
/// head before it when `interim`.
fn head(version: &str, status: u16, headers: &[(String, String)], interim: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if interim {
        out.extend_from_slice(INTERIM);
    }
    out.extend_from_slice(format!("{version} {status} Whatever\r\n").as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn header(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// How a chunked body is cut into chunks and dressed.
#[derive(Debug, Clone)]
struct Chunking {
    sizes: Vec<usize>,
    /// Leading zeros on each size line (cycled).
    zeros: Vec<usize>,
    upper: bool,
    /// An extension on each size line (cycled; `None`: none).
    extensions: Vec<Option<String>>,
    trailers: Vec<(String, String)>,
}

fn chunking() -> impl Strategy<Value = Chunking> {
    let extension = prop_oneof![
        Just(None),
        "[a-z]{1,8}".prop_map(|n| Some(format!(";{n}"))),
        ("[a-z]{1,8}", "[a-z0-9]{1,8}").prop_map(|(n, v)| Some(format!(";{n}={v}"))),
        ("[a-z]{1,8}", "[a-z ;=]{0,12}").prop_map(|(n, v)| Some(format!(" ; {n}=\"{v}\""))),
    ];
    (
        prop::collection::vec(1usize..700, 1..8),
        prop::collection::vec(0usize..4, 1..4),
        any::<bool>(),
        prop::collection::vec(extension, 1..4),
        headers(),
    )
        .prop_map(|(sizes, zeros, upper, extensions, trailers)| Chunking {
            sizes,
            zeros,
            upper,
            extensions,
            trailers,
        })
}

/// `body` as chunks of the sizes `how` gives, the last-chunk not included,
/// with the CRLF after the data of chunk `missing` left out; and how many
/// chunks there are.
fn chunks(body: &[u8], how: &Chunking, missing: Option<usize>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = how.sizes[i % how.sizes.len()].min(rest.len());
        size_line(&mut out, how, n, i);
        out.extend_from_slice(&rest[..n]);
        if missing != Some(i) {
            out.extend_from_slice(b"\r\n");
        }
        rest = &rest[n..];
        i += 1;
    }
    (out, i)
}

/// The size line of chunk `i`, `n` bytes long, dressed as `how` says.
fn size_line(out: &mut Vec<u8>, how: &Chunking, n: usize, i: usize) {
    let zeros = "0".repeat(how.zeros[i % how.zeros.len()]);
    let hex = if how.upper {
        format!("{n:X}")
    } else {
        format!("{n:x}")
    };
    let ext = how.extensions[i % how.extensions.len()]
        .as_deref()
        .unwrap_or("");
    out.extend_from_slice(format!("{zeros}{hex}{ext}\r\n").as_bytes());
}

/// `body` chunked as `how` says, with the CRLF after chunk `missing`'s data
/// left out (the chunks are counted from 0; one past the last is the CRLF
/// that ends the trailers).
fn chunked(body: &[u8], how: &Chunking, missing: Option<usize>) -> Vec<u8> {
    let (mut out, count) = chunks(body, how, missing);
    size_line(&mut out, how, 0, count);
    for (name, value) in &how.trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if missing != Some(count) {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A valid answer and the body it carries.
#[derive(Debug, Clone)]
struct Valid {
    wire: Vec<u8>,
    body: Vec<u8>,
}

fn with_length() -> impl Strategy<Value = Valid> {
    (
        body(),
        status(),
        headers(),
        any::<bool>(),
        prop_oneof![Just(None), Just(Some("close")), Just(Some("keep-alive"))],
        0usize..3,
    )
        .prop_map(|(body, status, mut hs, interim, connection, repeats)| {
            // Repeated with the same value (RFC 9110 §8.6 lets a recipient
            // take it as one).
            for _ in 0..=repeats {
                hs.push(header("content-length", body.len().to_string()));
            }
            if let Some(c) = connection {
                hs.push(header("connection", c));
            }
            let mut wire = head("HTTP/1.1", status, &hs, interim);
            wire.extend_from_slice(&body);
            Valid { wire, body }
        })
}

fn with_chunks() -> impl Strategy<Value = Valid> {
    (body(), status(), headers(), any::<bool>(), chunking()).prop_map(
        |(body, status, mut hs, interim, how)| {
            hs.push(header("transfer-encoding", "chunked"));
            let mut wire = head("HTTP/1.1", status, &hs, interim);
            wire.extend_from_slice(&chunked(&body, &how, None));
            Valid { wire, body }
        },
    )
}

fn up_to_the_close() -> impl Strategy<Value = Valid> {
    (
        body(),
        status(),
        headers(),
        prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")],
    )
        .prop_map(|(body, status, hs, version)| {
            let mut wire = head(version, status, &hs, false);
            wire.extend_from_slice(&body);
            Valid { wire, body }
        })
}

fn valid() -> impl Strategy<Value = Valid> {
    prop_oneof![with_length(), with_chunks(), up_to_the_close()]
}

/// `Content-Length` values that are not one decimal number.
fn bad_length() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..1000).prop_map(|n| format!("-{n}")),
        (0u64..1000).prop_map(|n| format!("+{n}")),
        (0u64..1000).prop_map(|n| format!("{n},{n}")),
        (0u64..1000).prop_map(|n| format!("{n}, {n}")),
        (0u64..1000).prop_map(|n| format!("{n} {n}")),
        (0u64..1000).prop_map(|n| format!("0x{n:x}")),
        (0u64..1000).prop_map(|n| format!("{n}.0")),
        "[0-9]{0,3}[a-zA-Z_;][0-9a-z]{0,3}",
        // More than a u64 holds.
        "[1-9][0-9]{20,30}",
        Just("18446744073709551616".to_owned()),
    ]
}

/// Chunk-size lines that carry no size: not hex digits, nothing before an
/// extension, or more digits than any size accepted.
fn bad_size_line() -> impl Strategy<Value = Vec<u8>> {
    let not_hex = any::<u8>().prop_filter("hex, blank, `;` or LF", |b| {
        !b.is_ascii_hexdigit() && !matches!(b, b' ' | b'\t' | b';' | b'\n')
    });
    prop_oneof![
        ("[0-9a-fA-F]{0,5}", not_hex, "[0-9a-fA-F]{0,5}").prop_map(|(a, b, c)| {
            let mut line = a.into_bytes();
            line.push(b);
            line.extend_from_slice(c.as_bytes());
            line
        }),
        "[ \t]{0,3}(;[a-z=]{0,8})?".prop_map(String::into_bytes),
        "[0-9a-fA-F]{16,40}".prop_map(String::into_bytes),
        Just(b"ffffffffffffffff".to_vec()),
        Just(b"10000000000000000".to_vec()),
        Just(b"0x10".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"+1".to_vec()),
    ]
}

const CASES: u32 = 300;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn a_valid_answer_decodes_to_its_body_in_any_pieces(
        answer in valid(),
        cuts in cuts(),
        limit in prop_oneof![Just(usize::MAX), 0usize..4096],
    ) {
        match read_answer(&answer.wire, &cuts, limit) {
            Outcome::Body(b) => {
                prop_assert!(answer.body.len() <= limit);
                prop_assert_eq!(&b[..], &answer.body[..]);
            }
            Outcome::BadBody(BodyError::TooLarge) => {
                prop_assert!(answer.body.len() > limit);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn an_answer_cut_short_is_an_error(
        answer in prop_oneof![with_length(), with_chunks()],
        end in any::<Index>(),
        cuts in cuts(),
    ) {
        let end = end.index(answer.wire.len());
        let outcome = read_answer(&answer.wire[..end], &cuts, usize::MAX);
        prop_assert!(outcome.is_broken(), "cut at {end}: {outcome:?}");
    }

    #[test]
    fn a_chunk_size_that_is_not_one_is_an_error(
        body in body(),
        how in chunking(),
        line in bad_size_line(),
        cuts in cuts(),
    ) {
        // Valid chunks, then the bad size line where the last-chunk's is.
        let mut wire = head("HTTP/1.1", 200, &[header("transfer-encoding", "chunked")], false);
        wire.extend_from_slice(&chunks(&body, &how, None).0);
        wire.extend_from_slice(&line);
        wire.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
        let outcome = read_answer(&wire, &cuts, usize::MAX);
        prop_assert!(
            matches!(outcome.malformed(), Some(Malformed::ChunkSize)),
            "{:?}: {outcome:?}",
            String::from_utf8_lossy(&line)
        );
    }

    #[test]
    fn a_chunk_without_its_crlf_is_an_error(
        body in prop::collection::vec(any::<u8>(), 1..2048),
        how in chunking(),
        missing in any::<Index>(),
        cuts in cuts(),
    ) {
        // One of the chunks' CRLFs, or the one that ends the trailers.
        let count = chunks(&body, &how, None).1;
        let missing = missing.index(count + 1);
        let mut wire = head("HTTP/1.1", 200, &[header("transfer-encoding", "chunked")], false);
        wire.extend_from_slice(&chunked(&body, &how, Some(missing)));
        let outcome = read_answer(&wire, &cuts, usize::MAX);
        prop_assert!(outcome.is_broken(), "CRLF {missing} of {count}: {outcome:?}");
    }

    #[test]
    fn a_chunk_line_over_the_limit_is_an_error_whatever_its_pieces(
        len in (MAX_LINE - 8)..(MAX_LINE + 8),
        cuts in cuts(),
    ) {
        // A size line of `len` bytes before its LF (an extension makes it long).
        let mut wire = head("HTTP/1.1", 200, &[header("transfer-encoding", "chunked")], false);
        let mut line = b"1;".to_vec();
        line.resize(len - 1, b'x');
        wire.extend_from_slice(&line);
        wire.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        let outcome = read_answer(&wire, &cuts, usize::MAX);
        if len > MAX_LINE {
            prop_assert!(matches!(outcome.malformed(), Some(Malformed::LineTooLong)), "{outcome:?}");
        } else {
            prop_assert!(matches!(&outcome, Outcome::Body(b) if b == "a"), "{outcome:?}");
        }
    }

    #[test]
    fn a_content_length_that_is_not_a_number_is_an_error(
        value in bad_length(),
        body in body(),
        cuts in cuts(),
    ) {
        let mut wire = head("HTTP/1.1", 200, &[header("content-length", value.clone())], false);
        wire.extend_from_slice(&body);
        let outcome = read_answer(&wire, &cuts, usize::MAX);
        prop_assert!(
            matches!(outcome.malformed(), Some(Malformed::ContentLength)),
            "{value:?}: {outcome:?}"
        );
    }

    #[test]
    fn conflicting_content_lengths_are_an_error(
        a in 0u64..5000,
        b in 0u64..5000,
        body in body(),
        cuts in cuts(),
    ) {
        prop_assume!(a != b);
        let hs = [header("content-length", a.to_string()), header("content-length", b.to_string())];
        let mut wire = head("HTTP/1.1", 200, &hs, false);
        wire.extend_from_slice(&body);
        let outcome = read_answer(&wire, &cuts, usize::MAX);
        prop_assert!(
            matches!(outcome.malformed(), Some(Malformed::ConflictingContentLength)),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_folded_header_line_is_an_error(
        answer in valid(),
        fold in "[ \t]{1,3}[!-~]{1,10}",
        cuts in cuts(),
    ) {
        // After the status line of the final head.
        let skip = if answer.wire.starts_with(INTERIM) { INTERIM.len() } else { 0 };
        let at = skip + answer.wire[skip..].iter().position(|&b| b == b'\n').unwrap() + 1;
        let mut wire = answer.wire[..at].to_vec();
        wire.extend_from_slice(b"x-folded: a\r\n");
        wire.extend_from_slice(fold.as_bytes());
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&answer.wire[at..]);
        let outcome = read_answer(&wire, &cuts, usize::MAX);
        prop_assert!(
            matches!(outcome.malformed(), Some(Malformed::NotHttp(_))),
            "{outcome:?}"
        );
    }

    #[test]
    fn an_invalid_status_code_is_an_error(code in 0u16..100, cuts in cuts()) {
        let wire = format!("HTTP/1.1 {code:03} Nope\r\ncontent-length: 0\r\n\r\n");
        let outcome = read_answer(wire.as_bytes(), &cuts, usize::MAX);
        prop_assert!(matches!(outcome.malformed(), Some(Malformed::Status)), "{outcome:?}");
    }
}

proptest! {
    // Large answers: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(CASES / 6))]

    #[test]
    fn a_head_over_the_limit_is_an_error_whatever_its_pieces(
        values in prop::collection::vec(1usize..(24 << 10), 1..12),
        many in any::<bool>(),
        cuts in cuts(),
    ) {
        // Long values past 64 KiB in all, or more headers than accepted.
        let mut hs: Vec<(String, String)> = if many {
            (0..101).map(|i| header(&format!("x-{i}"), "v")).collect()
        } else {
            values.iter().enumerate().map(|(i, &n)| header(&format!("x-{i}"), "v".repeat(n))).collect()
        };
        let total: usize = hs.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        prop_assume!(many || total > MAX_HEAD);
        hs.push(header("content-length", "2"));
        let mut wire = head("HTTP/1.1", 200, &hs, false);
        wire.extend_from_slice(b"ok");
        let outcome = read_answer(&wire, &cuts, usize::MAX);
        prop_assert!(
            matches!(
                outcome.malformed(),
                Some(Malformed::HeadTooLarge | Malformed::NotHttp(httparse::Error::TooManyHeaders))
            ),
            "{} bytes of head: {outcome:?}",
            wire.len()
        );
    }
}

/// Bytes from the alphabet of heads and chunked bodies, so that random
/// sequences get far into the parsers.
fn framing_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(b"0123456789abcdefABCDEFgx;= \t\r\n:-+HTP/1.".to_vec()),
        0..512,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES * 2))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in cuts(),
        limit in 0usize..1024,
    ) {
        read_answer(&bytes, &cuts, limit);
    }

    #[test]
    fn arbitrary_bodies_after_a_valid_head_never_panic(
        framing in prop_oneof![
            Just("transfer-encoding: chunked"),
            Just("content-length: 100"),
            Just("connection: close"),
        ],
        rest in framing_bytes(),
        cuts in cuts(),
        limit in 0usize..1024,
    ) {
        let mut wire = format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n").into_bytes();
        wire.extend_from_slice(&rest);
        read_answer(&wire, &cuts, limit);
    }

    #[test]
    fn valid_answers_with_bytes_changed_never_panic(
        answer in valid(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..8),
        cuts in cuts(),
    ) {
        let mut wire = answer.wire;
        for (at, byte, how) in edits {
            let i = at.index(wire.len() + 1);
            match how {
                0 => wire.insert(i, byte),
                1 if i < wire.len() => wire[i] = byte,
                _ if i < wire.len() => {
                    wire.remove(i);
                }
                _ => {}
            }
        }
        read_answer(&wire, &cuts, usize::MAX);
    }
}

//! Server-Sent Events framing, both directions.
//!
//! Encoding writes `id:`, `event: message` and `data:` lines as MCP servers
//! send them. [`SseDecoder`] turns a byte stream cut at arbitrary places into
//! events, following the WHATWG "event stream interpretation" rules: lines end
//! in CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of
//! the next are one line end), a leading UTF-8 BOM is dropped, `:` starts a
//! comment, a value loses one leading space, `data` lines are joined with
//! `\n`, an `id` containing NUL is ignored, `retry` must be all digits, and an
//! event with no `data` line is not dispatched (its `id` still counts).
//!
//! Memory is bounded: a line or an event larger than the decoder's limit is an
//! error ([`SseError::EventTooLarge`]), never an unbounded buffer.

use std::fmt::Write as _;
use std::time::Duration;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The last event id seen on the stream when this event was dispatched
    /// (the value a client would send as `Last-Event-ID`; an empty `id:`
    /// resets it to `None`).
    pub id: Option<String>,
    /// The `retry` value (milliseconds) if this event carried one.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// `true` when the type is `message` (explicitly or by default).
    pub fn is_message(&self) -> bool {
        matches!(self.event.as_deref(), None | Some("message"))
    }
}

/// Why the decoder gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One line or one event's data grew past the limit.
    #[error("an SSE event is larger than {limit} bytes")]
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Default limit for [`SseDecoder::new`]: 16 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// Incremental SSE decoder: feed it chunks, collect events.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    pending_cr: bool,
    first_line: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    retry_in_event: Option<u64>,
    last_event_id: Option<String>,
    retry: Option<u64>,
    max_event_size: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with a 16 MiB limit per line and per event.
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A decoder with a custom limit (bytes) per line and per event.
    pub fn with_max_event_size(max_event_size: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            pending_cr: false,
            first_line: true,
            data: String::new(),
            has_data: false,
            event: None,
            retry_in_event: None,
            last_event_id: None,
            retry: None,
            max_event_size,
        }
    }

    /// The last event id the stream set (what to send as `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The last reconnection delay the stream asked for.
    pub fn retry(&self) -> Option<Duration> {
        self.retry.map(Duration::from_millis)
    }

    /// Decodes `chunk`, appending complete events to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut rest = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                None => {
                    self.line.extend_from_slice(rest);
                    if self.line.len() > self.max_event_size {
                        return Err(SseError::EventTooLarge {
                            limit: self.max_event_size,
                        });
                    }
                    break;
                }
                Some(i) => {
                    if self.line.is_empty() {
                        self.process_line(&rest[..i], out)?;
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&rest[..i]);
                        let result = self.process_line(&line, out);
                        line.clear();
                        self.line = line;
                        result?;
                    }
                    if rest[i] == b'\r' {
                        match rest.get(i + 1) {
                            Some(b'\n') => rest = &rest[i + 2..],
                            Some(_) => rest = &rest[i + 1..],
                            None => {
                                self.pending_cr = true;
                                rest = &[];
                            }
                        }
                    } else {
                        rest = &rest[i + 1..];
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the stream. The specification discards an event that was not
    /// terminated by a blank line; this returns it instead (with any
    /// unterminated last line applied) so a lenient caller can still use a
    /// final message from a server that forgot the blank line. State is reset
    /// except the last event id and retry.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            // A line can only fail the size check, which `feed` already made.
            let _ = self.process_line(&line, &mut out);
        }
        self.pending_cr = false;
        let _ = self.process_line(b"", &mut out);
        out.pop()
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut line = line;
        if self.first_line {
            self.first_line = false;
            if let Some(tail) = line.strip_prefix(b"\xEF\xBB\xBF") {
                line = tail;
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_event_size {
                    return Err(SseError::EventTooLarge {
                        limit: self.max_event_size,
                    });
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" => {
                // An empty id resets the last event id (nothing to resume from).
                if value.is_empty() {
                    self.last_event_id = None;
                } else if !value.contains(&0) {
                    self.last_event_id = Some(String::from_utf8_lossy(value).into_owned());
                }
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse::<u64>() {
                    self.retry = Some(ms);
                    self.retry_in_event = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        let retry = self.retry_in_event.take();
        if !self.has_data {
            self.data.clear();
            return;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent {
            event,
            data,
            id: self.last_event_id.clone(),
            retry,
        });
    }
}

/// One event: optional `id:`, optional `event:`, and one `data:` line per
/// line of `data` (CR, LF and CRLF all split lines). CR/LF in `id`/`event`
/// are dropped so a caller cannot inject fields.
pub fn encode_event(id: Option<&str>, event: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 48);
    if let Some(id) = id {
        out.push_str("id: ");
        push_single_line(&mut out, id);
        out.push('\n');
    }
    if let Some(event) = event {
        out.push_str("event: ");
        push_single_line(&mut out, event);
        out.push('\n');
    }
    let mut rest = data;
    loop {
        out.push_str("data: ");
        match rest.find(['\r', '\n']) {
            Some(i) => {
                out.push_str(&rest[..i]);
                out.push('\n');
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                out.push_str(rest);
                out.push('\n');
                break;
            }
        }
    }
    out.push('\n');
    out
}

/// A JSON-RPC message as MCP sends it: `id:` (if any), `event: message`,
/// `data: <json>`.
pub fn encode_message_event(id: Option<&str>, json: &str) -> String {
    encode_event(id, Some("message"), json)
}

/// The event a server SHOULD send first on a resumable stream: an id and an
/// empty `data` (plus an optional `retry` in milliseconds).
pub fn encode_priming_event(id: &str, retry_ms: Option<u64>) -> String {
    let mut out = String::from("id: ");
    push_single_line(&mut out, id);
    out.push('\n');
    if let Some(ms) = retry_ms {
        let _ = writeln!(out, "retry: {ms}");
    }
    out.push_str("data: \n\n");
    out
}

/// A comment (keep-alive): `: text` and a blank line. Dispatches nothing.
pub fn encode_comment(text: &str) -> String {
    let mut out = String::from(": ");
    push_single_line(&mut out, text);
    out.push_str("\n\n");
    out
}

fn push_single_line(out: &mut String, s: &str) {
    out.extend(s.chars().filter(|c| *c != '\r' && *c != '\n'));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> (Vec<SseEvent>, SseDecoder) {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out).unwrap();
        }
        (out, d)
    }

    fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: id.map(str::to_owned),
            retry: None,
        }
    }

    #[test]
    fn simple_events() {
        let (out, d) =
            decode_chunks(&[b"id: 1\nevent: message\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n"]);
        assert_eq!(
            out,
            vec![
                ev(Some("message"), "{\"a\":1}", Some("1")),
                ev(None, "x\ny", Some("1"))
            ]
        );
        assert_eq!(d.last_event_id(), Some("1"));
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] = b"\xEF\xBB\xBF: comment\r\nid: 7\r\nretry: 1500\r\ndata: \r\n\r\nevent: message\rdata:{\"x\":\"\xC3\xA9\"}\r\rid: 8\ndata: two\ndata:  lines\n\nid\ndata\n\nid: a\0b\nfoo: bar\nnocolon\ndata: z\n\n";
        let (whole, d) = decode_chunks(&[stream]);
        let expected = vec![
            SseEvent {
                event: None,
                data: String::new(),
                id: Some("7".into()),
                retry: Some(1500),
            },
            ev(Some("message"), "{\"x\":\"é\"}", Some("7")),
            ev(None, "two\n lines", Some("8")),
            ev(None, "", None),
            ev(None, "z", None),
        ];
        assert_eq!(whole, expected);
        assert_eq!(d.retry(), Some(Duration::from_millis(1500)));
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            let (got, _) = decode_chunks(&[a, b]);
            assert_eq!(got, expected, "split at {i}");
            for j in i..=stream.len() {
                let (got, _) = decode_chunks(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(got, expected, "split at {i},{j}");
            }
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_chunks(&bytewise).0, expected);
    }

    #[test]
    fn cr_at_chunk_end_then_lf() {
        let (out, _) = decode_chunks(&[b"data: a\r", b"\n\r", b"\n"]);
        assert_eq!(out, vec![ev(None, "a", None)]);
        let (out, _) = decode_chunks(&[b"data: a\r", b"\r"]);
        assert_eq!(out, vec![ev(None, "a", None)]);
    }

    #[test]
    fn no_data_no_dispatch_but_id_kept() {
        let (out, d) = decode_chunks(&[b"id: 5\n\nevent: foo\n\n: hi\n\n"]);
        assert!(out.is_empty());
        assert_eq!(d.last_event_id(), Some("5"));
    }

    #[test]
    fn bad_retry_is_ignored() {
        let (_, d) = decode_chunks(&[b"retry: 12a\ndata: x\n\nretry: -1\n\n"]);
        assert_eq!(d.retry(), None);
    }

    #[test]
    fn finish_returns_unterminated_event() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        d.feed(b"data: {\"last\":true}", &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(d.finish(), Some(ev(None, "{\"last\":true}", None)));
        assert_eq!(d.finish(), None);
        let mut d = SseDecoder::new();
        d.feed(b"data: a\n", &mut out).unwrap();
        assert_eq!(d.finish(), Some(ev(None, "a", None)));
    }

    #[test]
    fn limits() {
        let mut d = SseDecoder::with_max_event_size(16);
        let mut out = Vec::new();
        assert!(d.feed(&[b'x'; 17], &mut out).is_err());
        let mut d = SseDecoder::with_max_event_size(16);
        d.feed(b"data: 0123456\n", &mut out).unwrap();
        assert_eq!(
            d.feed(b"data: 0123456789\n", &mut out),
            Err(SseError::EventTooLarge { limit: 16 })
        );
    }

    #[test]
    fn encoding_round_trips() {
        let e = encode_message_event(Some("s1-3"), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(
            e,
            "id: s1-3\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
        );
        let multi = encode_event(Some("x\ny"), Some("a\rb"), "l1\r\nl2\rl3\nl4");
        assert_eq!(
            multi,
            "id: xy\nevent: ab\ndata: l1\ndata: l2\ndata: l3\ndata: l4\n\n"
        );
        let (out, _) = decode_chunks(&[multi.as_bytes()]);
        assert_eq!(out, vec![ev(Some("ab"), "l1\nl2\nl3\nl4", Some("xy"))]);
        let p = encode_priming_event("p0", Some(250));
        let c = encode_comment("keep-alive");
        let (out, d) = decode_chunks(&[p.as_bytes(), c.as_bytes()]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, "");
        assert_eq!(d.last_event_id(), Some("p0"));
        assert_eq!(d.retry(), Some(Duration::from_millis(250)));
        let (out, _) = decode_chunks(&[encode_event(None, None, "").as_bytes()]);
        assert_eq!(out, vec![ev(None, "", None)]);
    }
}

//! Body framing: `Content-Length`, chunked (RFC 9112 §7.1) or up to the
//! close, decoded off the front of a connection's buffer as bytes arrive.
//!
//! [`Framing::step`] works on whatever is buffered and says what it needs
//! next, so the answer's body decodes the same whichever pieces its bytes
//! arrive in; limits hold whatever the pieces.

use crate::error::Malformed;
use bytes::{Bytes, BytesMut};

/// Longest chunk-size or trailer line accepted (before its LF).
pub(crate) const MAX_LINE: usize = 4 << 10;
/// Most hex digits in a chunk size (a size below 2^60).
const MAX_SIZE_DIGITS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Framing {
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
pub(crate) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// This many data bytes of the chunk are left.
    Data(u64),
    /// Before the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// What the buffered bytes give next.
pub(crate) enum Step {
    /// A piece of the body (the framing has moved past it).
    Data(Bytes),
    /// More bytes are needed.
    Read,
    /// The body has ended.
    End,
    Broken(Malformed),
}

impl Framing {
    /// Takes what it can off the front of `buf`: a piece of the body, the
    /// end, or the need for more bytes. Framing lines are consumed here;
    /// data is split off, not copied.
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Step {
        loop {
            match *self {
                Framing::Done => return Step::End,
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) if !buf.is_empty() => {
                    let n = (buf.len() as u64).min(left);
                    let data = buf.split_to(n as usize).freeze();
                    let left = left - n;
                    *self = match *self {
                        Framing::Length(_) if left == 0 => Framing::Done,
                        Framing::Length(_) => Framing::Length(left),
                        _ if left == 0 => Framing::Chunked(Chunk::DataEnd),
                        _ => Framing::Chunked(Chunk::Data(left)),
                    };
                    return Step::Data(data);
                }
                Framing::Close if !buf.is_empty() => return Step::Data(buf.split().freeze()),
                Framing::Length(_) | Framing::Chunked(Chunk::Data(_)) | Framing::Close => {
                    return Step::Read
                }
                Framing::Chunked(at) => {
                    let line = match take_line(buf) {
                        Err(e) => return Step::Broken(e),
                        Ok(None) => return Step::Read,
                        Ok(Some(line)) => line,
                    };
                    *self = match at {
                        Chunk::Size => match chunk_size(&line) {
                            Some(0) => Framing::Chunked(Chunk::Trailers),
                            Some(n) => Framing::Chunked(Chunk::Data(n)),
                            None => return Step::Broken(Malformed::ChunkSize),
                        },
                        Chunk::DataEnd if line.is_empty() => Framing::Chunked(Chunk::Size),
                        Chunk::DataEnd => return Step::Broken(Malformed::DataPastChunk),
                        Chunk::Trailers if line.is_empty() => Framing::Done,
                        // A trailer line, skipped (data was taken above).
                        Chunk::Trailers | Chunk::Data(_) => *self,
                    };
                }
            }
        }
    }
}

/// A complete line off the front of `buf` (without its CRLF or LF). A line
/// longer than [`MAX_LINE`] is an error whether or not its end has arrived.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Malformed> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i > MAX_LINE => Err(Malformed::LineTooLong),
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(Malformed::LineTooLong),
        None => Ok(None),
    }
}

/// The size on a chunk-size line: hex digits, optionally between spaces or
/// tabs, extensions after `;` ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = std::str::from_utf8(&line[..end])
        .ok()?
        .trim_matches([' ', '\t']);
    // `from_str_radix` alone would also take a sign.
    if digits.is_empty()
        || digits.len() > MAX_SIZE_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` as one chunked body, fed in pieces of `piece` bytes.
    fn chunked(wire: &[u8], piece: usize) -> Result<Vec<u8>, Malformed> {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut pieces = wire.chunks(piece);
        loop {
            match framing.step(&mut buf) {
                Step::Data(d) => body.extend_from_slice(&d),
                Step::End => return Ok(body),
                Step::Broken(e) => return Err(e),
                Step::Read => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => panic!("cut short: {:?}", String::from_utf8_lossy(wire)),
                },
            }
        }
    }

    #[test]
    fn chunks_extensions_and_trailers_decode_in_any_pieces() {
        let wire = b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: t\r\n\r\n";
        for piece in 1..wire.len() {
            assert_eq!(chunked(wire, piece).unwrap(), b"abc0123456789abcdef");
        }
    }

    #[test]
    fn chunk_sizes_are_hex_digits_only() {
        assert_eq!(chunk_size(b"1f"), Some(31));
        assert_eq!(chunk_size(b"A ; name=value"), Some(10));
        assert_eq!(chunk_size(b"fffffffffffffff"), Some((1 << 60) - 1));
        for bad in [
            &b""[..],
            b";ext",
            b"+5",
            b"-1",
            b"0x5",
            b"g",
            b"5 5",
            b"ffffffffffffffff",
        ] {
            assert_eq!(chunk_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_long_line_is_refused_whether_or_not_it_arrived_whole() {
        let mut wire = b"1;".to_vec();
        wire.resize(MAX_LINE + 10, b'x');
        wire.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        for piece in [wire.len(), MAX_LINE / 2, 7] {
            assert!(matches!(chunked(&wire, piece), Err(Malformed::LineTooLong)));
        }
    }
}

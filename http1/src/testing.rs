//! Test servers for the unit tests: real TCP listeners on loopback that
//! answer with raw bytes.

use crate::Response;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A server that answers each request on a connection with the next of
/// `answers` (raw bytes), after reading the request's head and body.
pub(crate) async fn raw_server(
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
pub(crate) async fn answer_once(listener: &TcpListener, answer: &[u8]) {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf).await.unwrap();
    s.write_all(answer).await.unwrap();
}

/// The rest of the body, read piece by piece.
pub(crate) async fn body_of(resp: &mut Response) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        all.extend_from_slice(&c);
    }
    all
}

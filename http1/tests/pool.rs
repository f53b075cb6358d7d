//! The keep-alive pool under [`Client`]: a connection is reused once its
//! answer has been read, an answer dropped unread closes its connection, and
//! a connection the peer closed while idle costs nothing but a fresh one. The
//! peer is a real HTTP/1.1 server on loopback that counts the connections it
//! accepts.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use fleetgate_http1::Client;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server treats a connection after its first answer.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Keeps it open and answers whatever comes.
    KeepAlive,
    /// Closes it at once (as a server timing out idle keep-alive
    /// connections does, without saying so).
    Close,
    /// Reads the next request and closes it unanswered (the peer gave up on
    /// the connection just as the request went out).
    DropNext,
}

/// Serves `200 ok`; returns its URL and the number of connections accepted
/// so far.
async fn server(after: After) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(conn, after));
        }
    });
    (url, accepted)
}

/// Reads more of the connection into `buf`; `false` once it has ended.
async fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match conn.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn serve(mut conn: TcpStream, after: After) {
    let mut buf = Vec::new();
    for n in 0.. {
        // One request: the head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !fill(&mut conn, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + len {
            if !fill(&mut conn, &mut buf).await {
                return;
            }
        }
        buf.drain(..head_end + len);
        if n > 0 && after == After::DropNext {
            return;
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if conn.write_all(answer).await.is_err() {
            return;
        }
        if after == After::Close {
            return;
        }
    }
}

/// POSTs and reads the whole answer.
async fn call(client: &Client, url: &str) -> String {
    let mut resp = client.post(url).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).unwrap()
}

/// Makes `calls` calls one after another on one client (each must be
/// answered) and returns how many connections the server accepted.
async fn connections_for(after: After, calls: usize) -> usize {
    let (url, accepted) = server(after).await;
    let client = Client::new();
    for _ in 0..calls {
        assert_eq!(call(&client, &url).await, "ok");
    }
    accepted.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_connection_is_reused_once_its_answer_is_read() {
    assert_eq!(connections_for(After::KeepAlive, 5).await, 1);
}

#[tokio::test]
async fn an_answer_dropped_unread_closes_its_connection() {
    let (url, accepted) = server(After::KeepAlive).await;
    let client = Client::new();
    let resp = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp); // two bytes of body never read
    assert_eq!(call(&client, &url).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_peer_closed_while_idle_is_replaced() {
    assert_eq!(connections_for(After::Close, 5).await, 5);
}

#[tokio::test]
async fn a_request_the_pooled_connection_loses_is_sent_again_on_a_fresh_one() {
    assert_eq!(connections_for(After::DropNext, 3).await, 3);
}

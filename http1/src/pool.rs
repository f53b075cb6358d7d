//! Idle keep-alive connections by where they lead, reused newest first.

use crate::conn::Conn;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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

    /// The most recently used idle connection for `key` still open; the
    /// ones found stale or closed on the way are dropped.
    pub(crate) fn take(&self, key: &str) -> Option<Conn> {
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
    pub(crate) fn put(&self, key: &str, c: Conn) {
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

#[cfg(test)]
mod tests {
    use crate::testing::{answer_once, body_of};
    use crate::Client;
    use std::time::Duration;
    use tokio::net::TcpListener;

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
}

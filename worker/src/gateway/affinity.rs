//! Which worker owns a session, and proof that a forwarded request came from the
//! fleet.
//!
//! A session id is `{slot}_{random}_{mac}`: the owner's slot, 128 random bits,
//! and an HMAC (fleet secret) over slot, random part, scope and principal. Any
//! worker can route a request to the owner without a lookup, nobody can forge an
//! id for another scope or principal, and the worker that takes over a slot after
//! a crash can verify and adopt the session (opening new upstream sessions
//! transparently) instead of answering "Session not found".
//!
//! A forwarded request travels sealed: the [`Envelope`]'s JSON (method,
//! principal, scope, headers, deadline, request id), a newline, then the client's
//! body, under one HMAC-SHA256 over all of it. The owner trusts the envelope
//! because of the signature, never because of a header or the socket it arrived
//! on. Nothing is hex-encoded on the way: compact JSON holds no raw newline, so
//! the first one ends the envelope, and the body after it is the client's bytes.

use crate::auth::Claims;
use crate::gateway::scope::{Principal, Scope};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying a sealed forward's signature (its body is the sealed bytes).
pub const SIGNATURE_HEADER: &str = "x-fleetgate-signature";
/// The internal route forwarded requests arrive on.
pub const FORWARD_PATH: &str = "/__fleetgate/forward";

pub struct Affinity {
    pub slot: u32,
    /// The fleet secret, already keyed into HMAC's state (cloned per use).
    keyed: HmacSha256,
    pub socket_dir: Option<PathBuf>,
    pub forward_timeout: Duration,
    /// Forward request ids: this process's random prefix and a counter.
    id_prefix: String,
    id_counter: AtomicU64,
}

/// What a forwarded request carries besides its body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub method: String,
    /// `None` for everything (`/mcp`), else the virtual server id.
    pub scope: Option<String>,
    /// The caller's verified claims (the receiving worker verified the token).
    pub claims: Claims,
    /// The client's headers that matter to the owner.
    pub headers: Vec<(String, String)>,
    /// Unix milliseconds after which the owner drops it.
    pub deadline_ms: u64,
    pub request_id: String,
}

impl Envelope {
    pub fn scope(&self) -> Scope {
        match &self.scope {
            None => Scope::All,
            Some(id) => Scope::Server(id.as_str().into()),
        }
    }

    pub fn principal(&self) -> Principal {
        Principal::new(self.claims.clone())
    }

    pub fn expired(&self) -> bool {
        now_ms() > self.deadline_ms
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Affinity {
    pub fn new(
        slot: u32,
        secret: &str,
        socket_dir: Option<PathBuf>,
        forward_timeout: Duration,
    ) -> Affinity {
        // HMAC accepts keys of any length.
        let keyed = HmacSha256::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Affinity {
            slot,
            keyed,
            socket_dir,
            forward_timeout,
            id_prefix: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
            id_counter: AtomicU64::new(0),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = self.keyed.clone();
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m
    }

    fn session_mac(&self, slot: u32, random: &str, scope: &Scope, principal: &Principal) -> String {
        let slot = slot.to_string();
        let m = self.mac(&[
            b"session",
            slot.as_bytes(),
            random.as_bytes(),
            scope.server_id().unwrap_or("*").as_bytes(),
            principal.subject().as_bytes(),
        ]);
        hex(&m.finalize().into_bytes()[..12])
    }

    /// A new session id owned by this worker.
    pub fn mint(&self, scope: &Scope, principal: &Principal) -> String {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let mac = self.session_mac(self.slot, &random, scope, principal);
        format!("{}_{random}_{mac}", self.slot)
    }

    /// The slot an id names, unverified: for routing only (the owner verifies).
    pub fn slot_hint(&self, id: &str) -> Option<u32> {
        id.split('_').next()?.parse().ok()
    }

    /// The owner's slot, if `id` is a genuine id for this scope and principal.
    pub fn owner(&self, id: &str, scope: &Scope, principal: &Principal) -> Option<u32> {
        let mut parts = id.splitn(3, '_');
        let (slot, random, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let slot: u32 = slot.parse().ok()?;
        let expected = self.session_mac(slot, random, scope, principal);
        constant_time_eq(expected.as_bytes(), mac.as_bytes()).then_some(slot)
    }

    /// A forward's request id, unique in the fleet: a random prefix per
    /// process and a counter (no entropy drawn per request).
    pub fn next_request_id(&self) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    /// The signature of a sealed forward.
    fn sign(&self, sealed: &[u8]) -> String {
        hex(&self.mac(&[b"forward", sealed]).finalize().into_bytes())
    }

    /// Seals a forwarded request: (the bytes that travel, their signature).
    pub fn seal(&self, env: &Envelope, body: &[u8]) -> (Bytes, String) {
        let mut sealed = Vec::with_capacity(512 + body.len());
        // Serializing a plain struct into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut sealed, env);
        sealed.push(b'\n');
        sealed.extend_from_slice(body);
        let sig = self.sign(&sealed);
        (Bytes::from(sealed), sig)
    }

    /// Verifies a sealed forward: its envelope and the client's body (a view
    /// of `sealed`, not a copy).
    pub fn open(&self, sealed: &Bytes, signature: &str) -> Result<(Envelope, Bytes), &'static str> {
        let expected = self.sign(sealed);
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err("bad signature");
        }
        let end = memchr::memchr(b'\n', sealed).ok_or("bad envelope framing")?;
        let env: Envelope = serde_json::from_slice(&sealed[..end]).map_err(|_| "bad envelope")?;
        if env.expired() {
            return Err("deadline passed");
        }
        Ok((env, sealed.slice(end + 1..)))
    }

    pub fn socket_path(&self, slot: u32) -> Option<PathBuf> {
        self.socket_dir
            .as_ref()
            .map(|d| d.join(format!("worker-{slot}.sock")))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[D[(b >> 4) as usize], D[(b & 15) as usize]]);
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)).unwrap(), all);
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("+1"), None);
        assert_eq!(unhex("é"), None);
    }

    fn aff(slot: u32) -> Affinity {
        Affinity::new(
            slot,
            "a-fleet-secret-of-some-length",
            None,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn session_ids_route_to_their_owner_and_cannot_be_forged() {
        let p = Principal::anonymous();
        let a = Scope::Server("a".into());
        let id = aff(3).mint(&a, &p);
        assert!(fleetgate_mcp::protocol::is_valid_session_id(&id), "{id}");
        assert_eq!(
            aff(0).owner(&id, &a, &p),
            Some(3),
            "any worker can route it"
        );
        assert_eq!(
            aff(0).owner(&id, &Scope::All, &p),
            None,
            "bound to its scope"
        );
        let other = Principal::new(Claims {
            sub: "mallory".into(),
            ..Claims::anonymous()
        });
        assert_eq!(
            aff(0).owner(&id, &a, &other),
            None,
            "bound to its principal"
        );
        let forged = id.replacen("3_", "1_", 1);
        assert_eq!(
            aff(0).owner(&forged, &a, &p),
            None,
            "the slot is covered by the MAC"
        );
        let wrong_key = Affinity::new(3, "another-secret-entirely", None, Duration::from_secs(1));
        assert_eq!(wrong_key.owner(&id, &a, &p), None);
        assert_eq!(aff(0).owner("garbage", &a, &p), None);
    }

    #[test]
    fn envelopes_are_sealed_and_opened() {
        let env = Envelope {
            method: "POST".into(),
            scope: Some("a".into()),
            claims: Claims {
                sub: "alice\nbob".into(), // a newline inside stays escaped
                ..Claims::anonymous()
            },
            headers: vec![("mcp-session-id".into(), "x".into())],
            deadline_ms: now_ms() + 10_000,
            request_id: "r1".into(),
        };
        let (sealed, s) = aff(0).seal(&env, b"line one\nline two");
        let (opened, body) = aff(1).open(&sealed, &s).unwrap();
        assert_eq!(opened, env);
        assert_eq!(
            &body[..],
            b"line one\nline two",
            "the body travels as it is"
        );
        let mut tampered = sealed.to_vec();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            aff(1).open(&Bytes::from(tampered), &s),
            Err("bad signature"),
            "the body is covered"
        );
        let admin = Claims {
            is_admin: true,
            ..env.claims.clone()
        };
        let (escalated, _) = aff(0).seal(
            &Envelope {
                claims: admin,
                ..env.clone()
            },
            b"line one\nline two",
        );
        assert_eq!(
            aff(1).open(&escalated, &s),
            Err("bad signature"),
            "no privilege escalation"
        );
        let wrong_key = Affinity::new(0, "another-secret-entirely", None, Duration::from_secs(1));
        let (foreign, fs) = wrong_key.seal(&env, b"");
        assert_eq!(aff(1).open(&foreign, &fs), Err("bad signature"));
        let stale = Envelope {
            deadline_ms: 1,
            ..env
        };
        let (sealed3, s3) = aff(0).seal(&stale, b"");
        assert_eq!(aff(1).open(&sealed3, &s3), Err("deadline passed"));
    }
}

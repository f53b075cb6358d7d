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
//! A forwarded request carries an [`Envelope`] (principal, scope, headers,
//! deadline, request id) signed over the envelope and the body's SHA-256: the
//! owner trusts the envelope because of the signature, never because of a header
//! or the socket it arrived on.

use crate::auth::Claims;
use crate::gateway::scope::{Principal, Scope};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the hex-encoded envelope.
pub const ENVELOPE_HEADER: &str = "x-fleetgate-envelope";
/// Header carrying the envelope's signature.
pub const SIGNATURE_HEADER: &str = "x-fleetgate-signature";
/// The internal route forwarded requests arrive on.
pub const FORWARD_PATH: &str = "/__fleetgate/forward";

pub struct Affinity {
    pub slot: u32,
    key: Vec<u8>,
    pub socket_dir: Option<PathBuf>,
    pub forward_timeout: Duration,
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
        Affinity {
            slot,
            key: secret.as_bytes().to_vec(),
            socket_dir,
            forward_timeout,
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| {
            // HMAC accepts keys of any length; this cannot happen.
            HmacSha256::new_from_slice(b"fleetgate").expect("static key")
        });
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

    /// The signature of a forwarded request.
    pub fn sign(&self, envelope_hex: &str, body: &[u8]) -> String {
        let digest = Sha256::digest(body);
        let m = self.mac(&[b"forward", envelope_hex.as_bytes(), &digest]);
        hex(&m.finalize().into_bytes())
    }

    /// Encodes and signs an envelope: (envelope header, signature header).
    pub fn seal(&self, env: &Envelope, body: &[u8]) -> (String, String) {
        let env_hex = hex(&serde_json::to_vec(env).unwrap_or_default());
        let sig = self.sign(&env_hex, body);
        (env_hex, sig)
    }

    /// Verifies and decodes a forwarded request's envelope.
    pub fn open(
        &self,
        envelope_hex: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<Envelope, &'static str> {
        let expected = self.sign(envelope_hex, body);
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err("bad signature");
        }
        let raw = unhex(envelope_hex).ok_or("bad envelope encoding")?;
        let env: Envelope = serde_json::from_slice(&raw).map_err(|_| "bad envelope")?;
        if env.expired() {
            return Err("deadline passed");
        }
        Ok(env)
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
                sub: "alice".into(),
                ..Claims::anonymous()
            },
            headers: vec![("mcp-session-id".into(), "x".into())],
            deadline_ms: now_ms() + 10_000,
            request_id: "r1".into(),
        };
        let (e, s) = aff(0).seal(&env, b"body");
        assert_eq!(aff(1).open(&e, &s, b"body").unwrap(), env);
        assert_eq!(aff(1).open(&e, &s, b"other body"), Err("bad signature"));
        let admin = Claims {
            is_admin: true,
            ..env.claims.clone()
        };
        let (e2, _) = aff(0).seal(
            &Envelope {
                claims: admin,
                ..env.clone()
            },
            b"body",
        );
        assert_eq!(
            aff(1).open(&e2, &s, b"body"),
            Err("bad signature"),
            "no privilege escalation"
        );
        let stale = Envelope {
            deadline_ms: 1,
            ..env
        };
        let (e3, s3) = aff(0).seal(&stale, b"");
        assert_eq!(aff(1).open(&e3, &s3, b""), Err("deadline passed"));
    }
}

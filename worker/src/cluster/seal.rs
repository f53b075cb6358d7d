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
//! A forwarded request travels sealed: one frame of length-prefixed fields
//! (layout version, deadline, method, what kind of transport request it is,
//! scope, request id, the caller's verified claims as JSON, the headers that
//! matter to the owner) followed by the
//! client's body as it is, under one HMAC-SHA256 over all of it. The owner
//! trusts the [`Envelope`] because of the signature, never because of a header
//! or the socket it arrived on. Nothing is escaped, hex-encoded or scanned for
//! a delimiter on the way; a principal's claims are written once per worker
//! and read once per worker ([`ClaimsCache`]), not once per request.

use crate::auth::Claims;
use crate::gateway::scope::{Principal, Scope};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Borrow;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying a sealed forward's signature (its body is the sealed bytes).
pub const SIGNATURE_HEADER: &str = "x-fleetgate-signature";
/// The internal route forwarded requests arrive on.
pub const FORWARD_PATH: &str = "/__fleetgate/forward";

pub struct Seal {
    pub slot: u32,
    /// The fleet secret, already keyed into HMAC's state (cloned per use).
    keyed: HmacSha256,
    pub socket_dir: Option<PathBuf>,
    pub forward_timeout: Duration,
    /// Forward request ids: this process's random prefix and a counter.
    id_prefix: String,
    id_counter: AtomicU64,
    claims: ClaimsCache,
}

/// What kind of transport request a forward carries. Sealed with it: the
/// owner serves each kind its own way, and learns which from the signed
/// frame, never from a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// MCP Streamable HTTP (`/mcp`, `/servers/{id}/mcp`): its session, if
    /// any, is named by `Mcp-Session-Id`.
    Mcp,
    /// A message of the legacy HTTP+SSE transport (`POST …/message?session_id=…`)
    /// for `session`, whose answers go on that session's SSE stream.
    LegacyMessage { session: String },
}

impl Kind {
    /// Whether the session may outlive its owner (be adopted elsewhere). A
    /// legacy session lives and dies with its SSE stream, which is held by
    /// its owner: once the owner is gone there is nothing to take over.
    pub fn outlives_owner(&self) -> bool {
        matches!(self, Kind::Mcp)
    }
}

/// A forward about to be sealed, borrowed from the request it carries.
pub struct Outgoing<'a> {
    /// The client's HTTP method.
    pub method: &'a str,
    pub kind: &'a Kind,
    pub scope: &'a Scope,
    /// The caller, verified by the sending worker.
    pub principal: &'a Principal,
    /// The client's headers that matter to the owner.
    pub headers: Vec<(&'a str, &'a str)>,
}

/// What a forwarded request carries besides its body, as the owner opens it.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    pub method: String,
    pub kind: Kind,
    /// `None` for everything (`/mcp`), else the virtual server id.
    pub scope: Option<String>,
    /// The caller's verified claims (the sending worker verified the token).
    pub claims: Arc<Claims>,
    /// The client's headers that matter to the owner.
    pub headers: Vec<(String, String)>,
    /// Unix milliseconds after which the owner drops it.
    pub deadline_ms: u64,
}

impl Envelope {
    pub fn scope(&self) -> Scope {
        match &self.scope {
            None => Scope::All,
            Some(id) => Scope::Server(id.as_str().into()),
        }
    }

    pub fn principal(&self) -> Principal {
        Principal {
            claims: self.claims.clone(),
        }
    }

    pub fn expired(&self) -> bool {
        now_ms() > self.deadline_ms
    }
}

/// Entries a [`Memo`] holds before it starts over.
const MEMO_MAX: usize = 4096;

/// A bounded memo: at most [`MEMO_MAX`] entries, then it starts over (no
/// bookkeeping; the next use of each live key computes it once more).
struct Memo<K, V>(Mutex<foldhash::HashMap<K, V>>);

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo(Mutex::default())
    }
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    /// The value remembered for `key`, or the entry `make` computes (`None`:
    /// nothing to remember, and nothing returned).
    fn get_or_make<Q>(&self, key: &Q, make: impl FnOnce() -> Option<(K, V)>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = map.get(key) {
            return Some(v.clone());
        }
        let (k, v) = make()?;
        if map.len() >= MEMO_MAX {
            map.clear();
        }
        map.insert(k, v.clone());
        Some(v)
    }
}

/// The claims of the principals this worker forwards for and serves
/// forwards of, both ways: a client's every forward carries the same claims,
/// so each side writes or reads their JSON once, not per request.
#[derive(Default)]
struct ClaimsCache {
    /// For sealing: a principal's claims and their JSON, by the address of
    /// its `Arc` (the verified-token cache hands out one `Arc` per token).
    /// The entry holds the `Arc`, so the address cannot be reused while cached.
    json: Memo<usize, (Arc<Claims>, Arc<[u8]>)>,
    /// For opening: claims by their JSON. Filled only from envelopes whose
    /// signature checked out, so nobody outside the fleet can fill it.
    parsed: Memo<Box<[u8]>, Arc<Claims>>,
}

impl ClaimsCache {
    fn json_of(&self, p: &Principal) -> Arc<[u8]> {
        let key = Arc::as_ptr(&p.claims) as usize;
        let entry = self.json.get_or_make(&key, || {
            // Serializing a plain struct cannot fail.
            let json = serde_json::to_vec(&*p.claims).unwrap_or_default().into();
            Some((key, (p.claims.clone(), json)))
        });
        entry.map(|(_, json)| json).unwrap_or_default()
    }

    fn parse(&self, json: &[u8]) -> Option<Arc<Claims>> {
        self.parsed.get_or_make(json, || {
            let claims = Arc::new(serde_json::from_slice(json).ok()?);
            Some((json.into(), claims))
        })
    }
}

/// The first byte of a sealed frame: its layout's version. Version 1 (no
/// kind field; every forward was [`Kind::Mcp`]) is still read, so workers of
/// the previous layout can forward to this one while they are replaced.
const FRAME_VERSION: u8 = 2;

/// The kind field's tags.
const KIND_MCP: u8 = 0;
const KIND_LEGACY_MESSAGE: u8 = 1;

/// A length (big-endian u32): of the field that follows, or a count.
pub(crate) fn put_len(f: &mut Vec<u8>, n: usize) {
    f.extend_from_slice(&(n as u32).to_be_bytes());
}

/// A length-prefixed field.
pub(crate) fn put(f: &mut Vec<u8>, bytes: &[u8]) {
    put_len(f, bytes.len());
    f.extend_from_slice(bytes);
}

/// An optional length-prefixed field: a flag byte, then the field if present.
pub(crate) fn put_opt(f: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => f.push(0),
        Some(b) => {
            f.push(1);
            put(f, b);
        }
    }
}

/// Reads a frame's fields in order; `None` when it ends too soon.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn len(&mut self) -> Option<usize> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// An optional field written by [`put_opt`].
    pub(crate) fn opt_str(&mut self) -> Option<Option<&'a str>> {
        match self.take(1)? {
            [0] => Some(None),
            [1] => Some(Some(self.str()?)),
            _ => None,
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Seal {
    pub fn new(
        slot: u32,
        secret: &str,
        socket_dir: Option<PathBuf>,
        forward_timeout: Duration,
    ) -> Seal {
        // HMAC accepts keys of any length.
        let keyed = HmacSha256::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Seal {
            slot,
            keyed,
            socket_dir,
            forward_timeout,
            id_prefix: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
            id_counter: AtomicU64::new(0),
            claims: ClaimsCache::default(),
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
    fn next_request_id(&self) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    /// The signature of a sealed forward.
    fn sign(&self, sealed: &[u8]) -> String {
        hex(&self.mac(&[b"forward", sealed]).finalize().into_bytes())
    }

    /// Seals a forwarded request: (the bytes that travel, their signature).
    pub fn seal(&self, out: &Outgoing<'_>, body: &[u8]) -> (Bytes, String) {
        let claims = self.claims.json_of(out.principal);
        let request_id = self.next_request_id();
        let deadline = now_ms() + self.forward_timeout.as_millis() as u64;
        let mut f = Vec::with_capacity(256 + claims.len() + body.len());
        f.push(FRAME_VERSION);
        f.extend_from_slice(&deadline.to_be_bytes());
        put(&mut f, out.method.as_bytes());
        match out.kind {
            Kind::Mcp => f.push(KIND_MCP),
            Kind::LegacyMessage { session } => {
                f.push(KIND_LEGACY_MESSAGE);
                put(&mut f, session.as_bytes());
            }
        }
        put_opt(&mut f, out.scope.server_id().map(str::as_bytes));
        put(&mut f, request_id.as_bytes());
        put(&mut f, &claims);
        put_len(&mut f, out.headers.len());
        for (name, value) in &out.headers {
            put(&mut f, name.as_bytes());
            put(&mut f, value.as_bytes());
        }
        f.extend_from_slice(body);
        let sig = self.sign(&f);
        (Bytes::from(f), sig)
    }

    /// Verifies a sealed forward: its envelope and the client's body (a view
    /// of `sealed`, not a copy).
    pub fn open(&self, sealed: &Bytes, signature: &str) -> Result<(Envelope, Bytes), &'static str> {
        let expected = self.sign(sealed);
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err("bad signature");
        }
        let mut r = Reader(sealed);
        let (env, rest) = self.read_envelope(&mut r).ok_or("bad envelope")?;
        if env.expired() {
            return Err("deadline passed");
        }
        Ok((env, sealed.slice(sealed.len() - rest..)))
    }

    /// The envelope at the start of a frame, and how many bytes (the body) follow it.
    fn read_envelope(&self, r: &mut Reader<'_>) -> Option<(Envelope, usize)> {
        let version = r.take(1)?[0];
        if version != FRAME_VERSION && version != 1 {
            return None;
        }
        let deadline_ms = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        let method = r.str()?.to_owned();
        let kind = match version {
            1 => Kind::Mcp,
            _ => match r.take(1)? {
                [KIND_MCP] => Kind::Mcp,
                [KIND_LEGACY_MESSAGE] => Kind::LegacyMessage {
                    session: r.str()?.to_owned(),
                },
                _ => return None,
            },
        };
        let scope = r.opt_str()?.map(str::to_owned);
        r.bytes()?; // the request id: makes each frame unique, read by nobody
        let claims = self.claims.parse(r.bytes()?)?;
        let n = r.len()?;
        let mut headers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            headers.push((r.str()?.to_owned(), r.str()?.to_owned()));
        }
        let env = Envelope {
            method,
            kind,
            scope,
            claims,
            headers,
            deadline_ms,
        };
        Some((env, r.0.len()))
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
    let mut out = vec![0; bytes.len() * 2];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = D[usize::from(b >> 4)];
        pair[1] = D[usize::from(b & 15)];
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_writes_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0xab, 0xff, 0x10]), "00abff10");
        assert_eq!(hex(&[]), "");
    }

    fn aff(slot: u32) -> Seal {
        Seal::new(
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
        let wrong_key = Seal::new(3, "another-secret-entirely", None, Duration::from_secs(1));
        assert_eq!(wrong_key.owner(&id, &a, &p), None);
        assert_eq!(aff(0).owner("garbage", &a, &p), None);
    }

    #[test]
    fn envelopes_are_sealed_and_opened() {
        let alice = Principal::new(Claims {
            sub: "alice\nbob".into(), // a newline inside stays escaped
            ..Claims::anonymous()
        });
        let scope = Scope::Server("a".into());
        let out = Outgoing {
            method: "POST",
            kind: &Kind::Mcp,
            scope: &scope,
            principal: &alice,
            headers: vec![("mcp-session-id", "x"), ("accept", "a \"quoted\" value")],
        };
        let (sealed, s) = aff(0).seal(&out, b"line one\nline two");
        let (opened, body) = aff(1).open(&sealed, &s).unwrap();
        assert_eq!(opened.method, "POST");
        assert_eq!(opened.kind, Kind::Mcp);
        assert_eq!(opened.scope(), scope);
        assert_eq!(opened.principal(), alice);
        assert_eq!(
            opened.headers,
            [
                ("mcp-session-id".to_owned(), "x".to_owned()),
                ("accept".to_owned(), "a \"quoted\" value".to_owned())
            ]
        );
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
        let admin = Principal::new(Claims {
            is_admin: true,
            ..(*alice.claims).clone()
        });
        let (escalated, _) = aff(0).seal(
            &Outgoing {
                principal: &admin,
                headers: vec![],
                ..out
            },
            b"line one\nline two",
        );
        assert_eq!(
            aff(1).open(&escalated, &s),
            Err("bad signature"),
            "no privilege escalation"
        );
        let wrong_key = Seal::new(0, "another-secret-entirely", None, Duration::from_secs(1));
        let (foreign, fs) = wrong_key.seal(
            &Outgoing {
                headers: vec![],
                ..out
            },
            b"",
        );
        assert_eq!(aff(1).open(&foreign, &fs), Err("bad signature"));
        let hasty = Seal::new(0, "a-fleet-secret-of-some-length", None, Duration::ZERO);
        let (stale, ss) = hasty.seal(
            &Outgoing {
                headers: vec![],
                ..out
            },
            b"",
        );
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(aff(1).open(&stale, &ss), Err("deadline passed"));
    }

    #[test]
    fn each_forward_carries_its_own_principal_through_the_claims_caches() {
        let (sender, owner) = (aff(0), aff(1));
        let who = |sub: &str, admin: bool| {
            Principal::new(Claims {
                sub: sub.into(),
                is_admin: admin,
                ..Claims::anonymous()
            })
        };
        let (alice, bob, root) = (who("alice", false), who("bob", false), who("alice", true));
        for p in [&alice, &bob, &alice, &root, &bob, &alice] {
            let out = Outgoing {
                method: "POST",
                kind: &Kind::Mcp,
                scope: &Scope::All,
                principal: p,
                headers: vec![],
            };
            let (sealed, sig) = sender.seal(&out, b"{}");
            let (env, _) = owner.open(&sealed, &sig).unwrap();
            assert_eq!(&env.principal(), p);
        }
        // Equal claims in another Arc (a token verified again) read the same.
        let again = who("bob", false);
        let out = Outgoing {
            method: "GET",
            kind: &Kind::Mcp,
            scope: &Scope::All,
            principal: &again,
            headers: vec![],
        };
        let (sealed, sig) = sender.seal(&out, b"");
        assert_eq!(owner.open(&sealed, &sig).unwrap().0.principal(), bob);
    }

    #[test]
    fn the_kind_of_request_travels_sealed() {
        let p = Principal::anonymous();
        let legacy = Kind::LegacyMessage {
            session: "3_abc_def".into(),
        };
        let out = Outgoing {
            method: "POST",
            kind: &legacy,
            scope: &Scope::Server("a".into()),
            principal: &p,
            headers: vec![("content-type", "application/json")],
        };
        let (sealed, sig) = aff(0).seal(&out, b"{}");
        let (env, body) = aff(1).open(&sealed, &sig).unwrap();
        assert_eq!(env.kind, legacy);
        assert_eq!(env.scope(), Scope::Server("a".into()));
        assert_eq!(&body[..], b"{}");
        // The kind is under the signature: a legacy message cannot be turned
        // into an MCP request (or name another session) in transit.
        let mut retagged = sealed.to_vec();
        let at = 1 + 8 + 4 + "POST".len();
        assert_eq!(retagged[at], KIND_LEGACY_MESSAGE);
        retagged[at] = KIND_MCP;
        assert_eq!(
            aff(1).open(&Bytes::from(retagged), &sig),
            Err("bad signature")
        );
        // A frame of the previous layout (no kind field) is an MCP request.
        let a = aff(0);
        let claims = serde_json::to_vec(&*p.claims).unwrap();
        let mut v1 = vec![1];
        v1.extend_from_slice(&(now_ms() + 60_000).to_be_bytes());
        put(&mut v1, b"POST");
        put_opt(&mut v1, None);
        put(&mut v1, b"request-1");
        put(&mut v1, &claims);
        put_len(&mut v1, 0);
        v1.extend_from_slice(b"{}");
        let v1 = Bytes::from(v1);
        let sig = a.sign(&v1);
        let (env, body) = a.open(&v1, &sig).unwrap();
        assert_eq!(
            (env.scope(), &body[..], env.kind),
            (Scope::All, &b"{}"[..], Kind::Mcp)
        );
    }

    #[test]
    fn a_signed_frame_that_does_not_parse_is_refused_not_panicked_on() {
        let a = aff(0);
        let p = Principal::anonymous();
        let out = Outgoing {
            method: "POST",
            kind: &Kind::Mcp,
            scope: &Scope::All,
            principal: &p,
            headers: vec![("accept", "x")],
        };
        let (good, _) = a.seal(&out, b"");
        let mut wrong_version = good.to_vec();
        wrong_version[0] = 9;
        let mut huge_length = good[..9].to_vec();
        huge_length.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut unknown_kind = good.to_vec();
        unknown_kind[1 + 8 + 4 + "POST".len()] = 7;
        let junk: [&[u8]; 6] = [
            b"",
            &wrong_version,
            &unknown_kind,
            &good[..good.len() - 3], // a header cut short
            &huge_length,
            b"{\"method\":\"POST\"}\n{}",
        ];
        for frame in junk {
            let frame = Bytes::copy_from_slice(frame);
            let sig = a.sign(&frame);
            assert_eq!(a.open(&frame, &sig), Err("bad envelope"), "{frame:?}");
        }
    }
}

//! The `Authorization` header and token verification.
//!
//! [`Verifier::verify`] checks, in ContextForge's order: signature and algorithm,
//! `aud` and `iss` (each unless disabled), `exp` (required unless
//! `REQUIRE_TOKEN_EXPIRATION=false`, expired refused), `nbf`/`iat` not in the
//! future, `jti` (required unless `REQUIRE_JTI=false`), `env` (must match
//! `ENVIRONMENT` when present, unless `VALIDATE_TOKEN_ENVIRONMENT=false`).
//! Time checks use the `now` passed in, with [`LEEWAY_SECS`] of clock skew.

use super::claims::{numeric_claim, Claims};
use super::AuthError;
use fleetgate_shared::config::{AuthConfig, JwtAlgorithm};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, PoisonError};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 10;

/// Verified tokens remembered per worker (see [`Verifier::verify_cached`]).
const VERIFIED_CACHE_MAX: usize = 1024;

/// When a verified token is valid, leeway included: `from <= now < until`.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: u64,
    until: u64,
}

impl Window {
    fn contains(&self, now: u64) -> bool {
        self.from <= now && now < self.until
    }
}

type VerifiedCache = Mutex<foldhash::HashMap<Box<str>, (Arc<Claims>, Window)>>;

fn has_ascii_whitespace(b: &[u8]) -> bool {
    memchr::memchr3(b' ', b'\t', b'\n', b).is_some() || memchr::memchr2(b'\r', 0x0c, b).is_some()
}

/// The bearer token in an `Authorization` header value.
///
/// - no header → `Ok(None)` (the caller decides whether anonymous is allowed);
/// - `Bearer <token>` (scheme case-insensitive) → `Ok(Some(token))`;
/// - `Bearer` with no token → [`AuthError::EmptyBearer`]; any other scheme, or an
///   empty header → [`AuthError::BadScheme`]; a token with spaces → `Malformed`.
pub fn bearer(header: Option<&str>) -> Result<Option<&str>, AuthError> {
    let Some(value) = header else {
        return Ok(None);
    };
    // Header values are ASCII (`to_str` refuses anything else): byte-wise
    // scans are exact, and this runs on every request.
    let value = value.trim_ascii();
    let (scheme, rest) = match value.bytes().position(|b| b == b' ' || b == b'\t') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::BadScheme);
    }
    match rest.trim_ascii() {
        "" => Err(AuthError::EmptyBearer),
        // ASCII whitespace, found with memchr: a few instructions per 32
        // bytes of a token hundreds of bytes long, on every request.
        t if has_ascii_whitespace(t.as_bytes()) => Err(AuthError::Malformed(
            "the bearer token contains whitespace".into(),
        )),
        t => Ok(Some(t)),
    }
}

/// Verifies tokens against one [`AuthConfig`]; keys are parsed once, in
/// [`Verifier::new`]. Build one per worker and share it.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: JwtAlgorithm,
    audience: String,
    issuer: String,
    require_exp: bool,
    require_jti: bool,
    environment: Option<String>,
    cache: VerifiedCache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

pub(super) fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Hs384 => Algorithm::HS384,
        JwtAlgorithm::Hs512 => Algorithm::HS512,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

impl Verifier {
    /// Fails with [`AuthError::Config`] when the public key does not parse.
    pub fn new(cfg: &AuthConfig) -> Result<Verifier, AuthError> {
        let pem = || {
            cfg.public_key_pem
                .as_deref()
                .map(str::as_bytes)
                .ok_or_else(|| {
                    AuthError::Config(format!("{} needs JWT_PUBLIC_KEY_PATH", cfg.algorithm))
                })
        };
        let bad_key = |e: jsonwebtoken::errors::Error| {
            AuthError::Config(format!(
                "JWT_PUBLIC_KEY_PATH is not a {} public key: {e}",
                cfg.algorithm
            ))
        };
        let key = match cfg.algorithm {
            a if a.is_hmac() => DecodingKey::from_secret(cfg.secret_key.as_bytes()),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem()?).map_err(bad_key)?,
            _ => DecodingKey::from_rsa_pem(pem()?).map_err(bad_key)?,
        };
        let mut validation = Validation::new(algorithm(cfg.algorithm));
        // exp/nbf/iat are checked here against the caller's `now`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = Vec::new();
        validation.validate_aud = cfg.verify_audience;
        if cfg.verify_audience {
            validation.set_audience(&[&cfg.audience]);
            required.push("aud");
        }
        if cfg.verify_issuer {
            validation.set_issuer(&[&cfg.issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            key,
            validation,
            algorithm: cfg.algorithm,
            audience: cfg.audience.clone(),
            issuer: cfg.issuer.clone(),
            require_exp: cfg.require_expiration,
            require_jti: cfg.require_jti,
            environment: cfg.validate_environment.then(|| cfg.environment.clone()),
            cache: VerifiedCache::default(),
        })
    }

    /// Verifies `token` at `now` (Unix seconds) and reads its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        self.verify_windowed(token, now).map(|(claims, _)| claims)
    }

    /// [`verify`](Self::verify), remembering tokens that passed: a client's
    /// next request with the same token costs a map lookup and the time check,
    /// not a signature check and a claims parse. Only what does not depend on
    /// `now` is remembered; revocation is the caller's check, every time.
    pub fn verify_cached(&self, token: &str, now: u64) -> Result<Arc<Claims>, AuthError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((claims, window)) = cache.get(token) {
            if window.contains(now) {
                return Ok(claims.clone());
            }
            cache.remove(token);
        }
        drop(cache);
        let (claims, window) = self.verify_windowed(token, now)?;
        let claims = Arc::new(claims);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= VERIFIED_CACHE_MAX {
            // Bounded, without bookkeeping: start over (the next request of
            // each live client re-verifies once).
            cache.clear();
        }
        cache.insert(token.into(), (claims.clone(), window));
        Ok(claims)
    }

    /// Verifies `token`; also returns when, with leeway, it is valid.
    fn verify_windowed(&self, token: &str, now: u64) -> Result<(Claims, Window), AuthError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| self.map_error(token, e))?;
        let p = data.claims;
        let exp = numeric_claim(&p, "exp")?;
        match exp {
            None if self.require_exp => return Err(AuthError::MissingExp),
            Some(exp) if now >= exp.saturating_add(LEEWAY_SECS) => return Err(AuthError::Expired),
            _ => {}
        }
        let mut from = 0;
        for name in ["nbf", "iat"] {
            if let Some(t) = numeric_claim(&p, name)? {
                if t > now.saturating_add(LEEWAY_SECS) {
                    return Err(AuthError::NotYetValid);
                }
                from = from.max(t.saturating_sub(LEEWAY_SECS));
            }
        }
        let claims = Claims::from_payload(&p)?;
        if self.require_jti && claims.jti.is_none() {
            return Err(AuthError::MissingJti);
        }
        if let (Some(server), Some(token)) = (&self.environment, &claims.env) {
            if server != token {
                return Err(AuthError::WrongEnvironment {
                    token: token.clone(),
                    server: server.clone(),
                });
            }
        }
        let until = exp.map_or(u64::MAX, |e| e.saturating_add(LEEWAY_SECS));
        Ok((claims, Window { from, until }))
    }

    fn map_error(&self, token: &str, e: jsonwebtoken::errors::Error) -> AuthError {
        match e.into_kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAudience => AuthError::WrongAudience(self.audience.clone()),
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer(self.issuer.clone()),
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                AuthError::WrongAudience(self.audience.clone())
            }
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
                AuthError::WrongIssuer(self.issuer.clone())
            }
            ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm {
                found: jsonwebtoken::decode_header(token)
                    .map(|h| format!("{:?}", h.alg))
                    .unwrap_or_else(|_| "another algorithm".into()),
                expected: self.algorithm.to_string(),
            },
            ErrorKind::Json(e) => AuthError::Malformed(format!("not a JSON claims object: {e}")),
            ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                AuthError::Malformed(
                    "not a JWT (expected header.payload.signature in base64url)".into(),
                )
            }
            other => AuthError::Malformed(format!("{other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config_tests::cfg;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn sign(claims: Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn good() -> Value {
        json!({"sub": "a@x", "iss": "mcpgateway", "aud": "mcpgateway-api", "jti": "j1",
               "iat": NOW - 5, "exp": NOW + 60})
    }

    fn with(mut v: Value, k: &str, val: Value) -> Value {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = val;
        }
        v
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer(None), Ok(None));
        assert_eq!(bearer(Some("Bearer abc")), Ok(Some("abc")));
        assert_eq!(bearer(Some("bearer   abc ")), Ok(Some("abc")));
        assert_eq!(bearer(Some("Bearer")), Err(AuthError::EmptyBearer));
        assert_eq!(bearer(Some("Bearer   ")), Err(AuthError::EmptyBearer));
        assert_eq!(
            bearer(Some("Basic dXNlcjpwYXNz")),
            Err(AuthError::BadScheme)
        );
        assert_eq!(bearer(Some("")), Err(AuthError::BadScheme));
        assert_eq!(bearer(Some("Bearerabc")), Err(AuthError::BadScheme));
        for ws in [" ", "\t", "\n", "\r", "\x0c"] {
            assert!(
                matches!(
                    bearer(Some(&format!("Bearer ab{ws}cd"))),
                    Err(AuthError::Malformed(_))
                ),
                "{ws:?}"
            );
        }
        assert!(matches!(
            bearer(Some("Bearer a b")),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn accepts_a_good_token() {
        let c = cfg(&[("JWT_SECRET_KEY", "k")]);
        let claims = Verifier::new(&c)
            .unwrap()
            .verify(&sign(good(), "k"), NOW)
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.jti.as_deref()),
            ("a@x", Some("j1"))
        );
    }

    #[test]
    fn refuses_each_bad_claim() {
        let v = Verifier::new(&cfg(&[("JWT_SECRET_KEY", "k")])).unwrap();
        let check = |claims: Value, want: AuthError| {
            assert_eq!(v.verify(&sign(claims, "k"), NOW), Err(want))
        };
        check(with(good(), "exp", json!(NOW - 60)), AuthError::Expired);
        check(with(good(), "exp", Value::Null), AuthError::MissingExp);
        check(with(good(), "jti", Value::Null), AuthError::MissingJti);
        check(
            with(good(), "aud", json!("other")),
            AuthError::WrongAudience("mcpgateway-api".into()),
        );
        check(
            with(good(), "aud", Value::Null),
            AuthError::WrongAudience("mcpgateway-api".into()),
        );
        check(
            with(good(), "iss", json!("evil")),
            AuthError::WrongIssuer("mcpgateway".into()),
        );
        check(
            with(good(), "iss", Value::Null),
            AuthError::WrongIssuer("mcpgateway".into()),
        );
        check(
            with(good(), "nbf", json!(NOW + 3600)),
            AuthError::NotYetValid,
        );
        check(
            with(good(), "iat", json!(NOW + 3600)),
            AuthError::NotYetValid,
        );
        let wrong_env = AuthError::WrongEnvironment {
            token: "production".into(),
            server: "development".into(),
        };
        check(with(good(), "env", json!("production")), wrong_env);
        assert_eq!(
            v.verify(&sign(good(), "other"), NOW),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            v.verify("not.a.jwt", NOW),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(v.verify("", NOW), Err(AuthError::Malformed(_))));
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &good(),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(
            v.verify(&hs512, NOW),
            Err(AuthError::WrongAlgorithm { .. })
        ));
    }

    #[test]
    fn leeway_is_small() {
        let v = Verifier::new(&cfg(&[("JWT_SECRET_KEY", "k")])).unwrap();
        let t = sign(with(good(), "exp", json!(NOW)), "k");
        assert!(v.verify(&t, NOW + LEEWAY_SECS - 1).is_ok());
        assert_eq!(v.verify(&t, NOW + LEEWAY_SECS), Err(AuthError::Expired));
    }

    #[test]
    fn switches_relax_checks() {
        let c = cfg(&[
            ("JWT_SECRET_KEY", "k"),
            ("REQUIRE_TOKEN_EXPIRATION", "false"),
            ("REQUIRE_JTI", "false"),
            ("JWT_AUDIENCE_VERIFICATION", "false"),
            ("JWT_ISSUER_VERIFICATION", "false"),
            ("VALIDATE_TOKEN_ENVIRONMENT", "false"),
        ]);
        let v = Verifier::new(&c).unwrap();
        let lax = json!({"username": "u", "aud": "x", "iss": "y", "env": "production"});
        assert_eq!(v.verify(&sign(lax, "k"), NOW).unwrap().sub, "u");
        let expired = with(good(), "exp", json!(NOW - 60));
        assert_eq!(v.verify(&sign(expired, "k"), NOW), Err(AuthError::Expired));
    }

    #[test]
    fn remembered_tokens_keep_their_time_limits() {
        let v = Verifier::new(&cfg(&[("JWT_SECRET_KEY", "k")])).unwrap();
        let mut claims = good();
        claims["nbf"] = json!(NOW + 100);
        let early = sign(claims, "k");
        assert_eq!(
            v.verify_cached(&early, NOW),
            Err(AuthError::NotYetValid),
            "refusals are not remembered"
        );
        let t = sign(good(), "k");
        assert_eq!(v.verify_cached(&t, NOW).unwrap().sub, "a@x");
        assert_eq!(v.verify_cached(&t, NOW + 1).unwrap().sub, "a@x");
        let exp = good()["exp"].as_u64().unwrap();
        assert_eq!(
            v.verify_cached(&t, exp + LEEWAY_SECS),
            Err(AuthError::Expired),
            "a remembered token still expires"
        );
        assert!(v.verify_cached("not.a.jwt", NOW).is_err());
    }
}

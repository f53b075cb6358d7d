//! ContextForge's own tokens verify with the same meaning, and ours have their
//! layout. The vectors (`worker/tests/vectors/contextforge-tokens.json`, a copy
//! of the project's `shared/vectors/` file, checked too when present) were minted
//! by ContextForge 1.1.0's `create_jwt_token` CLI.

use super::config_tests::{cfg, testdata};
use super::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

/// One hour after the vectors were minted: `expired` (1-minute lifetime) is expired.
const NOW: u64 = 1_795_269_005 + 3600;

fn vector_files() -> Vec<Value> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let ours = format!("{dir}/tests/vectors/contextforge-tokens.json");
    let shared = format!("{dir}/../../shared/vectors/contextforge-tokens.json");
    let mut files = vec![std::fs::read_to_string(&ours).unwrap_or_else(|e| panic!("{ours}: {e}"))];
    files.extend(
        std::fs::read_to_string(shared)
            .ok()
            .filter(|s| *s != files[0]),
    );
    files
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect()
}

fn vector_cfg(v: &Value, extra: &[(&str, &str)]) -> AuthConfig {
    let mut pairs = vec![("JWT_SECRET_KEY", v["secret"].as_str().unwrap())];
    pairs.extend_from_slice(extra);
    let c = cfg(&pairs);
    assert_eq!(
        (c.issuer.as_str(), c.audience.as_str()),
        (
            v["issuer"].as_str().unwrap(),
            v["audience"].as_str().unwrap()
        )
    );
    c
}

/// A token's payload, signature unchecked.
fn payload(token: &str) -> Map<String, Value> {
    let mut v = Validation::new(Algorithm::HS256);
    v.insecure_disable_signature_validation();
    (v.validate_exp, v.validate_aud) = (false, false);
    v.required_spec_claims.clear();
    jsonwebtoken::decode(token, &DecodingKey::from_secret(b""), &v)
        .unwrap()
        .claims
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_contextforge_vector_verifies_with_its_meaning() {
    for file in vector_files() {
        let verifier = Verifier::new(&vector_cfg(&file, &[])).unwrap();
        let lax =
            Verifier::new(&vector_cfg(&file, &[("REQUIRE_TOKEN_EXPIRATION", "false")])).unwrap();
        let other_key =
            Verifier::new(&cfg(&[("JWT_SECRET_KEY", "not-the-vector-secret")])).unwrap();
        for (name, t) in file["tokens"].as_object().unwrap() {
            let (token, expected) = (t["token"].as_str().unwrap(), &t["claims"]);
            assert_eq!(Value::Object(payload(token)), *expected, "{name}: payload");
            assert_eq!(
                other_key.verify(token, NOW),
                Err(AuthError::BadSignature),
                "{name}"
            );
            let got = match name.as_str() {
                "expired" => {
                    assert_eq!(verifier.verify(token, NOW), Err(AuthError::Expired));
                    assert_eq!(lax.verify(token, NOW), Err(AuthError::Expired));
                    continue;
                }
                "no_exp" => {
                    assert_eq!(verifier.verify(token, NOW), Err(AuthError::MissingExp));
                    lax.verify(token, NOW).unwrap()
                }
                _ => verifier
                    .verify(token, NOW)
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            };
            assert_eq!(got.sub, expected["sub"].as_str().unwrap(), "{name}");
            assert_eq!(got.email.as_deref(), expected["sub"].as_str(), "{name}");
            assert_eq!(got.jti.as_deref(), expected["jti"].as_str(), "{name}");
            assert_eq!(
                (got.iat, got.exp),
                (expected["iat"].as_u64(), expected["exp"].as_u64()),
                "{name}"
            );
            assert_eq!(
                got.is_admin,
                expected["user"]["is_admin"] == json!(true),
                "{name}"
            );
            let scopes = serde_json::to_value(&got.scopes).unwrap();
            assert_eq!(
                scopes,
                expected.get("scopes").cloned().unwrap_or(json!({})),
                "{name}"
            );
            check_meaning(name, &got);
        }
    }
}

/// What each named vector must allow and refuse.
fn check_meaning(name: &str, c: &Claims) {
    let ip = |s: &str| s.parse().unwrap();
    match name {
        "admin" => assert_eq!((c.is_admin, &c.teams), (true, &TeamScope::All)),
        "teams" => assert_eq!(c.teams, TeamScope::Teams(strs(&["team-123", "team-456"]))),
        "server_scoped" => {
            assert!(path_allowed(c.scopes.server_id.as_deref(), "/servers/srv-a/mcp").is_allowed());
            assert_eq!(
                path_allowed(c.scopes.server_id.as_deref(), "/servers/srv-b/mcp"),
                PathDecision::WrongServer
            );
            assert_eq!(authorize_mcp(c, "tools/call"), Ok(()));
            assert!(authorize_mcp(c, "resources/read").is_err());
        }
        "permission_limited" => {
            assert_eq!(authorize_mcp(c, "tools/list"), Ok(()));
            assert!(authorize_mcp(c, "tools/call").is_err());
            assert!(rest_permits(&c.scopes.permissions, "GET", "/tools"));
            assert!(!rest_permits(&c.scopes.permissions, "POST", "/gateways"));
        }
        "ip_restricted" => {
            assert!(ip_allowed(&c.scopes.ip_restrictions, ip("10.1.7.9")));
            assert!(ip_allowed(&c.scopes.ip_restrictions, ip("192.0.2.7")));
            assert!(!ip_allowed(&c.scopes.ip_restrictions, ip("192.0.2.8")));
        }
        _ => {}
    }
    if !matches!(name, "admin" | "teams") {
        // null teams for a non-admin, or no teams claim: public items only
        assert_eq!(
            (c.is_admin, &c.teams),
            (false, &TeamScope::PublicOnly),
            "{name}"
        );
    }
}

/// The `MintRequest` that reproduces a named vector (as its CLI invocation did).
fn request_like(name: &str, username: &str) -> MintRequest {
    let mut r = MintRequest {
        username: username.into(),
        exp_minutes: 5_256_000,
        ..Default::default()
    };
    match name {
        "admin" => r.admin = true,
        "expired" => r.exp_minutes = 1,
        "no_exp" => r.exp_minutes = 0,
        "teams" => r.teams = Some(strs(&["team-123", "team-456"])),
        "server_scoped" => {
            (r.server_id, r.permissions) =
                (Some("srv-a".into()), strs(&["tools.read", "tools.execute"]))
        }
        "permission_limited" => r.permissions = strs(&["tools.read"]),
        "ip_restricted" => r.ip_restrictions = strs(&["10.1.0.0/16", "192.0.2.7"]),
        _ => {}
    }
    r
}

#[test]
fn minted_tokens_have_the_contextforge_layout() {
    for file in vector_files() {
        let c = vector_cfg(&file, &[]);
        for (name, t) in file["tokens"].as_object().unwrap() {
            let theirs = payload(t["token"].as_str().unwrap());
            let req = request_like(name, theirs["username"].as_str().unwrap());
            let ours = payload(&mint_at(&c, &req, 1_795_269_000).unwrap());
            let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&ours), keys(&theirs), "{name}: claim names");
            for (k, v) in &theirs {
                match k.as_str() {
                    "iat" | "exp" => assert!(ours[k].is_u64(), "{name}.{k}"),
                    "jti" => assert_eq!(
                        uuid::Uuid::parse_str(ours[k].as_str().unwrap())
                            .unwrap()
                            .get_version_num(),
                        4
                    ),
                    _ => assert_eq!(&ours[k], v, "{name}.{k}"),
                }
            }
            let num = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_u64);
            if let (Some(e), Some(i)) = (num(&theirs, "exp"), num(&theirs, "iat")) {
                let lifetime = num(&ours, "exp").unwrap() - num(&ours, "iat").unwrap();
                assert_eq!(lifetime, req.exp_minutes * 60);
                assert_eq!(e - i, lifetime, "{name}: lifetime");
            }
        }
    }
}

#[test]
fn minted_tokens_verify_for_every_algorithm() {
    let hs = cfg(&[
        ("JWT_SECRET_KEY", "round-trip-secret"),
        ("JWT_ALGORITHM", "HS512"),
    ]);
    let (rs_pub, rs_key) = (
        testdata("test-only-rs256.pub.pem"),
        testdata("test-only-rs256.key.pem"),
    );
    let rs = cfg(&[
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_PUBLIC_KEY_PATH", &rs_pub),
        ("JWT_PRIVATE_KEY_PATH", &rs_key),
    ]);
    let (es_pub, es_key) = (
        testdata("test-only-es256.pub.pem"),
        testdata("test-only-es256.key.pem"),
    );
    let es = cfg(&[
        ("JWT_ALGORITHM", "ES256"),
        ("JWT_PUBLIC_KEY_PATH", &es_pub),
        ("JWT_PRIVATE_KEY_PATH", &es_key),
    ]);
    let req = MintRequest {
        username: "u@example.com".into(),
        exp_minutes: 10,
        admin: true,
        server_id: Some("s1".into()),
        permissions: strs(&["tools.*"]),
        time_restrictions: TimeRestrictions {
            business_hours_only: true,
            ..Default::default()
        },
        ..Default::default()
    };
    for c in [&hs, &rs, &es] {
        let now = unix_now();
        let token = mint(c, &req).unwrap();
        let claims = Verifier::new(c)
            .unwrap()
            .verify(&token, now)
            .unwrap_or_else(|e| panic!("{}: {e}", c.algorithm));
        assert_eq!(
            (claims.sub.as_str(), claims.is_admin, &claims.teams),
            ("u@example.com", true, &TeamScope::All)
        );
        assert_eq!(claims.scopes.server_id.as_deref(), Some("s1"));
        assert!(claims.scopes.time_restrictions.business_hours_only);
        assert!(claims.exp.unwrap() >= now + 590);
        for other in [&hs, &rs, &es]
            .into_iter()
            .filter(|o| o.algorithm != c.algorithm)
        {
            assert!(matches!(
                Verifier::new(other).unwrap().verify(&token, now),
                Err(AuthError::WrongAlgorithm { .. })
            ));
        }
    }
    // The RS256 public key used as an HMAC secret (algorithm confusion) is refused.
    let forged = mint(
        &cfg(&[("JWT_SECRET_KEY", &std::fs::read_to_string(&rs_pub).unwrap())]),
        &req,
    )
    .unwrap();
    assert!(matches!(
        Verifier::new(&rs).unwrap().verify(&forged, unix_now()),
        Err(AuthError::WrongAlgorithm { .. })
    ));
}

#[test]
fn key_problems_are_config_errors() {
    let rs_pub = testdata("test-only-rs256.pub.pem");
    let no_private = cfg(&[("JWT_ALGORITHM", "RS256"), ("JWT_PUBLIC_KEY_PATH", &rs_pub)]);
    let err = mint(&no_private, &request_like("user", "u")).unwrap_err();
    assert!(
        matches!(&err, AuthError::Config(m) if m.contains("JWT_PRIVATE_KEY_PATH")),
        "{err}"
    );
    let mut garbage = no_private.clone();
    garbage.public_key_pem =
        Some("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n".into());
    assert!(
        matches!(Verifier::new(&garbage), Err(AuthError::Config(m)) if m.contains("JWT_PUBLIC_KEY_PATH"))
    );
    let mut es_with_rsa = no_private.clone();
    es_with_rsa.algorithm = fleetgate_shared::config::JwtAlgorithm::Es256;
    assert!(matches!(
        Verifier::new(&es_with_rsa),
        Err(AuthError::Config(_))
    ));
    assert_eq!(
        mint(&cfg(&[]), &MintRequest::default()),
        Err(AuthError::MissingSubject)
    );
}

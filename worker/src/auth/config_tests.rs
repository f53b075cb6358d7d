//! Tests of `fleetgate_shared::config::AuthConfig` loading (kept here, beside its
//! users, to keep the config file small), and the `cfg` helper other tests use.

use fleetgate_shared::config::{
    AuthConfig, BusinessHours, Cidr, JwtAlgorithm, Loader, UtcOffset, DEFAULT_SECRET,
};
use std::collections::HashMap;

fn load(pairs: &[(&str, &str)]) -> Result<AuthConfig, Vec<String>> {
    let src: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let mut l = Loader::new(&src);
    let c = AuthConfig::load(&mut l);
    l.finish()
        .map(|_| c)
        .map_err(|e| e.0.into_iter().map(|e| e.var).collect())
}

/// An [`AuthConfig`] from defaults plus `pairs`; panics on invalid ones.
pub(crate) fn cfg(pairs: &[(&str, &str)]) -> AuthConfig {
    load(pairs).unwrap_or_else(|vars| panic!("invalid test config: {vars:?}"))
}

/// A test-only key pair file under `src/auth/testdata/`.
pub(crate) fn testdata(name: &str) -> String {
    format!("{}/src/auth/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn defaults_match_contextforge() {
    let c = load(&[]).unwrap();
    assert_eq!(
        (c.algorithm, c.issuer.as_str()),
        (JwtAlgorithm::Hs256, "mcpgateway")
    );
    assert_eq!(
        (c.audience.as_str(), c.environment.as_str()),
        ("mcpgateway-api", "development")
    );
    assert!(c.verify_audience && c.verify_issuer && c.require_expiration && c.require_jti);
    assert!(c.auth_required && c.mcp_require_auth && c.embed_environment && c.validate_environment);
    assert!(c.is_default_secret() && c.weak_secret_reason().is_some());
    assert_eq!(
        (c.business_hours, c.time_zone),
        (BusinessHours::DEFAULT, UtcOffset::UTC)
    );
    assert!(c.trusted_proxies.is_empty());
    assert!(
        !format!("{c:?}").contains(DEFAULT_SECRET),
        "Debug must not print the secret"
    );
    let strong = cfg(&[("JWT_SECRET_KEY", "a-long-random-secret-0123456789abcdef")]);
    assert!(!strong.is_default_secret() && strong.weak_secret_reason().is_none());
}

#[test]
fn mcp_require_auth_inherits_auth_required() {
    assert!(!cfg(&[("AUTH_REQUIRED", "false")]).mcp_require_auth);
    let c = cfg(&[("MCP_REQUIRE_AUTH", "false")]);
    assert!(c.auth_required && !c.mcp_require_auth);
    assert!(cfg(&[("AUTH_REQUIRED", "false"), ("MCP_REQUIRE_AUTH", "true")]).mcp_require_auth);
}

#[test]
fn bad_values_are_reported_by_name() {
    let errs = load(&[
        ("JWT_ALGORITHM", "none"),
        ("TRUSTED_PROXIES", "10.0.0.0/8, nope"),
        ("TOKEN_BUSINESS_HOURS", "9"),
        ("TOKEN_TIME_ZONE", "Europe/Paris"),
        ("REQUIRE_JTI", "maybe"),
    ])
    .unwrap_err();
    let want = [
        "JWT_ALGORITHM",
        "TRUSTED_PROXIES",
        "REQUIRE_JTI",
        "TOKEN_BUSINESS_HOURS",
        "TOKEN_TIME_ZONE",
    ];
    assert_eq!(errs, want);
    assert_eq!(
        load(&[("JWT_ALGORITHM", "RS256")]).unwrap_err(),
        ["JWT_PUBLIC_KEY_PATH"]
    );
    let unreadable = load(&[
        ("JWT_ALGORITHM", "es256"),
        ("JWT_PUBLIC_KEY_PATH", "/nonexistent/pub.pem"),
        ("JWT_PRIVATE_KEY_PATH", "/nonexistent/key.pem"),
    ]);
    assert_eq!(
        unreadable.unwrap_err(),
        ["JWT_PUBLIC_KEY_PATH", "JWT_PRIVATE_KEY_PATH"]
    );
    let not_pem = load(&[
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_PUBLIC_KEY_PATH", env!("CARGO_MANIFEST_DIR")),
    ]);
    assert_eq!(not_pem.unwrap_err(), ["JWT_PUBLIC_KEY_PATH"]);
    assert_eq!(
        load(&[("JWT_SECRET_KEY", "")]).unwrap_err(),
        ["JWT_SECRET_KEY"]
    );
    // HS* ignores key paths entirely, as ContextForge does
    assert!(load(&[("JWT_PUBLIC_KEY_PATH", "/nonexistent/pub.pem")]).is_ok());
}

#[test]
fn keys_are_read_at_load_and_survive_json() {
    let (public, private) = (
        testdata("test-only-rs256.pub.pem"),
        testdata("test-only-rs256.key.pem"),
    );
    let c = cfg(&[
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_PUBLIC_KEY_PATH", &public),
        ("JWT_PRIVATE_KEY_PATH", &private),
    ]);
    assert!(c
        .public_key_pem
        .as_deref()
        .unwrap()
        .contains("BEGIN PUBLIC KEY"));
    assert!(c
        .private_key_pem
        .as_deref()
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    assert!(!c.is_default_secret() && c.weak_secret_reason().is_none());
    assert!(!format!("{c:?}").contains("BEGIN PRIVATE KEY"));
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<AuthConfig>(&json).unwrap(), c);
    let with_proxies = cfg(&[
        ("TRUSTED_PROXIES", "10.0.0.0/8,::1"),
        ("TOKEN_TIME_ZONE", "+05:30"),
    ]);
    let json = serde_json::to_string(&with_proxies).unwrap();
    assert!(json.contains("\"10.0.0.0/8\""), "{json}");
    assert_eq!(
        serde_json::from_str::<AuthConfig>(&json).unwrap(),
        with_proxies
    );
}

#[test]
fn windows_offsets_and_networks_parse() {
    let bh = BusinessHours::parse("08:30-17").unwrap();
    assert!(bh.contains(8 * 60 + 30) && !bh.contains(17 * 60) && !bh.contains(8 * 60));
    let night = BusinessHours::parse("22-6").unwrap();
    assert!(night.contains(60) && night.contains(23 * 60) && !night.contains(12 * 60));
    assert!(BusinessHours::parse("0-24").unwrap().contains(23 * 60 + 59));
    for bad in ["9-9", "9", "25-3", "9:75-17", "a-b"] {
        assert!(BusinessHours::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(UtcOffset::parse("UTC").unwrap(), UtcOffset::UTC);
    assert_eq!(UtcOffset::parse("Etc/UTC").unwrap(), UtcOffset::UTC);
    assert_eq!(UtcOffset::parse("+02:00").unwrap().minutes, 120);
    assert_eq!(UtcOffset::parse("UTC-0530").unwrap().minutes, -330);
    assert_eq!(UtcOffset::parse("gmt+3").unwrap().minutes, 180);
    for bad in ["CET", "Etc/GMT+2", "+15:00", "+02:60", "UTC+"] {
        assert!(UtcOffset::parse(bad).is_err(), "{bad}");
    }
    let net = Cidr::parse("10.1.2.3/16").unwrap();
    assert!(net.contains("10.1.200.1".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
    assert!(!net.contains("10.2.0.1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
    assert!(!Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("2001:db8::1".parse().unwrap()));
    assert!(Cidr::parse("2001:db8::/32")
        .unwrap()
        .contains("2001:db8:1::1".parse().unwrap()));
    assert!(Cidr::parse("::/0")
        .unwrap()
        .contains("2001:db8:1::1".parse().unwrap()));
    assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("10.0.0/8").is_err());
}

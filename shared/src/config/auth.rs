//! Authentication settings: JWT keys and claims checks, who may call without a
//! token, which proxies' `X-Forwarded-For` to believe, and the business-hours
//! window for time-restricted tokens.
//!
//! Names and defaults are ContextForge's (`JWT_SECRET_KEY`, `JWT_ALGORITHM`, …)
//! except `TRUSTED_PROXIES`, `TOKEN_BUSINESS_HOURS` and `TOKEN_TIME_ZONE`, which
//! ContextForge has no variable for (it hard-codes 09–17 UTC).
//!
//! Key files are read here, at load time: the config travels to workers as JSON,
//! so it carries PEM text, not paths to open later.

use super::Loader;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// The development secret used when `JWT_SECRET_KEY` is unset. Tokens signed
/// with it are forgeable by anyone: log a warning when [`AuthConfig::is_default_secret`].
pub const DEFAULT_SECRET: &str = "my-test-key";

/// Secrets ContextForge refuses as weak (its `WEAK_VALUES`).
#[rustfmt::skip]
const WEAK_SECRETS: &[&str] = &[
    "my-test-key", "my-test-key-but-now-longer-than-32-bytes", "changeme", "secret",
    "password", "test-secret", "my-secret", "12345678",
];

#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthConfig {
    /// `JWT_SECRET_KEY` (default [`DEFAULT_SECRET`]): the HMAC key for HS* algorithms.
    pub secret_key: String,
    /// `JWT_ALGORITHM`: HS256 (default), HS384, HS512, RS256 or ES256.
    pub algorithm: JwtAlgorithm,
    /// `JWT_PUBLIC_KEY_PATH`: required for RS256/ES256; its PEM is in `public_key_pem`.
    pub public_key_path: Option<PathBuf>,
    pub public_key_pem: Option<String>,
    /// `JWT_PRIVATE_KEY_PATH`: RS256/ES256 signing key, needed only to mint tokens.
    pub private_key_path: Option<PathBuf>,
    pub private_key_pem: Option<String>,
    /// `JWT_ISSUER` (default `mcpgateway`).
    pub issuer: String,
    /// `JWT_AUDIENCE` (default `mcpgateway-api`).
    pub audience: String,
    /// `JWT_AUDIENCE_VERIFICATION` (default true).
    pub verify_audience: bool,
    /// `JWT_ISSUER_VERIFICATION` (default true).
    pub verify_issuer: bool,
    /// `REQUIRE_TOKEN_EXPIRATION` (default true): tokens without `exp` are refused.
    pub require_expiration: bool,
    /// `REQUIRE_JTI` (default true): tokens without `jti` (not revocable) are refused.
    pub require_jti: bool,
    /// `AUTH_REQUIRED` (default true): REST calls without a token get 401.
    pub auth_required: bool,
    /// `MCP_REQUIRE_AUTH` (default: `AUTH_REQUIRED`): when false, MCP requests
    /// without a token are served with public-only access (a bad token is still 401).
    pub mcp_require_auth: bool,
    /// `TRUSTED_PROXIES`: comma-separated IPs/CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// `TOKEN_BUSINESS_HOURS` (default `9-17`): the window for `business_hours_only` tokens.
    pub business_hours: BusinessHours,
    /// `TOKEN_TIME_ZONE` (default `UTC`): a fixed offset (`+02:00`, `UTC-5`) for that window.
    pub time_zone: UtcOffset,
    /// `ENVIRONMENT` (development, staging, production; default development).
    pub environment: String,
    /// `EMBED_ENVIRONMENT_IN_TOKENS` (default true): minted tokens carry `env`.
    pub embed_environment: bool,
    /// `VALIDATE_TOKEN_ENVIRONMENT` (default true): a token whose `env` differs is
    /// refused (a token without `env` is accepted).
    pub validate_environment: bool,
}

impl AuthConfig {
    pub fn load(l: &mut Loader<'_>) -> AuthConfig {
        let secret_key = l.string("JWT_SECRET_KEY", DEFAULT_SECRET);
        let algorithm = l.with("JWT_ALGORITHM", JwtAlgorithm::Hs256, JwtAlgorithm::parse);
        let public_key_path = l.opt_string("JWT_PUBLIC_KEY_PATH").map(PathBuf::from);
        let private_key_path = l.opt_string("JWT_PRIVATE_KEY_PATH").map(PathBuf::from);
        let (mut public_key_pem, mut private_key_pem) = (None, None);
        if algorithm.is_hmac() {
            if secret_key.is_empty() {
                l.error("JWT_SECRET_KEY", "", format!("{algorithm} needs a secret"));
            }
        } else {
            let why = format!("{algorithm} needs the PEM public key that verifies tokens");
            match &public_key_path {
                None => l.error("JWT_PUBLIC_KEY_PATH", "", why),
                Some(p) => public_key_pem = read_pem(l, "JWT_PUBLIC_KEY_PATH", p),
            }
            if let Some(p) = &private_key_path {
                private_key_pem = read_pem(l, "JWT_PRIVATE_KEY_PATH", p);
            }
        }
        let auth_required = l.bool("AUTH_REQUIRED", true);
        let list = l.string("TRUSTED_PROXIES", "");
        let mut trusted_proxies = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Cidr::parse(item) {
                Ok(c) => trusted_proxies.push(c),
                Err(e) => l.error("TRUSTED_PROXIES", item, e),
            }
        }
        let environment = l.choice(
            "ENVIRONMENT",
            &["development", "staging", "production"],
            "development",
        );
        AuthConfig {
            secret_key,
            algorithm,
            public_key_path,
            public_key_pem,
            private_key_path,
            private_key_pem,
            issuer: l.string("JWT_ISSUER", "mcpgateway"),
            audience: l.string("JWT_AUDIENCE", "mcpgateway-api"),
            verify_audience: l.bool("JWT_AUDIENCE_VERIFICATION", true),
            verify_issuer: l.bool("JWT_ISSUER_VERIFICATION", true),
            require_expiration: l.bool("REQUIRE_TOKEN_EXPIRATION", true),
            require_jti: l.bool("REQUIRE_JTI", true),
            auth_required,
            mcp_require_auth: l.bool("MCP_REQUIRE_AUTH", auth_required),
            trusted_proxies,
            business_hours: l.with("TOKEN_BUSINESS_HOURS", BusinessHours::DEFAULT, |v| {
                BusinessHours::parse(v)
            }),
            time_zone: l.with("TOKEN_TIME_ZONE", UtcOffset::UTC, UtcOffset::parse),
            environment: environment.to_owned(),
            embed_environment: l.bool("EMBED_ENVIRONMENT_IN_TOKENS", true),
            validate_environment: l.bool("VALIDATE_TOKEN_ENVIRONMENT", true),
        }
    }

    /// True when an HS* key is the built-in development default: anyone can mint
    /// tokens for this gateway. Worth a loud warning at startup.
    pub fn is_default_secret(&self) -> bool {
        self.algorithm.is_hmac() && self.secret_key == DEFAULT_SECRET
    }

    /// Why the HS* secret is weak (a well-known value or under 32 bytes), if it is.
    pub fn weak_secret_reason(&self) -> Option<&'static str> {
        if !self.algorithm.is_hmac() {
            None
        } else if WEAK_SECRETS
            .iter()
            .any(|w| w.eq_ignore_ascii_case(&self.secret_key))
        {
            Some("JWT_SECRET_KEY is a well-known default; set a random secret of 32+ bytes")
        } else if self.secret_key.len() < 32 {
            Some("JWT_SECRET_KEY is shorter than 32 bytes")
        } else {
            None
        }
    }
}

fn read_pem(l: &mut Loader<'_>, var: &'static str, path: &PathBuf) -> Option<String> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains("-----BEGIN ") => Some(text),
        Ok(_) => {
            l.error(var, &shown, "not a PEM file (no -----BEGIN line)");
            None
        }
        Err(e) => {
            l.error(var, &shown, format!("cannot read: {e}"));
            None
        }
    }
}

/// Secrets stay out of logs: only the non-secret essentials are shown.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret_key", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("public_key_path", &self.public_key_path)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("auth_required", &self.auth_required)
            .field("mcp_require_auth", &self.mcp_require_auth)
            .finish_non_exhaustive()
    }
}

/// The JWT signing algorithms fleetgate accepts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "HS384")]
    Hs384,
    #[serde(rename = "HS512")]
    Hs512,
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
}

impl JwtAlgorithm {
    const ALL: [JwtAlgorithm; 5] = [
        JwtAlgorithm::Hs256,
        JwtAlgorithm::Hs384,
        JwtAlgorithm::Hs512,
        JwtAlgorithm::Rs256,
        JwtAlgorithm::Es256,
    ];

    pub fn parse(v: &str) -> Result<JwtAlgorithm, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(v))
            .ok_or_else(|| "expected one of HS256, HS384, HS512, RS256, ES256".to_owned())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Hs384 => "HS384",
            JwtAlgorithm::Hs512 => "HS512",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    /// HS*: one shared secret; RS*/ES*: a key pair.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::Hs256 | JwtAlgorithm::Hs384 | JwtAlgorithm::Hs512
        )
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IP address or network: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
/// Host bits need not be zero (`10.1.2.3/16` is `10.1.0.0/16`), as Python's
/// `ip_network(strict=False)` that ContextForge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`,
    /// what a dual-stack listener reports) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr.to_canonical(), ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Cidr::parse(&s)
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        format!("{}/{}", c.addr, c.prefix)
    }
}

/// A daily window in minutes since local midnight, `start` inclusive, `end`
/// exclusive; `start > end` wraps past midnight (`22-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessHours {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl BusinessHours {
    /// 09:00–17:00, ContextForge's fixed window.
    pub const DEFAULT: BusinessHours = BusinessHours {
        start_minute: 9 * 60,
        end_minute: 17 * 60,
    };

    /// `9-17` or `09:00-17:30`.
    pub fn parse(v: &str) -> Result<BusinessHours, String> {
        let bad = || "expected START-END in hours, e.g. 9-17 or 08:30-17:00".to_owned();
        let (a, b) = v.split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':').unwrap_or((t.trim(), "0"));
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (start, end) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
        if start == end {
            return Err("start and end are the same: the window would be empty".into());
        }
        Ok(BusinessHours {
            start_minute: start % (24 * 60),
            end_minute: end,
        })
    }

    /// Whether `minute` (since local midnight) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

/// A fixed offset from UTC, in minutes. No time-zone database: `UTC`, `GMT`, `Z`,
/// `+02:00`, `-0530`, `UTC+2`, `GMT-03:30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtcOffset {
    pub minutes: i32,
}

impl UtcOffset {
    pub const UTC: UtcOffset = UtcOffset { minutes: 0 };

    pub fn parse(v: &str) -> Result<UtcOffset, String> {
        let bad = || format!("{v:?}: expected UTC or a fixed offset like +02:00 (no zone names)");
        let mut s = v.trim();
        if s.eq_ignore_ascii_case("Etc/UTC") {
            return Ok(UtcOffset::UTC);
        }
        for name in ["UTC", "GMT", "Z"] {
            if s.len() >= name.len() && s[..name.len()].eq_ignore_ascii_case(name) {
                s = &s[name.len()..];
                break;
            }
        }
        if s.is_empty() {
            return Ok(UtcOffset::UTC);
        }
        let sign = match s.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        let rest = &s[1..];
        let (h, m) = match rest.split_once(':') {
            Some(hm) => hm,
            None if rest.len() == 4 => rest.split_at(2),
            None => (rest, "0"),
        };
        let (h, m) = match (h.parse::<i32>(), m.parse::<i32>()) {
            (Ok(h), Ok(m)) if (0..=14).contains(&h) && (0..60).contains(&m) => (h, m),
            _ => return Err(bad()),
        };
        Ok(UtcOffset {
            minutes: sign * (h * 60 + m),
        })
    }
}

//! Minting tokens with ContextForge's claim layout (its `create_jwt_token` CLI):
//!
//! ```json
//! {"username": U, "iat": …, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "jti": uuid4,
//!  "env": ENVIRONMENT, "sub": U,
//!  "user": {"email": U, "full_name": "CLI User", "is_admin": bool, "auth_provider": "cli"},
//!  "teams": null | [ids], "scopes": {"server_id": …, "permissions": […], …}, "exp": …}
//! ```
//!
//! `user` and `teams` appear only for "rich" tokens (admin, teams, scopes or a
//! full name), `teams` is `null` unless teams are given, `scopes` only holds what
//! is set, `env` only with `EMBED_ENVIRONMENT_IN_TOKENS`, `exp` only when the
//! lifetime is not 0.

use super::claims::{Scopes, TimeRestrictions};
use super::verify::algorithm;
use super::AuthError;
use fleetgate_shared::config::{AuthConfig, Cidr};
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

/// What to put in a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MintRequest {
    /// `username` and `sub` (an email, by ContextForge convention).
    pub username: String,
    /// Lifetime in minutes; 0 = no `exp` (refused while `REQUIRE_TOKEN_EXPIRATION`).
    pub exp_minutes: u64,
    pub admin: bool,
    /// `user.full_name` (default "CLI User").
    pub full_name: Option<String>,
    pub server_id: Option<String>,
    pub permissions: Vec<String>,
    pub ip_restrictions: Vec<String>,
    pub time_restrictions: TimeRestrictions,
    /// `None`: no teams claim (public only), or `null` for rich tokens (all teams
    /// for an admin); `Some(ids)`: those teams.
    pub teams: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Payload<'a> {
    username: &'a str,
    iat: u64,
    iss: &'a str,
    aud: &'a str,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<&'a str>,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    teams: Option<Option<&'a [String]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Scopes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

#[derive(Serialize)]
struct User<'a> {
    email: &'a str,
    full_name: &'a str,
    is_admin: bool,
    auth_provider: &'static str,
}

/// Mints a token now. See [`mint_at`].
pub fn mint(cfg: &AuthConfig, req: &MintRequest) -> Result<String, AuthError> {
    mint_at(cfg, req, super::unix_now())
}

/// Mints a token as of `now` (Unix seconds), signed with `JWT_SECRET_KEY` (HS*)
/// or the `JWT_PRIVATE_KEY_PATH` key (RS256/ES256).
pub fn mint_at(cfg: &AuthConfig, req: &MintRequest, now: u64) -> Result<String, AuthError> {
    if req.username.is_empty() {
        return Err(AuthError::MissingSubject);
    }
    let scopes = Scopes {
        server_id: req.server_id.clone().filter(|s| !s.is_empty()),
        permissions: req.permissions.clone(),
        ip_restrictions: req.ip_restrictions.clone(),
        time_restrictions: req.time_restrictions.clone(),
    };
    let rich = req.admin || req.teams.is_some() || !scopes.is_empty() || req.full_name.is_some();
    let exp = match req.exp_minutes {
        0 => None,
        m => Some(
            m.checked_mul(60)
                .and_then(|s| s.checked_add(now))
                .ok_or_else(|| {
                    AuthError::Config(format!("token lifetime of {m} minutes is too long"))
                })?,
        ),
    };
    let payload = Payload {
        username: &req.username,
        iat: now,
        iss: &cfg.issuer,
        aud: &cfg.audience,
        jti: uuid::Uuid::new_v4().to_string(),
        env: cfg.embed_environment.then_some(cfg.environment.as_str()),
        sub: &req.username,
        user: rich.then(|| User {
            email: &req.username,
            full_name: req.full_name.as_deref().unwrap_or("CLI User"),
            is_admin: req.admin,
            auth_provider: "cli",
        }),
        teams: rich.then_some(req.teams.as_deref()),
        scopes: (!scopes.is_empty()).then_some(scopes),
        exp,
    };
    let key = match cfg.algorithm {
        a if a.is_hmac() => EncodingKey::from_secret(cfg.secret_key.as_bytes()),
        a => {
            let pem = cfg.private_key_pem.as_deref().ok_or_else(|| {
                AuthError::Config(format!("minting {a} tokens needs JWT_PRIVATE_KEY_PATH"))
            })?;
            let parsed = match a {
                fleetgate_shared::config::JwtAlgorithm::Es256 => {
                    EncodingKey::from_ec_pem(pem.as_bytes())
                }
                _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
            };
            parsed.map_err(|e| {
                AuthError::Config(format!(
                    "JWT_PRIVATE_KEY_PATH is not a {a} private key: {e}"
                ))
            })?
        }
    };
    jsonwebtoken::encode(&Header::new(algorithm(cfg.algorithm)), &payload, &key)
        .map_err(|e| AuthError::Config(format!("cannot sign the token: {e}")))
}

pub const TOKEN_USAGE: &str = "\
usage: fleetgate token --username EMAIL --exp MINUTES [options]

Mints a JWT signed with this gateway's JWT_SECRET_KEY (or JWT_PRIVATE_KEY_PATH).

  -u, --username EMAIL     the user (sub)
  -e, --exp MINUTES        lifetime in minutes; 0 = never expires (not accepted
                           while REQUIRE_TOKEN_EXPIRATION=true)
      --admin              mark the user as admin (all teams unless --teams)
      --full-name NAME     user.full_name (default \"CLI User\")
      --server-id ID       only usable on /servers/ID/... and general endpoints
      --permissions LIST   comma-separated, e.g. tools.read,tools.execute
      --ip LIST            comma-separated IPs/CIDRs the token may be used from
      --teams LIST         comma-separated team ids the token is scoped to";

/// `fleetgate token …`: parses the arguments after `token`, mints, returns the
/// token (print it) or a message with usage (print it, exit 2).
pub fn token_cli(args: &[String], cfg: &AuthConfig) -> Result<String, String> {
    let usage = |msg: &str| format!("{msg}\n\n{TOKEN_USAGE}");
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (mut req, mut username, mut exp) = (MintRequest::default(), None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        if matches!(flag, "-h" | "--help") {
            return Err(TOKEN_USAGE.to_owned());
        }
        if flag == "--admin" {
            req.admin = true;
            continue;
        }
        let known = [
            "-u",
            "--username",
            "-e",
            "--exp",
            "--full-name",
            "--server-id",
            "--permissions",
            "--ip",
            "--teams",
        ];
        if !known.contains(&flag) {
            return Err(usage(&format!("unknown option {arg:?}")));
        }
        let value = inline
            .or_else(|| it.next().cloned())
            .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
        match flag {
            "-u" | "--username" => username = Some(value),
            "-e" | "--exp" => {
                let m = value.parse::<u64>();
                exp = Some(m.map_err(|_| {
                    usage(&format!(
                        "--exp {value:?}: expected minutes (0 = no expiry)"
                    ))
                })?);
            }
            "--full-name" => req.full_name = Some(value),
            "--server-id" => req.server_id = Some(value),
            "--permissions" => req.permissions = list(&value),
            "--ip" => {
                for ip in list(&value) {
                    Cidr::parse(&ip).map_err(|e| usage(&format!("--ip: {e}")))?;
                    req.ip_restrictions.push(ip);
                }
            }
            _ => req.teams = Some(list(&value)),
        }
    }
    req.username = username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| usage("--username is required"))?;
    req.exp_minutes = exp.ok_or_else(|| usage("--exp is required (minutes; 0 = no expiry)"))?;
    if req.exp_minutes == 0 {
        eprintln!("warning: minting a token that never expires; REQUIRE_TOKEN_EXPIRATION=true gateways refuse it");
    }
    if cfg.is_default_secret() {
        eprintln!("warning: signing with the default JWT_SECRET_KEY: anyone can forge such tokens");
    }
    mint(cfg, &req).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config_tests::cfg;
    use crate::auth::{TeamScope, Verifier};

    fn run(args: &[&str]) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        token_cli(&args, &cfg(&[("JWT_SECRET_KEY", "cli-secret")]))
    }

    fn verify(token: &str) -> crate::auth::Claims {
        let v = Verifier::new(&cfg(&[
            ("JWT_SECRET_KEY", "cli-secret"),
            ("REQUIRE_TOKEN_EXPIRATION", "false"),
        ]));
        v.unwrap().verify(token, crate::auth::unix_now()).unwrap()
    }

    #[test]
    fn cli_mints_every_flag() {
        let t = run(&[
            "--username",
            "bob@example.com",
            "--exp",
            "60",
            "--admin",
            "--server-id=srv-a",
            "--permissions",
            "tools.read, tools.execute",
            "--ip",
            "10.0.0.0/8,192.0.2.7",
            "--teams",
            "t1,t2",
            "--full-name",
            "Bob",
        ])
        .unwrap();
        let c = verify(&t);
        assert_eq!((c.sub.as_str(), c.is_admin), ("bob@example.com", true));
        assert_eq!(c.teams, TeamScope::Teams(vec!["t1".into(), "t2".into()]));
        assert_eq!(c.scopes.server_id.as_deref(), Some("srv-a"));
        assert_eq!(c.scopes.permissions, ["tools.read", "tools.execute"]);
        assert_eq!(c.scopes.ip_restrictions, ["10.0.0.0/8", "192.0.2.7"]);
        let simple = verify(&run(&["-u", "a@x", "-e", "0"]).unwrap());
        assert_eq!(
            (simple.exp, simple.teams, simple.is_admin),
            (None, TeamScope::PublicOnly, false)
        );
    }

    #[test]
    fn cli_usage_errors_are_clear() {
        let err = |args: &[&str]| run(args).unwrap_err();
        assert!(err(&["--help"]).starts_with("usage: fleetgate token"));
        assert!(err(&["--exp", "5"]).starts_with("--username is required"));
        assert!(err(&["-u", "a"]).starts_with("--exp is required"));
        assert!(err(&["-u", "a", "--exp", "soon"]).contains("expected minutes"));
        assert!(err(&["-u", "a", "--exp", "-5"]).contains("expected minutes"));
        assert!(err(&["-u", "a", "--exp", "5", "--ip", "10.0.0.0/99"]).starts_with("--ip:"));
        assert!(
            err(&["-u", "a", "--exp", "5", "--bogus"]).starts_with("unknown option \"--bogus\"")
        );
        assert!(err(&["-u", "a", "--exp"]).starts_with("--exp needs a value"));
        assert!(err(&["-u", "a", "--exp", "5", "--bogus"]).contains("--permissions LIST"));
        assert!(run(&["-u", "a", "--exp", "5"]).is_ok());
    }
}

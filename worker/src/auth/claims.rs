//! What a verified token says, read the way ContextForge reads it.
//!
//! - Subject: `sub`, else the legacy `username`, else `email`, else `user.email`.
//! - Admin: top-level `is_admin` or `user.is_admin`.
//! - Teams ([`TeamScope`], ContextForge's `normalize_token_teams`): absent → public
//!   only; `null` → everything for an admin, public only for anyone else; a list →
//!   those teams (strings or `{"id": …}` objects; an empty list is public only).
//! - Scopes: `server_id`, `permissions`, `ip_restrictions`, `time_restrictions`;
//!   `null` fields count as empty. Wrongly typed scopes refuse the token (fail closed).

use super::AuthError;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A verified token's meaning. Serializable: it travels, signed, inside the
/// envelope of a request forwarded to a session's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The principal: `sub`, `username`, `email` or `user.email`, first present.
    pub sub: String,
    /// The human email identity (`user.email`, `email`, `sub`; UUIDs skipped), as
    /// ContextForge's `get_jwt_user_email_from_payload`.
    pub email: Option<String>,
    /// Token id, for revocation.
    pub jti: Option<String>,
    pub exp: Option<u64>,
    pub iat: Option<u64>,
    pub is_admin: bool,
    pub teams: TeamScope,
    pub scopes: Scopes,
    /// `token_use` (`session` or `api`); session tokens' teams come from the database.
    pub token_use: Option<String>,
    /// `env`: the environment the token was minted for.
    pub env: Option<String>,
}

/// Which team-owned items a token may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeamScope {
    /// Admin with `"teams": null`: no team filtering (ContextForge's `None`).
    All,
    /// Public items only (ContextForge's `[]`).
    PublicOnly,
    /// Public items plus these teams' (never empty).
    Teams(Vec<String>),
}

impl TeamScope {
    /// ContextForge's normalized form: `None` = unrestricted, `Some([])` = public only.
    pub fn as_normalized(&self) -> Option<&[String]> {
        match self {
            TeamScope::All => None,
            TeamScope::PublicOnly => Some(&[]),
            TeamScope::Teams(t) => Some(t),
        }
    }
}

/// `scopes`: restrictions on top of the user's own rights. Empty = unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scopes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub ip_restrictions: Vec<String>,
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "TimeRestrictions::is_empty"
    )]
    pub time_restrictions: TimeRestrictions,
}

impl Scopes {
    pub fn is_empty(&self) -> bool {
        *self == Scopes::default()
    }
}

/// `scopes.time_restrictions`, both of ContextForge's forms: the token-scoping
/// flags (`business_hours_only`, `weekdays_only`) and the explicit window checked
/// at verification (`start_time`/`end_time` `HH:MM[:SS]`, `timezone`, `days`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeRestrictions {
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_false")]
    pub business_hours_only: bool,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_false")]
    pub weekdays_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
}

impl TimeRestrictions {
    pub fn is_empty(&self) -> bool {
        *self == TimeRestrictions::default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `null` reads as the type's default (ContextForge writes `"permissions": null`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Claims {
    /// The caller without credentials where that is allowed: public items only.
    pub fn anonymous() -> Claims {
        Claims {
            sub: "anonymous".into(),
            email: None,
            jti: None,
            exp: None,
            iat: None,
            is_admin: false,
            teams: TeamScope::PublicOnly,
            scopes: Scopes::default(),
            token_use: None,
            env: None,
        }
    }

    /// Reads a verified payload. Type errors are [`AuthError::Malformed`].
    pub fn from_payload(p: &Map<String, Value>) -> Result<Claims, AuthError> {
        let user = p.get("user").and_then(Value::as_object);
        let user_email = user.and_then(|u| u.get("email")).and_then(Value::as_str);
        let sub = ["sub", "username", "email"]
            .iter()
            .map(|k| string_claim(p, k))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .chain(user_email.map(str::to_owned))
            .find(|s| !s.is_empty())
            .ok_or(AuthError::MissingSubject)?;
        let flag = |v: Option<&Value>| v.and_then(Value::as_bool) == Some(true);
        let is_admin = flag(p.get("is_admin")) || flag(user.and_then(|u| u.get("is_admin")));
        let email = [
            user_email,
            p.get("email").and_then(Value::as_str),
            p.get("sub").and_then(Value::as_str),
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty() && uuid::Uuid::parse_str(s).is_err())
        .map(str::to_owned);
        let scopes = match p.get("scopes") {
            None | Some(Value::Null) => Scopes::default(),
            Some(v @ Value::Object(_)) => {
                Scopes::deserialize(v).map_err(|e| AuthError::Malformed(format!("scopes: {e}")))?
            }
            Some(_) => return Err(AuthError::Malformed("scopes must be an object".into())),
        };
        Ok(Claims {
            sub,
            email,
            jti: string_claim(p, "jti")?,
            exp: numeric_claim(p, "exp")?,
            iat: numeric_claim(p, "iat")?,
            is_admin,
            teams: team_scope(p.get("teams"), is_admin)?,
            scopes,
            token_use: string_claim(p, "token_use")?,
            env: string_claim(p, "env")?,
        })
    }
}

fn team_scope(teams: Option<&Value>, is_admin: bool) -> Result<TeamScope, AuthError> {
    let list = match teams {
        None => return Ok(TeamScope::PublicOnly),
        Some(Value::Null) if is_admin => return Ok(TeamScope::All),
        Some(Value::Null) => return Ok(TeamScope::PublicOnly),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(AuthError::Malformed("teams must be a list or null".into())),
    };
    let ids: Vec<String> = list
        .iter()
        .filter_map(|t| match t {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => match o.get("id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    Ok(if ids.is_empty() {
        TeamScope::PublicOnly
    } else {
        TeamScope::Teams(ids)
    })
}

pub(super) fn string_claim(
    p: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, AuthError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::Malformed(format!("{name} must be a string"))),
    }
}

/// NumericDate claims: integers or floats (truncated), negative as 0.
pub(super) fn numeric_claim(p: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    match p.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            Ok(Some(n.as_u64().unwrap_or_else(|| {
                n.as_f64().unwrap_or(0.0).max(0.0) as u64
            })))
        }
        Some(_) => Err(AuthError::Malformed(format!("{name} must be a number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Result<Claims, AuthError> {
        Claims::from_payload(v.as_object().unwrap())
    }

    #[test]
    fn subject_fallbacks() {
        assert_eq!(
            claims(json!({"sub": "a", "username": "b"})).unwrap().sub,
            "a"
        );
        assert_eq!(
            claims(json!({"username": "b", "email": "c"})).unwrap().sub,
            "b"
        );
        assert_eq!(claims(json!({"email": "c"})).unwrap().sub, "c");
        assert_eq!(claims(json!({"user": {"email": "d"}})).unwrap().sub, "d");
        assert_eq!(claims(json!({"sub": ""})), Err(AuthError::MissingSubject));
        assert!(matches!(
            claims(json!({"sub": 7})),
            Err(AuthError::Malformed(_))
        ));
        let uuid_sub = claims(json!({"sub": "0b5d4a0e-8d5c-4a43-9a35-0d0c1f7e5b11"})).unwrap();
        assert_eq!(uuid_sub.email, None);
        let with_user = claims(
            json!({"sub": "0b5d4a0e-8d5c-4a43-9a35-0d0c1f7e5b11", "user": {"email": "e@x"}}),
        );
        assert_eq!(with_user.unwrap().email.as_deref(), Some("e@x"));
    }

    #[test]
    fn admin_top_level_or_nested() {
        assert!(
            claims(json!({"sub": "a", "is_admin": true}))
                .unwrap()
                .is_admin
        );
        assert!(
            claims(json!({"sub": "a", "user": {"is_admin": true}}))
                .unwrap()
                .is_admin
        );
        assert!(
            !claims(json!({"sub": "a", "user": {"is_admin": false}}))
                .unwrap()
                .is_admin
        );
    }

    #[test]
    fn teams_normalize_like_contextforge() {
        let t = |v: Value| claims(v).unwrap().teams;
        assert_eq!(t(json!({"sub": "a"})), TeamScope::PublicOnly);
        assert_eq!(t(json!({"sub": "a", "teams": null})), TeamScope::PublicOnly);
        assert_eq!(
            t(json!({"sub": "a", "teams": null, "is_admin": true})),
            TeamScope::All
        );
        assert_eq!(
            t(json!({"sub": "a", "teams": [], "is_admin": true})),
            TeamScope::PublicOnly
        );
        let mixed = t(json!({"sub": "a", "teams": ["t1", {"id": "t2"}, {"id": ""}, 5]}));
        assert_eq!(mixed, TeamScope::Teams(vec!["t1".into(), "t2".into()]));
        assert_eq!(mixed.as_normalized().unwrap().len(), 2);
        assert_eq!(TeamScope::All.as_normalized(), None);
        assert!(matches!(
            claims(json!({"sub": "a", "teams": "t1"})),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn scopes_accept_nulls_and_refuse_bad_types() {
        let full = json!({"sub": "a", "scopes": {"server_id": null, "permissions": null,
            "ip_restrictions": [], "time_restrictions": {}, "usage_limits": {}}});
        assert!(claims(full).unwrap().scopes.is_empty());
        let s = claims(
            json!({"sub": "a", "scopes": {"server_id": "s", "permissions": ["tools.read"],
            "time_restrictions": {"weekdays_only": true, "days": ["Monday"]}}}),
        )
        .unwrap()
        .scopes;
        assert_eq!(
            (s.server_id.as_deref(), s.permissions.len()),
            (Some("s"), 1)
        );
        assert!(s.time_restrictions.weekdays_only && !s.time_restrictions.business_hours_only);
        for bad in [
            json!({"permissions": "tools.read"}),
            json!({"server_id": 1}),
            json!([]),
        ] {
            assert!(matches!(
                claims(json!({"sub": "a", "scopes": bad})),
                Err(AuthError::Malformed(_))
            ));
        }
    }

    #[test]
    fn numeric_dates() {
        let c = claims(json!({"sub": "a", "exp": 10.9, "iat": 5})).unwrap();
        assert_eq!((c.exp, c.iat), (Some(10), Some(5)));
        assert!(matches!(
            claims(json!({"sub": "a", "exp": "10"})),
            Err(AuthError::Malformed(_))
        ));
    }
}

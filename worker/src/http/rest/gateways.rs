//! `/gateways`: register (connect, initialize, discover, then store everything in
//! one transaction), list, read, update (re-discovers when the URL or the auth
//! changes), delete (cascades), enable/disable, refresh.

use crate::gateway::discovery::{discover, Found};
use crate::gateway::federation::close_all;
use crate::http::rest::error::{ApiError, ApiResult, Fields, JsonBody, QueryPairs};
use crate::http::rest::openapi::{Reply, Route, Verb, LIST_QUERY};
use crate::http::rest::shapes::{Counts, GatewayRead};
use crate::http::rest::{changed, list_params, page, state_alias, state_routes, Kind, ListParams};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Json;
use fleetgate_store::{Gateway, GatewayUpdate, NewGateway, Store, StoreError, Transport};
use http::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

pub fn routes() -> Vec<Route> {
    let [a, b] = state_routes(
        Kind::Gateway,
        "/gateways/{id}/state",
        "/gateways/{id}/toggle",
    );
    vec![
        Route::new(
            Verb::Get,
            "/gateways",
            "Gateways",
            "List gateways",
            get(list),
        )
        .query(LIST_QUERY)
        .reply(200, Reply::Many("GatewayRead"))
        .errors(&[422, 503])
        .slash(),
        Route::new(
            Verb::Post,
            "/gateways",
            "Gateways",
            "Register a gateway: connect, initialize and discover its tools, resources and prompts",
            post(create),
        )
        .body("GatewayCreate")
        .reply(200, Reply::One("GatewayRead"))
        .errors(&[409, 422, 502, 503, 504])
        .slash(),
        Route::new(
            Verb::Get,
            "/gateways/{id}",
            "Gateways",
            "Get a gateway",
            get(read),
        )
        .reply(200, Reply::One("GatewayRead"))
        .errors(&[404, 503]),
        Route::new(
            Verb::Put,
            "/gateways/{id}",
            "Gateways",
            "Update a gateway (a new url or auth is re-discovered first)",
            put(update),
        )
        .body("GatewayUpdate")
        .reply(200, Reply::One("GatewayRead"))
        .errors(&[404, 409, 422, 502, 503, 504]),
        Route::new(
            Verb::Delete,
            "/gateways/{id}",
            "Gateways",
            "Delete a gateway with everything it offers",
            delete(remove),
        )
        .reply(200, Reply::One("Status"))
        .errors(&[404, 503]),
        a,
        b,
        state_alias(Kind::Gateway, "/gateways/{id}/activate", true),
        state_alias(Kind::Gateway, "/gateways/{id}/deactivate", false),
        Route::new(
            Verb::Post,
            "/gateways/{id}/refresh",
            "Gateways",
            "Re-discover a gateway; answers what was added, updated and removed",
            post(refresh),
        )
        .reply(200, Reply::One("GatewayRefresh"))
        .errors(&[404, 502, 503, 504]),
        Route::new(
            Verb::Post,
            "/gateways/{id}/tools/refresh",
            "Gateways",
            "ContextForge's name for /gateways/{id}/refresh",
            post(refresh),
        )
        .reply(200, Reply::One("GatewayRefresh"))
        .errors(&[404, 502, 503, 504]),
    ]
}

/// Tools, resources and prompts per gateway id.
async fn counts(store: &Store) -> Result<HashMap<String, Counts>, StoreError> {
    let mut out: HashMap<String, Counts> = HashMap::new();
    for t in store.list_tools(true).await? {
        out.entry(t.gateway_id).or_default().tools += 1;
    }
    for r in store.list_resources(true).await? {
        out.entry(r.gateway_id).or_default().resources += 1;
    }
    for p in store.list_prompts(true).await? {
        out.entry(p.gateway_id).or_default().prompts += 1;
    }
    Ok(out)
}

pub async fn gateway_read(store: &Store, g: &Gateway) -> Result<GatewayRead, StoreError> {
    let c = counts(store).await?;
    Ok(GatewayRead::new(
        g,
        c.get(&g.id).copied().unwrap_or_default(),
    ))
}

async fn list(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
    let p: ListParams = list_params(&q)?;
    let store = &st.core.registry.store;
    let c = counts(store).await?;
    let items: Vec<GatewayRead> = store
        .list_gateways(p.include_inactive)
        .await?
        .iter()
        .filter(|g| p.gateway_id.as_ref().is_none_or(|id| *id == g.id))
        .filter(|g| p.has_tags(&g.tags))
        .map(|g| GatewayRead::new(g, c.get(&g.id).copied().unwrap_or_default()))
        .collect();
    page(items, &p, "gateways")
}

async fn read(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<GatewayRead>> {
    let store = &st.core.registry.store;
    let g = store.get_gateway(&id).await?;
    Ok(Json(gateway_read(store, &g).await?))
}

/// A gateway body, create or update.
#[derive(Debug, Default)]
struct Input {
    name: Option<String>,
    url: Option<String>,
    description: Option<Option<String>>,
    transport: Option<Transport>,
    /// `(auth_type, headers)` when any auth field was given.
    auth: Option<(Option<String>, BTreeMap<String, String>)>,
    tags: Option<Vec<String>>,
}

const AUTH_FIELDS: &[&str] = &[
    "auth_type",
    "auth_username",
    "auth_password",
    "auth_token",
    "auth_header_key",
    "auth_header_value",
    "auth_headers",
];

fn parse(body: Value, create: bool) -> ApiResult<Input> {
    let mut f = Fields::new(body, &["body"])?;
    let mut input = Input::default();
    if create {
        input.name = Some(f.req_str("name"));
        input.url = Some(f.req_str("url"));
    } else {
        input.name = match f.patch_str("name") {
            Some(Some(n)) if n.trim().is_empty() => {
                f.reject("name", "must not be empty");
                None
            }
            Some(None) => {
                f.reject("name", "must not be null");
                None
            }
            other => other.flatten(),
        };
        input.url = match f.patch_str("url") {
            Some(None) => {
                f.reject("url", "must not be null");
                None
            }
            other => other.flatten(),
        };
    }
    if let Some(url) = &input.url {
        if !url.is_empty() {
            if let Err(msg) = check_url(url) {
                f.reject("url", msg);
            }
        }
    }
    input.description = f.patch_str("description");
    input.transport = match f.patch_str("transport").flatten() {
        None => create.then_some(Transport::StreamableHttp),
        Some(t) => match t.parse::<Transport>() {
            Ok(t) => Some(t),
            Err(msg) => {
                f.reject("transport", msg);
                None
            }
        },
    };
    input.tags = f.opt_tags("tags");
    if AUTH_FIELDS.iter().any(|k| f.has(k)) {
        input.auth = auth(&mut f);
    }
    f.finish()?;
    Ok(input)
}

/// ContextForge's auth fields → the headers sent upstream.
fn auth(f: &mut Fields) -> Option<(Option<String>, BTreeMap<String, String>)> {
    let auth_type = f
        .opt_str("auth_type")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "none");
    let username = f.opt_str("auth_username");
    let password = f.opt_str("auth_password");
    let token = f.opt_str("auth_token");
    let header_key = f.opt_str("auth_header_key");
    let header_value = f.opt_str("auth_header_value");
    let list = match f.take("auth_headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let k = item.get("key").and_then(Value::as_str);
                let v = item.get("value").and_then(Value::as_str);
                match (k, v) {
                    (Some(k), Some(v)) if !k.trim().is_empty() => {
                        out.push((k.trim().to_owned(), v.to_owned()))
                    }
                    (Some(k), _) if k.trim().is_empty() => {}
                    _ => f.reject(
                        &format!("auth_headers.{i}"),
                        "each header must be {\"key\": string, \"value\": string}",
                    ),
                }
            }
            out
        }
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
        Some(_) => {
            f.reject(
                "auth_headers",
                "must be a list of {\"key\", \"value\"} objects",
            );
            Vec::new()
        }
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    let auth_type = match auth_type.as_deref() {
        None if !list.is_empty() || header_key.is_some() => Some("authheaders".to_owned()),
        None if token.is_some() => Some("bearer".to_owned()),
        other => other.map(str::to_owned),
    };
    match auth_type.as_deref() {
        None => {}
        Some("basic") => match (username, password) {
            (Some(u), Some(p)) => headers.push((
                "Authorization".into(),
                format!("Basic {}", base64(format!("{u}:{p}").as_bytes())),
            )),
            (None, _) => f.reject("auth_username", "required when auth_type is basic"),
            (_, None) => f.reject("auth_password", "required when auth_type is basic"),
        },
        Some("bearer") => match token {
            Some(t) if !t.trim().is_empty() => {
                headers.push(("Authorization".into(), format!("Bearer {}", t.trim())))
            }
            _ => f.reject("auth_token", "required when auth_type is bearer"),
        },
        Some("authheaders") => {
            headers.extend(list);
            match (header_key, header_value) {
                (Some(k), Some(v)) if !k.trim().is_empty() => {
                    headers.push((k.trim().to_owned(), v))
                }
                (Some(_), None) => f.reject("auth_header_value", "required with auth_header_key"),
                _ => {}
            }
            if headers.is_empty() {
                f.reject(
                    "auth_headers",
                    "auth_type authheaders needs auth_headers (or auth_header_key and auth_header_value)",
                );
            }
        }
        Some(other) => f.reject(
            "auth_type",
            format!("auth_type {other:?} is not supported: use basic, bearer, authheaders or none"),
        ),
    }
    let mut out = BTreeMap::new();
    for (k, v) in headers {
        if HeaderName::try_from(k.as_str()).is_err() {
            f.reject(
                "auth_headers",
                format!("{k:?} is not a valid HTTP header name"),
            );
        } else if HeaderValue::from_str(&v).is_err() {
            f.reject(
                "auth_headers",
                format!("the value of {k:?} is not a valid HTTP header value"),
            );
        } else {
            out.insert(k, v);
        }
    }
    Some((auth_type, out))
}

/// An absolute `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(format!(
            "{url:?} is not an absolute http:// or https:// URL with a host"
        )),
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// 409 before contacting the upstream if the name (or its slug) is taken.
async fn check_name_free(store: &Store, name: &str, except: Option<&str>) -> ApiResult<()> {
    let slug = fleetgate_store::slugify(name, store.tool_name_separator());
    let taken = store
        .list_gateways(true)
        .await?
        .into_iter()
        .any(|g| Some(g.id.as_str()) != except && (g.name == name.trim() || g.slug == slug));
    if taken {
        return Err(ApiError::conflict(format!(
            "gateway name \"{}\" already exists",
            name.trim()
        )));
    }
    Ok(())
}

/// 409 before contacting the upstream if another gateway already reaches
/// `url` the same way (transport and auth headers): registered twice, every
/// tool would be offered twice.
async fn check_upstream_free(
    store: &Store,
    url: &str,
    transport: fleetgate_store::Transport,
    auth_headers: &std::collections::BTreeMap<String, String>,
    except: Option<&str>,
) -> ApiResult<()> {
    let same = store.list_gateways(true).await?.into_iter().find(|g| {
        Some(g.id.as_str()) != except
            && g.url == url
            && g.transport == transport
            && &g.auth_headers == auth_headers
    });
    if let Some(g) = same {
        return Err(ApiError::conflict(format!(
            "gateway \"{}\" (id {}) already reaches {url} with the same transport and auth; use it, or change it with PUT /gateways/{}",
            g.name, g.id, g.id
        )));
    }
    Ok(())
}

async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<GatewayRead>> {
    let input = parse(body, true)?;
    let store = &st.core.registry.store;
    let name = input.name.unwrap_or_default();
    let url = input.url.unwrap_or_default().trim().to_owned();
    check_name_free(store, &name, None).await?;
    let (auth_type, auth_headers) = input.auth.unwrap_or_default();
    let transport = input.transport.unwrap_or_default();
    check_upstream_free(store, &url, transport, &auth_headers, None).await?;
    let Found {
        discovered,
        skipped,
    } = discover(&st.core.federation, &url, transport, &auth_headers)
        .await
        .map_err(|e| ApiError::upstream(&url, &e))?;
    let new = NewGateway {
        name,
        url,
        description: input.description.flatten(),
        transport,
        auth_type,
        auth_headers,
        tags: input.tags.unwrap_or_default(),
    };
    let g = store.register_gateway(new, discovered).await?;
    changed(&st).await;
    tracing::info!(
        gateway = %g.name,
        url = %g.url,
        skipped = skipped.len(),
        "gateway registered"
    );
    Ok(Json(gateway_read(store, &g).await?))
}

async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<GatewayRead>> {
    let store = &st.core.registry.store;
    let current = store.get_gateway(&id).await?;
    let input = parse(body, false)?;
    if let Some(name) = &input.name {
        check_name_free(store, name, Some(&id)).await?;
    }
    let url = input
        .url
        .as_deref()
        .map(str::trim)
        .unwrap_or(&current.url)
        .to_owned();
    let headers = input
        .auth
        .as_ref()
        .map_or(&current.auth_headers, |(_, h)| h)
        .clone();
    let transport = input.transport.unwrap_or(current.transport);
    let rediscover =
        url != current.url || headers != current.auth_headers || transport != current.transport;
    if rediscover {
        check_upstream_free(store, &url, transport, &headers, Some(&id)).await?;
    }
    let found = if rediscover {
        Some(
            discover(&st.core.federation, &url, transport, &headers)
                .await
                .map_err(|e| ApiError::upstream(&url, &e))?,
        )
    } else {
        None
    };
    let (auth_type, auth_headers) = match input.auth {
        Some((t, h)) => (Some(t), Some(h)),
        None => (None, None),
    };
    let upd = GatewayUpdate {
        name: input.name,
        url: input.url.map(|u| u.trim().to_owned()),
        description: input.description,
        transport: input.transport,
        auth_type,
        auth_headers,
        tags: input.tags,
    };
    let mut g = store.update_gateway(&id, upd).await?;
    if let Some(found) = found {
        if let Err(e) = store.replace_discovered(&id, found.discovered).await {
            // Put the old address back: what is stored must match what was discovered.
            let undo = GatewayUpdate {
                url: Some(current.url.clone()),
                auth_type: Some(current.auth_type.clone()),
                auth_headers: Some(current.auth_headers.clone()),
                transport: Some(current.transport),
                ..GatewayUpdate::default()
            };
            if let Err(u) = store.update_gateway(&id, undo).await {
                tracing::error!(gateway = %id, error = %u, "could not restore the gateway's url after a failed re-discovery");
            }
            changed(&st).await;
            return Err(e.into());
        }
        g = store.set_gateway_reachable(&id, true).await?;
        // Pooled sessions still talk to the old address.
        close_all(st.core.federation.pool.take_all());
    }
    changed(&st).await;
    Ok(Json(gateway_read(store, &g).await?))
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    st.core.registry.store.delete_gateway(&id).await?;
    changed(&st).await;
    Ok(Json(json!({
        "status": "success",
        "message": format!("Gateway {id} deleted"),
    })))
}

/// Ids and update times of what a gateway offers, per kind.
type Stamps = [HashMap<String, Value>; 3];

async fn stamps(store: &Store, gateway_id: &str) -> Result<Stamps, StoreError> {
    let ts = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    let tools = store
        .list_tools(true)
        .await?
        .into_iter()
        .filter(|t| t.gateway_id == gateway_id)
        .map(|t| (t.id, ts(serde_json::to_value(t.updated_at))))
        .collect();
    let resources = store
        .list_resources(true)
        .await?
        .into_iter()
        .filter(|r| r.gateway_id == gateway_id)
        .map(|r| (r.id, ts(serde_json::to_value(r.updated_at))))
        .collect();
    let prompts = store
        .list_prompts(true)
        .await?
        .into_iter()
        .filter(|p| p.gateway_id == gateway_id)
        .map(|p| (p.id, ts(serde_json::to_value(p.updated_at))))
        .collect();
    Ok([tools, resources, prompts])
}

/// (added, updated, removed) between two stamp sets.
fn diff(before: &HashMap<String, Value>, after: &HashMap<String, Value>) -> (usize, usize, usize) {
    let before_ids: HashSet<&String> = before.keys().collect();
    let after_ids: HashSet<&String> = after.keys().collect();
    let added = after_ids.difference(&before_ids).count();
    let removed = before_ids.difference(&after_ids).count();
    let updated = after
        .iter()
        .filter(|(id, t)| before.get(*id).is_some_and(|b| b != *t))
        .count();
    (added, updated, removed)
}

async fn refresh(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let store = &st.core.registry.store;
    let g = store.get_gateway(&id).await?;
    let found = match discover(&st.core.federation, &g.url, g.transport, &g.auth_headers)
        .await
        .map_err(|e| ApiError::upstream(&g.url, &e))
    {
        Ok(f) => f,
        Err(e) => {
            if let Err(se) = store.set_gateway_reachable(&id, false).await {
                tracing::warn!(gateway = %id, error = %se, "could not mark the gateway unreachable");
            }
            changed(&st).await;
            return Err(e);
        }
    };
    let before = stamps(store, &id).await?;
    let summary = store.replace_discovered(&id, found.discovered).await?;
    store.set_gateway_reachable(&id, true).await?;
    let after = stamps(store, &id).await?;
    changed(&st).await;
    let [t, r, p] = [0, 1, 2].map(|i| diff(&before[i], &after[i]));
    let now = store.get_gateway(&id).await?.updated_at;
    Ok(Json(json!({
        "gatewayId": id,
        "success": true,
        "error": null,
        "toolsAdded": t.0,
        "toolsUpdated": t.1,
        "toolsRemoved": t.2,
        "resourcesAdded": r.0,
        "resourcesUpdated": r.1,
        "resourcesRemoved": r.2,
        "promptsAdded": p.0,
        "promptsUpdated": p.1,
        "promptsRemoved": p.2,
        "added": summary.added,
        "updated": summary.updated,
        "removed": summary.removed,
        "validationErrors": found.skipped,
        "durationMs": started.elapsed().as_secs_f64() * 1000.0,
        "refreshedAt": now,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn contextforge_auth_fields_become_headers() {
        let i = parse(
            json!({"name": "a", "url": "http://h/mcp", "auth_type": "basic", "auth_username": "u", "auth_password": "p"}),
            true,
        )
        .unwrap();
        let (t, h) = i.auth.unwrap();
        assert_eq!(t.as_deref(), Some("basic"));
        assert_eq!(h["Authorization"], "Basic dTpw");

        let i = parse(
            json!({"name": "a", "url": "http://h/mcp", "authType": "authheaders", "authHeaders": [{"key": "X-Key", "value": "v"}]}),
            true,
        )
        .unwrap();
        assert_eq!(i.auth.unwrap().1["X-Key"], "v");

        let i = parse(
            json!({"name": "a", "url": "http://h/mcp", "auth_token": "t"}),
            true,
        )
        .unwrap();
        assert_eq!(i.auth.unwrap().1["Authorization"], "Bearer t");
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let Err(ApiError::Validation(errs)) = parse(
            json!({"name": "a", "url": "ftp://h", "transport": "pigeon"}),
            true,
        ) else {
            panic!("expected 422")
        };
        let locs: Vec<String> = errs.iter().map(|e| e.loc.join(".")).collect();
        assert_eq!(locs, vec!["body.url", "body.transport"]);
        assert!(errs[1].msg.contains("unknown transport"), "{}", errs[1].msg);
        let i = parse(
            json!({"name": "a", "url": "http://h/sse", "transport": "SSE"}),
            true,
        )
        .unwrap();
        assert_eq!(i.transport, Some(Transport::Sse));

        let Err(ApiError::Validation(errs)) = parse(
            json!({"name": "a", "url": "http://h", "auth_type": "bearer"}),
            true,
        ) else {
            panic!("expected 422")
        };
        assert_eq!(errs[0].loc, vec!["body", "auth_token"]);
    }
}

//! The worker's view of the registry: an immutable [`Snapshot`] of everything
//! enabled, indexed per scope, swapped atomically when the database changes.
//!
//! Reads on the hot path (`tools/call`) are one `Arc` clone and one hash lookup.
//! Writers (the REST API on any worker of any host) bump the store's registry
//! version; every worker polls it (`REGISTRY_POLL_INTERVAL`) and reloads, and the
//! worker that made a change reloads at once.
//!
//! Naming: on `/mcp` and `/rpc` (scope [`Scope::All`]) a tool or prompt is exposed
//! under its qualified name `{gateway-slug}{sep}{name}` (ContextForge's form). A
//! virtual server exposes it under its upstream name when that name is unique
//! within the server, and under the qualified name only on a collision.

use crate::gateway::scope::Scope;
use fleetgate_store::{
    Gateway, Prompt, Resource, ResourceTemplate, Server, Store, StoreError, Tool,
};
use foldhash::HashMap;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// A tool as one scope exposes it.
#[derive(Debug, Clone)]
pub struct Exposed<T> {
    pub name: String,
    pub item: Arc<T>,
}

/// What one scope (everything, or one virtual server) exposes.
#[derive(Debug, Default)]
pub struct ScopeIndex {
    pub tools: Vec<Exposed<Tool>>,
    tool_by_name: HashMap<String, usize>,
    pub prompts: Vec<Exposed<Prompt>>,
    prompt_by_name: HashMap<String, usize>,
    pub resources: Vec<Arc<Resource>>,
    resource_by_uri: HashMap<String, usize>,
    pub templates: Vec<Arc<ResourceTemplate>>,
    /// Gateways this scope reaches.
    pub gateway_ids: HashSet<String>,
}

impl ScopeIndex {
    pub fn tool(&self, name: &str) -> Option<&Exposed<Tool>> {
        self.tool_by_name.get(name).map(|i| &self.tools[*i])
    }
    pub fn prompt(&self, name: &str) -> Option<&Exposed<Prompt>> {
        self.prompt_by_name.get(name).map(|i| &self.prompts[*i])
    }
    pub fn resource(&self, uri: &str) -> Option<&Arc<Resource>> {
        self.resource_by_uri.get(uri).map(|i| &self.resources[*i])
    }
}

/// Everything enabled in the registry at one version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub gateways: HashMap<String, Arc<Gateway>>,
    pub servers: HashMap<String, Arc<Server>>,
    all: ScopeIndex,
    per_server: HashMap<String, ScopeIndex>,
}

impl Snapshot {
    /// The index of `scope`; `None` for an unknown (or disabled) virtual server.
    pub fn scope(&self, scope: &Scope) -> Option<&ScopeIndex> {
        match scope {
            Scope::All => Some(&self.all),
            Scope::Server(id) => self.per_server.get(id.as_ref()),
        }
    }

    pub fn gateway(&self, id: &str) -> Option<&Arc<Gateway>> {
        self.gateways.get(id)
    }

    fn build(
        version: i64,
        gateways: Vec<Gateway>,
        tools: Vec<Tool>,
        resources: Vec<Resource>,
        templates: Vec<ResourceTemplate>,
        prompts: Vec<Prompt>,
        servers: Vec<Server>,
    ) -> Snapshot {
        let gateways: HashMap<String, Arc<Gateway>> = gateways
            .into_iter()
            .filter(|g| g.enabled)
            .map(|g| (g.id.clone(), Arc::new(g)))
            .collect();
        let live = |gw: &str| gateways.contains_key(gw);
        let tools: Vec<Arc<Tool>> = tools
            .into_iter()
            .filter(|t| t.enabled && live(&t.gateway_id))
            .map(Arc::new)
            .collect();
        let prompts: Vec<Arc<Prompt>> = prompts
            .into_iter()
            .filter(|p| p.enabled && live(&p.gateway_id))
            .map(Arc::new)
            .collect();
        let resources: Vec<Arc<Resource>> = resources
            .into_iter()
            .filter(|r| r.enabled && live(&r.gateway_id))
            .map(Arc::new)
            .collect();
        let templates: Vec<Arc<ResourceTemplate>> = templates
            .into_iter()
            .filter(|t| t.enabled && live(&t.gateway_id))
            .map(Arc::new)
            .collect();

        let all = index(
            tools.iter().map(|t| (t.name.clone(), t.clone())).collect(),
            prompts
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            resources.clone(),
            templates.clone(),
        );
        let mut per_server = HashMap::default();
        let mut server_map = HashMap::default();
        for s in servers.into_iter().filter(|s| s.enabled) {
            let s_tools = by_id(&s.associated_tools, &tools, |t| &t.id);
            let s_prompts = by_id(&s.associated_prompts, &prompts, |p| &p.id);
            let s_resources = by_id(&s.associated_resources, &resources, |r| &r.id);
            // Templates come with the gateways whose resources the server holds.
            let res_gateways: HashSet<&str> =
                s_resources.iter().map(|r| r.gateway_id.as_str()).collect();
            let s_templates = templates
                .iter()
                .filter(|t| res_gateways.contains(t.gateway_id.as_str()))
                .cloned()
                .collect();
            let idx = index(
                short_names(&s_tools, |t| (&t.original_name, &t.name)),
                short_names(&s_prompts, |p| (&p.original_name, &p.name)),
                s_resources,
                s_templates,
            );
            per_server.insert(s.id.clone(), idx);
            server_map.insert(s.id.clone(), Arc::new(s));
        }
        Snapshot {
            version,
            gateways,
            servers: server_map,
            all,
            per_server,
        }
    }
}

/// The items whose id is in `ids`, in registry order.
fn by_id<T>(ids: &[String], items: &[Arc<T>], id_of: fn(&T) -> &String) -> Vec<Arc<T>> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    items
        .iter()
        .filter(|i| wanted.contains(id_of(i).as_str()))
        .cloned()
        .collect()
}

/// Upstream names where unique within the set, qualified names on collisions.
fn short_names<T>(items: &[Arc<T>], names: fn(&T) -> (&String, &String)) -> Vec<(String, Arc<T>)> {
    let mut count: HashMap<&str, usize> = HashMap::default();
    for i in items {
        *count.entry(names(i).0.as_str()).or_default() += 1;
    }
    items
        .iter()
        .map(|i| {
            let (short, qualified) = names(i);
            let name = if count[short.as_str()] == 1 {
                short
            } else {
                qualified
            };
            (name.clone(), i.clone())
        })
        .collect()
}

fn index(
    tools: Vec<(String, Arc<Tool>)>,
    prompts: Vec<(String, Arc<Prompt>)>,
    resources: Vec<Arc<Resource>>,
    templates: Vec<Arc<ResourceTemplate>>,
) -> ScopeIndex {
    let mut gateway_ids: HashSet<String> = HashSet::new();
    gateway_ids.extend(tools.iter().map(|(_, t)| t.gateway_id.clone()));
    gateway_ids.extend(prompts.iter().map(|(_, p)| p.gateway_id.clone()));
    gateway_ids.extend(resources.iter().map(|r| r.gateway_id.clone()));
    gateway_ids.extend(templates.iter().map(|t| t.gateway_id.clone()));
    let tools: Vec<Exposed<Tool>> = tools
        .into_iter()
        .map(|(name, item)| Exposed { name, item })
        .collect();
    let prompts: Vec<Exposed<Prompt>> = prompts
        .into_iter()
        .map(|(name, item)| Exposed { name, item })
        .collect();
    ScopeIndex {
        tool_by_name: tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect(),
        prompt_by_name: prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect(),
        resource_by_uri: resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.uri.clone(), i))
            .collect(),
        tools,
        prompts,
        resources,
        templates,
        gateway_ids,
    }
}

/// The current snapshot, and how to refresh it.
pub struct Registry {
    pub store: Store,
    current: RwLock<Arc<Snapshot>>,
    reload_lock: tokio::sync::Mutex<()>,
}

/// How often a registry read is tried again while writes race it.
const CONSISTENT_READ_ATTEMPTS: u32 = 5;

impl Registry {
    pub async fn load(store: Store) -> Result<Registry, StoreError> {
        let snap = Self::read(&store).await?;
        Ok(Registry {
            store,
            current: RwLock::new(Arc::new(snap)),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Before an answer built from the whole catalog (a list): reloads if
    /// the store has a newer version, so a write that has answered is seen
    /// by the next list on any worker. (One indexed one-row read.)
    pub async fn fresh(&self) {
        if let Err(e) = self.refresh(false).await {
            tracing::debug!(error = %e, "could not check the registry version before a list");
        }
    }

    /// After a lookup missed: reloads if the store has a newer version than
    /// this worker's snapshot. True if a newer snapshot is now in place.
    /// (One indexed one-row read per miss; concurrent misses wait for one
    /// reload.)
    pub async fn refresh_on_miss(&self) -> bool {
        let seen = self.snapshot().version;
        match self.refresh(false).await {
            Ok(()) => self.snapshot().version != seen,
            Err(e) => {
                tracing::debug!(error = %e, "could not check the registry version after a miss");
                false
            }
        }
    }

    /// Reloads when the database's registry version moved (or always, with `force`).
    pub async fn refresh(&self, force: bool) -> Result<(), StoreError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let seen = self.snapshot().version;
        if !force && self.store.registry_version().await? == seen {
            return Ok(());
        }
        let snap = Self::read(&self.store).await?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snap);
        Ok(())
    }

    /// A snapshot no reader sees half of a change in: it is read between
    /// two reads of the version that agree (every write bumps the version
    /// in its own transaction, so none committed in between). When writes
    /// keep racing the read, the last one read is used under the older
    /// version, so the next check reloads it.
    async fn read(store: &Store) -> Result<Snapshot, StoreError> {
        let mut attempts = 0;
        loop {
            let version = store.registry_version().await?;
            let snap = Snapshot::build(
                version,
                store.list_gateways(false).await?,
                store.list_tools(false).await?,
                store.list_resources(false).await?,
                store.list_resource_templates(false).await?,
                store.list_prompts(false).await?,
                store.list_servers(false).await?,
            );
            attempts += 1;
            if store.registry_version().await? == version || attempts == CONSISTENT_READ_ATTEMPTS {
                return Ok(snap);
            }
        }
    }
}

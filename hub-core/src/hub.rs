//! The hub's state and the parts it is wired from. Every component that needs the hub gets an
//! `Arc<Hub>`; the users table is behind one mutex, held only for in-memory work (never across
//! an await), and every change to it is written through to the store while held, so the disk
//! never lags what others have seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use config::HubConfig;
use serde_json::Value;
use tokio::task::AbortHandle;

use crate::login::Authenticator;
use crate::metrics::HubMetrics;
use crate::model::{Phase, Server, TokenRecord, User, UserRecord, server_prefix};
use crate::proxy_api::ProxyApi;
use crate::session::Sessions;
use crate::spawner::Spawner;
use crate::store::{StateStore, StoreError};
use crate::tokens::Tokens;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The JupyterHub REST API version we follow; clients such as jupyterhub-idle-culler switch
/// features on the hub's reported version.
pub const JUPYTERHUB_API_VERSION: &str = "5.5.4";

pub struct Hub {
    pub config: HubConfig,
    /// `config.base_url`, normalised: `/` or `/prefix/`.
    pub base: String,
    pub store: Arc<dyn StateStore>,
    users: Mutex<BTreeMap<String, User>>,
    pub spawner: Arc<dyn Spawner>,
    pub proxy: ProxyApi,
    pub sessions: Sessions,
    pub tokens: Tokens,
    pub auth: Arc<Authenticator>,
    pub metrics: HubMetrics,
    /// Where the proxy and servers reach the hub, e.g. `http://127.0.0.1:8081`.
    pub hub_url: String,
    /// Spawns in flight, to abort one when its server is stopped while pending.
    pub(crate) spawn_tasks: Mutex<HashMap<(String, String), AbortHandle>>,
    /// Serialises route reconciles (JupyterHub's `check_routes` lock).
    pub(crate) reconcile_lock: tokio::sync::Mutex<()>,
    /// OAuth codes handed to servers' login callbacks, not yet exchanged.
    pub(crate) oauth: crate::web::oauth::Codes,
    pub started_ms: u64,
}

pub struct HubParts {
    pub config: HubConfig,
    pub store: Arc<dyn StateStore>,
    pub spawner: Arc<dyn Spawner>,
    pub proxy: ProxyApi,
    pub sessions: Sessions,
    pub auth: Arc<Authenticator>,
    pub hub_url: String,
}

impl Hub {
    /// Builds the hub from its parts and the store's contents. Servers keep the phase the store
    /// recorded; `lifecycle::adopt_servers` checks them against reality next.
    pub fn new(parts: HubParts) -> Result<Arc<Hub>, StoreError> {
        let loaded = parts.store.load()?;
        let mut users: BTreeMap<String, User> = loaded
            .users
            .into_iter()
            .map(|record| {
                (
                    record.name.clone(),
                    User {
                        record,
                        servers: Default::default(),
                    },
                )
            })
            .collect();
        for record in loaded.servers {
            if let Some(user) = users.get_mut(&record.user) {
                let mut server = Server::new(&record.user, &record.name);
                server.record = record;
                user.servers.insert(server);
            }
        }
        let mut api_tokens = parts.config.api_tokens.clone();
        if let Ok(token) = std::env::var("EDGEHUB_API_TOKEN")
            && !token.is_empty()
        {
            api_tokens.push(token);
        }
        let hub = Hub {
            base: parts.config.base_prefix(),
            tokens: Tokens::new(&api_tokens, loaded.tokens),
            config: parts.config,
            store: parts.store,
            users: Mutex::new(users),
            spawner: parts.spawner,
            proxy: parts.proxy,
            sessions: parts.sessions,
            auth: parts.auth,
            metrics: HubMetrics::new(),
            hub_url: parts.hub_url,
            spawn_tasks: Mutex::new(HashMap::new()),
            reconcile_lock: tokio::sync::Mutex::new(()),
            oauth: Default::default(),
            started_ms: proxy::timestamp::now_ms(),
        };
        for name in hub.config.auth.admin_users.clone() {
            hub.ensure_user(&name, true)?;
        }
        hub.update_gauges();
        Ok(Arc::new(hub))
    }

    pub fn users(&self) -> MutexGuard<'_, BTreeMap<String, User>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user, created if new. `admin` only ever raises the flag: an admin from the
    /// configuration or the users file stays one.
    pub fn ensure_user(&self, name: &str, admin: bool) -> Result<(), StoreError> {
        let mut users = self.users();
        if let Some(user) = users.get_mut(name) {
            if admin && !user.record.admin {
                user.record.admin = true;
                self.store.put_user(&user.record)?;
            }
            return Ok(());
        }
        let record = UserRecord {
            name: name.to_owned(),
            admin,
            created_ms: proxy::timestamp::now_ms(),
            last_activity_ms: None,
        };
        self.store.put_user(&record)?;
        users.insert(
            name.to_owned(),
            User {
                record,
                servers: Default::default(),
            },
        );
        drop(users);
        self.update_gauges();
        Ok(())
    }

    pub fn is_admin(&self, name: &str) -> bool {
        self.users().get(name).is_some_and(|u| u.record.admin)
    }

    /// Applies `change` to one server (created as stopped if new) and writes it through.
    pub fn update_server<T>(
        &self,
        user: &str,
        server: &str,
        change: impl FnOnce(&mut Server) -> T,
    ) -> Result<Option<T>, StoreError> {
        let mut users = self.users();
        let Some(u) = users.get_mut(user) else {
            return Ok(None);
        };
        let s = u.servers.get_or_insert_with(server, || Server::new(user, server));
        let out = change(s);
        self.store.put_server(&s.record)?;
        Ok(Some(out))
    }

    pub fn server(&self, user: &str, server: &str) -> Option<Server> {
        self.users().get(user)?.servers.get(server).cloned()
    }

    pub fn prefix(&self, user: &str, server: &str) -> String {
        server_prefix(&self.base, user, server)
    }

    /// The hub's API as servers reach it (`JUPYTERHUB_API_URL`).
    pub fn api_url(&self) -> String {
        format!("{}{}hub/api", self.hub_url, self.base)
    }

    /// Records activity, never moving it backwards, and not for timestamps more than an hour in
    /// the future (JupyterHub's rule). Writes only when it moved by at least 30 s
    /// (`activity_resolution`), which keeps the database quiet under chatty servers.
    pub fn note_activity(&self, user: &str, server: Option<&str>, at_ms: u64) -> Result<(), StoreError> {
        const RESOLUTION_MS: u64 = 30_000;
        if at_ms > proxy::timestamp::now_ms() + 3_600_000 {
            return Ok(());
        }
        let newer = |old: Option<u64>| old.is_none_or(|o| at_ms >= o + RESOLUTION_MS);
        let mut users = self.users();
        let Some(u) = users.get_mut(user) else { return Ok(()) };
        if newer(u.record.last_activity_ms) {
            u.record.last_activity_ms = Some(at_ms);
            self.store.put_user(&u.record)?;
        }
        if let Some(s) = server.and_then(|name| u.servers.get_mut(name))
            && s.record.phase.is_active()
            && newer(s.record.last_activity_ms)
        {
            s.record.last_activity_ms = Some(at_ms);
            self.store.put_server(&s.record)?;
        }
        Ok(())
    }

    /// Issues a new API token for `user` (and a server, for `JUPYTERHUB_API_TOKEN`).
    pub fn issue_token(
        &self,
        user: &str,
        server: Option<&str>,
        note: &str,
        expires_in_secs: Option<u64>,
    ) -> Result<(String, TokenRecord), StoreError> {
        let token = crate::tokens::generate();
        let now = proxy::timestamp::now_ms();
        let mut record = TokenRecord {
            id: 0,
            hash: crate::tokens::hash(&token),
            user: user.to_owned(),
            server: server.map(str::to_owned),
            note: note.to_owned(),
            created_ms: now,
            expires_ms: expires_in_secs.map(|s| now + s * 1000),
        };
        record.id = self.store.add_token(&record)?;
        self.tokens.insert(record.clone());
        Ok((token, record))
    }

    pub fn revoke_server_tokens(&self, user: &str, server: &str) {
        for id in self.tokens.remove_server_tokens(user, server) {
            if let Err(e) = self.store.delete_token(id) {
                tracing::warn!("cannot delete token {id} of {user}'s server: {e}");
            }
        }
    }

    /// Counts for limits and gauges, in one pass.
    pub fn counts(&self) -> Counts {
        Counts::of(&self.users())
    }

    pub fn update_gauges(&self) {
        let c = self.counts();
        self.metrics.running_servers.set(c.running as f64);
        self.metrics.total_users.set(c.users as f64);
    }

    /// `/hub/api/info`'s spawner and authenticator description.
    pub fn info(&self) -> Value {
        serde_json::json!({
            "version": JUPYTERHUB_API_VERSION,
            "edgehub_version": VERSION,
            "spawner": {"class": self.spawner.kind(), "version": VERSION, "profiles": self.spawner.profiles()},
            "authenticator": {"class": format!("{:?}", self.config.auth.authenticator).to_lowercase(), "version": VERSION},
            "python": "none (edgehub is written in Rust)",
            "sys_executable": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
        })
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub users: usize,
    pub pending: usize,
    pub running: usize,
    pub stopping: usize,
}

impl Counts {
    pub fn of(users: &BTreeMap<String, User>) -> Counts {
        let mut c = Counts {
            users: users.len(),
            ..Default::default()
        };
        for s in users.values().flat_map(|u| u.servers.values()) {
            match s.phase() {
                Phase::Pending => c.pending += 1,
                Phase::Running => c.running += 1,
                Phase::Stopping => c.stopping += 1,
                Phase::Stopped => {}
            }
        }
        c
    }

    pub fn active(&self) -> usize {
        self.pending + self.running + self.stopping
    }
}

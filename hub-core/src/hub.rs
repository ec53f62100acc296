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
use crate::model::{Phase, Server, ServerRecord, TokenRecord, User, UserRecord, server_prefix};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::proxy_api::ProxyApi;
use crate::replicas::Leadership;
use crate::session::Sessions;
use crate::spawner::Spawner;
use crate::store::{Cas, Expect, LoadedUser, StateStore, StoreError};
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
    /// This hub process's name in the state database (`replicas::new_replica_id`).
    pub replica: String,
    /// Whether this replica runs the background work (reconcile, culling, polls, sweeps,
    /// takeovers): always with SQLite, by lease with PostgreSQL.
    pub leader: Leadership,
    /// Progress logs of spawns another replica runs, fed from the state database.
    mirrors: Mutex<HashMap<(String, String), ProgressSink>>,
    /// JupyterHub's `admin` role, expanded once.
    pub admin_scopes: crate::scopes::Scopes,
    /// Spawns failed in a row, against `limits.consecutive_failure_limit`.
    pub spawn_failures: crate::failure_limit::ConsecutiveFailures,
    /// Asks the program running the hub to end it (`POST /hub/api/shutdown`, the failure limit).
    pub shutdown: crate::shutdown::Requests,
    /// The configured `[[services]]`.
    pub services: crate::services::Services,
    /// The configured `[[roles]]`.
    pub roles: crate::roles::Roles,
}

/// What came of a change to a server that must find its row as this replica last saw it.
pub enum Claimed<T> {
    Done(T),
    /// The row was not as expected (another replica got there first); here is the server as it
    /// is now (`None`: it is gone).
    Refused(Option<Box<Server>>),
}

pub struct HubParts {
    pub config: HubConfig,
    /// The configured services, read with their tokens (`Services::from_config`).
    pub services: crate::services::Services,
    /// The configured roles (`Roles::from_config`).
    pub roles: crate::roles::Roles,
    pub store: Arc<dyn StateStore>,
    pub spawner: Arc<dyn Spawner>,
    pub proxy: ProxyApi,
    pub sessions: Sessions,
    pub auth: Arc<Authenticator>,
    pub hub_url: String,
    pub replica: String,
}

impl Hub {
    /// Builds the hub from its parts and the store's contents. Servers keep the phase the store
    /// recorded; `lifecycle::adopt_servers` checks them against reality next.
    pub fn new(parts: HubParts) -> Result<Arc<Hub>, StoreError> {
        let loaded = parts.store.load()?;
        // With SQLite this hub is the only one: the background work is its own.
        let alone = !parts.store.shared();
        let mut tokens = Vec::new();
        let users: BTreeMap<String, User> = loaded
            .into_users()
            .into_iter()
            .map(|(name, loaded)| {
                tokens.extend(loaded.tokens);
                let mut user = User {
                    record: loaded.user,
                    servers: Default::default(),
                };
                for record in loaded.servers {
                    let mut server = Server::new(&record.user, &record.name);
                    server.record = record;
                    user.servers.insert(server);
                }
                (name, user)
            })
            .collect();
        let mut api_tokens = parts.config.api_tokens.clone();
        if let Ok(token) = std::env::var("EDGEHUB_API_TOKEN")
            && !token.is_empty()
        {
            api_tokens.push(token);
        }
        let spawn_failures =
            crate::failure_limit::ConsecutiveFailures::new(parts.config.limits.consecutive_failure_limit);
        let hub = Hub {
            base: parts.config.base_prefix(),
            tokens: Tokens::new(&api_tokens, &parts.services.tokens(), tokens),
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
            leader: Leadership::new(alone),
            replica: parts.replica,
            mirrors: Mutex::new(HashMap::new()),
            admin_scopes: crate::scopes::Scopes::admin(),
            spawn_failures,
            shutdown: Default::default(),
            services: parts.services,
            roles: parts.roles,
        };
        for name in hub.config.auth.admin_users.clone() {
            hub.ensure_user(&name, true)?;
        }
        hub.metrics.background_leader.set(if alone { 1.0 } else { 0.0 });
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
                // Written first: a failed write leaves memory as the database has it.
                let record = UserRecord {
                    admin: true,
                    ..user.record.clone()
                };
                self.store.put_user(&record)?;
                user.record = record;
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

    /// Whether `auth.blocked_users` names `name`: they may not sign in, and their cookies and
    /// tokens are refused.
    pub fn is_blocked(&self, name: &str) -> bool {
        self.config.auth.blocked_users.iter().any(|b| b == name)
    }

    /// Whether someone the authenticator accepted as `name` (an admin by its word if `admin`)
    /// may sign in: not blocked, and, with `auth.allowed_users`, named there, an admin, or (unless
    /// `allow_existing_users = false`) a user the hub already knows, as JupyterHub decides.
    pub fn may_sign_in(&self, name: &str, admin: bool) -> bool {
        let auth = &self.config.auth;
        if self.is_blocked(name) {
            return false;
        }
        auth.allowed_users.is_empty()
            || auth.allowed_users.iter().any(|a| a == name)
            || admin
            || self.is_admin(name)
            || (auth.allow_existing_users.unwrap_or(true) && self.users().contains_key(name))
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
        // Changed on a copy, kept once written: a failed write leaves memory as the database
        // has it.
        let mut next = u.servers.copy_or_new(user, server);
        let out = change(&mut next);
        self.store.put_server(&next.record)?;
        u.servers.insert(next);
        Ok(Some(out))
    }

    /// Changes a server only if the database's row is in one of `phases` (and, with `owner`,
    /// owned by it): the compare-and-set by which a replica claims a start or a stop, or carries
    /// on one it owns. Refused, the hub's copy takes the row as it is now.
    pub fn claim_server<T>(
        &self,
        user: &str,
        server: &str,
        phases: &[Phase],
        owner: Option<&str>,
        change: impl FnOnce(&mut Server) -> T,
    ) -> Result<Claimed<T>, StoreError> {
        let mut users = self.users();
        self.claim_in(&mut users, user, server, phases, owner, change)
    }

    /// [`Hub::claim_server`] with the users lock already held.
    pub fn claim_in<T>(
        &self,
        users: &mut BTreeMap<String, User>,
        user: &str,
        server: &str,
        phases: &[Phase],
        owner: Option<&str>,
        change: impl FnOnce(&mut Server) -> T,
    ) -> Result<Claimed<T>, StoreError> {
        let Some(u) = users.get_mut(user) else {
            return Ok(Claimed::Refused(None));
        };
        let mut next = u.servers.copy_or_new(user, server);
        let out = change(&mut next);
        match self.store.set_server(&next.record, Expect { phases, owner })? {
            Cas::Written => {
                u.servers.insert(next);
                Ok(Claimed::Done(out))
            }
            Cas::Refused(now) => {
                match now {
                    Some(row) => self.apply_server_row(u, *row),
                    None => {
                        u.servers.remove(server);
                    }
                }
                Ok(Claimed::Refused(u.servers.get(server).cloned().map(Box::new)))
            }
        }
    }

    /// Changes a server whose start or stop (`during`) this replica owns; refused if another
    /// replica took it over meanwhile (a stop claimed elsewhere, or this replica presumed dead).
    pub fn update_owned<T>(
        &self,
        user: &str,
        server: &str,
        during: Phase,
        change: impl FnOnce(&mut Server) -> T,
    ) -> Result<Claimed<T>, StoreError> {
        self.claim_server(user, server, &[during], Some(&self.replica), change)
    }

    /// Reads one user again from the state database (another replica changed them).
    pub fn refresh_user(&self, name: &str, via: &dyn StateStore) -> Result<(), StoreError> {
        let mut users = self.users();
        // Read under the lock: a change this replica makes meanwhile cannot be overwritten by
        // an older read.
        let loaded = via.load_user(name)?;
        self.apply_user(&mut users, name, loaded);
        drop(users);
        self.update_gauges();
        Ok(())
    }

    /// Reads everything again (after the change feed was interrupted).
    pub fn refresh_all(&self, via: &dyn StateStore) -> Result<(), StoreError> {
        let mut users = self.users();
        let loaded = via.load()?;
        let by_user = loaded.into_users();
        let gone: Vec<String> = users.keys().filter(|n| !by_user.contains_key(*n)).cloned().collect();
        for name in gone {
            self.apply_user(&mut users, &name, None);
        }
        for (name, loaded) in by_user {
            self.apply_user(&mut users, &name, Some(loaded));
        }
        drop(users);
        self.update_gauges();
        Ok(())
    }

    fn apply_user(&self, users: &mut BTreeMap<String, User>, name: &str, loaded: Option<LoadedUser>) {
        let Some(loaded) = loaded else {
            if users.remove(name).is_some() {
                self.tokens.remove_user(name);
            }
            return;
        };
        self.tokens.replace_user(name, loaded.tokens);
        let u = users.entry(name.to_owned()).or_insert_with(|| User {
            record: loaded.user.clone(),
            servers: Default::default(),
        });
        u.record = loaded.user;
        let keep: Vec<String> = loaded.servers.iter().map(|s| s.name.clone()).collect();
        let gone: Vec<String> = u.servers.keys().filter(|n| !keep.contains(n)).cloned().collect();
        for server in gone {
            u.servers.remove(&server);
        }
        for row in loaded.servers {
            self.apply_server_row(u, row);
        }
    }

    /// Takes a server row from the database into the hub's copy, keeping what only this
    /// replica knows (its spawn's progress log, why its last spawn failed). A copy of another
    /// replica's spawn progress that someone follows here is brought up to date, and ended once
    /// the spawn is.
    fn apply_server_row(&self, u: &mut User, row: ServerRecord) {
        let key = (row.user.clone(), row.name.clone());
        let theirs = row.phase == Phase::Pending && row.owner.as_deref() != Some(self.replica.as_str());
        let prefix = self.prefix(&row.user, &row.name);
        let s = u
            .servers
            .get_or_insert_with(&row.name, || Server::new(&row.user, &row.name));
        let phase = row.phase;
        s.record = row;
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sink) = mirrors.get(&key).cloned() else {
            return;
        };
        self.replay_progress(&key.0, &key.1, &sink);
        if theirs {
            return;
        }
        // The spawn ended (or moved to this replica): end the copy, whatever the owner managed
        // to publish.
        mirrors.remove(&key);
        if !sink.ended() {
            let mut last = match phase {
                Phase::Running => {
                    let mut e = ProgressEvent::message(100, format!("Server ready at {prefix}"));
                    e.ready = true;
                    e.url = Some(prefix);
                    e
                }
                _ => ProgressEvent::message(100, "Spawn failed: the server was stopped while starting"),
            };
            last.failed = phase != Phase::Running;
            sink.replay(last);
        }
        if phase == Phase::Running {
            s.progress = None;
        }
    }

    /// The server, with a progress log to follow: for a spawn another replica runs, a copy fed
    /// from the database, made on first demand (nobody may ever follow most spawns here).
    pub fn follow(&self, user: &str, server: &str) -> Option<Server> {
        let mut users = self.users();
        let s = users.get_mut(user)?.servers.get_mut(server)?;
        let theirs = s.phase() == Phase::Pending && s.record.owner.as_deref() != Some(self.replica.as_str());
        if theirs {
            let key = (user.to_owned(), server.to_owned());
            let mut mirrors = self.mirrors.lock().unwrap_or_else(|p| p.into_inner());
            if let std::collections::hash_map::Entry::Vacant(slot) = mirrors.entry(key) {
                let (sink, log) = crate::progress::channel();
                self.replay_progress(user, server, &sink);
                s.progress = Some(log);
                s.last_failure = None;
                slot.insert(sink);
            }
        }
        Some(s.clone())
    }

    /// Copies into `sink` the events of another replica's spawn it does not have yet.
    fn replay_progress(&self, user: &str, server: &str, sink: &ProgressSink) {
        match self.store.progress(user, server, sink.len()) {
            Ok(events) => {
                for event in events {
                    match serde_json::from_value::<ProgressEvent>(event) {
                        Ok(e) => sink.replay(e),
                        Err(e) => tracing::warn!("{user}'s spawn progress holds an unreadable event: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("reading {user}'s spawn progress: {e}"),
        }
    }

    /// Another replica published progress for a spawn: copy it to the log followers read here.
    pub fn progress_published(&self, user: &str, server: &str) {
        let sink = self
            .mirrors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(user.to_owned(), server.to_owned()))
            .cloned();
        // Nobody follows that spawn here: nothing to copy.
        if let Some(sink) = sink {
            self.replay_progress(user, server, &sink);
        }
    }

    /// Takes over the copy of another replica's spawn of this server, for this replica's own
    /// spawn to continue in (followers keep reading the same log).
    pub(crate) fn take_mirror(&self, user: &str, server: &str) -> Option<ProgressSink> {
        self.mirrors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(user.to_owned(), server.to_owned()))
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
            let record = UserRecord {
                last_activity_ms: Some(at_ms),
                ..u.record.clone()
            };
            self.store.put_user(&record)?;
            u.record = record;
        }
        if let Some(s) = server.and_then(|name| u.servers.get_mut(name))
            && s.record.phase.is_active()
            && newer(s.record.last_activity_ms)
        {
            // The column alone: the rest of the row may be another replica's to change.
            self.store.touch_server(user, &s.record.name, at_ms)?;
            s.record.last_activity_ms = Some(at_ms);
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
        scopes: Option<Vec<String>>,
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
            scopes,
        };
        record.id = self.store.add_token(&record)?;
        self.tokens.insert(record.clone());
        Ok((token, record))
    }

    /// Who `token` belongs to. With a shared database, a token this replica has not heard of
    /// yet (issued by another replica a moment ago) is looked up there before it is refused.
    pub fn lookup_token(&self, token: &str) -> Option<crate::tokens::TokenRecordOrAdmin> {
        let now = proxy::timestamp::now_ms();
        if let Some(found) = self.tokens.lookup(token, now) {
            return Some(found);
        }
        if !self.store.shared() || token.is_empty() {
            return None;
        }
        match self.store.token(&crate::tokens::hash(token)) {
            Ok(Some(record)) => {
                self.tokens.insert(record);
                self.tokens.lookup(token, now)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("looking a token up in the state database: {e}");
                None
            }
        }
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

    /// JupyterHub's `active_users{period}`: the users active (themselves, or through one of
    /// their servers) within each period before `now_ms`. Counted when the metrics are read.
    pub fn update_active_users(&self, now_ms: u64) {
        let users = self.users();
        let last_active: Vec<u64> = users
            .values()
            .filter_map(|u| {
                let servers = u.servers.values().filter_map(|s| s.record.last_activity_ms);
                u.record.last_activity_ms.into_iter().chain(servers).max()
            })
            .collect();
        drop(users);
        for (period, gauge) in &self.metrics.active_users {
            let since = now_ms.saturating_sub(period.as_millis() as u64);
            gauge.set(last_active.iter().filter(|t| **t >= since).count() as f64);
        }
    }

    /// `/hub/api/info`'s spawner and authenticator description.
    pub fn info(&self) -> Value {
        serde_json::json!({
            "version": JUPYTERHUB_API_VERSION,
            "edgehub_version": VERSION,
            "spawner": {"class": self.spawner.kind(), "version": VERSION, "profiles": self.spawner.profiles()},
            "authenticator": {"class": format!("{:?}", self.config.auth.authenticator).to_lowercase(), "version": VERSION},
            "python": "none (edgehub is written in Rust)",
            "replica": {"id": self.replica, "background": self.leader.held(), "state": self.store.describe()},
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

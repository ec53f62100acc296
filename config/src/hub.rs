//! Configuration of `edgehub`, the control plane (`edgehub up`).
//!
//! Read from a TOML file (`--config`), then overridden by flags. Every field has a default, stated
//! on it and in `docs/configuration.md#edgehub`; unknown keys are refused so a typo is an error at
//! start-up, not a setting silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::kubernetes::KubernetesConfig;
use crate::{ConfigError, IssuerConfig};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// The public address (`edgehub up`: the embedded proxy's listener). Default: `127.0.0.1:8000`.
    pub bind: String,
    /// Where the hub itself listens; the proxy sends `/hub/` and unrouted requests there.
    /// Default: `127.0.0.1:0`, a free port (`up`); set it when an external proxy must reach the hub.
    pub hub_bind: String,
    /// URL the proxy uses to reach the hub. Default: `http://` + the bound hub address.
    pub hub_connect_url: Option<String>,
    /// Path prefix of everything, as JupyterHub's `base_url`. Default: `/`.
    pub base_url: String,
    /// The state database (SQLite) when `state.url` is unset. Default: `edgehub.sqlite` in the
    /// working directory.
    pub db: PathBuf,
    pub state: StateConfig,
    /// Admin API tokens accepted in `Authorization: token …`, for services such as
    /// jupyterhub-idle-culler. Default: none. The environment variable `EDGEHUB_API_TOKEN` adds one.
    pub api_tokens: Vec<String>,
    /// JupyterHub services (`[[services]]`): programs with API tokens of their own, started by
    /// the hub when they have a `command`, served at `services/{name}/` when they have a `url`
    /// (docs/services.md). Default: none.
    pub services: Vec<crate::ServiceConfig>,
    /// Roles (`[[roles]]`, JupyterHub's `load_roles`): scopes given to users, to the members of
    /// groups and to services, beyond what each holds by default (docs/roles.md). Default: none.
    pub roles: Vec<crate::RoleConfig>,
    pub proxy: ProxyLink,
    pub auth: HubAuth,
    pub session: SessionStore,
    /// Which spawner runs servers: `local` (processes on this machine, set up by `[spawner]`) or
    /// `kubernetes` (pods, set up by `[kubernetes]`). Default: `local`.
    pub spawner_class: SpawnerClass,
    /// The local spawner; its `http_timeout_secs` applies to every spawner.
    pub spawner: LocalSpawnerConfig,
    /// The Kubernetes spawner (docs/kubernetes.md). Default: none; required with
    /// `spawner_class = "kubernetes"`.
    pub kubernetes: Option<KubernetesConfig>,
    pub limits: SpawnLimits,
    pub cull: CullConfig,
    /// How often routes are checked against the proxy's table (missing added, wrong fixed, stale
    /// deleted) and `last_activity` read from it, seconds. Default: 5.
    pub reconcile_interval_secs: u64,
    /// Allow named servers (`/users/{name}/servers/{server}`). Default: true.
    pub allow_named_servers: bool,
    /// Named servers per user; 0 means no limit. Default: 0.
    pub named_server_limit_per_user: u32,
    /// Send a signed-in user who asked for no page in particular (`/`, `/hub/`, a sign-in
    /// without `next`) to their default server, starting it if it is stopped, as JupyterHub's
    /// `redirect_to_server` does. `false` sends them to the home page instead. Default: true.
    pub redirect_to_server: bool,
    /// Notices shown on the hub's pages (`[announcements]`), as JupyterHub's `announcement*`
    /// template variables.
    pub announcements: Announcements,
}

/// Notices at the top of the hub's pages, HTML written by the operator (a link to a status page,
/// a maintenance window), as JupyterHub's `template_vars`. Each default: none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Announcements {
    /// On every page.
    pub all: Option<String>,
    /// On the sign-in page, under `all`.
    pub login: Option<String>,
    /// On the home page (the user's servers).
    pub home: Option<String>,
    /// On the pages of a server's start: the options form and the progress page.
    pub spawn: Option<String>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            bind: "127.0.0.1:8000".to_owned(),
            hub_bind: "127.0.0.1:0".to_owned(),
            hub_connect_url: None,
            base_url: "/".to_owned(),
            db: PathBuf::from("edgehub.sqlite"),
            state: StateConfig::default(),
            api_tokens: Vec::new(),
            services: Vec::new(),
            roles: Vec::new(),
            proxy: ProxyLink::default(),
            auth: HubAuth::default(),
            session: SessionStore::default(),
            spawner_class: SpawnerClass::Local,
            spawner: LocalSpawnerConfig::default(),
            kubernetes: None,
            limits: SpawnLimits::default(),
            cull: CullConfig::default(),
            reconcile_interval_secs: 5,
            allow_named_servers: true,
            named_server_limit_per_user: 0,
            redirect_to_server: true,
            announcements: Announcements::default(),
        }
    }
}

/// Where the hub keeps users, servers, tokens and sessions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// A PostgreSQL database, `postgres://user:password@host:5432/edgehub`: the state several hub
    /// replicas share, all of them active. Default: none, the SQLite file at `db`, for one hub.
    /// The environment variable `EDGEHUB_STATE_URL` (or `edgehub up --state-url`) overrides it.
    pub url: Option<String>,
}

impl StateConfig {
    /// Whether `url` names a PostgreSQL database.
    pub fn is_postgres(url: &str) -> bool {
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpawnerClass {
    #[default]
    Local,
    Kubernetes,
}

/// The proxy the hub drives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyLink {
    /// Admin API of an external edgeproxy or configurable-http-proxy, e.g.
    /// `http://127.0.0.1:8001`. Default: none, the proxy is embedded (`edgehub up`).
    pub api_url: Option<String>,
    /// Its token (`CONFIGPROXY_AUTH_TOKEN`). Default: none; the environment variable
    /// `CONFIGPROXY_AUTH_TOKEN` is read when this is unset.
    pub api_token: Option<String>,
    /// Which proxies get the routes. Default: `one`.
    pub replicas: ProxyReplicas,
    /// The embedded proxy's route table (`edgehub up`): `memory` or `redis`, as edgeproxy's
    /// `--storage-backend`. Default: `memory`.
    pub storage_backend: Option<String>,
    /// With `storage_backend = "redis"`: the Redis, as edgeproxy's `--storage-url`. Default: none.
    pub storage_url: Option<String>,
    /// Prefix of the route store's Redis keys. Default: `edgeproxy:`.
    pub storage_prefix: Option<String>,
}

impl ProxyLink {
    /// The embedded proxy's route storage, from `storage_*`.
    pub fn route_storage(&self) -> Result<crate::RouteStorage, ConfigError> {
        crate::RouteStorage::from_parts(
            self.storage_backend.as_deref(),
            self.storage_url.as_deref(),
            self.storage_prefix.as_deref(),
        )
    }
}

/// How many proxies stand behind `api_url`. An edgeproxy with the memory backend (like CHP) keeps
/// its table to itself, so each replica must be told every route; replicas sharing a Redis route
/// store (`--storage-backend redis`) are one table, and take `one`: the hub writes each change
/// once, to any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProxyReplicas {
    /// The one proxy at `api_url`, or any replica of a fleet sharing a Redis route store
    /// (`api_url` then names a load-balanced Service in front of them).
    #[default]
    One,
    /// Every address the host of `api_url` resolves to is a replica (a Kubernetes headless
    /// Service has one per ready pod). Resolved again at every route change and reconcile, so a
    /// new replica is filled within `reconcile_interval_secs`. Needs `api_url`.
    Dns,
}

/// How users log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticatorKind {
    /// Any name; with `shared_password`, that password too. For laptops and tests.
    #[default]
    Dev,
    /// Names and argon2 hashes from `users_file` (`edgehub hash-password` makes them).
    UsersFile,
    /// Only externally issued JWTs (from `issuers`), at `/hub/login?token=` or on any request.
    Jwt,
    /// Names and passwords checked against an LDAP directory (`[auth.ldap]`).
    Ldap,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubAuth {
    /// Default: `dev`.
    pub authenticator: AuthenticatorKind,
    /// `dev` only: the password every user must give. Default: none (any password).
    pub shared_password: Option<String>,
    /// `users_file` only: a TOML file of `[users.NAME]` tables with `password_hash` (argon2 PHC
    /// string), optional `admin` and `groups`. Default: none.
    pub users_file: Option<PathBuf>,
    /// Users who are admins (see every user, start and stop anyone's server). Default: none.
    pub admin_users: Vec<String>,
    /// Who may sign in, beyond the admins: with names here, only these (and, by default, users
    /// the hub already knows), whatever the authenticator accepts. Default: none, anyone the
    /// authenticator accepts.
    pub allowed_users: Vec<String>,
    /// Users who may not sign in or use the hub at all, whatever the authenticator says: their
    /// sessions are ended at start, and their cookies and API tokens are refused. Default: none.
    pub blocked_users: Vec<String>,
    /// With `allowed_users`: whether users the hub already knows (added through the API, or
    /// signed in before) may sign in too, as JupyterHub's `allow_existing_users`. Default: true
    /// when `allowed_users` is set.
    pub allow_existing_users: Option<bool>,
    /// Externally issued tokens accepted as a login, with any authenticator (same keys as the
    /// edge-auth `[[issuers]]`). Default: none.
    pub issuers: Vec<IssuerConfig>,
    /// Claim naming the user in external tokens. Default: `sub`.
    pub user_claim: String,
    /// Boolean claim making its holder an admin, in external tokens. Default: none.
    pub admin_claim: Option<String>,
    /// The platform's session check for tokens from `issuers` (e.g. `key =
    /// "auth_token_key:{sub}"` in the platform's Redis): a token whose session is gone is no
    /// login, and the hub session made from it ends when the platform's does. Same fields as
    /// the edge's `[session]`. Default: none (the signature is enough).
    pub platform_session: Option<crate::SessionConfig>,
    /// Also take `Authorization: <jwt>` with no scheme as a platform token. Default: false.
    pub bare_authorization: bool,
    /// `ldap` only: the directory and how users and groups are found in it (`[auth.ldap]`).
    /// Default: none; required with `authenticator = "ldap"`.
    pub ldap: Option<crate::LdapConfig>,
}

impl Default for HubAuth {
    fn default() -> Self {
        HubAuth {
            authenticator: AuthenticatorKind::Dev,
            shared_password: None,
            users_file: None,
            admin_users: Vec::new(),
            allowed_users: Vec::new(),
            blocked_users: Vec::new(),
            allow_existing_users: None,
            issuers: Vec::new(),
            user_claim: "sub".to_owned(),
            admin_claim: None,
            platform_session: None,
            bare_authorization: false,
            ldap: None,
        }
    }
}

/// Where login sessions live: the hub writes them, the edge proxy checks them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionStore {
    /// Redis holding the session records, e.g. `redis://127.0.0.1:6379/0`. Default: none, the
    /// in-process store, which only an embedded proxy can read (`edgehub up`).
    pub redis_url: Option<String>,
    /// Cookie carrying the session token (a JWT signed by the hub). Default: `edgehub-token`.
    pub cookie: String,
    /// How long a login lasts, seconds. Default: 86400 (one day).
    pub lifetime_secs: u64,
    /// Mark cookies `Secure` (only sent over https). Default: false.
    pub secure_cookies: bool,
}

impl Default for SessionStore {
    fn default() -> Self {
        SessionStore {
            redis_url: None,
            cookie: "edgehub-token".to_owned(),
            lifetime_secs: 86_400,
            secure_cookies: false,
        }
    }
}

/// The local-process spawner: one process per server, on a free port of 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSpawnerConfig {
    /// Command and arguments; `{port}`, `{base_url}` (the server's prefix) and `{user}` are
    /// replaced. Default: `jupyterhub-singleuser` if on `PATH`, else `jupyter-server`, else the
    /// built-in server (`edgehub singleuser`), which needs no Python.
    pub command: Option<Vec<String>>,
    /// Extra environment for every server. Default: none.
    pub environment: std::collections::BTreeMap<String, String>,
    /// Working directory of servers. Default: the hub's.
    pub working_dir: Option<PathBuf>,
    /// Where a server opens, under its prefix (`/lab` for JupyterLab, `/tree/home/{username}`),
    /// passed as `JUPYTERHUB_DEFAULT_URL` as JupyterHub's `Spawner.default_url`; `{username}` is
    /// replaced. Every spawner. Default: none, the server's own choice.
    pub default_url: Option<String>,
    /// The directory a server serves files from (`JUPYTERHUB_ROOT_DIR`, JupyterHub's
    /// `Spawner.notebook_dir`); `{username}` is replaced. Every spawner. Default: none, the
    /// server's working directory.
    pub notebook_dir: Option<String>,
    /// Time allowed from start to a running process, seconds. Default: 60.
    pub start_timeout_secs: u64,
    /// Time allowed for the server to answer HTTP once started, seconds. Default: 30.
    pub http_timeout_secs: u64,
    /// Time between SIGTERM and SIGKILL when stopping, seconds. Default: 5.
    pub stop_grace_secs: u64,
    /// How often running servers are checked for having exited, seconds. Default: 30.
    pub poll_interval_secs: u64,
}

impl Default for LocalSpawnerConfig {
    fn default() -> Self {
        LocalSpawnerConfig {
            command: None,
            environment: Default::default(),
            working_dir: None,
            default_url: None,
            notebook_dir: None,
            start_timeout_secs: 60,
            http_timeout_secs: 30,
            stop_grace_secs: 5,
            poll_interval_secs: 30,
        }
    }
}

/// Throttles, as JupyterHub's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpawnLimits {
    /// Spawns in progress (starting, or waiting for the route); more get 429. 0: no limit.
    /// Default: 100.
    pub concurrent_spawn_limit: u32,
    /// Servers not fully stopped; more get 429. 0: no limit. Default: 0.
    pub active_server_limit: u32,
    /// `Retry-After` of a 429 is drawn from this range, seconds. Default: [30, 60].
    pub retry_after_secs: [u64; 2],
    /// Spawns that may fail in a row (no spawn succeeding between them) before the hub stops
    /// with exit status 1, so that whatever supervises it (Kubernetes, systemd) starts it afresh:
    /// JupyterHub's `Spawner.consecutive_failure_limit`, for a hub whose connection to the
    /// cluster went bad. User servers keep running and are adopted at the next start. 0: never.
    /// Default: 0.
    pub consecutive_failure_limit: u32,
}

impl Default for SpawnLimits {
    fn default() -> Self {
        SpawnLimits {
            concurrent_spawn_limit: 100,
            active_server_limit: 0,
            retry_after_secs: [30, 60],
            consecutive_failure_limit: 0,
        }
    }
}

/// The built-in idle culler.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CullConfig {
    /// Stop servers idle this long, seconds; 0 turns culling off. Default: 3600 (as z2jh).
    pub timeout_secs: u64,
    /// How often idle servers are looked for, seconds. Default: 60.
    pub every_secs: u64,
    /// Also stop servers older than this, seconds, however busy; 0: no limit. Default: 0.
    pub max_age_secs: u64,
}

impl Default for CullConfig {
    fn default() -> Self {
        CullConfig {
            timeout_secs: 3600,
            every_secs: 60,
            max_age_secs: 0,
        }
    }
}

impl HubConfig {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let config: HubConfig = toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// `base_url` with exactly one leading and one trailing slash.
    pub fn base_prefix(&self) -> String {
        let trimmed = self.base_url.trim_matches('/');
        if trimmed.is_empty() {
            "/".to_owned()
        } else {
            format!("/{trimmed}/")
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = ConfigError::invalid;
        for (setting, addr) in [("bind", &self.bind), ("hub_bind", &self.hub_bind)] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    setting,
                    addr.clone(),
                    "an IP address and port, e.g. 127.0.0.1:8000",
                ));
            }
        }
        if !self.base_url.starts_with('/') {
            return Err(invalid("base_url", self.base_url.clone(), "a path starting with /"));
        }
        if let Some(url) = &self.state.url
            && !StateConfig::is_postgres(url)
        {
            // Only the scheme: the rest may carry a password.
            let scheme = url.split_once("://").map_or("(no scheme)", |(scheme, _)| scheme);
            return Err(invalid(
                "state.url",
                format!("{scheme}://…"),
                "a postgres:// or postgresql:// URL (leave it unset for SQLite at `db`)",
            ));
        }
        if let Some(url) = &self.proxy.api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("proxy.api_url", url.clone(), "an http:// or https:// URL"));
        }
        let storage = self.proxy.route_storage()?;
        if storage != crate::RouteStorage::Memory && self.proxy.api_url.is_some() {
            return Err(ConfigError::Conflict(
                "proxy.storage_* set the embedded proxy's route store; with proxy.api_url the external edgeproxy takes --storage-backend itself",
            ));
        }
        if self.proxy.replicas == ProxyReplicas::Dns && self.proxy.api_url.is_none() {
            return Err(ConfigError::Conflict(
                "proxy.replicas = \"dns\" needs proxy.api_url: the embedded proxy has no replicas",
            ));
        }
        match self.auth.authenticator {
            AuthenticatorKind::UsersFile if self.auth.users_file.is_none() => {
                return Err(invalid(
                    "auth.users_file",
                    "none".into(),
                    "a path, with authenticator = \"users_file\"",
                ));
            }
            AuthenticatorKind::Jwt if self.auth.issuers.is_empty() => {
                return Err(invalid(
                    "auth.issuers",
                    "[]".into(),
                    "at least one [[auth.issuers]] table, with authenticator = \"jwt\"",
                ));
            }
            AuthenticatorKind::Ldap if self.auth.ldap.is_none() => {
                return Err(invalid(
                    "auth.ldap",
                    "none".into(),
                    "an [auth.ldap] table with url, with authenticator = \"ldap\"",
                ));
            }
            _ => {}
        }
        // Blocking wins over everything else in JupyterHub; a name on both sides is a mistake
        // worth saying rather than a silent choice.
        if let Some(both) = self
            .auth
            .blocked_users
            .iter()
            .find(|b| self.auth.allowed_users.contains(b) || self.auth.admin_users.contains(b))
        {
            return Err(invalid(
                "auth.blocked_users",
                both.clone(),
                "names not also in allowed_users or admin_users",
            ));
        }
        if self.auth.allow_existing_users.is_some() && self.auth.allowed_users.is_empty() {
            return Err(invalid(
                "auth.allow_existing_users",
                format!("{:?}", self.auth.allow_existing_users),
                "allowed_users too: without it everyone the authenticator accepts may sign in",
            ));
        }
        if let Some(ldap) = &self.auth.ldap {
            ldap.validate()?;
        }
        if !self.auth.issuers.is_empty() {
            // The issuer rules are edge auth's; check them the same way.
            let edge = crate::AuthConfig {
                issuers: self.auth.issuers.clone(),
                ..Default::default()
            };
            edge.validate()?;
        }
        if let Some(platform) = &self.auth.platform_session {
            if self.auth.issuers.is_empty() {
                return Err(invalid(
                    "auth.platform_session",
                    platform.key.clone(),
                    "[[auth.issuers]] too: the platform session is checked for their tokens",
                ));
            }
            if platform.in_process() {
                return Err(invalid(
                    "auth.platform_session.redis_url",
                    platform.redis_url.clone(),
                    "the platform's Redis, redis://host:port/db or unix:///path",
                ));
            }
            platform.validate()?;
        }
        if let Some(url) = &self.session.redis_url
            && !url.starts_with("redis://")
            && !url.starts_with("unix://")
        {
            return Err(invalid(
                "session.redis_url",
                url.clone(),
                "redis://host:port/db or unix:///path",
            ));
        }
        if self.session.redis_url.is_none() && self.proxy.api_url.is_some() {
            return Err(ConfigError::Conflict(
                "session.redis_url is required with proxy.api_url: an external proxy cannot read the hub's in-process session store",
            ));
        }
        if self.session.cookie.is_empty() || self.session.cookie.contains([';', '=', ' ', ',']) {
            return Err(invalid("session.cookie", self.session.cookie.clone(), "a cookie name"));
        }
        let [low, high] = self.limits.retry_after_secs;
        if low > high {
            return Err(invalid(
                "limits.retry_after_secs",
                format!("[{low}, {high}]"),
                "[low, high] with low <= high",
            ));
        }
        if self.spawner.command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(invalid("spawner.command", "[]".into(), "a program and its arguments"));
        }
        if let Some(url) = self.spawner.default_url.as_ref().filter(|u| !u.starts_with('/')) {
            return Err(invalid(
                "spawner.default_url",
                url.clone(),
                "a path under the server's prefix, starting with '/' (\"/lab\")",
            ));
        }
        crate::services::validate(&self.services)?;
        crate::roles::validate(&self.roles, &self.services)?;
        if self.reconcile_interval_secs == 0 {
            return Err(invalid("reconcile_interval_secs", "0".into(), "at least 1"));
        }
        match (&self.spawner_class, &self.kubernetes) {
            (SpawnerClass::Kubernetes, None) => {
                return Err(invalid(
                    "kubernetes",
                    "none".into(),
                    "a [kubernetes] table, with spawner_class = \"kubernetes\"",
                ));
            }
            (_, Some(kubernetes)) => kubernetes.validate()?,
            _ => {}
        }
        Ok(())
    }

    /// How long the hub lets a spawner start a server before it gives up and stops it. The
    /// Kubernetes spawner has its own, longer bound (image pulls, scheduling), which fires first
    /// with the better message; the hub's is a backstop a little beyond it.
    pub fn start_timeout_secs(&self) -> u64 {
        match (&self.spawner_class, &self.kubernetes) {
            (SpawnerClass::Kubernetes, Some(k)) => k.start_timeout_secs + 5,
            _ => self.spawner.start_timeout_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HubConfig, ConfigError> {
        let config: HubConfig = toml::from_str(text).map_err(|e| ConfigError::File {
            path: "t".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn empty_file_gets_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.bind, "127.0.0.1:8000");
        assert_eq!(c.base_prefix(), "/");
        assert_eq!(c.limits.concurrent_spawn_limit, 100);
        assert_eq!(c.limits.consecutive_failure_limit, 0, "off unless asked for");
        assert_eq!(c.cull.timeout_secs, 3600);
        assert_eq!(c.spawner.start_timeout_secs, 60);
        assert_eq!(c.session.cookie, "edgehub-token");
        assert_eq!(c.auth.authenticator, AuthenticatorKind::Dev);
        assert_eq!(c.proxy.replicas, ProxyReplicas::One);
    }

    #[test]
    fn dns_replicas_go_with_an_external_proxy() {
        let c = parse(
            "[proxy]\napi_url = \"http://edgeproxy-api:8001\"\nreplicas = \"dns\"\n[session]\nredis_url = \"redis://redis:6379/0\"",
        )
        .unwrap();
        assert_eq!(c.proxy.replicas, ProxyReplicas::Dns);
    }

    #[test]
    fn base_prefix_is_normalised() {
        for (given, want) in [("/", "/"), ("/jhub", "/jhub/"), ("/jhub/", "/jhub/"), ("//a//", "/a/")] {
            let c = HubConfig {
                base_url: given.into(),
                ..Default::default()
            };
            assert_eq!(c.base_prefix(), want, "{given}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("bnd = \"x\"", "bnd"),
            ("bind = \"localhost\"", "bind"),
            ("[auth]\nauthenticator = \"users_file\"", "auth.users_file"),
            ("[auth]\nauthenticator = \"jwt\"", "auth.issuers"),
            (
                "[proxy]\napi_url = \"http://127.0.0.1:8001\"",
                "session.redis_url is required",
            ),
            ("[limits]\nretry_after_secs = [60, 30]", "retry_after_secs"),
            ("[spawner]\ncommand = []", "spawner.command"),
            ("[proxy]\nreplicas = \"dns\"", "needs proxy.api_url"),
            ("[proxy]\nreplicas = \"all\"", "replicas"),
            ("[proxy]\nstorage_backend = \"redis\"", "needs --storage-url"),
            (
                "[proxy]\napi_url = \"http://p:8001\"\nstorage_url = \"redis://r\"",
                "external edgeproxy",
            ),
            ("spawner_class = \"kubernetes\"", "kubernetes"),
            ("[auth]\nauthenticator = \"ldap\"", "auth.ldap"),
            (
                "[auth]\nallowed_users = [\"a\"]\nblocked_users = [\"a\"]",
                "auth.blocked_users",
            ),
            ("[auth]\nadmin_users = [\"a\"]\nblocked_users = [\"a\"]", "admin_users"),
            ("[auth]\nallow_existing_users = false", "allowed_users too"),
            ("[spawner]\ndefault_url = \"lab\"", "spawner.default_url"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}, wanted {needle:?}");
        }
    }

    #[test]
    fn ldap_settings_are_checked() {
        let ldap = |table: &str| parse(&format!("[auth]\nauthenticator = \"ldap\"\n[auth.ldap]\n{table}"));
        let c = ldap(
            "url = \"ldaps://ldap.example.org\"\nbind_dn_template = \"uid={username},ou=people,dc=example,dc=org\"",
        )
        .unwrap();
        let l = c.auth.ldap.unwrap();
        assert_eq!(c.auth.authenticator, AuthenticatorKind::Ldap);
        assert_eq!((l.timeout_secs, l.starttls, l.ca_file), (5, false, None));
        assert_eq!(l.user_search_filter, "(uid={username})");
        assert_eq!(l.username_attribute, "uid");
        assert_eq!(
            l.group_search_filter,
            "(|(member={dn})(uniqueMember={dn})(memberUid={username}))"
        );
        assert_eq!(l.group_name_attribute, "cn");
        assert!(l.allowed_groups.is_empty() && l.admin_groups.is_empty());
        ldap("url = \"ldap://ldap:389\"\nstarttls = true\nuser_search_base = \"ou=people,dc=example,dc=org\"\nsearch_bind_dn = \"cn=reader,dc=example,dc=org\"\nsearch_bind_password_env = \"LDAP_PW\"\ngroup_search_base = \"ou=groups,dc=example,dc=org\"\nallowed_groups = [\"staff\"]")
            .unwrap();

        let template = "bind_dn_template = \"uid={username},dc=x\"";
        let cases = [
            (template.to_owned(), "auth.ldap.url"),
            (format!("url = \"http://ldap\"\n{template}"), "auth.ldap.url"),
            (format!("url = \"ldap://\"\n{template}"), "auth.ldap.url"),
            (
                format!("url = \"ldaps://ldap\"\nstarttls = true\n{template}"),
                "auth.ldap.starttls",
            ),
            ("url = \"ldap://ldap\"".to_owned(), "exactly one of bind_dn_template"),
            (
                format!("url = \"ldap://ldap\"\n{template}\nuser_search_base = \"dc=x\""),
                "exactly one of bind_dn_template",
            ),
            (
                "url = \"ldap://ldap\"\nbind_dn_template = \"uid=alice,dc=x\"".to_owned(),
                "{username}",
            ),
            (
                format!("url = \"ldap://ldap\"\n{template}\nsearch_bind_dn = \"cn=reader\""),
                "auth.ldap.search_bind_password",
            ),
            (
                format!("url = \"ldap://ldap\"\n{template}\nsearch_bind_password = \"pw\""),
                "auth.ldap.search_bind_dn",
            ),
            (
                format!("url = \"ldap://ldap\"\n{template}\nallowed_groups = [\"staff\"]"),
                "auth.ldap.allowed_groups",
            ),
            (
                format!(
                    "url = \"ldap://ldap\"\n{template}\ngroup_search_base = \"dc=x\"\ngroup_search_filter = \"(cn=*)\""
                ),
                "auth.ldap.group_search_filter",
            ),
            (
                format!("url = \"ldap://ldap\"\n{template}\ntimeout_secs = 0"),
                "auth.ldap.timeout_secs",
            ),
            (
                format!("url = \"ldap://ldap\"\n{template}\nbase_dn = \"dc=x\""),
                "base_dn",
            ),
        ];
        for (table, needle) in cases {
            let err = ldap(&table).unwrap_err().to_string();
            assert!(err.contains(needle), "{table:?} gave {err:?}, wanted {needle:?}");
        }
    }
}

//! JupyterHub services (`[[services]]`): programs that call the hub's REST API with a token of
//! their own, holding the scopes configured for them (or an admin's, with `admin = true`).
//!
//! A service with a `command` is managed: the hub starts it with JupyterHub's environment
//! contract (`JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_API_URL`, `JUPYTERHUB_SERVICE_NAME`…), starts it
//! again whenever it exits (waiting 1 s, doubling to a minute while it keeps failing), and
//! stops it when the hub stops. Of several hub replicas, the one holding the background lease
//! runs it, so there is one copy, which moves when the lease does. A service with a `url` gets
//! the route `services/{name}/`, kept by the reconcile like every route the hub owns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use config::{ServiceAccess, ServiceConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::hub::Hub;
use crate::roles::Roles;
use crate::scopes::Scopes;
use crate::tokens::{Caller, CallerKind};

/// The first wait before a managed service that exited is started again, and the longest.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_LONGEST: Duration = Duration::from_secs(60);
/// A run at least this long counts as healthy: the next restart waits `RESTART_FIRST` again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How often a replica looks at whether it holds the background lease (the lease is renewed
/// every second and lapses after three).
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// One configured service.
#[derive(Debug)]
pub struct Service {
    pub config: ServiceConfig,
    /// What its token may do; everything, for an admin service.
    scopes: Arc<Scopes>,
    /// The token it calls the API with, if it has one.
    token: Option<String>,
    /// The configured roles naming it (their scopes are in `scopes`).
    roles: Vec<String>,
    /// The managed process now running, 0 when none (the API's `pid`).
    pid: AtomicU32,
}

/// Every configured service, by name.
#[derive(Debug, Default)]
pub struct Services(BTreeMap<String, Arc<Service>>);

impl Services {
    /// Reads the configured services; each holds its own scopes and those of the `roles` naming
    /// it. A managed service with no `api_token` gets one derived from `key` (the session signing
    /// key): every replica, and every restart, derives the same, so any replica recognises the
    /// token of a service another replica started.
    pub fn from_config(configs: &[ServiceConfig], roles: &Roles, key: &[u8]) -> anyhow::Result<Services> {
        let mut services = BTreeMap::new();
        for config in configs {
            let mut scopes = match Scopes::requested(&config.scopes, &config.name) {
                Ok(Some(scopes)) => scopes,
                Ok(None) => Scopes::default(),
                Err(e) => anyhow::bail!("services: the scopes of {}: {e}", config.name),
            };
            for role in roles.of_service(&config.name) {
                scopes.union(role.scopes());
            }
            let token = config
                .api_token
                .clone()
                .or_else(|| config.managed().then(|| derived_token(key, &config.name)));
            let service = Service {
                config: config.clone(),
                scopes: Arc::new(scopes),
                token,
                roles: roles.of_service(&config.name).map(|r| r.config.name.clone()).collect(),
                pid: AtomicU32::new(0),
            };
            services.insert(config.name.clone(), Arc::new(service));
        }
        Ok(Services(services))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Service>> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.0.values()
    }

    /// `(name, token)` of every service that has a token, for the token table.
    pub fn tokens(&self) -> Vec<(String, String)> {
        self.iter()
            .filter_map(|s| s.token.clone().map(|t| (s.config.name.clone(), t)))
            .collect()
    }
}

/// HMAC-SHA256 of the service's name under the session signing key, hex: secret as long as the
/// key is, and stable without being stored.
fn derived_token(key: &[u8], name: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, format!("edgehub service token\0{name}").as_bytes());
    crate::tokens::hex(tag.as_ref())
}

impl Service {
    /// The caller its token makes: an admin, or exactly its scopes.
    pub fn caller(&self) -> Caller {
        Caller {
            name: self.config.name.clone(),
            kind: CallerKind::Service,
            admin: self.config.admin,
            server: None,
            scopes: (!self.config.admin).then(|| self.scopes.clone()),
        }
    }

    /// Its path on the hub's site, `{base_url}services/{name}/`: its route, its
    /// `JUPYTERHUB_SERVICE_PREFIX`, its link.
    pub fn prefix(&self, base: &str) -> String {
        format!("{base}{}", self.config.prefix_under_base())
    }

    /// The one callback the hub sends its OAuth codes to.
    pub fn oauth_callback(&self, base: &str) -> String {
        format!("{}oauth_callback", self.prefix(base))
    }

    /// Where the pages' "Services" menu links to, for a service with a `url` to be shown.
    pub fn menu_link(&self, base: &str) -> Option<String> {
        let c = &self.config;
        (c.display && c.url.is_some()).then(|| self.prefix(base))
    }

    /// The data of its route (`{base_url}services/{name}/`): its name, and for the edge who may
    /// pass (route policies, docs/auth.md).
    pub fn route_data(&self) -> serde_json::Map<String, Value> {
        let c = &self.config;
        let mut data = serde_json::Map::new();
        data.insert("service".into(), json!(c.name));
        match c.access {
            ServiceAccess::Public => {}
            ServiceAccess::Users => {
                data.insert("auth".into(), json!("user"));
            }
            // An owner route that names no user: admins, and the members of its groups.
            ServiceAccess::Admins => {
                data.insert("auth".into(), json!("owner"));
                if !c.groups.is_empty() {
                    data.insert("groups".into(), json!(c.groups));
                }
            }
        }
        data
    }

    /// Whether `who` may sign in to it through the hub's OAuth (and so holds
    /// `access:services!service={name}`): admins always; otherwise whoever its `access` lets
    /// through the edge, a signed-in user for `public` and `users`. `groups` gives `who`'s
    /// groups, read only for a service for admins and groups.
    pub fn usable_by(&self, who: &Caller, groups: impl FnOnce() -> Vec<String>) -> bool {
        if who.admin {
            return true;
        }
        if who.kind != CallerKind::User {
            return false;
        }
        match self.config.access {
            ServiceAccess::Public | ServiceAccess::Users => true,
            ServiceAccess::Admins => {
                let groups = groups();
                self.config.groups.iter().any(|g| groups.contains(g))
            }
        }
    }

    /// The scope its pages ask of a user (`JUPYTERHUB_OAUTH_ACCESS_SCOPES`).
    pub fn access_scope(&self) -> String {
        format!("access:services!service={}", self.config.name)
    }

    /// The scopes it holds, as `GET /hub/api/user` lists them.
    pub fn scope_names(&self) -> Vec<String> {
        self.scopes.to_strings()
    }

    /// JupyterHub's service model; `full: false` is what `read:services:name` may see.
    pub fn model(&self, base: &str, full: bool) -> Value {
        let c = &self.config;
        if !full {
            return json!({"kind": "service", "name": c.name});
        }
        json!({
            "kind": "service",
            "name": c.name,
            "roles": if c.admin { json!(["admin"]) } else { json!(self.roles) },
            "admin": c.admin,
            "url": c.url.clone().unwrap_or_default(),
            "prefix": if c.url.is_some() { self.prefix(base) } else { String::new() },
            "command": c.command,
            "pid": self.pid.load(Ordering::Relaxed),
            "info": {},
            "display": c.display,
        })
    }
}

/// Keeps every managed service running until `stop` resolves, then stops them (SIGTERM to the
/// process group, SIGKILL after `spawner.stop_grace_secs`) and returns once they are gone.
pub async fn run_managed(hub: Arc<Hub>, log_dir: PathBuf, stop: impl std::future::Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let running: Vec<_> = hub
        .services
        .iter()
        .filter(|s| s.config.managed())
        .map(|s| tokio::spawn(keep_running(hub.clone(), s.clone(), log_dir.clone(), stop_rx.clone())))
        .collect();
    if running.is_empty() {
        return;
    }
    stop.await;
    let _ = stop_tx.send(true);
    for task in running {
        let _ = task.await;
    }
}

async fn keep_running(hub: Arc<Hub>, service: Arc<Service>, log_dir: PathBuf, mut stop: watch::Receiver<bool>) {
    let name = &service.config.name;
    let grace = Duration::from_secs(hub.config.spawner.stop_grace_secs);
    let mut wait = RESTART_FIRST;
    loop {
        // One copy for all the hub's replicas, as JupyterHub (one hub) runs one: the replica
        // holding the background lease runs it. A hub alone always holds it.
        if !hub.leader.held() {
            tokio::select! {
                _ = hub.leader.gained() => {}
                _ = tokio::time::sleep(LEASE_CHECK) => {}
                () = stopped(&mut stop) => return,
            }
            continue;
        }
        let began = Instant::now();
        match launch(&hub, &service, &log_dir) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                service.pid.store(pid, Ordering::Relaxed);
                tracing::info!("service {name} started (pid {pid})");
                tokio::select! {
                    status = child.wait() => {
                        service.pid.store(0, Ordering::Relaxed);
                        if began.elapsed() >= HEALTHY_RUN {
                            wait = RESTART_FIRST;
                        }
                        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                        tracing::warn!(
                            "service {name} exited ({status}); starting it again in {} s (its log: {})",
                            wait.as_secs(),
                            log_path(&log_dir, name).display()
                        );
                    }
                    () = stopped(&mut stop) => {
                        terminate(&mut child, pid, grace, name).await;
                        service.pid.store(0, Ordering::Relaxed);
                        return;
                    }
                    () = lease_lost(&hub) => {
                        tracing::info!("service {name}: another hub replica holds the background lease now and runs it");
                        terminate(&mut child, pid, grace, name).await;
                        service.pid.store(0, Ordering::Relaxed);
                        wait = RESTART_FIRST;
                        continue;
                    }
                }
            }
            Err(e) => tracing::error!(
                "service {name} cannot start {}: {e}; trying again in {} s",
                service.config.command[0],
                wait.as_secs()
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
        wait = (wait * 2).min(RESTART_LONGEST);
    }
}

/// Resolves once this replica no longer holds the background lease.
async fn lease_lost(hub: &Hub) {
    while hub.leader.held() {
        tokio::time::sleep(LEASE_CHECK).await;
    }
}

/// Resolves once the hub stops (the guard `wait_for` returns is not `Send`: dropped here).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    // Service names are letters, digits, '-', '_' and '.' (checked with the configuration).
    dir.join(format!("service-{name}.log"))
}

/// Starts the service's command in a process group of its own, its output appended to
/// `service-{name}.log`.
fn launch(hub: &Hub, service: &Service, log_dir: &Path) -> std::io::Result<tokio::process::Child> {
    use std::io::Write;
    let c = &service.config;
    std::fs::create_dir_all(log_dir)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(log_dir, &c.name))?;
    log.write_all(crate::spawner::local::run_header(&c.command).as_bytes())?;
    let mut command = tokio::process::Command::new(&c.command[0]);
    command
        .args(&c.command[1..])
        .env_clear()
        .envs(service_env(hub, service, std::env::vars()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &hub.config.spawner.working_dir {
        command.current_dir(dir);
    }
    command.spawn()
}

/// A managed service's environment, later entries winning: what servers keep of the hub's, the
/// configured `environment`, then JupyterHub's contract for services.
fn service_env(
    hub: &Hub,
    service: &Service,
    inherited: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let c = &service.config;
    let mut env = crate::spawner::local::kept_env(inherited);
    env.extend(c.environment.clone());
    let mut contract = vec![
        ("JUPYTERHUB_SERVICE_NAME", c.name.clone()),
        ("JUPYTERHUB_API_URL", hub.api_url()),
        ("JUPYTERHUB_BASE_URL", hub.base.clone()),
        ("JUPYTERHUB_SERVICE_PREFIX", service.prefix(&hub.base)),
    ];
    if let Some(token) = &service.token {
        contract.push(("JUPYTERHUB_API_TOKEN", token.clone()));
    }
    if let Some(url) = &c.url {
        // Its pages sign users in through the hub (JupyterHub's `HubOAuth`).
        let access = json!([service.access_scope()]).to_string();
        contract.extend([
            ("JUPYTERHUB_SERVICE_URL", url.clone()),
            ("JUPYTERHUB_CLIENT_ID", crate::web::oauth::service_client_id(&c.name)),
            ("JUPYTERHUB_OAUTH_CALLBACK_URL", service.oauth_callback(&hub.base)),
            ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access.clone()),
            ("JUPYTERHUB_OAUTH_SCOPES", access),
        ]);
    }
    env.extend(contract.into_iter().map(|(k, v)| (k.to_owned(), v)));
    env
}

/// SIGTERM to the service's process group, SIGKILL to it after `grace`.
async fn terminate(child: &mut tokio::process::Child, pid: u32, grace: Duration, name: &str) {
    if pid == 0 {
        let _ = child.kill().await;
        return;
    }
    if let Err(e) = crate::spawner::local::signal_group(pid, libc::SIGTERM) {
        tracing::warn!("service {name}: SIGTERM: {e}");
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!("service {name} ignored SIGTERM; sending SIGKILL");
        let _ = crate::spawner::local::signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    tracing::info!("service {name} stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Vec<ServiceConfig> {
        #[derive(serde::Deserialize)]
        struct File {
            services: Vec<ServiceConfig>,
        }
        toml::from_str::<File>(text).unwrap().services
    }

    #[test]
    fn managed_services_get_a_token_that_every_replica_derives_alike() {
        let configs = config(
            "[[services]]\nname = \"culler\"\ncommand = [\"true\"]\n\
             [[services]]\nname = \"other\"\ncommand = [\"true\"]\n\
             [[services]]\nname = \"given\"\napi_token = \"given-token\"\n\
             [[services]]\nname = \"tokenless\"\nurl = \"http://127.0.0.1:1\"",
        );
        let one = Services::from_config(&configs, &Roles::default(), b"key one").unwrap();
        let again = Services::from_config(&configs, &Roles::default(), b"key one").unwrap();
        let other_key = Services::from_config(&configs, &Roles::default(), b"key two").unwrap();
        let tokens = |s: &Services| s.tokens().into_iter().collect::<BTreeMap<_, _>>();
        assert_eq!(tokens(&one), tokens(&again));
        assert_ne!(tokens(&one)["culler"], tokens(&other_key)["culler"]);
        assert_ne!(tokens(&one)["culler"], tokens(&one)["other"]);
        assert_eq!(tokens(&one)["given"], "given-token");
        assert!(!tokens(&one).contains_key("tokenless"));
        assert_eq!(tokens(&one)["culler"].len(), 64);
    }

    #[test]
    fn the_route_says_who_the_edge_lets_through() {
        let configs = config(
            "[[services]]\nname = \"open\"\nurl = \"http://h:1\"\n\
             [[services]]\nname = \"signed-in\"\nurl = \"http://h:1\"\naccess = \"users\"\n\
             [[services]]\nname = \"staff\"\nurl = \"http://h:1\"\naccess = \"admins\"\ngroups = [\"staff\"]\n\
             [[services]]\nname = \"root\"\nurl = \"http://h:1\"\naccess = \"admins\"",
        );
        let services = Services::from_config(&configs, &Roles::default(), b"k").unwrap();
        let data = |name: &str| Value::Object(services.get(name).unwrap().route_data());
        assert_eq!(data("open"), json!({"service": "open"}));
        assert_eq!(data("signed-in"), json!({"service": "signed-in", "auth": "user"}));
        assert_eq!(
            data("staff"),
            json!({"service": "staff", "auth": "owner", "groups": ["staff"]})
        );
        assert_eq!(data("root"), json!({"service": "root", "auth": "owner"}));
        // The edge reads them as it reads every route's data.
        let policy = |name: &str| {
            let Value::Object(d) = data(name) else { unreachable!() };
            proxy::route_policy::RoutePolicy::from_data(&d)
        };
        assert!(policy("open").is_none(), "no policy: the edge's default");
        let staff = policy("staff").unwrap();
        assert!(staff.user.is_none() && staff.groups.len() == 1);
    }

    #[test]
    fn a_service_holds_its_scopes_or_an_admins_rights() {
        let configs = config(
            "[[services]]\nname = \"culler\"\nscopes = [\"list:users\", \"delete:servers\"]\n\
             [[services]]\nname = \"root\"\nadmin = true\n\
             [[services]]\nname = \"nothing\"",
        );
        let services = Services::from_config(&configs, &Roles::default(), b"k").unwrap();
        let culler = services.get("culler").unwrap().caller();
        assert!(!culler.admin && culler.kind == CallerKind::Service);
        let held = culler.scopes.unwrap().to_strings();
        assert!(held.contains(&"list:users".to_owned()) && held.contains(&"delete:servers".to_owned()));
        let root = services.get("root").unwrap().caller();
        assert!(root.admin && root.scopes.is_none());
        let nothing = services.get("nothing").unwrap().caller();
        assert!(nothing.scopes.is_some_and(|s| s.to_strings().is_empty()));
        let bad = config("[[services]]\nname = \"x\"\nscopes = [\"fly:planes\"]");
        let e = Services::from_config(&bad, &Roles::default(), b"k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the scopes of x"), "{e}");
    }

    #[test]
    fn a_role_naming_a_service_adds_its_scopes_and_its_name() {
        let configs =
            config("[[services]]\nname = \"grader\"\nscopes = [\"list:users\"]\n[[services]]\nname = \"other\"");
        let role = config::RoleConfig {
            name: "grading".into(),
            description: String::new(),
            scopes: vec!["read:users!group=students".into()],
            users: vec![],
            groups: vec![],
            services: vec!["grader".into()],
        };
        let roles = Roles::from_config(&[role]).unwrap();
        let services = Services::from_config(&configs, &roles, b"k").unwrap();
        let grader = services.get("grader").unwrap();
        let held = grader.caller().scopes.unwrap().to_strings();
        assert!(held.contains(&"list:users".to_owned()), "its own: {held:?}");
        assert!(
            held.contains(&"read:users!group=students".to_owned()),
            "the role's: {held:?}"
        );
        assert_eq!(grader.model("/", true)["roles"], json!(["grading"]));
        let other = services.get("other").unwrap();
        assert!(other.caller().scopes.unwrap().to_strings().is_empty(), "not named");
        assert_eq!(other.model("/", true)["roles"], json!([]));
    }
}

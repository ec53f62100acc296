//! Users and their servers: the rows the store keeps, the live state the hub holds, and the JSON
//! models of JupyterHub's REST API built from them.
//!
//! A server moves through `Stopped → Pending → Running → Stopping → Stopped`; a failed spawn
//! goes from `Pending` straight back to `Stopped` (see `docs/hub.md#server-lifecycle`). Only the
//! hub's lifecycle code changes the phase; every change is written to the store before anyone
//! else can observe it.

use serde_json::{Map, Value, json};

use crate::progress::ProgressLog;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Known (a named server, or a default server that ran before) but not running.
    Stopped,
    /// Being started: spawner, readiness check, route.
    Pending,
    /// Up, routed, ready.
    Running,
    /// Being stopped.
    Stopping,
}

impl Phase {
    pub fn as_db(self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Pending => "pending",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
        }
    }

    /// Unknown text reads as `Stopped`: the safe guess, corrected by the next poll.
    pub fn from_db(s: &str) -> Phase {
        match s {
            "pending" => Phase::Pending,
            "running" => Phase::Running,
            "stopping" => Phase::Stopping,
            _ => Phase::Stopped,
        }
    }

    /// Not fully stopped: counts against `active_server_limit`.
    pub fn is_active(self) -> bool {
        self != Phase::Stopped
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub name: String,
    pub admin: bool,
    pub created_ms: u64,
    pub last_activity_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerRecord {
    pub user: String,
    pub name: String,
    pub phase: Phase,
    /// The spawner's URL (`http://127.0.0.1:41234`), the proxy route's target.
    pub url: Option<String>,
    pub spawner_state: Value,
    pub started_ms: Option<u64>,
    pub last_activity_ms: Option<u64>,
    pub user_options: Value,
    /// The hub replica carrying out the current start or stop (`Pending`, `Stopping`); another
    /// replica takes the server over if this one dies.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: i64,
    /// SHA-256 of the token, hex; the token itself is never stored.
    pub hash: String,
    pub user: String,
    /// The server this token was issued to (`JUPYTERHUB_API_TOKEN`), if any.
    pub server: Option<String>,
    pub note: String,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    /// The scopes the token was made with (JupyterHub's RBAC); `None`: all its owner holds.
    pub scopes: Option<Vec<String>>,
}

/// The scopes column of a token: JSON text or NULL. Unreadable text becomes a scope no one
/// holds, so such a token can do nothing (never everything).
pub fn token_scopes_from_db(text: Option<String>) -> Option<Vec<String>> {
    let text = text?;
    Some(serde_json::from_str(&text).unwrap_or_else(|_| vec!["!unreadable".to_owned()]))
}

pub fn token_scopes_to_db(scopes: &Option<Vec<String>>) -> Option<String> {
    scopes.as_ref().map(|s| serde_json::Value::from(s.clone()).to_string())
}

/// A server as the hub holds it while running.
#[derive(Clone)]
pub struct Server {
    pub record: ServerRecord,
    /// The current or last spawn's progress log.
    pub progress: Option<ProgressLog>,
    /// Why the last spawn failed, shown until the next start.
    pub last_failure: Option<String>,
}

impl Server {
    /// Whether the last spawn failed and its progress log still says why (the pending page and
    /// the progress stream show it until the next start). A server that ran and then exited has
    /// a `last_failure` too, but no failed spawn to follow.
    pub fn spawn_failed(&self) -> bool {
        self.phase() == Phase::Stopped && self.progress.as_ref().and_then(|l| l.last()).is_some_and(|e| e.failed)
    }

    pub fn new(user: &str, name: &str) -> Server {
        Server {
            record: ServerRecord {
                user: user.to_owned(),
                name: name.to_owned(),
                phase: Phase::Stopped,
                url: None,
                spawner_state: json!({}),
                started_ms: None,
                last_activity_ms: None,
                user_options: json!({}),
                owner: None,
            },
            progress: None,
            last_failure: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.record.phase
    }
}

#[derive(Clone)]
pub struct User {
    pub record: UserRecord,
    pub servers: ServerMap,
}

/// A user's servers by name (`""` is the default server), in name order.
///
/// Almost every user has one server, so this is a vector searched by name rather than a
/// `BTreeMap`, whose first node alone has room for eleven servers: at a thousand idle users
/// that difference is most of the hub's memory. The name is the server record's own.
#[derive(Clone, Default)]
pub struct ServerMap(Vec<Server>);

impl ServerMap {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|s| s.record.name.as_str().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&Server> {
        self.position(name).ok().map(|i| &self.0[i])
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Server> {
        self.position(name).ok().map(|i| &mut self.0[i])
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// A copy of `user`'s server called `name`, or a new stopped one: what a change is made on
    /// before it is written, so that memory keeps the old one if the write fails.
    pub fn copy_or_new(&self, user: &str, name: &str) -> Server {
        self.get(name).cloned().unwrap_or_else(|| Server::new(user, name))
    }

    /// The server called `name`, made by `new` if there is none.
    pub fn get_or_insert_with(&mut self, name: &str, new: impl FnOnce() -> Server) -> &mut Server {
        let i = match self.position(name) {
            Ok(i) => i,
            Err(i) => {
                // Grow by one: the usual user never has a second server.
                self.0.reserve_exact(1);
                self.0.insert(i, new());
                i
            }
        };
        &mut self.0[i]
    }

    /// Adds or replaces the server of that name.
    pub fn insert(&mut self, server: Server) {
        match self.position(&server.record.name) {
            Ok(i) => self.0[i] = server,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, server);
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Server> {
        self.position(name).ok().map(|i| self.0.remove(i))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|s| &s.record.name)
    }

    pub fn values(&self) -> std::slice::Iter<'_, Server> {
        self.0.iter()
    }

    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, Server> {
        self.0.iter_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// `/user/alice/` or `/user/alice/lab/`: where a server is reached through the proxy.
pub fn server_prefix(base: &str, user: &str, server: &str) -> String {
    let user = escape_segment(user);
    if server.is_empty() {
        format!("{base}user/{user}/")
    } else {
        format!("{base}user/{user}/{}/", escape_segment(server))
    }
}

/// JupyterHub's `quote(name, safe='@~')`: names become one URL path segment.
pub fn escape_segment(name: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'@');
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// Valid user and server names: what the pages, routes and the database all accept without
/// surprises. JupyterHub allows more; these cover real deployments (emails included).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'))
        && !name.starts_with('.')
}

pub fn iso(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(proxy::timestamp::format_iso(ms)))
}

impl Server {
    /// JupyterHub's server model.
    pub fn to_json(&self, base: &str, include_state: bool) -> Value {
        let r = &self.record;
        let pending = match r.phase {
            Phase::Pending => json!("spawn"),
            Phase::Stopping => json!("stop"),
            _ => Value::Null,
        };
        let mut model = json!({
            "name": r.name,
            "ready": r.phase == Phase::Running,
            "pending": pending,
            "stopped": r.phase == Phase::Stopped,
            "url": server_prefix(base, &r.user, &r.name),
            "progress_url": progress_url(base, &r.user, &r.name),
            "started": iso(r.started_ms),
            "last_activity": iso(r.last_activity_ms.or(r.started_ms)),
            "user_options": r.user_options,
        });
        if include_state {
            model["state"] = r.spawner_state.clone();
        }
        model
    }
}

pub fn progress_url(base: &str, user: &str, server: &str) -> String {
    let user = escape_segment(user);
    if server.is_empty() {
        format!("{base}hub/api/users/{user}/server/progress")
    } else {
        format!("{base}hub/api/users/{user}/servers/{}/progress", escape_segment(server))
    }
}

impl User {
    /// JupyterHub's user model. Stopped servers appear only with `include_stopped`.
    pub fn to_json(&self, base: &str, include_stopped: bool, include_state: bool) -> Value {
        let r = &self.record;
        let mut servers = Map::new();
        for server in self.servers.values() {
            if include_stopped || server.phase().is_active() {
                servers.insert(server.record.name.clone(), server.to_json(base, include_state));
            }
        }
        let default_pending = match self.servers.get("").map(Server::phase) {
            Some(Phase::Pending) => json!("spawn"),
            Some(Phase::Stopping) => json!("stop"),
            _ => Value::Null,
        };
        let running = self.servers.get("").is_some_and(|s| s.phase() == Phase::Running);
        json!({
            "kind": "user",
            "name": r.name,
            "admin": r.admin,
            "roles": if r.admin { json!(["admin", "user"]) } else { json!(["user"]) },
            "groups": [],
            "server": if running { Value::String(server_prefix(base, &r.name, "")) } else { Value::Null },
            "pending": default_pending,
            "created": iso(Some(r.created_ms)),
            "last_activity": iso(r.last_activity_ms),
            "servers": servers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_escape_names_as_jupyterhub_does() {
        assert_eq!(server_prefix("/", "alice", ""), "/user/alice/");
        assert_eq!(server_prefix("/jhub/", "alice", "lab 2"), "/jhub/user/alice/lab%202/");
        assert_eq!(server_prefix("/", "a@b.org", ""), "/user/a@b.org/");
        assert_eq!(escape_segment("秀樹"), "%E7%A7%80%E6%A8%B9");
        assert_eq!(progress_url("/", "bob", "x"), "/hub/api/users/bob/servers/x/progress");
    }

    #[test]
    fn names() {
        for good in ["alice", "a.b@c.org", "user-1_x", "秀樹", "a+b"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a/b", "a b", "..", ".hidden", "a?b", "<x>", &"x".repeat(256)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_user_model_has_jupyterhubs_fields() {
        let mut user = User {
            record: UserRecord {
                name: "alice".into(),
                admin: false,
                created_ms: 0,
                last_activity_ms: None,
            },
            servers: ServerMap::default(),
        };
        let mut s = Server::new("alice", "");
        s.record.phase = Phase::Running;
        s.record.started_ms = Some(1000);
        user.servers.insert(Server::new("alice", "old"));
        user.servers.insert(s);
        let m = user.to_json("/", false, false);
        assert_eq!(m["server"], "/user/alice/");
        assert_eq!(m["servers"][""]["ready"], true);
        assert_eq!(m["servers"][""]["pending"], Value::Null);
        assert_eq!(m["servers"][""]["last_activity"], "1970-01-01T00:00:01.000Z");
        assert!(
            m["servers"].get("old").is_none(),
            "stopped servers are hidden by default"
        );
        assert!(user.to_json("/", true, false)["servers"].get("old").is_some());
        assert!(m["servers"][""].get("state").is_none());
    }

    #[test]
    fn servers_are_kept_in_name_order_and_found_by_name() {
        let mut servers = ServerMap::default();
        for name in ["lab", "", "big", "lab"] {
            servers.get_or_insert_with(name, || Server::new("alice", name));
        }
        assert_eq!(servers.keys().collect::<Vec<_>>(), ["", "big", "lab"]);
        assert!(servers.contains_key("big") && !servers.contains_key("nope"));
        let mut running = Server::new("alice", "big");
        running.record.phase = Phase::Running;
        servers.insert(running);
        assert_eq!(servers.len(), 3);
        assert_eq!(servers.get("big").map(Server::phase), Some(Phase::Running));
        assert_eq!(servers.remove("").map(|s| s.record.name), Some(String::new()));
        assert_eq!(servers.keys().collect::<Vec<_>>(), ["big", "lab"]);
        assert!(servers.remove("").is_none());
    }
}

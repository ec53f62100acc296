//! JupyterHub's permission model (RBAC scopes), as its REST API checks it: a scope names what
//! may be done (`read:users`, `servers`, `admin:groups`…), optionally narrowed by a filter to
//! one user's resources (`!user=alice`), one server's (`!server=alice/gpu`) or those of a
//! group's members (`!group=proj`). Broad scopes hold narrower ones (`admin:users` holds
//! `users`, which holds `read:users`…), as JupyterHub defines them.
//!
//! A request is allowed when the caller's role allows it (an admin: everything; a user: their
//! own resources, JupyterHub's `self`) and, for a token made with `scopes`, when those allow it
//! too: a token never holds more than its owner.

use std::collections::BTreeSet;

/// Every scope and the scopes it holds (JupyterHub 5's definitions).
const DEFINITIONS: &[(&str, &[&str])] = &[
    ("admin-ui", &[]),
    (
        "admin:users",
        &["admin:auth_state", "users", "read:roles:users", "delete:users"],
    ),
    ("admin:auth_state", &[]),
    ("users", &["read:users", "list:users", "users:activity"]),
    ("delete:users", &[]),
    ("list:users", &["read:users:name"]),
    (
        "read:users",
        &["read:users:name", "read:users:groups", "read:users:activity"],
    ),
    ("read:users:name", &[]),
    ("read:users:groups", &[]),
    ("read:users:activity", &[]),
    (
        "read:roles",
        &["read:roles:users", "read:roles:services", "read:roles:groups"],
    ),
    ("read:roles:users", &[]),
    ("read:roles:services", &[]),
    ("read:roles:groups", &[]),
    ("users:activity", &["read:users:activity"]),
    ("admin:servers", &["admin:server_state", "servers"]),
    ("admin:server_state", &[]),
    ("servers", &["read:servers", "start:servers", "delete:servers"]),
    ("read:servers", &["read:users:name"]),
    ("start:servers", &[]),
    ("delete:servers", &[]),
    ("tokens", &["read:tokens"]),
    ("read:tokens", &[]),
    ("admin:groups", &["groups", "read:roles:groups", "delete:groups"]),
    ("groups", &["read:groups", "list:groups"]),
    ("list:groups", &["read:groups:name"]),
    ("read:groups", &["read:groups:name"]),
    ("read:groups:name", &[]),
    ("delete:groups", &[]),
    (
        "admin:services",
        &["list:services", "read:services", "read:roles:services"],
    ),
    ("list:services", &["read:services:name"]),
    ("read:services", &["read:services:name"]),
    ("read:services:name", &[]),
    ("access:servers", &[]),
    ("access:services", &[]),
    ("users:shares", &["read:users:shares"]),
    ("read:users:shares", &[]),
    ("groups:shares", &["read:groups:shares"]),
    ("read:groups:shares", &[]),
    ("read:shares", &[]),
    (
        "shares",
        &["access:servers", "read:shares", "users:shares", "groups:shares"],
    ),
    ("proxy", &[]),
    ("read:metrics", &[]),
    ("read:hub", &[]),
    ("shutdown", &[]),
];

/// What JupyterHub's `admin` role holds.
const ADMIN_ROLE: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "read:hub",
    "proxy",
    "shutdown",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
];

/// What `self` means for a user: these, on their own resources.
const SELF: &[&str] = &[
    "read:users",
    "users:shares",
    "read:shares",
    "users:activity",
    "servers",
    "tokens",
    "access:servers",
    "shares",
];

/// The scopes of one of JupyterHub's default roles, for `owner`'s token (`roles` in a token
/// request): `user` is `self`, `admin` the admin role, `server` what a server's token holds,
/// `token` all the owner holds (`inherit`). `None` for a role JupyterHub does not define.
pub fn role(name: &str, owner: &str) -> Option<Vec<String>> {
    Some(match name {
        "user" => vec!["self".to_owned()],
        "admin" => ADMIN_ROLE.iter().map(|s| (*s).to_owned()).collect(),
        "server" => vec![
            format!("users:activity!user={owner}"),
            format!("access:servers!user={owner}"),
        ],
        "token" => vec!["inherit".to_owned()],
        _ => return None,
    })
}

/// Which resources a scope reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    All,
    User(String),
    Server {
        user: String,
        server: String,
    },
    Group(String),
    /// `!service=name`: one service (`access:services!service=grafana`).
    Service(String),
}

/// One scope, its name known and its filter parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub name: &'static str,
    pub filter: Filter,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.filter {
            Filter::All => write!(f, "{}", self.name),
            Filter::User(u) => write!(f, "{}!user={u}", self.name),
            Filter::Server { user, server } => write!(f, "{}!server={user}/{server}", self.name),
            Filter::Group(g) => write!(f, "{}!group={g}", self.name),
            Filter::Service(s) => write!(f, "{}!service={s}", self.name),
        }
    }
}

/// What a request touches, for matching filters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The user whose resource it is (the owner of a server, the subject of a user call).
    pub user: Option<&'a str>,
    pub server: Option<&'a str>,
    /// The group a group call is about.
    pub group: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn hub() -> Target<'a> {
        Target::default()
    }

    pub fn user(user: &'a str) -> Target<'a> {
        Target {
            user: Some(user),
            ..Target::default()
        }
    }

    pub fn server(user: &'a str, server: &'a str) -> Target<'a> {
        Target {
            user: Some(user),
            server: Some(server),
            group: None,
        }
    }

    pub fn group(group: &'a str) -> Target<'a> {
        Target {
            group: Some(group),
            ..Target::default()
        }
    }
}

/// A set of scopes, each expanded into all it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<Scope>);

/// Why a requested scope is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("unknown scope {0:?}")]
    Unknown(String),
    #[error("scope {0:?} has a filter that is not !user=, !server=user/name or !group=")]
    BadFilter(String),
}

/// The known name, as the `'static` string of the definitions.
fn known(name: &str) -> Option<&'static str> {
    DEFINITIONS.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
}

/// A scope and everything it holds.
fn expand(name: &'static str, into: &mut BTreeSet<&'static str>) {
    if into.insert(name)
        && let Some((_, held)) = DEFINITIONS.iter().find(|(n, _)| *n == name)
    {
        for h in *held {
            if let Some(h) = known(h) {
                expand(h, into);
            }
        }
    }
}

/// Parses `name` or `name!kind=value`. `self` and `inherit` are the caller's to resolve.
pub fn parse(text: &str) -> Result<Scope, ScopeError> {
    let (name, filter) = match text.split_once('!') {
        None => (text, Filter::All),
        Some((name, filter)) => {
            let bad = || ScopeError::BadFilter(text.to_owned());
            let (kind, value) = filter.split_once('=').ok_or_else(bad)?;
            if value.is_empty() {
                return Err(bad());
            }
            let filter = match kind {
                "user" => Filter::User(value.to_owned()),
                "group" => Filter::Group(value.to_owned()),
                "service" => Filter::Service(value.to_owned()),
                "server" => {
                    let (user, server) = value.split_once('/').ok_or_else(bad)?;
                    Filter::Server {
                        user: user.to_owned(),
                        server: server.to_owned(),
                    }
                }
                _ => return Err(bad()),
            };
            (name, filter)
        }
    };
    let name = known(name).ok_or_else(|| ScopeError::Unknown(text.to_owned()))?;
    Ok(Scope { name, filter })
}

impl Scopes {
    fn add(&mut self, name: &'static str, filter: &Filter) {
        let mut names = BTreeSet::new();
        expand(name, &mut names);
        for name in names {
            self.0.insert(Scope {
                name,
                filter: filter.clone(),
            });
        }
    }

    /// Adds every scope of `other` (a user's own and their roles' together).
    pub fn union(&mut self, other: &Scopes) {
        self.0.extend(other.0.iter().cloned());
    }

    /// JupyterHub's `admin` role.
    pub fn admin() -> Scopes {
        let mut s = Scopes::default();
        for name in ADMIN_ROLE {
            if let Some(name) = known(name) {
                s.add(name, &Filter::All);
            }
        }
        s
    }

    /// JupyterHub's `user` role (`self`) for `user`.
    pub fn own(user: &str) -> Scopes {
        let mut s = Scopes::default();
        for name in SELF {
            if let Some(name) = known(name) {
                s.add(name, &Filter::User(user.to_owned()));
            }
        }
        s
    }

    /// Scopes from their text, with `self` meaning `owner`'s own resources; `inherit` (or no
    /// scopes at all) is `None`: the token holds what its owner holds.
    pub fn requested(texts: &[String], owner: &str) -> Result<Option<Scopes>, ScopeError> {
        if texts.is_empty() || texts.iter().any(|t| t == "inherit") {
            return Ok(None);
        }
        let mut s = Scopes::default();
        for text in texts {
            if text == "self" {
                s.0.extend(Scopes::own(owner).0);
                continue;
            }
            let scope = parse(text)?;
            s.add(scope.name, &scope.filter);
        }
        Ok(Some(s))
    }

    /// Whether these scopes allow `name` on `target`. `groups_of` gives a user's groups, for
    /// `!group=` filters on user resources.
    pub fn allows(&self, name: &str, target: Target<'_>, groups_of: &dyn Fn(&str) -> Vec<String>) -> bool {
        let mut user_groups: Option<Vec<String>> = None;
        self.0.iter().filter(|s| s.name == name).any(|s| match &s.filter {
            Filter::All => true,
            Filter::User(u) => target.user == Some(u.as_str()),
            Filter::Server { user, server } => {
                target.user == Some(user.as_str()) && target.server == Some(server.as_str())
            }
            Filter::Group(g) => {
                target.group == Some(g.as_str())
                    || target.user.is_some_and(|u| {
                        user_groups
                            .get_or_insert_with(|| groups_of(u))
                            .iter()
                            .any(|mine| mine == g)
                    })
            }
            // No call of the REST API is about one service's resources; the service's own pages
            // read this filter from `GET /hub/api/user`.
            Filter::Service(_) => false,
        })
    }

    /// Whether every scope of `other` is held here: a token may hold no more than its owner.
    /// Checked scope by scope on its own resource, so `servers!user=me` is within `self` while
    /// `servers` (everyone's) is not.
    pub fn covers(&self, other: &Scopes, groups_of: &dyn Fn(&str) -> Vec<String>) -> Result<(), String> {
        for scope in &other.0 {
            let target = match &scope.filter {
                Filter::All => None,
                Filter::User(u) => Some(Target::user(u)),
                Filter::Server { user, server } => Some(Target::server(user, server)),
                Filter::Group(g) => Some(Target::group(g)),
                Filter::Service(_) => None,
            };
            let held = match target {
                Some(target) => self.allows(scope.name, target, groups_of),
                None => self.0.contains(scope),
            };
            if !held {
                return Err(scope.to_string());
            }
        }
        Ok(())
    }

    /// Whether `name` is held on anything at all, whatever its filter: what JupyterHub checks
    /// before it narrows a listing to the filters' resources.
    pub fn holds_any(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }

    /// The scopes as JupyterHub lists them (expanded, sorted).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(Scope::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn filters_narrow_and_broad_scopes_hold_narrow_ones() {
        let s = Scopes::requested(&["read:users!user=alice".into(), "servers!server=bob/gpu".into()], "x")
            .unwrap()
            .unwrap();
        assert!(s.allows("read:users", Target::user("alice"), &none));
        assert!(
            s.allows("read:users:name", Target::user("alice"), &none),
            "held by read:users"
        );
        assert!(!s.allows("read:users", Target::user("bob"), &none));
        assert!(
            !s.allows("read:users", Target::hub(), &none),
            "a filtered scope is not everyone's"
        );
        assert!(s.allows("start:servers", Target::server("bob", "gpu"), &none));
        assert!(!s.allows("start:servers", Target::server("bob", ""), &none));
        assert!(!s.allows("tokens", Target::user("alice"), &none));

        let groups = Scopes::requested(&["read:users!group=proj".into()], "x")
            .unwrap()
            .unwrap();
        let in_proj = |u: &str| if u == "carol" { vec!["proj".into()] } else { vec![] };
        assert!(groups.allows("read:users", Target::user("carol"), &in_proj));
        assert!(!groups.allows("read:users", Target::user("dave"), &in_proj));
    }

    #[test]
    fn self_and_inherit_and_bad_scopes() {
        assert_eq!(Scopes::requested(&[], "a").unwrap(), None);
        assert_eq!(Scopes::requested(&["inherit".into()], "a").unwrap(), None);
        assert_eq!(
            Scopes::requested(&["self".into()], "a").unwrap(),
            Some(Scopes::own("a"))
        );
        assert!(matches!(parse("read:everything"), Err(ScopeError::Unknown(_))));
        for bad in [
            "servers!user",
            "servers!user=",
            "servers!server=alice",
            "servers!team=x",
        ] {
            assert!(matches!(parse(bad), Err(ScopeError::BadFilter(_))), "{bad}");
        }
    }

    #[test]
    fn a_token_holds_no_more_than_its_owner() {
        let alice = Scopes::own("alice");
        let mine = Scopes::requested(&["servers!user=alice".into(), "read:users!user=alice".into()], "alice")
            .unwrap()
            .unwrap();
        assert!(alice.covers(&mine, &none).is_ok());
        let everyones = Scopes::requested(&["servers".into()], "alice").unwrap().unwrap();
        assert!(alice.covers(&everyones, &none).is_err());
        let bobs = Scopes::requested(&["read:users!user=bob".into()], "alice")
            .unwrap()
            .unwrap();
        assert_eq!(alice.covers(&bobs, &none), Err("read:users!user=bob".into()));
        assert!(Scopes::admin().covers(&everyones, &none).is_ok());
        let a_service = Scopes::requested(&["access:services!service=grades".into()], "alice")
            .unwrap()
            .unwrap();
        assert_eq!(
            alice.covers(&a_service, &none),
            Err("access:services!service=grades".into()),
            "a user holds no service's access of their own"
        );
    }

    #[test]
    fn one_services_access() {
        let s = parse("access:services!service=grades").unwrap();
        assert_eq!(s.filter, Filter::Service("grades".into()));
        assert_eq!(
            s.to_string(),
            "access:services!service=grades",
            "listed as JupyterHub lists it"
        );
        let held = Scopes::requested(&[s.to_string()], "x").unwrap().unwrap();
        assert_eq!(held.to_strings(), ["access:services!service=grades"]);
        assert!(
            !held.allows("access:services", Target::hub(), &none),
            "not every service's"
        );
        assert!(matches!(
            parse("access:services!service="),
            Err(ScopeError::BadFilter(_))
        ));
    }
}

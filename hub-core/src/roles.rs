//! Configured roles (`[[roles]]`, JupyterHub's `load_roles`) as the hub applies them: the scopes
//! a user holds through a role given to them or to one of their groups, those a service holds
//! through a role naming it (`Services::from_config` adds those), and whom a role's
//! `access:servers` lets into a server, which is written into the server's route so the edge
//! admits them (as it admits a share's grantees).
//!
//! Group membership is read when it matters, so joining or leaving a group changes what a user
//! may do in the API at once; the routes that carry a role's grantees are written again by the
//! groups API before it answers, and by every reconcile.

use config::RoleConfig;

use crate::scopes::{Scopes, Target};
use crate::store::Grantee;

/// One configured role, its scopes parsed and expanded once.
#[derive(Debug)]
pub struct Role {
    pub config: RoleConfig,
    scopes: Scopes,
}

impl Role {
    /// What its holders hold, expanded.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Whether `user`, a member of `groups`, holds it.
    fn held_by(&self, user: &str, groups: &[String]) -> bool {
        self.config.users.iter().any(|u| u == user) || self.config.groups.iter().any(|g| groups.contains(g))
    }
}

/// Every configured role, in the configuration's order.
#[derive(Debug, Default)]
pub struct Roles(Vec<Role>);

impl Roles {
    /// Reads the configured roles; a scope the hub does not know is refused here, naming the role.
    pub fn from_config(configs: &[RoleConfig]) -> anyhow::Result<Roles> {
        let mut roles = Vec::new();
        for config in configs {
            // `self` and `inherit` were refused by the configuration's checks.
            let scopes = match Scopes::requested(&config.scopes, "") {
                Ok(scopes) => scopes.unwrap_or_default(),
                Err(e) => anyhow::bail!("roles: the scopes of {}: {e}", config.name),
            };
            roles.push(Role {
                config: config.clone(),
                scopes,
            });
        }
        Ok(Roles(roles))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The roles `user` holds, directly or through `groups_of(user)`, which is read only when
    /// some role is given to groups.
    pub fn of_user<'r>(
        &'r self,
        user: &str,
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) -> impl Iterator<Item = &'r Role> + use<'r> {
        let for_groups = self.0.iter().any(|r| !r.config.groups.is_empty());
        let groups = if for_groups { groups_of(user) } else { Vec::new() };
        let user = user.to_owned();
        self.0.iter().filter(move |r| r.held_by(&user, &groups))
    }

    /// The roles naming the service `name`.
    pub fn of_service<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r Role> {
        self.0
            .iter()
            .filter(move |r| r.config.services.iter().any(|s| s == name))
    }

    /// All the scopes `user`'s roles give them (none without roles).
    pub fn scopes_of_user(&self, user: &str, groups_of: &dyn Fn(&str) -> Vec<String>) -> Scopes {
        let mut held = Scopes::default();
        for role in self.of_user(user, groups_of) {
            held.union(&role.scopes);
        }
        held
    }

    /// Whether a role of `user`'s allows `scope` on `target`.
    pub fn allow_user(
        &self,
        user: &str,
        scope: &str,
        target: Target<'_>,
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) -> bool {
        self.of_user(user, groups_of)
            .any(|role| role.scopes.allows(scope, target, groups_of))
    }

    /// Whom the roles let into `owner`'s `server`: the users and groups of every role whose
    /// scopes hold `access:servers` on it (`groups_of(owner)` decides `!group=` filters).
    pub fn server_grantees(&self, owner: &str, server: &str, groups_of: &dyn Fn(&str) -> Vec<String>) -> Vec<Grantee> {
        let mut grantees = Vec::new();
        // The owner's groups are read at most once, and only for a role with a group filter.
        let owner_groups = std::cell::OnceCell::new();
        let groups_of_owner = |user: &str| {
            if user == owner {
                owner_groups.get_or_init(|| groups_of(user)).clone()
            } else {
                groups_of(user)
            }
        };
        for role in &self.0 {
            if !role
                .scopes
                .allows("access:servers", Target::server(owner, server), &groups_of_owner)
            {
                continue;
            }
            let users = role.config.users.iter().cloned().map(Grantee::User);
            let groups = role.config.groups.iter().cloned().map(Grantee::Group);
            for grantee in users.chain(groups) {
                if !grantees.contains(&grantee) {
                    grantees.push(grantee);
                }
            }
        }
        grantees
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Roles {
        let instructor = RoleConfig {
            name: "instructor".into(),
            description: String::new(),
            scopes: vec![
                "access:servers!group=students".into(),
                "read:users!group=students".into(),
            ],
            users: vec!["prof".into()],
            groups: vec!["instructors".into()],
            services: vec![],
        };
        let grader = RoleConfig {
            name: "grader".into(),
            description: String::new(),
            scopes: vec!["read:users".into()],
            users: vec![],
            groups: vec![],
            services: vec!["nbgrader".into()],
        };
        Roles::from_config(&[instructor, grader]).unwrap()
    }

    fn groups(user: &str) -> Vec<String> {
        match user {
            "alice" => vec!["students".into()],
            "ta" => vec!["instructors".into()],
            _ => vec![],
        }
    }

    #[test]
    fn a_role_reaches_its_holders_and_only_the_resources_its_filters_name() {
        let roles = roles();
        for holder in ["prof", "ta"] {
            assert!(
                roles.allow_user(holder, "read:users", Target::user("alice"), &groups),
                "{holder}"
            );
            assert!(roles.allow_user(holder, "access:servers", Target::server("alice", ""), &groups));
            assert!(
                !roles.allow_user(holder, "read:users", Target::user("bob"), &groups),
                "bob is no student"
            );
            assert!(!roles.allow_user(holder, "delete:servers", Target::server("alice", ""), &groups));
        }
        assert!(
            !roles.allow_user("alice", "read:users", Target::user("alice"), &groups),
            "not an instructor"
        );
        let names: Vec<_> = roles.of_user("ta", &groups).map(|r| r.config.name.as_str()).collect();
        assert_eq!(names, ["instructor"]);
        assert!(
            roles
                .scopes_of_user("prof", &groups)
                .to_strings()
                .contains(&"read:users:name!group=students".to_owned()),
            "expanded"
        );
    }

    #[test]
    fn a_server_admits_the_holders_of_a_role_that_reaches_it() {
        let roles = roles();
        assert_eq!(
            roles.server_grantees("alice", "", &groups),
            [Grantee::User("prof".into()), Grantee::Group("instructors".into())]
        );
        assert!(roles.server_grantees("bob", "", &groups).is_empty());
    }

    #[test]
    fn an_unknown_scope_is_refused_naming_the_role() {
        let bad = RoleConfig {
            name: "oops".into(),
            description: String::new(),
            scopes: vec!["read:everything".into()],
            users: vec![],
            groups: vec![],
            services: vec![],
        };
        let e = Roles::from_config(&[bad]).unwrap_err().to_string();
        assert!(e.contains("oops") && e.contains("read:everything"), "{e}");
    }
}

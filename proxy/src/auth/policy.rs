//! Who may reach a route: its policy (`route_policy`, parsed from the route data) checked
//! against the identity a verified token names.

use crate::route_policy::RoutePolicy;

use super::jwt::Identity;

/// Whether `who` owns the route: its user, one of its users, a member of one of its groups,
/// or an admin.
pub fn owned_by(policy: &RoutePolicy, who: &Identity) -> bool {
    who.admin
        || policy.user.as_deref() == Some(who.user.as_str())
        || policy.users.iter().any(|u| **u == *who.user)
        || policy
            .groups
            .iter()
            .any(|g| who.groups.iter().any(|mine| **g == **mine))
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;

    fn policy(data: Value) -> Box<RoutePolicy> {
        RoutePolicy::from_data(data.as_object().unwrap()).unwrap()
    }

    fn who(user: &str, groups: &[&str], admin: bool) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin,
            claims: Map::new(),
            issuer: 0,
        }
    }

    #[test]
    fn jupyterhub_route_data_names_the_owner() {
        let p = policy(json!({"user": "alice", "server_name": ""}));
        assert!(p.names_owner() && p.auth.is_none());
        assert!(owned_by(&p, &who("alice", &[], false)));
        assert!(!owned_by(&p, &who("bob", &[], false)));
        assert!(!owned_by(&p, &who("Alice", &[], false)), "names are compared exactly");
        assert!(owned_by(&p, &who("bob", &[], true)), "admins reach every route");
    }

    #[test]
    fn shared_project_servers() {
        let p = policy(json!({"auth": "owner", "users": ["a", "b"], "group": "proj-42"}));
        assert!(owned_by(&p, &who("b", &[], false)));
        assert!(owned_by(&p, &who("c", &["x", "proj-42"], false)));
        assert!(!owned_by(&p, &who("c", &["proj-4"], false)));
    }
}

//! Per-route policy, read once from the route data the admin API stores (what it says; the
//! checks against a verified identity are `auth::policy`'s):
//! `"auth": "public" | "user" | "owner"`, owners as `"user"`, `"users"`, `"group"`/`"groups"`,
//! and an optional upstream credential `"upstream_token"`. JupyterHub's own route data
//! (`{"user": "alice", "server_name": ""}`) therefore names the owner with no change to the hub.

use http::HeaderValue;
use serde_json::{Map, Value};

use config::Policy;

/// What a route's data says about access. Parsed at insert time, never on the request path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// `Some(Err)` when `auth` holds something we do not understand: such a route is refused to
    /// everyone (fail closed) rather than guessed at.
    pub auth: Option<Result<Policy, String>>,
    pub user: Option<Box<str>>,
    /// The server's name under `user` (JupyterHub's `server_name`; `""` for the default server),
    /// which a JupyterHub token's `access:servers!server=user/name` scope names. Only with `user`.
    pub server_name: Option<Box<str>>,
    pub users: Box<[Box<str>]>,
    pub groups: Box<[Box<str>]>,
    /// `Authorization: token <upstream_token>` sent to the upstream instead of the client's.
    pub upstream_token: Option<HeaderValue>,
}

impl RoutePolicy {
    /// `None` when the data says nothing about access (most routes of a plain CHP setup).
    pub fn from_data(data: &Map<String, Value>) -> Option<Box<RoutePolicy>> {
        let strings = |key: &str| -> Box<[Box<str>]> {
            match data.get(key) {
                Some(Value::String(s)) => Box::new([s.as_str().into()]),
                Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(Into::into)).collect(),
                _ => Box::new([]),
            }
        };
        let auth = data.get("auth").map(|v| match v.as_str().map(str::parse::<Policy>) {
            Some(Ok(p)) => Ok(p),
            _ => Err(v.to_string()),
        });
        let mut groups = strings("group").into_vec();
        groups.extend(strings("groups"));
        let user: Option<Box<str>> = data
            .get("user")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(Into::into);
        let policy = RoutePolicy {
            auth,
            server_name: user
                .as_ref()
                .map(|_| data.get("server_name").and_then(Value::as_str).unwrap_or("").into()),
            user,
            users: strings("users"),
            groups: groups.into_boxed_slice(),
            upstream_token: data
                .get("upstream_token")
                .and_then(Value::as_str)
                .and_then(|t| HeaderValue::from_str(&format!("token {t}")).ok()),
        };
        (policy != RoutePolicy::default()).then(|| Box::new(policy))
    }

    pub fn names_owner(&self) -> bool {
        self.user.is_some() || !self.users.is_empty() || !self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(data: Value) -> Option<Box<RoutePolicy>> {
        RoutePolicy::from_data(data.as_object().unwrap())
    }

    #[test]
    fn plain_routes_carry_no_policy() {
        assert_eq!(policy(json!({"target": "http://x"})), None);
        assert_eq!(policy(json!({"hub": true, "user": ""})), None);
    }

    #[test]
    fn unknown_auth_values_are_kept_as_errors() {
        let p = policy(json!({"auth": "everyone"})).unwrap();
        assert_eq!(p.auth, Some(Err("\"everyone\"".into())));
        let p = policy(json!({"auth": "public", "upstream_token": "s3"})).unwrap();
        assert_eq!(p.auth, Some(Ok(Policy::Public)));
        assert_eq!(p.upstream_token.unwrap(), "token s3");
    }
}

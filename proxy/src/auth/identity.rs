//! The verified identity, passed to upstreams as headers. Client-sent copies are always removed
//! first, so an upstream that trusts `X-Forwarded-User` can trust it only because of us.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::jwt::Identity;
use super::verified_tokens::Verified;

pub struct IdentityHeaders {
    user: HeaderName,
    groups: HeaderName,
    also_strip: Vec<HeaderName>,
}

impl IdentityHeaders {
    /// Names that are not valid header names are skipped (the config default is valid).
    pub fn new(config: &config::IdentityHeaders) -> Self {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).ok();
        IdentityHeaders {
            user: name(&config.user).unwrap_or(HeaderName::from_static("x-forwarded-user")),
            groups: name(&config.groups).unwrap_or(HeaderName::from_static("x-forwarded-groups")),
            also_strip: config.also_strip.iter().filter_map(|n| name(n)).collect(),
        }
    }

    /// One pass over the names present (a handful) rather than one hash lookup per identity
    /// header: this runs on every request of every route.
    pub fn strip_client_copies(&self, headers: &mut HeaderMap) {
        let ours = |n: &HeaderName| *n == self.user || *n == self.groups || self.also_strip.contains(n);
        if !headers.keys().any(ours) {
            return;
        }
        let found: Vec<HeaderName> = headers.keys().filter(|n| ours(n)).cloned().collect();
        for name in found {
            headers.remove(name);
        }
    }

    /// The header values for `who`, made once per token (see `verified_tokens`).
    pub fn values(&self, who: &Identity) -> (Option<HeaderValue>, Option<HeaderValue>) {
        let user = HeaderValue::from_str(&who.user).ok();
        let groups = (!who.groups.is_empty())
            .then(|| HeaderValue::from_str(&who.groups.join(",")).ok())
            .flatten();
        (user, groups)
    }

    pub fn set(&self, headers: &mut HeaderMap, verified: &Verified) {
        if let Some(v) = &verified.user_header {
            headers.insert(self.user.clone(), v.clone());
        }
        if let Some(v) = &verified.groups_header {
            headers.insert(self.groups.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_identity_is_replaced() {
        let h = IdentityHeaders::new(&config::IdentityHeaders::default());
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-user", HeaderValue::from_static("admin"));
        headers.insert("x-auth-request-user", HeaderValue::from_static("admin"));
        h.strip_client_copies(&mut headers);
        assert!(headers.is_empty());
        let who = Identity {
            user: "alice".into(),
            groups: vec!["a".into(), "b".into()],
            admin: false,
            claims: Default::default(),
            issuer: 0,
        };
        let (user_header, groups_header) = h.values(&who);
        let verified = Verified {
            who,
            sessions: Vec::new(),
            user_header,
            groups_header,
        };
        h.set(&mut headers, &verified);
        assert_eq!(headers["x-forwarded-user"], "alice");
        assert_eq!(headers["x-forwarded-groups"], "a,b");
    }
}

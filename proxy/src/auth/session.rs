//! The session check: a key rendered from the token's claims must be present in the session
//! store, and must hold the rendered `value` when that template is set.
//!
//! Two stores answer it, chosen by `redis_url`:
//! - Redis ([`RedisSessions`]), with an in-process cache and pushed revocation, for deployments
//!   where the platform (or several hub replicas) writes the session records;
//! - the proxy's own memory ([`LocalSessions`], `redis_url = "memory:"`), written directly by a
//!   program that embeds the proxy, such as `edgehub up`: no network, no cache, and a removed
//!   session is refused on the next request.
//!
//! Both judge a record the same way ([`satisfies`](super::session_record::satisfies)), so a
//! configuration behaves alike on either.

use std::sync::Arc;

use serde_json::{Map, Value};

use config::SessionConfig;

use super::local_sessions::LocalSessions;
use super::redis_sessions::{RedisSessions, SessionMetrics};
pub use super::session_record::SessionVerdict;

/// The key of a token's session and the value it must hold, rendered once per token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    key: String,
    expected: Option<String>,
}

impl SessionKey {
    /// A key rendered elsewhere, e.g. one a session token carries for a session bound to it.
    pub fn new(key: String, expected: Option<String>) -> SessionKey {
        SessionKey { key, expected }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value the record must hold; `None` when presence is enough.
    pub fn expected(&self) -> Option<&str> {
        self.expected.as_deref()
    }
}

pub struct Sessions {
    /// The `key` and `value` templates.
    key: String,
    value: Option<String>,
    /// Tokens without this claim are not checked here (`only_with_claim`).
    only_with_claim: Option<String>,
    store: Store,
}

enum Store {
    Redis(Arc<RedisSessions>),
    Memory(Arc<LocalSessions>),
}

impl Sessions {
    /// Sessions in Redis, at `config.redis_url`.
    pub fn redis(config: &SessionConfig, metrics: SessionMetrics) -> Result<Sessions, redis::RedisError> {
        Ok(Sessions {
            key: config.key.clone(),
            value: config.value.clone(),
            only_with_claim: config.only_with_claim.clone(),
            store: Store::Redis(RedisSessions::new(config.clone(), metrics)?),
        })
    }

    /// Sessions in an empty in-process store (`redis_url = "memory:"`), for the embedder to fill
    /// through [`Sessions::local`].
    pub fn in_process(config: &SessionConfig) -> Sessions {
        Sessions {
            key: config.key.clone(),
            value: config.value.clone(),
            only_with_claim: config.only_with_claim.clone(),
            store: Store::Memory(Arc::default()),
        }
    }

    /// Starts Redis's connection keeper, revocation subscriber and cache sweeper; the in-process
    /// store needs none. Must be called inside a Tokio runtime.
    pub fn start(&self) {
        if let Store::Redis(redis) = &self.store {
            redis.start();
        }
    }

    /// The in-process store, for the embedder to write; `None` when the sessions are in Redis.
    pub fn local(&self) -> Option<&Arc<LocalSessions>> {
        match &self.store {
            Store::Memory(local) => Some(local),
            Store::Redis(_) => None,
        }
    }

    /// Whether tokens with these claims are checked here at all (see `only_with_claim`).
    pub fn applies_to(&self, claims: &Map<String, Value>) -> bool {
        self.only_with_claim.as_ref().is_none_or(|c| claims.contains_key(c))
    }

    /// The session key of a token's claims; `None` when they lack a claim the templates name.
    pub fn key_for(&self, claims: &Map<String, Value>) -> Option<SessionKey> {
        Some(SessionKey {
            key: render(&self.key, claims)?,
            expected: match &self.value {
                Some(t) => Some(render(t, claims)?),
                None => None,
            },
        })
    }

    /// Checks the session of a verified token.
    pub async fn check(&self, session: &SessionKey) -> SessionVerdict {
        let expected = session.expected.as_deref();
        match &self.store {
            Store::Redis(redis) => redis.check(&session.key, expected).await,
            Store::Memory(local) => SessionVerdict::from_live(local.holds(&session.key, expected)),
        }
    }
}

/// Fills `{claim}` placeholders from the claims: strings as they are, numbers in decimal.
/// `None` when a claim is absent or not a string or number.
///
/// This is how the proxy renders the `key` and `value` templates of `[session]` for every
/// token. A program that writes the session records (into Redis, or into [`LocalSessions`] with
/// `redis_url = "memory:"`) should render them with this function from the claims it puts in the
/// token, so that the record it writes is the one the proxy looks for:
///
/// ```
/// use proxy::auth::session::render;
///
/// let claims = serde_json::json!({"sub": "alice", "jti": "4f1c"});
/// let claims = claims.as_object().unwrap();
/// assert_eq!(render("auth_token_key:{sub}", claims).as_deref(), Some("auth_token_key:alice"));
/// assert_eq!(render("{jti}", claims).as_deref(), Some("4f1c"));
/// ```
pub fn render(template: &str, claims: &Map<String, Value>) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        match claims.get(&after[..close])? {
            Value::String(s) => out.push_str(s),
            Value::Number(n) => out.push_str(&n.to_string()),
            _ => return None,
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_fill_from_claims() {
        let claims = json!({"sub": "alice", "jti": "abc", "uid": 42, "groups": ["a"]});
        let claims = claims.as_object().unwrap();
        assert_eq!(
            render("auth_token_key:{sub}", claims).as_deref(),
            Some("auth_token_key:alice")
        );
        assert_eq!(render("s:{uid}:{jti}", claims).as_deref(), Some("s:42:abc"));
        assert_eq!(render("plain", claims).as_deref(), Some("plain"));
        assert_eq!(render("x:{missing}", claims), None);
        assert_eq!(render("x:{groups}", claims), None);
    }

    fn in_process(value: Option<&str>) -> Sessions {
        Sessions::in_process(&SessionConfig {
            redis_url: SessionConfig::IN_PROCESS.to_owned(),
            key: "session:{sub}".to_owned(),
            value: value.map(str::to_owned),
            ..SessionConfig::default()
        })
    }

    fn key(sessions: &Sessions, claims: serde_json::Value) -> SessionKey {
        sessions.key_for(claims.as_object().unwrap()).unwrap()
    }

    /// Polls a future that must not wait: the in-process store never does.
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("an in-process session check waited"),
        }
    }

    #[test]
    fn in_process_sessions_are_live_until_removed() {
        let sessions = in_process(None);
        let local = sessions.local().unwrap().clone();
        let alice = key(&sessions, json!({"sub": "alice"}));
        assert_eq!(now(sessions.check(&alice)), SessionVerdict::Revoked, "never created");
        local.insert("session:alice", "1");
        assert_eq!(now(sessions.check(&alice)), SessionVerdict::Live);
        let bob = key(&sessions, json!({"sub": "bob"}));
        assert_eq!(now(sessions.check(&bob)), SessionVerdict::Revoked, "another user's key");
        assert!(local.remove("session:alice"));
        assert_eq!(
            now(sessions.check(&alice)),
            SessionVerdict::Revoked,
            "refused on the very next check"
        );
    }

    #[test]
    fn in_process_sessions_honour_the_value_template() {
        let sessions = in_process(Some("{jti}"));
        let local = sessions.local().unwrap();
        let current = key(&sessions, json!({"sub": "alice", "jti": "j2"}));
        let older = key(&sessions, json!({"sub": "alice", "jti": "j1"}));
        local.insert("session:alice", "j2");
        assert_eq!(now(sessions.check(&current)), SessionVerdict::Live);
        assert_eq!(now(sessions.check(&older)), SessionVerdict::Revoked, "value mismatch");
        // A claim the value template names is missing: no key, which the caller refuses.
        assert_eq!(sessions.key_for(json!({"sub": "alice"}).as_object().unwrap()), None);
    }
}

//! JupyterHub API tokens at the edge (`[hub_tokens]`).
//!
//! A script that reaches its own notebook server with the token from the hub's token page sends
//! `Authorization: token <t>`. Such a token is an opaque string the hub looks up in its database,
//! not a JWT, so the edge cannot check it alone: it asks the hub's `GET /hub/api/user` with the
//! token, as jupyterhub-singleuser does, and reuses the answer, yes or no, for `cache_secs` (as
//! jupyterhub-singleuser's `HubAuth` cache does). Parallel requests
//! with one new token share one question, and at most `MAX_QUESTIONS_AT_ONCE` are asked at a
//! time, so made-up tokens cannot flood the hub. The hub's answer
//! names the owner and, since JupyterHub 2, the token's scopes; which servers those scopes reach
//! is [`scopes_reach`]'s to say. A hub that cannot be asked is a 503, never a request let through.
//!
//! The token stays in the request: the server behind checks it again, as it would without us.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue};
use http::request::Parts;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::document_fetch;
use super::jwt::Identity;
use super::shared_lookups::SharedLookups;
use super::token_source::{MAX_TOKEN_LEN, bare_jwt};
use super::verified_tokens::{Verified, VerifiedTokens};
use crate::route_policy::RoutePolicy;
use crate::target::{Target, TargetError};
use crate::upstream::Upstream;

/// A user model is a few hundred bytes; a hub answering more is not answering this question.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// The `issuer` of identities the hub vouched for: no configured JWT issuer has this position.
pub const HUB_ISSUER: usize = usize::MAX;

/// Most questions to the hub at once, all tokens together. A client spraying made-up tokens
/// (each one a cache miss) queues behind this many instead of flooding the hub; its requests
/// get 503 when their turn does not come within `timeout_secs`.
const MAX_QUESTIONS_AT_ONCE: usize = 64;

/// Most refusals remembered at once. They are kept apart from the answers, and fewer, so that
/// made-up tokens cannot push real ones' answers out; a token refused again after this many
/// others is simply asked about again.
const MAX_REFUSALS: usize = 10_000;

/// Why a token was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HubTokenError {
    /// The hub does not know the token (401 or 403) or its user (404): unknown, expired, revoked.
    #[error("the hub refused the API token")]
    Refused,
    /// The hub could not be asked, or answered something else: the request is refused with 503.
    #[error("the hub could not check the API token: {0}")]
    Unavailable(String),
}

/// A token as it is shown to the hub.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// A JupyterHub API token: `Authorization: token <t>`.
    ApiToken(&'a str),
    /// One of the hub's own session tokens, sent as its login cookie `name` (the hub's `GET
    /// /hub/api/user` then answers for the session's user, with the scopes they hold now).
    SessionCookie { name: &'a str, token: &'a str },
}

impl Credential<'_> {
    /// Under which the hub's answer is kept. API tokens hold no whitespace ([`find`]), so a
    /// session's key never equals one: a script sending `token <someone's JWT>` cannot plant
    /// a refusal where that session's answer is looked up.
    fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Credential::ApiToken(token) => (*token).into(),
            Credential::SessionCookie { token, .. } => format!("session {token}").into(),
        }
    }

    /// The header that carries it; `None` for one that cannot be sent in a header.
    fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        let (name, value) = match self {
            Credential::ApiToken(token) => (AUTHORIZATION, format!("token {token}")),
            Credential::SessionCookie { name, token } => (COOKIE, format!("{name}={token}")),
        };
        Some((name, HeaderValue::from_str(&value).ok()?))
    }
}

/// The hub's token check and the answers it gave.
pub struct HubTokens {
    target: Target,
    cache_for: Duration,
    timeout: Duration,
    answers: VerifiedTokens,
    /// Tokens the hub refused (a script retrying with a revoked token asks once per `cache_for`).
    /// Only refusals: a hub that could not answer is asked again at the next request.
    refusals: VerifiedTokens<()>,
    /// The question being asked for each token, so that concurrent requests with one uncached
    /// token (a script's parallel calls) share one answer.
    asking: SharedLookups<Result<Identity, HubTokenError>>,
    questions: Semaphore,
}

impl HubTokens {
    pub fn new(config: &config::HubTokens) -> Result<HubTokens, TargetError> {
        Ok(HubTokens {
            target: Target::parse(&config.url)?,
            cache_for: Duration::from_secs(config.cache_secs),
            timeout: Duration::from_secs(config.timeout_secs),
            answers: VerifiedTokens::default(),
            refusals: VerifiedTokens::bounded(MAX_REFUSALS),
            asking: SharedLookups::default(),
            questions: Semaphore::new(MAX_QUESTIONS_AT_ONCE),
        })
    }

    /// The hub's earlier answer for `credential`, or its refusal, while it may still be used.
    pub fn cached(&self, credential: Credential<'_>) -> Option<Result<Arc<Verified>, HubTokenError>> {
        let key = credential.key();
        if let Some(verified) = self.answers.get(&key) {
            return Some(Ok(verified));
        }
        self.refusals.get(&key).map(|()| Err(HubTokenError::Refused))
    }

    /// Keeps the hub's answer for `credential` for `cache_secs`: the owner it vouched for, or
    /// its refusal. A hub that could not answer (`Unavailable`) is not remembered.
    pub fn remember(&self, credential: Credential<'_>, answer: &Result<Arc<Verified>, HubTokenError>) {
        if self.cache_for.is_zero() {
            return;
        }
        let key = credential.key();
        match answer {
            Ok(verified) => self.answers.insert_for(&key, verified.clone(), self.cache_for),
            Err(HubTokenError::Refused) => self.refusals.insert_for(&key, (), self.cache_for),
            Err(HubTokenError::Unavailable(_)) => {}
        }
    }

    /// Asks the hub whose `credential` is. `Ok` holds the owner with the hub's whole answer as
    /// claims (`scopes` among them).
    pub async fn ask(&self, credential: Credential<'_>, fetcher: &Upstream) -> Result<Identity, HubTokenError> {
        self.asking
            .run(&credential.key(), || async {
                tokio::time::timeout(self.timeout, async {
                    let _turn = self.questions.acquire().await;
                    self.ask_once(credential, fetcher).await
                })
                .await
                .unwrap_or_else(|_| {
                    Err(HubTokenError::Unavailable(format!(
                        "no answer within {:?}",
                        self.timeout
                    )))
                })
            })
            .await
    }

    async fn ask_once(&self, credential: Credential<'_>, fetcher: &Upstream) -> Result<Identity, HubTokenError> {
        // `find` took only header-safe tokens, so this fails only for a token it did not give.
        let header = credential.header().ok_or(HubTokenError::Refused)?;
        let (status, body) = document_fetch::get(fetcher, &self.target, Some(header), MAX_ANSWER_BYTES)
            .await
            .map_err(HubTokenError::Unavailable)?;
        match status {
            StatusCode::OK => {}
            // 404: the token's user is gone (JupyterHub's "no such user").
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                return Err(HubTokenError::Refused);
            }
            other => return Err(HubTokenError::Unavailable(format!("the hub answered {other}"))),
        }
        let model: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| HubTokenError::Unavailable(format!("the hub's answer is not a JSON object: {e}")))?;
        owner_of(model)
    }
}

/// The API token in `Authorization`: `token <t>`, or `Bearer <t>` when `<t>` is not a JWT (a
/// JWT is the issuers' to verify). Only tokens that can be sent back in a header are taken.
pub fn find(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    let taken = if scheme.eq_ignore_ascii_case("token") {
        true
    } else {
        scheme.eq_ignore_ascii_case("bearer") && bare_jwt(token.as_bytes()).is_none()
    };
    (taken && !token.is_empty() && token.len() <= MAX_TOKEN_LEN && !token.contains(char::is_whitespace))
        .then_some(token)
}

/// The identity in the hub's user model (`name`, `groups`, `admin`); the model stays as claims.
fn owner_of(model: Map<String, Value>) -> Result<Identity, HubTokenError> {
    let Some(name) = model.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Err(HubTokenError::Unavailable("the hub's answer names no user".into()));
    };
    let is_user = model.get("kind").and_then(Value::as_str).is_none_or(|k| k == "user");
    Ok(Identity {
        user: name.to_owned(),
        groups: model
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        // A service's token is never an admin's, whatever else its model says.
        admin: is_user && model.get("admin").and_then(Value::as_bool).unwrap_or(false),
        claims: model,
        issuer: HUB_ISSUER,
    })
}

/// The scopes the hub listed for the token, when it listed them (JupyterHub 2 and later).
pub fn scopes(who: &Identity) -> Option<impl Iterator<Item = &str>> {
    if who.issuer != HUB_ISSUER {
        return None;
    }
    let list = who.claims.get("scopes")?.as_array()?;
    Some(list.iter().filter_map(Value::as_str))
}

/// Whether a token holding `scopes` may reach the route's server, by JupyterHub's rule for
/// `access:servers`: unfiltered, filtered to the server's user (`!user=`), or to the server
/// itself (`!server=user/name`). Group filters are not followed: the edge does not know the
/// owner's groups, so such a token is refused (fail closed).
pub fn scopes_reach<'a>(policy: &RoutePolicy, mut scopes: impl Iterator<Item = &'a str>) -> bool {
    let owners = || policy.user.iter().chain(policy.users.iter()).map(|u| &**u);
    scopes.any(|scope| match scope.split_once('!') {
        None => scope == "access:servers",
        Some(("access:servers", filter)) => match filter.split_once('=') {
            Some(("user", user)) => owners().any(|o| o == user),
            Some(("server", server)) => match (&policy.user, &policy.server_name) {
                (Some(user), Some(name)) => server.split_once('/') == Some((&**user, &**name)),
                _ => false,
            },
            _ => false,
        },
        Some(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parts(authorization: &str) -> Parts {
        http::Request::builder()
            .header(AUTHORIZATION, authorization)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn api_tokens_are_found_in_either_scheme_but_jwts_are_left_to_the_issuers() {
        assert_eq!(find(&parts("token abc123")), Some("abc123"));
        assert_eq!(find(&parts("Token  abc123 ")), Some("abc123"));
        assert_eq!(find(&parts("Bearer abc123")), Some("abc123"));
        assert_eq!(find(&parts("Bearer eyJh.eyJz.c2ln")), None, "a JWT");
        assert_eq!(find(&parts("Basic YWxhZGRpbjpvcGVu")), None);
        assert_eq!(find(&parts("token ")), None);
        assert_eq!(find(&parts("token a b")), None);
        assert_eq!(find(&parts(&format!("token {}", "x".repeat(MAX_TOKEN_LEN + 1)))), None);
    }

    fn route(data: Value) -> Box<RoutePolicy> {
        RoutePolicy::from_data(data.as_object().unwrap()).unwrap()
    }

    #[test]
    fn access_scopes_reach_the_server_they_name_and_no_other() {
        let alices = route(json!({"user": "alice", "server_name": ""}));
        let alices_gpu = route(json!({"user": "alice", "server_name": "gpu"}));
        let reach = |p: &RoutePolicy, scopes: &[&str]| scopes_reach(p, scopes.iter().copied());
        assert!(reach(&alices, &["access:servers"]));
        assert!(reach(&alices, &["read:users", "access:servers!user=alice"]));
        assert!(reach(&alices, &["access:servers!server=alice/"]));
        assert!(!reach(&alices, &["access:servers!server=alice/gpu"]));
        assert!(reach(&alices_gpu, &["access:servers!server=alice/gpu"]));
        assert!(!reach(
            &alices,
            &["access:servers!user=bob", "access:servers!server=bob/"]
        ));
        assert!(!reach(&alices, &["access:servers!user=alic"]));
        assert!(
            !reach(&alices, &["access:servers!group=team"]),
            "group filters fail closed"
        );
        assert!(!reach(
            &alices,
            &["read:users!user=alice", "servers!user=alice", "self"]
        ));
        assert!(!reach(&alices, &[]));
    }

    #[test]
    fn the_hubs_answer_names_the_owner() {
        let model = |v: Value| v.as_object().unwrap().clone();
        let who = owner_of(model(json!({
            "kind": "user", "name": "alice", "admin": false, "groups": ["team"],
            "scopes": ["access:servers!user=alice"]
        })))
        .unwrap();
        assert_eq!(
            (who.user.as_str(), who.groups.as_slice(), who.admin),
            ("alice", &["team".to_owned()][..], false)
        );
        assert_eq!(scopes(&who).unwrap().collect::<Vec<_>>(), ["access:servers!user=alice"]);
        let service = owner_of(model(json!({"kind": "service", "name": "grader", "admin": true}))).unwrap();
        assert!(!service.admin, "a service is never taken for an admin");
        assert!(scopes(&service).is_none(), "no scopes listed");
        assert!(matches!(
            owner_of(model(json!({"kind": "user"}))),
            Err(HubTokenError::Unavailable(_))
        ));
    }
}

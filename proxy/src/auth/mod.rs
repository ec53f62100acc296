//! Edge authentication and authorization: step 4 of the request path.
//!
//! For each request to a route that is not public: find the token ([`token_source`]), verify it
//! locally ([`jwt`]) or, for a JupyterHub API token, by asking the hub ([`hub_tokens`]), check its
//! session ([`session`]: in Redis, cached, or in process), check that
//! the user may reach this route ([`policy`]) and, for WebSocket handshakes, that the `Origin` is
//! allowed. Then pass the verified identity upstream ([`identity`]) and take the token out.
//! Every refusal is a clear status: 302 to the login page for a browser, 401, 403 or 503, never a
//! request let through because something could not be checked.

pub mod document_fetch;
pub mod hub_tokens;
pub mod identity;
pub mod jwks_fetch;
pub mod jwt;
pub mod local_sessions;
pub mod login_redirect;
pub mod policy;
pub mod redis_sessions;
pub mod session;
pub mod session_record;
pub mod shared_lookups;
pub mod token_source;
pub mod verified_tokens;

use std::sync::Arc;

use http::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue, LOCATION, ORIGIN, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};

use config::{AuthConfig, Policy};

use crate::body::ResponseBody;
use crate::metrics::Metrics;
use crate::route_policy;
use crate::route_table::Route;
use crate::upstream::Upstream;

use self::hub_tokens::{Credential, HubTokenError, HubTokens};
use self::jwt::{TokenError, Verifier};
use self::local_sessions::LocalSessions;
use self::redis_sessions::SessionMetrics;
use self::session::{SessionVerdict, Sessions};
use self::token_source::Found;
use self::verified_tokens::Verified;

/// What an admitted request gets from the proxy on its way upstream ([`EdgeAuth::admit`]).
/// Empty on public routes.
#[derive(Default)]
pub struct Admission {
    verified: Option<Arc<Verified>>,
    upstream_token: Option<HeaderValue>,
}

/// Whether `who` may reach the route: by the `access:servers` scopes the hub listed
/// for a token it vouched for, else by the route's owners, users and groups.
fn reaches(route: &route_policy::RoutePolicy, who: &jwt::Identity) -> bool {
    match hub_tokens::scopes(who) {
        Some(scopes) => hub_tokens::scopes_reach(route, scopes),
        None => policy::owned_by(route, who),
    }
}

/// Why edge auth could not be set up; the binary prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("edge auth keys: {0}")]
    Keys(#[from] jwt::KeyError),
    #[error("edge auth session store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("edge auth hub_tokens.url: {0}")]
    HubTokens(#[from] crate::target::TargetError),
}

/// Every outcome label of `edgeproxy_auth_requests_total`.
const OUTCOMES: &[&str] = &[
    "allowed",
    "public",
    "no_token",
    "forbidden",
    "origin_refused",
    "policy_invalid",
    "session_revoked",
    "session_missing_claim",
    "session_unavailable",
    "malformed_token",
    "oversized_token",
    "algorithm_not_allowed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "hub_token_refused",
    "hub_unavailable",
];

pub struct EdgeAuth {
    config: AuthConfig,
    verifier: Verifier,
    /// Every distinct session store the configuration names.
    sessions: Vec<Sessions>,
    /// For each issuer (by position), the stores its tokens are checked in, all of which must
    /// hold the session: its own `sessions`, else the top-level `[session]`, else none.
    checks_by_issuer: Vec<Vec<usize>>,
    identity: identity::IdentityHeaders,
    outcomes: Vec<(&'static str, metrics::Counter)>,
    /// Fetches JWKS URLs (its own pool, so key refreshes never queue behind user traffic).
    fetcher: Upstream,
    verified: verified_tokens::VerifiedTokens,
    /// JupyterHub API tokens, checked with the hub (`[hub_tokens]`).
    hub_tokens: Option<HubTokens>,
}

impl EdgeAuth {
    pub fn new<'a>(config: &'a AuthConfig, metrics: &Metrics, fetcher: Upstream) -> Result<EdgeAuth, AuthSetupError> {
        // Issuers naming the same store share one (one connection, one cache).
        let mut configs: Vec<&config::SessionConfig> = Vec::new();
        let mut index_of = |s: &'a config::SessionConfig| -> usize {
            configs.iter().position(|c| *c == s).unwrap_or_else(|| {
                configs.push(s);
                configs.len() - 1
            })
        };
        let shared = config.session.as_ref().map(&mut index_of);
        let checks_by_issuer = config
            .issuers
            .iter()
            .map(|issuer| match (&issuer.sessions[..], shared) {
                ([], Some(shared)) => vec![shared],
                ([], None) => Vec::new(),
                (own, _) => own.iter().map(&mut index_of).collect(),
            })
            .collect();
        let sessions = configs
            .iter()
            .map(|s| {
                if s.in_process() {
                    return Ok(Sessions::in_process(s));
                }
                Sessions::redis(
                    s,
                    SessionMetrics {
                        cache_hit: metrics.labeled_counter("edgeproxy_auth_session_cache_total", "result", "hit"),
                        cache_miss: metrics.labeled_counter("edgeproxy_auth_session_cache_total", "result", "miss"),
                        lookup_seconds: metrics.histogram(
                            "edgeproxy_auth_redis_lookup_seconds",
                            "Time of one session lookup in Redis",
                        ),
                    },
                )
            })
            .collect::<Result<Vec<_>, redis::RedisError>>()?;
        Ok(EdgeAuth {
            verifier: Verifier::new(config)?,
            sessions,
            checks_by_issuer,
            identity: identity::IdentityHeaders::new(&config.identity),
            outcomes: OUTCOMES
                .iter()
                .map(|o| {
                    (
                        *o,
                        metrics.labeled_counter("edgeproxy_auth_requests_total", "outcome", o),
                    )
                })
                .collect(),
            config: config.clone(),
            fetcher,
            verified: Default::default(),
            hub_tokens: config.hub_tokens.as_ref().map(HubTokens::new).transpose()?,
        })
    }

    /// Starts the background work: Redis connection and revocations (for sessions in Redis), JWKS
    /// fetch and refresh.
    pub fn start(self: &Arc<Self>) {
        for s in &self.sessions {
            s.start();
        }
        for jwks in self.verifier.jwks() {
            tokio::spawn(jwks_fetch::keep_fresh(jwks.clone(), self.clone()));
        }
    }

    pub fn fetcher(&self) -> &Upstream {
        &self.fetcher
    }

    /// The in-process session store, when a session check has `redis_url = "memory:"` (the
    /// first such, if several): the embedding program records sessions here as they start and
    /// removes them as they end. Render each key (and value) from the token's claims with
    /// [`session::render`] and the configured templates, as the proxy will. `None` when sessions
    /// are in Redis or not checked at all.
    pub fn local_sessions(&self) -> Option<Arc<LocalSessions>> {
        self.sessions.iter().find_map(Sessions::local).cloned()
    }

    fn count(&self, outcome: &str) {
        if let Some((_, c)) = self.outcomes.iter().find(|(o, _)| *o == outcome) {
            c.increment(1);
        }
    }

    /// Decides whether the request may reach `route`. When it may, the token and any identity
    /// headers the client sent are taken out of the head, and the returned [`Admission`] holds
    /// what the proxy adds (with [`EdgeAuth::admit`], after the client's hop-by-hop headers are
    /// gone). `Err` is the answer to send instead.
    pub async fn check(
        &self,
        parts: &mut Parts,
        route: &Route,
        websocket: bool,
    ) -> Result<Admission, Response<ResponseBody>> {
        // Identity headers are ours to set: whatever the client sent goes, on every route.
        self.identity.strip_client_copies(&mut parts.headers);
        let policy = route.policy();
        let effective = match policy.and_then(|p| p.auth.clone()) {
            Some(Ok(p)) => p,
            Some(Err(bad)) => {
                self.count("policy_invalid");
                tracing::error!("route has an invalid auth policy {bad}; refusing everyone");
                return Err(json(StatusCode::FORBIDDEN, "this route's access policy is invalid"));
            }
            None if policy.is_some_and(|p| p.names_owner()) => self.config.owned_route_policy,
            None => self.config.default_policy,
        };
        if effective == Policy::Public {
            token_source::strip_query_token(parts, &self.config.token);
            self.count("public");
            return Ok(Admission::default());
        }
        let mut verified = self.identify(parts, websocket).await?;
        let hub_vouched = verified.who.issuer == hub_tokens::HUB_ISSUER;
        for (store, key) in &verified.sessions {
            let Ok(key) = key else {
                self.count("session_missing_claim");
                return Err(self.unauthenticated(parts, websocket, "token lacks the session claim"));
            };
            match self.sessions[*store].check(key).await {
                SessionVerdict::Live => {}
                SessionVerdict::Revoked => {
                    self.count("session_revoked");
                    return Err(self.unauthenticated(parts, websocket, "session ended"));
                }
                SessionVerdict::Unavailable => {
                    self.count("session_unavailable");
                    return Err(json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "session store unreachable; try again shortly",
                    ));
                }
            }
        }
        if effective == Policy::Owner && !policy.is_some_and(|p| reaches(p, &verified.who)) {
            // Boxed, and behind a `dyn` so that its code stays out of this function's: rare, and
            // it may ask the hub.
            let now = match policy {
                Some(p) => {
                    let recheck: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> =
                        Box::pin(self.recheck_with_hub(parts, websocket, &verified, p));
                    recheck.await
                }
                None => None,
            };
            let Some(now) = now else {
                self.count("forbidden");
                return Err(json(StatusCode::FORBIDDEN, "this server belongs to someone else"));
            };
            verified = now;
        }
        if websocket && !self.origin_allowed(parts) {
            self.count("origin_refused");
            return Err(json(StatusCode::FORBIDDEN, "WebSocket origin not allowed"));
        }
        self.count("allowed");
        if hub_vouched {
            // The API token is the server's to check too (jupyterhub-singleuser asks the hub).
            token_source::strip_query_token(parts, &self.config.token);
        } else {
            token_source::strip(parts, &self.config.token);
        }
        Ok(Admission {
            upstream_token: policy.and_then(|p| p.upstream_token.clone()),
            verified: Some(verified),
        })
    }

    /// Who the request's token says the caller is: a JWT verified here, or a JupyterHub API token
    /// the hub vouched for. `Err` is the answer to send instead (401/302, or 503).
    async fn identify(&self, parts: &Parts, websocket: bool) -> Result<Arc<Verified>, Response<ResponseBody>> {
        let found = token_source::find(parts, &self.config.token, websocket);
        // A JupyterHub API token is asked about only when no JWT came with it: a browser's
        // session cookie wins over a stale token a page script may also send.
        let jwt_found = || {
            found
                .as_ref()
                .is_some_and(|(token, how)| *how != Found::Bearer || token_source::bare_jwt(token.as_bytes()).is_some())
        };
        let hub_token = match &self.hub_tokens {
            Some(hub) if !jwt_found() => hub_tokens::find(parts).map(|token| (hub, token)),
            _ => None,
        };
        if let Some((hub, token)) = hub_token {
            let token = token.to_owned();
            drop(found);
            return self
                .verify_hub_token(hub, Credential::ApiToken(&token))
                .await
                .map_err(|e| match e {
                    HubTokenError::Refused => {
                        self.count("hub_token_refused");
                        self.unauthenticated(parts, websocket, "the hub does not know this API token")
                    }
                    HubTokenError::Unavailable(_) => {
                        self.count("hub_unavailable");
                        tracing::warn!("{e}");
                        json(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the hub could not check the API token; try again shortly",
                        )
                    }
                });
        }
        let Some((token, _)) = found else {
            self.count("no_token");
            return Err(self.unauthenticated(parts, websocket, "no token"));
        };
        self.verify(&token).await.map_err(|e| {
            self.count(e.reason());
            tracing::debug!("token refused: {}", e.reason());
            self.unauthenticated(parts, websocket, e.reason())
        })
    }

    /// Adds what [`EdgeAuth::check`] decided the upstream gets: the identity headers and the
    /// route's own credential. Called after the client's hop-by-hop headers were removed, so
    /// that a client's `Connection: X-Forwarded-User` cannot take them out again (RFC 9110
    /// §7.6.1 removes the fields that were received, not those the proxy generates).
    pub fn admit(&self, headers: &mut HeaderMap, admission: Admission) {
        if let Some(verified) = &admission.verified {
            self.identity.set(headers, verified);
        }
        if let Some(credential) = admission.upstream_token {
            headers.insert(http::header::AUTHORIZATION, credential);
        }
    }

    async fn verify(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        if let Some(verified) = self.verified.get(token) {
            return Ok(verified);
        }
        let who = match self.verifier.verify(token) {
            Err(TokenError::UnknownKey) => {
                // A rotated key: refresh the JWKS documents (rate-limited) and try once more.
                let mut refreshed = false;
                for jwks in self.verifier.jwks() {
                    if jwks.may_refetch() {
                        // Boxed, as the hub's answer below: rare, and large.
                        refreshed |= Box::pin(jwks_fetch::refresh(jwks, self)).await.is_ok();
                    }
                }
                if refreshed {
                    self.verifier.verify(token)
                } else {
                    Err(TokenError::UnknownKey)
                }
            }
            other => other,
        }?;
        let (user_header, groups_header) = self.identity.values(&who);
        let sessions = self.checks_by_issuer.get(who.issuer).map_or(&[][..], Vec::as_slice);
        let verified = Arc::new(Verified {
            sessions: sessions
                .iter()
                .filter(|i| self.sessions[**i].applies_to(&who.claims))
                .map(|i| (*i, self.sessions[*i].key_for(&who.claims).ok_or(())))
                .collect(),
            user_header,
            groups_header,
            who,
        });
        self.verified.insert(token, verified.clone(), self.config.leeway_secs);
        Ok(verified)
    }

    /// A token whose claims do not reach an owned route, asked about again where its issuer
    /// says the hub knows better (`recheck_with_hub`): the claims of the hub's session tokens
    /// were written at login, and the user may have joined a group (or become an admin) since.
    /// The hub's answer gives only the groups and admin flag of now; the route's own policy
    /// still decides, so a share revoked a moment ago is not reached through an answer given
    /// before. An answer that grants the route is reused for `hub_tokens.cache_secs` (leaving a
    /// group or losing admin ends the user's sessions, which are checked first); one that does
    /// not is asked again, so access follows a join at once. `Some` is the token with the
    /// groups and admin flag of now, when they reach the route; `None` leaves the refusal
    /// standing, also when the hub cannot be asked (the claims' answer holds: fail closed).
    async fn recheck_with_hub(
        &self,
        parts: &Parts,
        websocket: bool,
        verified: &Verified,
        route: &route_policy::RoutePolicy,
    ) -> Option<Arc<Verified>> {
        let hub = self.hub_tokens.as_ref()?;
        let cookie = self.config.token.cookie.as_deref().filter(|c| !c.is_empty())?;
        if !self.config.issuers.get(verified.who.issuer)?.recheck_with_hub {
            return None;
        }
        let (token, _) = token_source::find(parts, &self.config.token, websocket)?;
        let credential = Credential::SessionCookie {
            name: cookie,
            token: &token,
        };
        // The token's identity with what the hub says of its user now; `None` for an answer
        // about someone else (the hub answers for the session's user, no one else).
        let now = |answer: &Verified| {
            (answer.who.user == verified.who.user).then(|| jwt::Identity {
                groups: answer.who.groups.clone(),
                admin: answer.who.admin,
                ..verified.who.clone()
            })
        };
        let granted = |who: &Option<jwt::Identity>| who.as_ref().is_some_and(|who| policy::owned_by(route, who));
        let mut who = match hub.cached(credential) {
            Some(Ok(answer)) => now(&answer),
            _ => None,
        };
        if !granted(&who) {
            who = match self.ask_hub(hub, credential).await {
                Ok(answer) => now(&answer),
                Err(HubTokenError::Refused) => None,
                Err(HubTokenError::Unavailable(e)) => {
                    tracing::warn!("asking the hub what {} may reach now: {e}", verified.who.user);
                    None
                }
            };
        }
        if !granted(&who) {
            return None;
        }
        let who = who?;
        let (user_header, groups_header) = self.identity.values(&who);
        Some(Arc::new(Verified {
            // Its session checks were passed before the policy was.
            sessions: Vec::new(),
            user_header,
            groups_header,
            who,
        }))
    }

    /// The hub's answer about a token: from the cache, or asked now and remembered.
    async fn verify_hub_token(
        &self,
        hub: &HubTokens,
        credential: Credential<'_>,
    ) -> Result<Arc<Verified>, HubTokenError> {
        match hub.cached(credential) {
            Some(answer) => answer,
            None => self.ask_hub(hub, credential).await,
        }
    }

    /// The hub's answer about a token, asked now and remembered.
    async fn ask_hub(&self, hub: &HubTokens, credential: Credential<'_>) -> Result<Arc<Verified>, HubTokenError> {
        // Boxed: an HTTP exchange with the hub is most of this future's size, and it runs only
        // when the answer is not cached.
        let answer = Box::pin(hub.ask(credential, &self.fetcher)).await.map(|who| {
            let (user_header, groups_header) = self.identity.values(&who);
            Arc::new(Verified {
                sessions: Vec::new(),
                user_header,
                groups_header,
                who,
            })
        });
        hub.remember(credential, &answer);
        answer
    }

    /// Browsers are sent to log in; everything else gets 401 with a JSON body.
    fn unauthenticated(&self, parts: &Parts, websocket: bool, why: &str) -> Response<ResponseBody> {
        if navigation(parts, websocket)
            && let Some(login) = &self.config.login_url
        {
            let location = login_redirect::location(login, parts.uri.path_and_query().map(|pq| pq.as_str()));
            if let Ok(v) = HeaderValue::from_str(&location) {
                let mut resp = Response::new(ResponseBody::empty());
                *resp.status_mut() = StatusCode::FOUND;
                resp.headers_mut().insert(LOCATION, v);
                return resp;
            }
        }
        let mut resp = json(StatusCode::UNAUTHORIZED, &format!("authentication required: {why}"));
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }

    /// Without a configured list, the origin's host must be the request's host (same origin).
    fn origin_allowed(&self, parts: &Parts) -> bool {
        let Some(origin) = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        if !self.config.websocket_origins.is_empty() {
            return self.config.websocket_origins.iter().any(|o| o == origin);
        }
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let host = parts
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()));
        host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
    }
}

/// Whether the request is a browser's page load (a GET that accepts HTML, not a WebSocket
/// handshake): such a client is sent to log in, or shown a page, where others get JSON.
pub fn navigation(parts: &Parts, websocket: bool) -> bool {
    !websocket
        && parts.method == Method::GET
        && parts
            .headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

fn json(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({"status": status.as_u16(), "message": message}).to_string();
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

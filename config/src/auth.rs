//! Edge authentication (`--auth-config <file.toml>`): which tokens edgeproxy accepts, where it
//! reads them, the session check in Redis, and the policy for routes that say nothing.
//!
//! Every field has a default, stated on it and in `docs/auth.md`; unknown keys are refused, so a
//! typo is an error at start-up rather than a silently open door.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConfigError;

/// Who may pass a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Anyone; no token is read.
    Public,
    /// Any holder of a valid token (and live session, when sessions are configured).
    User,
    /// The route's owner: its `user`, one of its `users`, a member of its `group`, or an admin.
    Owner,
}

impl std::str::FromStr for Policy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "public" => Ok(Policy::Public),
            "user" => Ok(Policy::User),
            "owner" => Ok(Policy::Owner),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Policy of routes whose data has no `auth` key and names no owner. Default: `public`, which
    /// keeps the hub's own pages (login, spawn) reachable.
    pub default_policy: Policy,
    /// Policy of routes whose data names an owner (`user`, `users` or `group`, as JupyterHub's
    /// route data does) but has no `auth` key. Default: `owner`.
    pub owned_route_policy: Policy,
    /// Where a browser without a valid token is sent (302, with `?next=<path>`). Relative path or
    /// absolute http(s) URL. Default: none, so browsers get the same 401 as API clients.
    pub login_url: Option<String>,
    /// Claim naming the user, compared with the route's `user`/`users`. Default: `sub`.
    pub user_claim: String,
    /// Claim holding the user's groups (a list of strings). Default: `groups`.
    pub groups_claim: String,
    /// Boolean claim that lets its holder reach every route. Default: none (no admins).
    pub admin_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default: 30; at most 300.
    pub leeway_secs: u64,
    /// `Origin`s allowed on WebSocket handshakes, e.g. `https://hub.example.org`. Default: empty,
    /// meaning the origin's host must equal the request's `Host`. Handshakes without `Origin`
    /// (non-browser clients) are allowed: they carry no ambient cookie to abuse.
    pub websocket_origins: Vec<String>,
    pub token: TokenSources,
    pub identity: IdentityHeaders,
    /// Accepted token issuers; at least one.
    pub issuers: Vec<IssuerConfig>,
    /// Session check, in Redis or in process. Default: none (a valid token is enough).
    pub session: Option<SessionConfig>,
    /// JupyterHub API tokens (`Authorization: token …`), checked by asking the hub. Default:
    /// none, so such a request is refused on a route that needs a token.
    pub hub_tokens: Option<HubTokens>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            default_policy: Policy::Public,
            owned_route_policy: Policy::Owner,
            login_url: None,
            user_claim: "sub".to_owned(),
            groups_claim: "groups".to_owned(),
            admin_claim: None,
            leeway_secs: 30,
            websocket_origins: Vec::new(),
            token: TokenSources::default(),
            identity: IdentityHeaders::default(),
            issuers: Vec::new(),
            session: None,
            hub_tokens: None,
        }
    }
}

/// `[hub_tokens]`: API tokens the hub issued (`Authorization: token <t>`, or `Bearer <t>` when
/// `<t>` is not a JWT) are accepted when the hub's `GET …/hub/api/user` says whose they are, as
/// jupyterhub-singleuser checks them. The token is left in the request for the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubTokens {
    /// The hub's "who owns this token" endpoint, e.g. `http://127.0.0.1:8081/hub/api/user`.
    /// Required.
    pub url: String,
    /// How long an answer, or a refusal, is reused before the hub is asked again (a revoked
    /// token keeps working this long at most). Default: 60; at most 300 (jupyterhub-singleuser's
    /// own cache age).
    #[serde(default = "HubTokens::default_cache_secs")]
    pub cache_secs: u64,
    /// How long one question to the hub may take before the request is answered 503. Default: 5.
    #[serde(default = "HubTokens::default_timeout_secs")]
    pub timeout_secs: u64,
}

impl HubTokens {
    fn default_cache_secs() -> u64 {
        60
    }

    fn default_timeout_secs() -> u64 {
        5
    }

    /// Settings for the hub at `url` with every other setting at its default.
    pub fn at(url: impl Into<String>) -> HubTokens {
        HubTokens {
            url: url.into(),
            cache_secs: Self::default_cache_secs(),
            timeout_secs: Self::default_timeout_secs(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = ConfigError::invalid;
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(invalid(
                "auth.hub_tokens.url",
                self.url.clone(),
                "an http:// or https:// URL of the hub's /hub/api/user",
            ));
        }
        if self.cache_secs > 300 {
            return Err(invalid(
                "auth.hub_tokens.cache_secs",
                self.cache_secs.to_string(),
                "at most 300",
            ));
        }
        if !(1..=60).contains(&self.timeout_secs) {
            return Err(invalid(
                "auth.hub_tokens.timeout_secs",
                self.timeout_secs.to_string(),
                "1 to 60",
            ));
        }
        Ok(())
    }
}

/// Where the token is read from, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSources {
    /// `Authorization: Bearer <token>`. Default: true.
    pub bearer: bool,
    /// Cookie name. Default: `edgehub-token`.
    pub cookie: Option<String>,
    /// Query parameter, read on WebSocket handshakes only (browsers cannot set headers there).
    /// Default: `access_token` (RFC 6750), distinct from Jupyter's own `token`.
    pub query_param: Option<String>,
    /// Remove the token from the request before forwarding it. The query parameter is always
    /// removed: URLs end up in logs. Default: true.
    pub strip: bool,
    /// Also read `Authorization: <jwt>` with no scheme, as some platforms send it. Only a value
    /// shaped like a JWT (three dot-separated parts, no space) is taken. Default: false.
    pub bare_authorization: bool,
}

impl Default for TokenSources {
    fn default() -> Self {
        TokenSources {
            bearer: true,
            cookie: Some("edgehub-token".to_owned()),
            query_param: Some("access_token".to_owned()),
            strip: true,
            bare_authorization: false,
        }
    }
}

/// Identity passed to upstreams. Client-sent copies of these headers are always removed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeaders {
    /// Default: `X-Forwarded-User`.
    pub user: String,
    /// Comma-separated groups. Default: `X-Forwarded-Groups`.
    pub groups: String,
    /// More client-sent headers to remove. Default: `X-Forwarded-Email`,
    /// `X-Forwarded-Preferred-Username`, `X-Auth-Request-User`, `X-Auth-Request-Email`.
    pub also_strip: Vec<String>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            user: "X-Forwarded-User".to_owned(),
            groups: "X-Forwarded-Groups".to_owned(),
            also_strip: [
                "X-Forwarded-Email",
                "X-Forwarded-Preferred-Username",
                "X-Auth-Request-User",
                "X-Auth-Request-Email",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

/// One accepted issuer: its algorithms and exactly one source of keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// Required `iss` value. Default: none (`iss` not checked).
    pub issuer: Option<String>,
    /// Accepted `aud` values; when set, `aud` is required. Default: none.
    pub audiences: Vec<String>,
    /// Accepted algorithms, all of one family: `HS256`/`HS384`/`HS512`, `RS256`/`RS384`/`RS512`/
    /// `PS256`/`PS384`/`PS512`, `ES256`/`ES384`, or `EdDSA`. Required.
    pub algorithms: Vec<String>,
    /// HMAC secret, inline. Prefer `secret_env` or `secret_file`.
    pub secret: Option<String>,
    /// Name of an environment variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// File holding the HMAC secret (trailing newline ignored).
    pub secret_file: Option<PathBuf>,
    /// PEM public key (RSA, EC or Ed25519).
    pub public_key_file: Option<PathBuf>,
    /// JWKS document on disk, re-read on the refresh timer.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (http or https), fetched at start-up and on the refresh timer.
    pub jwks_url: Option<String>,
    /// JWKS refresh period, seconds. Default: 300.
    pub jwks_refresh_secs: u64,
    /// Least time between refreshes triggered by an unknown `kid`, seconds. Default: 30.
    pub jwks_min_refetch_secs: u64,
    /// This issuer's claim naming the user. Default: the top-level `user_claim`.
    pub user_claim: Option<String>,
    /// This issuer's groups claim. Default: the top-level `groups_claim`.
    pub groups_claim: Option<String>,
    /// This issuer's admin claim; `""` means its tokens never make an admin. Default: the
    /// top-level `admin_claim`.
    pub admin_claim: Option<String>,
    /// Session checks for this issuer's tokens, all of which must pass; when given, they replace
    /// the top-level `[session]` for this issuer. Lets one proxy accept a platform's tokens
    /// (checked in its Redis) and the hub's own sessions (checked in the hub's store) at once.
    /// Default: empty (the top-level `[session]`, if any).
    pub sessions: Vec<SessionConfig>,
    /// When a token of this issuer does not reach an owned route by its claims, ask the hub
    /// (`[hub_tokens] url`, the token sent as the `[token] cookie`) what its user may reach now,
    /// and go by that answer, reused for `hub_tokens.cache_secs`. For the hub's own session
    /// tokens, whose claims were written at login: a user added to a group reaches the servers
    /// shared with it without signing in again. Needs `[hub_tokens]` and `[token] cookie`.
    /// Default: false.
    pub recheck_with_hub: bool,
}

impl IssuerConfig {
    fn key_sources(&self) -> usize {
        [
            self.secret.is_some(),
            self.secret_env.is_some(),
            self.secret_file.is_some(),
            self.public_key_file.is_some(),
            self.jwks_file.is_some(),
            self.jwks_url.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    }
}

/// The session check: a key built from claims must exist (and optionally hold a value) in the
/// session store, Redis or the embedding program's memory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Where the session records are: `redis://host:port/db`, `unix:///path`, or `memory:`
    /// ([`SessionConfig::IN_PROCESS`]) for a store held in the proxy's own process, which only a
    /// program embedding the proxy (`edgehub up`) can fill. With `memory:`, the cache, grace,
    /// revocation and lookup settings below do not apply: every check is an in-process lookup,
    /// and a removed session is refused on the next request. Default: `redis://127.0.0.1:6379/0`.
    pub redis_url: String,
    /// Key template over claims, e.g. `auth_token_key:{sub}` (default) or `session:{jti}`.
    pub key: String,
    /// Template the key's value must equal, e.g. `{jti}`. Default: none (existence is enough).
    pub value: Option<String>,
    /// How long a live session is trusted without asking Redis, ms. Revocations are pushed, so
    /// this bounds staleness only when a push is lost. Default: 5000.
    pub cache_ttl_ms: u64,
    /// How long a missing session stays refused without asking Redis, ms. Default: 1000.
    pub negative_cache_ttl_ms: u64,
    /// While Redis is unreachable, sessions verified within this many seconds still pass;
    /// unknown ones get 503. Default: 60; 0 turns the grace off.
    pub grace_secs: u64,
    /// Pub/sub channel on which a published key name (or `*` for all) revokes sessions
    /// immediately. Default: `edgehub:revocations`.
    pub revocation_channel: Option<String>,
    /// Also listen to keyspace events (`del`, `unlink`, `expired`, `evicted`) of the session
    /// keys; needs `notify-keyspace-events` with `Egx` on the server. Default: true.
    pub keyspace_events: bool,
    /// Time limit of one Redis lookup, ms; longer counts as unreachable. Default: 500.
    pub lookup_timeout_ms: u64,
    /// Check only tokens that carry this claim; others pass this check untouched. For a session
    /// bound to another, e.g. the hub's session made from a platform login, whose token names
    /// the platform's session key in `platform_session`. Default: none (every token).
    pub only_with_claim: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            redis_url: "redis://127.0.0.1:6379/0".to_owned(),
            key: "auth_token_key:{sub}".to_owned(),
            value: None,
            cache_ttl_ms: 5000,
            negative_cache_ttl_ms: 1000,
            grace_secs: 60,
            revocation_channel: Some("edgehub:revocations".to_owned()),
            keyspace_events: true,
            lookup_timeout_ms: 500,
            only_with_claim: None,
        }
    }
}

impl SessionConfig {
    /// The `redis_url` that selects the in-process session store.
    pub const IN_PROCESS: &'static str = "memory:";

    /// Whether the sessions are held in process rather than in Redis.
    pub fn in_process(&self) -> bool {
        self.redis_url == Self::IN_PROCESS
    }
}

const ALGORITHM_FAMILIES: [&[&str]; 4] = [
    &["HS256", "HS384", "HS512"],
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    &["ES256", "ES384"],
    &["EdDSA"],
];

impl AuthConfig {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<AuthConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::File { message, .. } => ConfigError::File {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<AuthConfig, ConfigError> {
        let config: AuthConfig = toml::from_str(text).map_err(|e| ConfigError::File {
            path: "<auth config>".to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = ConfigError::invalid;
        if self.issuers.is_empty() {
            return Err(invalid("auth.issuers", "[]".into(), "at least one [[issuers]] table"));
        }
        if self.leeway_secs > 300 {
            return Err(invalid("auth.leeway_secs", self.leeway_secs.to_string(), "at most 300"));
        }
        if let Some(hub_tokens) = &self.hub_tokens {
            hub_tokens.validate()?;
        }
        for issuer in &self.issuers {
            if issuer.key_sources() != 1 {
                return Err(invalid(
                    "auth.issuers",
                    format!("{} key sources", issuer.key_sources()),
                    "exactly one of secret, secret_env, secret_file, public_key_file, jwks_file, jwks_url",
                ));
            }
            let Some(first) = issuer.algorithms.first() else {
                return Err(invalid(
                    "auth.issuers.algorithms",
                    "[]".into(),
                    "at least one algorithm",
                ));
            };
            let Some(family) = ALGORITHM_FAMILIES.iter().find(|f| f.contains(&first.as_str())) else {
                return Err(invalid(
                    "auth.issuers.algorithms",
                    first.clone(),
                    "HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA",
                ));
            };
            if let Some(other) = issuer.algorithms.iter().find(|a| !family.contains(&a.as_str())) {
                return Err(invalid(
                    "auth.issuers.algorithms",
                    other.clone(),
                    "algorithms of one family only (mixing HMAC with public keys invites key confusion)",
                ));
            }
            let hmac = family[0] == "HS256";
            let secret = issuer.secret.is_some() || issuer.secret_env.is_some() || issuer.secret_file.is_some();
            if hmac != secret {
                return Err(invalid(
                    "auth.issuers",
                    issuer.algorithms.join(","),
                    "a secret for HS* algorithms, a public key or JWKS for the others",
                ));
            }
            let no_cookie = self.token.cookie.as_deref().is_none_or(str::is_empty);
            if issuer.recheck_with_hub && (self.hub_tokens.is_none() || no_cookie) {
                return Err(invalid(
                    "auth.issuers.recheck_with_hub",
                    "true".into(),
                    "[hub_tokens] (the hub to ask) and [token] cookie (how the token is sent to it)",
                ));
            }
            if let Some(url) = &issuer.jwks_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(invalid(
                    "auth.issuers.jwks_url",
                    url.clone(),
                    "an http:// or https:// URL",
                ));
            }
        }
        if let Some(url) = &self.login_url
            && !(url.starts_with('/') && !url.starts_with("//")
                || url.starts_with("http://")
                || url.starts_with("https://"))
        {
            return Err(invalid(
                "auth.login_url",
                url.clone(),
                "a path such as /hub/login, or an http(s) URL",
            ));
        }
        if let Some(session) = &self.session {
            session.validate()?;
        }
        for session in self.issuers.iter().flat_map(|i| &i.sessions) {
            session.validate()?;
        }
        Ok(())
    }
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_template("auth.session.key", &self.key)?;
        if let Some(value) = &self.value {
            check_template("auth.session.value", value)?;
        }
        let url = &self.redis_url;
        if !(url.starts_with("redis://") || url.starts_with("unix://") || self.in_process()) {
            return Err(ConfigError::Invalid {
                setting: "auth.session.redis_url",
                value: url.clone(),
                expected: "redis://host:port/db, unix:///path, or memory: (in process, for a program embedding the proxy)",
            });
        }
        Ok(())
    }
}

/// A template is text with `{claim}` placeholders; braces must pair and name something.
fn check_template(setting: &'static str, template: &str) -> Result<(), ConfigError> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        let close = after.find('}');
        let ok = rest.as_bytes()[open] == b'{' && close.is_some_and(|c| c > 0 && !after[..c].contains('{'));
        if !ok {
            return Err(ConfigError::Invalid {
                setting,
                value: template.to_owned(),
                expected: "text with {claim} placeholders, e.g. auth_token_key:{sub}",
            });
        }
        rest = &after[close.unwrap_or(0) + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[issuers]]
        algorithms = ["HS384"]
        secret = "s3cret"
    "#;

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let c = AuthConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(c.default_policy, Policy::Public);
        assert_eq!(c.owned_route_policy, Policy::Owner);
        assert_eq!(c.leeway_secs, 30);
        assert_eq!(c.user_claim, "sub");
        assert!(c.token.bearer && c.token.strip);
        assert_eq!(c.token.cookie.as_deref(), Some("edgehub-token"));
        assert_eq!(c.token.query_param.as_deref(), Some("access_token"));
        assert_eq!(c.identity.user, "X-Forwarded-User");
        assert!(c.session.is_none());
    }

    #[test]
    fn session_table_defaults() {
        let c = AuthConfig::from_toml(&format!(
            "{MINIMAL}\n[session]\nredis_url = \"redis://127.0.0.1:7000/0\""
        ))
        .unwrap();
        let s = c.session.unwrap();
        assert_eq!(s.key, "auth_token_key:{sub}");
        assert_eq!(
            (s.cache_ttl_ms, s.negative_cache_ttl_ms, s.grace_secs),
            (5000, 1000, 60)
        );
        assert!(s.keyspace_events);
    }

    #[test]
    fn session_store_urls() {
        let session = |url: &str| format!("{MINIMAL}\n[session]\nredis_url = \"{url}\"");
        for url in ["redis://127.0.0.1:6379/0", "unix:///run/redis.sock", "memory:"] {
            let s = AuthConfig::from_toml(&session(url)).unwrap().session.unwrap();
            assert_eq!(s.in_process(), url == "memory:", "{url}");
        }
        assert!(!SessionConfig::default().in_process());
        for bad in ["http://cache:6379", "memory", "memory:x", "MEMORY:", ""] {
            let err = AuthConfig::from_toml(&session(bad)).unwrap_err().to_string();
            assert!(err.contains("auth.session.redis_url"), "{bad}: {err}");
            assert!(
                err.contains("redis://host:port/db, unix:///path, or memory:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("typo = 1\n[[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"", "typo"),
            ("", "at least one [[issuers]]"),
            (
                "[[issuers]]\nalgorithms=[\"HS256\",\"RS256\"]\nsecret=\"x\"",
                "one family",
            ),
            ("[[issuers]]\nalgorithms=[\"none\"]\nsecret=\"x\"", "\"none\""),
            ("[[issuers]]\nalgorithms=[\"RS256\"]\nsecret=\"x\"", "a secret for HS*"),
            ("[[issuers]]\nalgorithms=[\"HS256\"]", "exactly one of"),
            (
                "leeway_secs = 3600\n[[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"",
                "at most 300",
            ),
            (
                "login_url = \"//evil.example\"\n[[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"",
                "login_url",
            ),
            (
                "[[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"\n[session]\nkey = \"k:{sub\"",
                "auth.session.key",
            ),
            (
                "[[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"\nrecheck_with_hub = true",
                "recheck_with_hub",
            ),
            (
                "[token]\ncookie = \"\"\n[hub_tokens]\nurl = \"http://hub/hub/api/user\"\n\
                 [[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"\nrecheck_with_hub = true",
                "[token] cookie",
            ),
        ];
        for (text, needle) in cases {
            let err = AuthConfig::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}, wanted {needle:?}");
        }
    }

    #[test]
    fn issuers_carry_their_own_claims_and_session_checks() {
        let c = AuthConfig::from_toml(
            r#"
            [[issuers]]
            issuer = "platform"
            algorithms = ["HS384"]
            secret = "s3cret"
            user_claim = "user_id"
            admin_claim = ""
            [[issuers.sessions]]
            redis_url = "redis://127.0.0.1:7000/0"
            key = "auth_token_key:{user_id}"
            [[issuers]]
            issuer = "edgehub"
            algorithms = ["HS256"]
            secret = "other"
            [[issuers.sessions]]
            redis_url = "memory:"
            key = "edgehub:session:{jti}"
            [[issuers.sessions]]
            redis_url = "redis://127.0.0.1:7000/0"
            key = "{platform_session}"
            only_with_claim = "platform_session"
            "#,
        )
        .unwrap();
        assert_eq!(c.issuers[0].user_claim.as_deref(), Some("user_id"));
        assert_eq!(c.issuers[0].admin_claim.as_deref(), Some(""));
        assert_eq!(c.issuers[1].sessions.len(), 2);
        assert_eq!(
            c.issuers[1].sessions[1].only_with_claim.as_deref(),
            Some("platform_session")
        );
        assert!(!c.token.bare_authorization, "off unless asked for");
        let bad = "[[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"\n[[issuers.sessions]]\nredis_url=\"http://x\"";
        let err = AuthConfig::from_toml(bad).unwrap_err().to_string();
        assert!(err.contains("auth.session.redis_url"), "{err}");
    }

    #[test]
    fn templates() {
        assert!(check_template("k", "auth_token_key:{sub}").is_ok());
        assert!(check_template("k", "s:{iss}:{jti}").is_ok());
        for bad in ["{}", "a{b", "a}b", "{a{b}}"] {
            assert!(check_template("k", bad).is_err(), "{bad}");
        }
    }
}

//! Login sessions: what a login leaves behind, checked by the hub and by the edge proxy alike.
//!
//! A session is two things: a JWT signed by the hub (HS256, key kept in the state database so
//! logins survive a hub restart) in a cookie, and a record `edgehub:session:{jti}` in the session
//! store (Redis, or the embedded proxy's in-process store under `edgehub up`). The token alone
//! proves who; the record proves the session was not ended. Logout deletes the record (and, with
//! Redis, publishes the key on the revocation channel), so every proxy replica refuses the token
//! at once although it has not expired.
//!
//! A session made from a platform login is bound to the platform's session: its token carries
//! the platform's session key (`platform_session`, and `platform_session_value` when the record
//! must hold a value), and both the hub and the edge check that record too. Deleting it on the
//! platform (`DEL auth_token_key:alice`) ends the hub session with it.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use proxy::auth::local_sessions::LocalSessions;
use proxy::auth::session::{SessionKey, Sessions as PlatformSessions};
use serde::{Deserialize, Serialize};

use crate::store::StateStore;

/// The session record's key; the same template goes into the proxy's `[session] key`.
pub const KEY_TEMPLATE: &str = "edgehub:session:{jti}";
pub const ISSUER: &str = "edgehub";
/// How session tokens are signed.
pub const ALGORITHM: Algorithm = Algorithm::HS256;
/// The least key length for `ALGORITHM`: its hash output (RFC 7518 §3.2), by the rule the
/// edge holds issuers' keys to.
pub const KEY_BYTES: usize = match proxy::auth::jwt::hmac_key_bytes(ALGORITHM) {
    Some(bytes) => bytes,
    None => panic!("session tokens are signed with an HMAC algorithm"),
};
/// Redis pub/sub channel on which ended sessions are announced (the proxy's default).
pub const REVOCATION_CHANNEL: &str = "edgehub:revocations";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub jti: String,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default)]
    pub admin: bool,
    /// The user's groups, read by the edge's group policy (its `groups_claim`, `groups` by
    /// default) for routes shared with a `group`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The platform session this one is bound to: its record's key …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_session: Option<String>,
    /// … and the value it must hold, when the platform's sessions name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_session_value: Option<String>,
}

/// The claim naming a bound platform session's key; the edge checks tokens that carry it.
pub const PLATFORM_SESSION_CLAIM: &str = "platform_session";

pub fn record_key(jti: &str) -> String {
    KEY_TEMPLATE.replace("{jti}", jti)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session store (Redis) cannot be reached: {0}")]
    Unavailable(String),
    #[error("cannot sign the session token: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Where session records live.
pub enum RecordStore {
    /// The embedded proxy's store (`edgehub up`), backed by the state database so a restarted
    /// hub puts every live session back.
    Local {
        live: Arc<LocalSessions>,
        db: Arc<dyn StateStore>,
    },
    /// Redis, which the proxies read; the database keeps which user each session is of, so
    /// that all of a user's sessions can be ended ([`Sessions::end_all_of`]).
    Redis {
        conn: redis::aio::ConnectionManager,
        db: Arc<dyn StateStore>,
    },
}

impl RecordStore {
    fn db(&self) -> &dyn StateStore {
        match self {
            RecordStore::Local { db, .. } | RecordStore::Redis { db, .. } => db.as_ref(),
        }
    }
}

pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
    records: RecordStore,
    /// The platform's session store, for sessions bound to a platform session.
    platform: Option<Arc<PlatformSessions>>,
}

impl Sessions {
    pub fn new(secret: &[u8], lifetime: Duration, records: RecordStore) -> Sessions {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 30;
        Sessions {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime,
            records,
            platform: None,
        }
    }

    /// Checks bound sessions against the platform's store as well.
    pub fn bound_to(mut self, platform: Option<Arc<PlatformSessions>>) -> Sessions {
        self.platform = platform;
        self
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Starts a session for `user`: writes its record, returns the token for the cookie. With
    /// `platform_session`, the session ends when that platform session does.
    pub async fn create(
        &self,
        user: &str,
        admin: bool,
        groups: &[String],
        platform_session: Option<&SessionKey>,
    ) -> Result<String, SessionError> {
        let now = proxy::timestamp::now_ms() / 1000;
        let claims = Claims {
            sub: user.to_owned(),
            jti: crate::tokens::hex(&crate::tokens::random_bytes::<16>()),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + self.lifetime.as_secs(),
            admin,
            groups: groups.to_vec(),
            platform_session: platform_session.map(|k| k.key().to_owned()),
            platform_session_value: platform_session.and_then(|k| k.expected()).map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&Header::new(ALGORITHM), &claims, &self.encoding)
            .map_err(|e| SessionError::Sign(e.to_string()))?;
        let key = record_key(&claims.jti);
        match &self.records {
            RecordStore::Local { live, db } => {
                db.put_session(&claims.jti, user, claims.exp * 1000)?;
                live.insert(&key, user);
            }
            RecordStore::Redis { conn, db } => {
                db.put_session(&claims.jti, user, claims.exp * 1000)?;
                let mut conn = conn.clone();
                redis::cmd("SET")
                    .arg(&key)
                    .arg(user)
                    .arg("EX")
                    .arg(self.lifetime.as_secs().max(1))
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| SessionError::Unavailable(e.to_string()))?;
            }
        }
        Ok(token)
    }

    /// The claims of a live session, `Ok(None)` for a bad, expired or ended one. An unreachable
    /// store is an error, never a pass: callers treat it as "not logged in" (fail closed).
    pub async fn check(&self, token: &str) -> Result<Option<Claims>, SessionError> {
        let Ok(data) = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) else {
            return Ok(None);
        };
        let key = record_key(&data.claims.jti);
        let live = match &self.records {
            // A session begun on another hub replica a moment ago may not have reached this
            // one's copy yet: the shared database has the last word.
            RecordStore::Local { live, db } if db.shared() && !live.contains(&key) => {
                match db.session_live(&data.claims.jti, proxy::timestamp::now_ms())? {
                    Some(user) => {
                        live.insert(&key, &user);
                        true
                    }
                    None => false,
                }
            }
            RecordStore::Local { live, .. } => live.contains(&key),
            RecordStore::Redis { conn, .. } => {
                let mut conn = conn.clone();
                redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| SessionError::Unavailable(e.to_string()))?
                    > 0
            }
        };
        if !live {
            return Ok(None);
        }
        if let Some(key) = &data.claims.platform_session {
            let key = SessionKey::new(key.clone(), data.claims.platform_session_value.clone());
            // A bound session this hub can no longer check is no session (fail closed).
            let Some(platform) = &self.platform else {
                return Ok(None);
            };
            match crate::login::check_platform_session(platform, &key).await {
                Ok(()) => {}
                Err(crate::login::LoginError::Unavailable(why)) => return Err(SessionError::Unavailable(why)),
                Err(_) => {
                    // The platform ended it: end ours too, so it is gone from the store and
                    // from every proxy, not only refused here.
                    if let Err(e) = self.end(&data.claims.jti).await {
                        tracing::warn!("ending a session whose platform session ended: {e}");
                    }
                    return Ok(None);
                }
            }
        }
        Ok(Some(data.claims))
    }

    /// Ends a session everywhere.
    pub async fn end(&self, jti: &str) -> Result<(), SessionError> {
        let key = record_key(jti);
        match &self.records {
            RecordStore::Local { live, db } => {
                live.remove(&key);
                db.delete_session(jti)?;
            }
            RecordStore::Redis { conn, db } => {
                let mut conn = conn.clone();
                redis::pipe()
                    .cmd("DEL")
                    .arg(&key)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(REVOCATION_CHANNEL)
                    .arg(&key)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| SessionError::Unavailable(e.to_string()))?;
                db.delete_session(jti)?;
            }
        }
        Ok(())
    }

    /// Ends every session of `user`, on every proxy: for when what their tokens say about them
    /// stops being true (removed from a group, no longer an admin, deleted). The edge reads a
    /// token's `groups` and `admin` claims, not the hub's current state, so a token minted
    /// before the change would otherwise keep what it grants until it expires. The user signs in
    /// again, and the new token says what is true now. Returns how many sessions ended.
    pub async fn end_all_of(&self, user: &str) -> Result<usize, SessionError> {
        let sessions = self.records.db().sessions_of(user)?;
        for jti in &sessions {
            self.end(jti).await?;
        }
        Ok(sessions.len())
    }

    /// Brings one session of the in-process store in line with the database, after another
    /// replica began or ended it.
    pub fn refresh(&self, jti: &str) -> Result<(), SessionError> {
        let RecordStore::Local { live, db } = &self.records else {
            return Ok(());
        };
        let key = record_key(jti);
        match db.session_live(jti, proxy::timestamp::now_ms())? {
            Some(user) => live.insert(&key, &user),
            None => {
                live.remove(&key);
            }
        }
        Ok(())
    }

    /// Forgets the sessions that expired: their tokens are refused already (the signed `exp`),
    /// but their records would stay in memory and in the database until a restart, one per login
    /// since. Redis expires its records itself (`EX`); the database's note of whose they were
    /// goes here. Returns how many went.
    pub fn sweep_expired(&self) -> Result<usize, SessionError> {
        let expired = self.records.db().take_expired_sessions(proxy::timestamp::now_ms())?;
        if let RecordStore::Local { live, .. } = &self.records {
            for jti in &expired {
                live.remove(&record_key(jti));
            }
        }
        Ok(expired.len())
    }
}

/// How often [`sweep`] looks for expired sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The hub's background task that runs [`Sessions::sweep_expired`] every [`SWEEP_EVERY`].
pub async fn sweep(hub: Arc<crate::hub::Hub>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if !hub.leader.held() {
            continue;
        }
        match hub.sessions.sweep_expired() {
            Ok(0) => {}
            Ok(n) => tracing::debug!("{n} expired login sessions forgotten"),
            Err(e) => tracing::warn!("forgetting expired login sessions: {e}"),
        }
    }
}

/// Puts the sessions the database holds back into the in-process store (at start-up).
pub fn restore_local(live: &LocalSessions, db: &dyn StateStore) -> Result<usize, crate::store::StoreError> {
    let sessions = db.live_sessions(proxy::timestamp::now_ms())?;
    for (jti, user) in &sessions {
        live.insert(&record_key(jti), user);
    }
    Ok(sessions.len())
}

/// The edge-auth configuration that makes a proxy accept exactly what the hub accepts: the
/// hub's sessions (its key and issuer, the record check, and the platform session a session is
/// bound to) and, when the hub takes platform tokens, those tokens with the platform's session
/// check. With the owner check on user routes and the login page, and the hub's API tokens,
/// checked with the hub at `hub_api_url` (`…/hub/api`), as jupyterhub-singleuser checks them.
pub fn edge_auth_config(
    secret_hex: &str,
    cookie: &str,
    session_store_url: &str,
    login_url: &str,
    hub_api_url: &str,
    platform: &config::HubAuth,
) -> config::AuthConfig {
    let mut hub_sessions = vec![config::SessionConfig {
        redis_url: session_store_url.to_owned(),
        key: KEY_TEMPLATE.to_owned(),
        ..Default::default()
    }];
    if let Some(platform_session) = &platform.platform_session {
        hub_sessions.push(config::SessionConfig {
            key: format!("{{{PLATFORM_SESSION_CLAIM}}}"),
            value: platform_session
                .value
                .as_ref()
                .map(|_| format!("{{{PLATFORM_SESSION_CLAIM}_value}}")),
            only_with_claim: Some(PLATFORM_SESSION_CLAIM.to_owned()),
            ..platform_session.clone()
        });
    }
    let mut issuers = vec![config::IssuerConfig {
        issuer: Some(ISSUER.to_owned()),
        algorithms: vec![format!("{ALGORITHM:?}")],
        secret: Some(secret_hex.to_owned()),
        user_claim: Some("sub".to_owned()),
        groups_claim: Some("groups".to_owned()),
        admin_claim: Some("admin".to_owned()),
        sessions: hub_sessions,
        // Its `groups` claim was written at login: the hub knows who joined a group since.
        recheck_with_hub: true,
        ..Default::default()
    }];
    // The platform's own tokens, as the hub's login takes them: its claims, its session check.
    issuers.extend(platform.issuers.iter().map(|issuer| config::IssuerConfig {
        user_claim: Some(platform.user_claim.clone()),
        admin_claim: Some(platform.admin_claim.clone().unwrap_or_default()),
        sessions: platform.platform_session.iter().cloned().collect(),
        ..issuer.clone()
    }));
    config::AuthConfig {
        default_policy: config::Policy::Public,
        owned_route_policy: config::Policy::Owner,
        login_url: Some(login_url.to_owned()),
        token: config::TokenSources {
            cookie: Some(cookie.to_owned()),
            bare_authorization: platform.bare_authorization,
            ..Default::default()
        },
        issuers,
        hub_tokens: Some(config::HubTokens::at(format!("{hub_api_url}/user"))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_sessions_are_forgotten_by_the_sweep() {
        let (sessions, live, db) = make("sweep", KEY);
        let kept = sessions.create("alice", false, &[], None).await.unwrap();
        // A session of no lifetime, sharing the same stores: expired as soon as it is made.
        let records = RecordStore::Local {
            live: live.clone(),
            db: db.clone(),
        };
        let brief = Sessions::new(KEY, Duration::ZERO, records);
        brief.create("bob", false, &[], None).await.unwrap();
        assert_eq!(live.len(), 2);

        assert_eq!(sessions.sweep_expired().unwrap(), 1);
        assert_eq!(live.len(), 1, "bob's record is gone from memory");
        assert!(sessions.check(&kept).await.unwrap().is_some(), "alice's stays");
        assert_eq!(restore_local(&LocalSessions::default(), db.as_ref()).unwrap(), 1);
        assert_eq!(sessions.sweep_expired().unwrap(), 0);
    }

    fn make(name: &str, key: &[u8]) -> (Sessions, Arc<LocalSessions>, Arc<dyn StateStore>) {
        let dir = std::env::temp_dir().join(format!("edgehub-session-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let live = Arc::new(LocalSessions::default());
        let db: Arc<dyn StateStore> = Arc::new(crate::store::SqliteStore::open(&dir.join("db")).unwrap());
        let records = RecordStore::Local {
            live: live.clone(),
            db: db.clone(),
        };
        (Sessions::new(key, Duration::from_secs(60), records), live, db)
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn a_session_lives_until_it_is_ended() {
        let (sessions, live, db) = make("lives", KEY);
        let token = sessions.create("alice", true, &[], None).await.unwrap();
        let claims = sessions.check(&token).await.unwrap().expect("live");
        assert_eq!((claims.sub.as_str(), claims.admin), ("alice", true));
        assert_eq!(live.len(), 1);
        // A restarted hub gets the session back from the database.
        let fresh = LocalSessions::default();
        assert_eq!(restore_local(&fresh, db.as_ref()).unwrap(), 1);
        assert!(fresh.contains(&record_key(&claims.jti)));
        sessions.end(&claims.jti).await.unwrap();
        assert!(sessions.check(&token).await.unwrap().is_none());
        assert_eq!(
            restore_local(&LocalSessions::default(), db.as_ref()).unwrap(),
            0,
            "ended sessions stay ended"
        );
    }

    #[tokio::test]
    async fn every_session_of_one_user_is_ended_and_no_one_elses() {
        let (sessions, live, db) = make("end-all", KEY);
        let laptop = sessions.create("alice", false, &["proj".into()], None).await.unwrap();
        let phone = sessions.create("alice", false, &["proj".into()], None).await.unwrap();
        let bob = sessions.create("bob", false, &["proj".into()], None).await.unwrap();
        assert_eq!(sessions.end_all_of("alice").await.unwrap(), 2);
        for token in [&laptop, &phone] {
            assert!(sessions.check(token).await.unwrap().is_none(), "alice's are ended");
        }
        assert!(sessions.check(&bob).await.unwrap().is_some(), "bob's stays");
        assert_eq!(live.len(), 1);
        assert_eq!(restore_local(&LocalSessions::default(), db.as_ref()).unwrap(), 1);
        assert_eq!(sessions.end_all_of("alice").await.unwrap(), 0);
        assert_eq!(sessions.end_all_of("nobody").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn foreign_or_tampered_tokens_are_not_sessions() {
        let (sessions, _, _) = make("foreign", KEY);
        let token = sessions.create("alice", false, &[], None).await.unwrap();
        let (other, _, _) = make("other", b"another key another key another!");
        assert!(other.check(&token).await.unwrap().is_none(), "signed with another key");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"admin","jti":"x","iss":"edgehub","iat":0,"exp":99999999999,"admin":true}"#,
        );
        parts[1] = &forged_payload;
        assert!(
            sessions.check(&parts.join(".")).await.unwrap().is_none(),
            "payload swapped"
        );
        assert!(sessions.check("not a jwt").await.unwrap().is_none());
    }
}

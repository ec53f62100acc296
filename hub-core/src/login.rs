//! Who may log in: the development authenticator (any name, optionally one shared password), a
//! users file with argon2 hashes, an LDAP directory (`ldap.rs`), and externally issued JWTs
//! (the platform case).
//!
//! An authenticator only answers "is this person who they say"; the session that follows is
//! `session.rs`'s job, the same for every authenticator. A platform token is checked as the edge
//! checks it: signature, then the platform's session record (`[auth.platform_session]`), whose
//! key the hub session then carries so that it ends with the platform's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use config::{AuthenticatorKind, HubAuth};
use proxy::auth::jwt::{JwksSource, Verifier};
use proxy::auth::redis_sessions::SessionMetrics;
use proxy::auth::session::{SessionKey, SessionVerdict, Sessions as PlatformSessions};
use serde::Deserialize;

use crate::model::valid_name;

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub name: String,
    pub admin: bool,
    /// Groups the authenticator knows the user by (a users file's `groups`, a platform token's
    /// groups claim); they go into the session token, where the edge's group policy reads them.
    pub groups: Vec<String>,
    /// The platform session this login came from, when the platform's sessions are checked:
    /// the hub session made from it lives only as long as it does.
    pub platform_session: Option<SessionKey>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("Invalid username or password")]
    BadCredentials,
    #[error("{0:?} is not a valid user name (letters, digits and - _ . @ +)")]
    BadName(String),
    #[error("{0} is not in a group allowed to sign in to this hub")]
    NotInAllowedGroup(String),
    #[error("{0} is not allowed to sign in to this hub")]
    NotAllowed(String),
    #[error("This hub accepts sign-in tokens only")]
    TokenOnly,
    #[error("The sign-in token was not accepted: {0}")]
    BadToken(String),
    /// Something the check needs cannot be reached: not the user's fault, so not "wrong
    /// password"; the login page answers 503.
    #[error("Signing in is not possible right now: {0}. Try again in a minute.")]
    Unavailable(String),
}

impl LoginError {
    /// The status of a login page that shows this error.
    pub fn status(&self) -> http::StatusCode {
        match self {
            LoginError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::FORBIDDEN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginSetupError {
    #[error("cannot read the users file {path}: {message}")]
    UsersFile { path: String, message: String },
    #[error(
        "users file {path}: user {user:?} has an unreadable password_hash (expected an argon2 PHC string from `edgehub hash-password`)"
    )]
    BadHash { path: String, user: String },
    #[error("auth.issuers: {0}")]
    Issuers(String),
    #[error("auth.platform_session: {0}")]
    PlatformSession(String),
    #[error("auth.ldap: {0}")]
    Ldap(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: BTreeMap<String, FileUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    password_hash: String,
    /// Groups the user belongs to, e.g. a project's, for routes shared with a `group`.
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
}

pub struct Authenticator {
    kind: AuthenticatorKind,
    shared_password: Option<String>,
    users: BTreeMap<String, FileUser>,
    admin_users: Vec<String>,
    external: Option<Verifier>,
    /// The platform's session records, checked for every platform token and for every hub
    /// session made from one.
    platform: Option<Arc<PlatformSessions>>,
    /// The directory, with `authenticator = "ldap"`.
    ldap: Option<crate::ldap::Directory>,
}

impl Authenticator {
    pub fn new(config: &HubAuth) -> Result<Authenticator, LoginSetupError> {
        let users = match (&config.authenticator, &config.users_file) {
            (AuthenticatorKind::UsersFile, Some(path)) => read_users_file(path)?,
            _ => BTreeMap::new(),
        };
        let external = if config.issuers.is_empty() {
            None
        } else {
            let edge = config::AuthConfig {
                issuers: config.issuers.clone(),
                user_claim: config.user_claim.clone(),
                admin_claim: config.admin_claim.clone(),
                ..Default::default()
            };
            let verifier = Verifier::new(&edge).map_err(|e| LoginSetupError::Issuers(e.to_string()))?;
            for jwks in verifier.jwks() {
                match &jwks.source {
                    JwksSource::File(path) => {
                        let doc = std::fs::read(path)
                            .map_err(|e| LoginSetupError::Issuers(format!("{}: {e}", path.display())))?;
                        jwks.install(&doc)
                            .map_err(|e| LoginSetupError::Issuers(e.to_string()))?;
                    }
                    JwksSource::Url(url) => {
                        return Err(LoginSetupError::Issuers(format!(
                            "jwks_url {url}: the hub reads JWKS from a file (jwks_file) or takes a public key; URLs are read by the edge proxy only"
                        )));
                    }
                }
            }
            Some(verifier)
        };
        let platform = match &config.platform_session {
            Some(session) => Some(Arc::new(
                PlatformSessions::redis(session, unrecorded_metrics())
                    .map_err(|e| LoginSetupError::PlatformSession(e.to_string()))?,
            )),
            None => None,
        };
        let ldap = match (&config.authenticator, &config.ldap) {
            (AuthenticatorKind::Ldap, Some(ldap)) => {
                Some(crate::ldap::Directory::new(ldap).map_err(LoginSetupError::Ldap)?)
            }
            (AuthenticatorKind::Ldap, None) => {
                return Err(LoginSetupError::Ldap("an [auth.ldap] table is required".into()));
            }
            _ => None,
        };
        Ok(Authenticator {
            kind: config.authenticator,
            shared_password: config.shared_password.clone(),
            users,
            admin_users: config.admin_users.clone(),
            external,
            platform,
            ldap,
        })
    }

    /// Starts the platform session store's connection and revocation listener (pushed deletes
    /// are what make a platform logout end the hub session within a second). Must be called
    /// inside a Tokio runtime.
    pub fn start(&self) {
        if let Some(platform) = &self.platform {
            platform.start();
        }
    }

    /// The platform's session store, for the hub's own session check.
    pub fn platform_sessions(&self) -> Option<Arc<PlatformSessions>> {
        self.platform.clone()
    }

    /// Whether the login form asks for a password.
    pub fn asks_password(&self) -> bool {
        match self.kind {
            AuthenticatorKind::Dev => self.shared_password.is_some(),
            AuthenticatorKind::UsersFile | AuthenticatorKind::Ldap => true,
            AuthenticatorKind::Jwt => false,
        }
    }

    /// A line under the form telling the user what this hub accepts.
    pub fn hint(&self) -> Option<&'static str> {
        match self.kind {
            AuthenticatorKind::Dev if self.shared_password.is_none() => {
                Some("Development sign-in: any user name works, no password needed.")
            }
            AuthenticatorKind::Jwt => Some("Sign in through your platform; this hub accepts its sign-in tokens."),
            _ => None,
        }
    }

    pub fn accepts_form(&self) -> bool {
        self.kind != AuthenticatorKind::Jwt
    }

    pub fn is_admin(&self, name: &str) -> bool {
        self.admin_users.iter().any(|a| a == name) || self.users.get(name).is_some_and(|u| u.admin)
    }

    /// Checks a name and password from the login form. Argon2 is deliberately slow (tens of
    /// milliseconds), so it runs on the blocking pool, never on a request thread.
    pub async fn check_password(self: &Arc<Self>, name: &str, password: &str) -> Result<LoggedIn, LoginError> {
        let name = name.trim();
        // The directory decides which names exist: it gets the name as typed (escaped), and
        // what comes back is checked as a hub name there.
        if let Some(ldap) = &self.ldap {
            let mut who = ldap.check(name, password).await?;
            who.admin |= self.is_admin(&who.name);
            return Ok(who);
        }
        if !valid_name(name) {
            return Err(LoginError::BadName(name.to_owned()));
        }
        match self.kind {
            AuthenticatorKind::Jwt => Err(LoginError::TokenOnly),
            // `self.ldap` is always set with this authenticator (`new`).
            AuthenticatorKind::Ldap => Err(LoginError::Unavailable("the directory is not configured".into())),
            AuthenticatorKind::Dev => {
                if let Some(shared) = &self.shared_password
                    && !proxy::headers::secret::constant_time_eq(shared.as_bytes(), password.as_bytes())
                {
                    return Err(LoginError::BadCredentials);
                }
                Ok(self.logged_in(name))
            }
            AuthenticatorKind::UsersFile => {
                let this = self.clone();
                let (user, pass) = (name.to_owned(), password.to_owned());
                let ok = tokio::task::spawn_blocking(move || this.verify_file_password(&user, &pass))
                    .await
                    .unwrap_or(false);
                if ok {
                    Ok(self.logged_in(name))
                } else {
                    Err(LoginError::BadCredentials)
                }
            }
        }
    }

    fn verify_file_password(&self, name: &str, password: &str) -> bool {
        // An unknown user still costs one hash, so timing does not tell which names exist.
        const DUMMY: &str =
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Xb2yZb0ZDRkiIE6v8+IobeD1z0lOQ3SLj0ZqIZgVtk";
        let stored = self.users.get(name).map_or(DUMMY, |u| u.password_hash.as_str());
        let Ok(hash) = PasswordHash::new(stored) else {
            return false;
        };
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
            && self.users.contains_key(name)
    }

    /// Checks an externally issued JWT: its signature and claims, then, when the platform's
    /// sessions are configured, that its session record is still there.
    pub async fn check_token(&self, token: &str) -> Result<LoggedIn, LoginError> {
        let Some(verifier) = &self.external else {
            return Err(LoginError::BadToken("this hub has no token issuers configured".into()));
        };
        let identity = verifier
            .verify(token)
            .map_err(|e| LoginError::BadToken(e.reason().to_owned()))?;
        if !valid_name(&identity.user) {
            return Err(LoginError::BadName(identity.user));
        }
        let platform_session = match &self.platform {
            Some(platform) => {
                let key = platform
                    .key_for(&identity.claims)
                    .ok_or_else(|| LoginError::BadToken("it lacks a claim the platform's session key names".into()))?;
                check_platform_session(platform, &key).await?;
                Some(key)
            }
            None => None,
        };
        Ok(LoggedIn {
            admin: identity.admin || self.is_admin(&identity.user),
            groups: identity.groups.into_iter().filter(|g| valid_name(g)).collect(),
            name: identity.user,
            platform_session,
        })
    }

    pub fn has_issuers(&self) -> bool {
        self.external.is_some()
    }

    fn logged_in(&self, name: &str) -> LoggedIn {
        LoggedIn {
            name: name.to_owned(),
            admin: self.is_admin(name),
            groups: self.users.get(name).map(|u| u.groups.clone()).unwrap_or_default(),
            platform_session: None,
        }
    }
}

/// Whether a platform session record is still there: `Err` names why not.
pub async fn check_platform_session(platform: &PlatformSessions, key: &SessionKey) -> Result<(), LoginError> {
    match platform.check(key).await {
        SessionVerdict::Live => Ok(()),
        SessionVerdict::Revoked => Err(LoginError::BadToken("the platform session has ended".into())),
        SessionVerdict::Unavailable => Err(LoginError::Unavailable(
            "the platform's session store cannot be reached".into(),
        )),
    }
}

/// The hub reports no cache metrics for the platform's sessions; the edge does.
fn unrecorded_metrics() -> SessionMetrics {
    SessionMetrics {
        cache_hit: metrics::Counter::noop(),
        cache_miss: metrics::Counter::noop(),
        lookup_seconds: metrics::Histogram::noop(),
    }
}

fn read_users_file(path: &Path) -> Result<BTreeMap<String, FileUser>, LoginSetupError> {
    let err = |message: String| LoginSetupError::UsersFile {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: UsersFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    for (name, user) in &file.users {
        if !valid_name(name) {
            return Err(err(format!("{name:?} is not a valid user name")));
        }
        if PasswordHash::new(&user.password_hash).is_err() {
            return Err(LoginSetupError::BadHash {
                path: path.display().to_string(),
                user: name.to_string(),
            });
        }
        // Group names travel comma-joined in X-Forwarded-Groups: the user-name rule keeps
        // commas and spaces out.
        if let Some(bad) = user.groups.iter().find(|g| !valid_name(g)) {
            return Err(err(format!(
                "user {name:?}: {bad:?} is not a valid group name (letters, digits and - _ . @ +)"
            )));
        }
    }
    Ok(file.users)
}

/// `edgehub hash-password`: an argon2id PHC string for a users file.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&crate::tokens::random_bytes::<16>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(config: HubAuth) -> Arc<Authenticator> {
        Arc::new(Authenticator::new(&config).unwrap())
    }

    #[tokio::test]
    async fn dev_accepts_any_valid_name_and_checks_the_shared_password() {
        let open = auth(HubAuth::default());
        assert_eq!(open.check_password("alice", "").await.unwrap().name, "alice");
        assert!(matches!(
            open.check_password("a/b", "").await,
            Err(LoginError::BadName(_))
        ));
        let shared = auth(HubAuth {
            shared_password: Some("s3cret".into()),
            admin_users: vec!["root".into()],
            ..Default::default()
        });
        assert!(shared.asks_password());
        assert_eq!(
            shared.check_password("bob", "nope").await,
            Err(LoginError::BadCredentials)
        );
        assert!(shared.check_password("root", "s3cret").await.unwrap().admin);
    }

    #[tokio::test]
    async fn users_file_checks_argon2_hashes() {
        let dir = std::env::temp_dir().join(format!("edgehub-login-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.toml");
        let hash = hash_password("correct horse").unwrap();
        std::fs::write(
            &path,
            format!("[users.carol]\npassword_hash = \"{hash}\"\nadmin = true\n"),
        )
        .unwrap();
        let a = auth(HubAuth {
            authenticator: AuthenticatorKind::UsersFile,
            users_file: Some(path.clone()),
            ..Default::default()
        });
        assert!(a.check_password("carol", "correct horse").await.unwrap().admin);
        assert_eq!(
            a.check_password("carol", "wrong").await,
            Err(LoginError::BadCredentials)
        );
        assert_eq!(
            a.check_password("dave", "correct horse").await,
            Err(LoginError::BadCredentials)
        );

        std::fs::write(&path, "[users.carol]\npassword_hash = \"plaintext\"\n").unwrap();
        let err = Authenticator::new(&HubAuth {
            authenticator: AuthenticatorKind::UsersFile,
            users_file: Some(path),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("carol") && err.contains("hash-password"), "{err}");
    }

    #[tokio::test]
    async fn external_tokens_from_a_configured_issuer() {
        let secret = "platform-secret-platform-secret!";
        let a = Authenticator::new(&HubAuth {
            authenticator: AuthenticatorKind::Jwt,
            issuers: vec![config::IssuerConfig {
                algorithms: vec!["HS256".into()],
                secret: Some(secret.into()),
                issuer: Some("platform".into()),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        let claims = serde_json::json!({
            "sub": "erin",
            "iss": "platform",
            "exp": proxy::timestamp::now_ms() / 1000 + 60,
            "groups": ["proj-42", "not a group"],
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let erin = a.check_token(&token).await.unwrap();
        assert_eq!(erin.name, "erin");
        // The platform's groups go on to the session; a name the identity header cannot carry
        // is dropped.
        assert_eq!(erin.groups, vec!["proj-42".to_owned()]);
        assert!(matches!(a.check_token("x.y.z").await, Err(LoginError::BadToken(_))));
        assert!(!a.accepts_form());
    }
}

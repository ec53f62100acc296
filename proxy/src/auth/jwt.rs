//! Token verification: signature against the issuer's keys, then `exp`, `nbf`, `iss`, `aud` and
//! the user claim. Purely local: keys live in memory (a JWKS is swapped in whole by its refresher).
//!
//! Pitfalls handled here (RFC 8725, JSON Web Token Best Current Practices): `alg: none` cannot be expressed;
//! each issuer accepts algorithms of one family only, so an HMAC-signed token can never be checked
//! against an RSA public key used as a secret; `kid` is only ever a key into the in-memory map;
//! `jku`/`x5u` are ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use config::{AuthConfig, IssuerConfig};

use super::token_source::MAX_TOKEN_LEN;

/// Why a token was refused; `reason` is the metrics label and the text of the 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    TooLarge,
    Algorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
}

impl TokenError {
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed_token",
            TokenError::TooLarge => "oversized_token",
            TokenError::Algorithm => "algorithm_not_allowed",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingClaim => "missing_claim",
        }
    }

    fn from_kind(kind: &ErrorKind) -> TokenError {
        match kind {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => TokenError::MissingClaim,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                TokenError::Algorithm
            }
            _ => TokenError::Malformed,
        }
    }

    /// Errors that say nothing about whether another issuer would accept the token.
    fn rank(self) -> u8 {
        match self {
            TokenError::Algorithm | TokenError::UnknownKey => 0,
            TokenError::BadSignature => 1,
            _ => 2,
        }
    }
}

/// A verified token's identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    pub admin: bool,
    pub claims: Map<String, Value>,
    /// Which configured issuer accepted the token (its position in `issuers`).
    pub issuer: usize,
}

/// Why the key configuration could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("environment variable {0} (auth secret_env) is not set")]
    Env(String),
    #[error("{0}: not a usable key: {1}")]
    Key(String, jsonwebtoken::errors::Error),
    #[error("JWKS {0}: {1}")]
    Jwks(String, String),
    #[error(
        "auth issuer {issuer}: the HMAC key from {key} is {len} bytes; {algorithm} needs at least {needed} (RFC 7518 §3.2). Use a random key of {needed} bytes or more, e.g. `openssl rand -hex {needed}`"
    )]
    ShortSecret {
        issuer: String,
        /// Where the key came from: `secret`, `secret_env NAME` or `secret_file PATH`.
        key: String,
        len: usize,
        algorithm: String,
        needed: usize,
    },
}

/// Keys of one issuer: fixed, or a JWKS that is refreshed.
enum Keys {
    Fixed(DecodingKey),
    Jwks(Arc<JwksKeys>),
}

/// A JWKS held in memory, keys by `kid`, swapped whole on refresh.
pub struct JwksKeys {
    pub source: JwksSource,
    keys: ArcSwap<KeyMap>,
    last_fetch: std::sync::Mutex<Instant>,
    min_refetch: Duration,
    pub refresh_every: Duration,
}

#[derive(Default)]
struct KeyMap {
    by_kid: HashMap<String, (Option<Algorithm>, DecodingKey)>,
    without_kid: Vec<(Option<Algorithm>, DecodingKey)>,
}

#[derive(Debug, Clone)]
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => f.write_str(u),
        }
    }
}

impl JwksKeys {
    /// Parses a JWKS document and swaps it in. Keys of types we cannot use are skipped.
    pub fn install(&self, document: &[u8]) -> Result<usize, KeyError> {
        let set: JwkSet =
            serde_json::from_slice(document).map_err(|e| KeyError::Jwks(self.source.to_string(), e.to_string()))?;
        let mut map = KeyMap::default();
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            let alg = jwk.common.key_algorithm.and_then(|a| Algorithm::try_from(a).ok());
            match &jwk.common.key_id {
                Some(kid) => {
                    map.by_kid.insert(kid.clone(), (alg, key));
                }
                None => map.without_kid.push((alg, key)),
            }
        }
        let n = map.by_kid.len() + map.without_kid.len();
        self.keys.store(Arc::new(map));
        Ok(n)
    }

    /// Whether an unknown-`kid` refresh may run now (at most one per `min_refetch`).
    pub fn may_refetch(&self) -> bool {
        let Ok(mut last) = self.last_fetch.lock() else {
            return false;
        };
        if last.elapsed() < self.min_refetch {
            return false;
        }
        *last = Instant::now();
        true
    }
}

struct Issuer {
    validation: Validation,
    keys: Keys,
    claims: ClaimNames,
}

/// The claims that name the user, groups and admins in one issuer's tokens.
struct ClaimNames {
    user: String,
    groups: String,
    admin: Option<String>,
}

impl ClaimNames {
    /// The issuer's own names where it gives them, the top-level ones otherwise.
    fn of(issuer: &IssuerConfig, config: &AuthConfig) -> ClaimNames {
        ClaimNames {
            user: issuer.user_claim.clone().unwrap_or_else(|| config.user_claim.clone()),
            groups: issuer
                .groups_claim
                .clone()
                .unwrap_or_else(|| config.groups_claim.clone()),
            admin: match &issuer.admin_claim {
                // An empty name: this issuer's tokens never make an admin.
                Some(name) if name.is_empty() => None,
                Some(name) => Some(name.clone()),
                None => config.admin_claim.clone(),
            },
        }
    }
}

/// Every configured issuer, with the claims that name the user, groups and admins in its tokens.
pub struct Verifier {
    issuers: Vec<Issuer>,
}

impl Verifier {
    pub fn new(config: &AuthConfig) -> Result<Verifier, KeyError> {
        let issuers = config
            .issuers
            .iter()
            .enumerate()
            .map(|(position, i)| {
                Ok(Issuer {
                    validation: validation(i, config),
                    keys: load_keys(i, position)?,
                    claims: ClaimNames::of(i, config),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(Verifier { issuers })
    }

    /// The JWKS documents that need fetching and refreshing.
    pub fn jwks(&self) -> impl Iterator<Item = &Arc<JwksKeys>> {
        self.issuers.iter().filter_map(|i| match &i.keys {
            Keys::Jwks(j) => Some(j),
            Keys::Fixed(_) => None,
        })
    }

    /// Verifies `token`. `Err(UnknownKey)` with a JWKS issuer means a refresh may help.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::from_kind(e.kind()))?;
        let mut best = TokenError::Algorithm;
        for (position, issuer) in self.issuers.iter().enumerate() {
            if !issuer.validation.algorithms.contains(&header.alg) {
                continue;
            }
            let result = match &issuer.keys {
                Keys::Fixed(key) => decode(token, key, &issuer.validation),
                Keys::Jwks(jwks) => {
                    let keys = jwks.keys.load();
                    let usable = |(alg, _): &&(Option<Algorithm>, DecodingKey)| alg.is_none_or(|a| a == header.alg);
                    let candidates: Vec<&(Option<Algorithm>, DecodingKey)> = match &header.kid {
                        Some(kid) => keys.by_kid.get(kid).into_iter().filter(usable).collect(),
                        None => keys
                            .without_kid
                            .iter()
                            .chain(keys.by_kid.values())
                            .filter(usable)
                            .collect(),
                    };
                    candidates
                        .iter()
                        .map(|(_, key)| decode(token, key, &issuer.validation))
                        .find(|r| !matches!(r, Err(TokenError::BadSignature)))
                        .unwrap_or(Err(if candidates.is_empty() {
                            TokenError::UnknownKey
                        } else {
                            TokenError::BadSignature
                        }))
                }
            };
            match result {
                Ok(claims) => return identity(claims, &issuer.claims, position),
                Err(e) if e.rank() >= best.rank() => best = e,
                Err(_) => {}
            }
        }
        Err(best)
    }
}

fn identity(claims: Map<String, Value>, names: &ClaimNames, issuer: usize) -> Result<Identity, TokenError> {
    let user = match claims.get(&names.user) {
        Some(Value::String(u)) if !u.is_empty() => u.clone(),
        _ => return Err(TokenError::MissingClaim),
    };
    let groups = match claims.get(&names.groups) {
        Some(Value::Array(items)) => items.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let admin = names
        .admin
        .as_ref()
        .is_some_and(|c| claims.get(c) == Some(&Value::Bool(true)));
    Ok(Identity {
        user,
        groups,
        admin,
        claims,
        issuer,
    })
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Map<String, Value>, TokenError> {
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| TokenError::from_kind(e.kind()))
}

fn validation(issuer: &IssuerConfig, config: &AuthConfig) -> Validation {
    // The config crate has checked the names and that they share one family.
    let algorithms: Vec<Algorithm> = issuer.algorithms.iter().filter_map(|a| a.parse().ok()).collect();
    let mut v = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::HS256));
    v.algorithms = algorithms;
    v.leeway = config.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = &issuer.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if issuer.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&issuer.audiences);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

fn load_keys(issuer: &IssuerConfig, position: usize) -> Result<Keys, KeyError> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| KeyError::Read(p.display().to_string(), e));
    if let Some(secret) = hmac_secret(issuer, &read)? {
        check_hmac_length(issuer, position, &secret)?;
        return Ok(Keys::Fixed(DecodingKey::from_secret(&secret.bytes)));
    }
    if let Some(path) = &issuer.public_key_file {
        let pem = read(path)?;
        let name = path.display().to_string();
        let family = issuer.algorithms.first().map(String::as_str).unwrap_or("");
        let key = match &family[..2.min(family.len())] {
            "RS" | "PS" => DecodingKey::from_rsa_pem(&pem),
            "ES" => DecodingKey::from_ec_pem(&pem),
            _ => DecodingKey::from_ed_pem(&pem),
        }
        .map_err(|e| KeyError::Key(name, e))?;
        return Ok(Keys::Fixed(key));
    }
    let source = match (&issuer.jwks_file, &issuer.jwks_url) {
        (Some(p), _) => JwksSource::File(p.clone()),
        (None, Some(u)) => JwksSource::Url(u.clone()),
        (None, None) => return Err(KeyError::Jwks("issuer".into(), "no key source configured".into())),
    };
    let jwks = Arc::new(JwksKeys {
        source,
        keys: ArcSwap::from_pointee(KeyMap::default()),
        last_fetch: std::sync::Mutex::new(Instant::now() - Duration::from_secs(3600)),
        min_refetch: Duration::from_secs(issuer.jwks_min_refetch_secs.max(1)),
        refresh_every: Duration::from_secs(issuer.jwks_refresh_secs.max(1)),
    });
    if let JwksSource::File(path) = &jwks.source {
        jwks.install(&read(path)?)?;
    }
    Ok(Keys::Jwks(jwks))
}

/// An HMAC secret as read, with where it came from (for the start-up error).
struct HmacSecret {
    source: String,
    bytes: Vec<u8>,
}

/// The issuer's HMAC secret from whichever of `secret`, `secret_env`, `secret_file` is set;
/// `None` for public-key issuers.
fn hmac_secret(
    issuer: &IssuerConfig,
    read: &dyn Fn(&std::path::Path) -> Result<Vec<u8>, KeyError>,
) -> Result<Option<HmacSecret>, KeyError> {
    if let Some(secret) = &issuer.secret {
        return Ok(Some(HmacSecret {
            source: "secret".into(),
            bytes: secret.as_bytes().to_vec(),
        }));
    }
    if let Some(var) = &issuer.secret_env {
        let secret = std::env::var(var).map_err(|_| KeyError::Env(var.clone()))?;
        return Ok(Some(HmacSecret {
            source: format!("secret_env {var}"),
            bytes: secret.into_bytes(),
        }));
    }
    if let Some(path) = &issuer.secret_file {
        let mut bytes = read(path)?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        return Ok(Some(HmacSecret {
            source: format!("secret_file {}", path.display()),
            bytes,
        }));
    }
    Ok(None)
}

/// RFC 7518 §3.2: "A key of the same size as the hash output (for instance, 256 bits for
/// "HS256") or larger MUST be used". A shorter key, the empty one above all, lets anyone who
/// guesses it sign tokens for any user, so such an issuer stops the start instead.
fn check_hmac_length(issuer: &IssuerConfig, position: usize, secret: &HmacSecret) -> Result<(), KeyError> {
    let strongest = issuer
        .algorithms
        .iter()
        .filter_map(|a| Some((a, hmac_key_bytes(a.parse().ok()?)?)))
        .max_by_key(|(_, bytes)| *bytes);
    match strongest {
        Some((algorithm, needed)) if secret.bytes.len() < needed => Err(KeyError::ShortSecret {
            issuer: issuer
                .issuer
                .as_ref()
                .map_or_else(|| format!("#{}", position + 1), |name| format!("{name:?}")),
            key: secret.source.clone(),
            len: secret.bytes.len(),
            algorithm: algorithm.clone(),
            needed,
        }),
        _ => Ok(()),
    }
}

/// The least key length of an HMAC algorithm, in bytes: its hash output. `None` for the others.
pub const fn hmac_key_bytes(algorithm: Algorithm) -> Option<usize> {
    match algorithm {
        Algorithm::HS256 => Some(32),
        Algorithm::HS384 => Some(48),
        Algorithm::HS512 => Some(64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    /// Keys as long as HS512 needs: every HMAC algorithm accepts them.
    const K: &str = "a-test-key-of-sixty-four-bytes-for-every-hmac-algorithm-0123456";
    const OTHER: &str = "another-key-of-sixty-four-bytes-for-every-hmac-algorithm-0123456";

    fn config(algs: &[&str], secret: &str) -> AuthConfig {
        AuthConfig {
            issuers: vec![IssuerConfig {
                algorithms: algs.iter().map(|a| a.to_string()).collect(),
                secret: Some(secret.into()),
                issuer: Some("https://login.example".into()),
                audiences: vec!["edgehub".into()],
                ..Default::default()
            }],
            admin_claim: Some("admin".into()),
            ..Default::default()
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn token(alg: Algorithm, secret: &str, claims: Value) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn good_claims() -> Value {
        json!({"sub": "alice", "exp": now() + 600, "iss": "https://login.example", "aud": "edgehub",
               "groups": ["proj-42"], "admin": false})
    }

    #[test]
    fn a_good_token_gives_its_identity() {
        let v = Verifier::new(&config(&["HS384"], K)).unwrap();
        let id = v.verify(&token(Algorithm::HS384, K, good_claims())).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, vec!["proj-42".to_owned()]);
        assert!(!id.admin);
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let v = Verifier::new(&config(&["HS384"], K)).unwrap();
        let with = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut c = good_claims().as_object().unwrap().clone();
            f(&mut c);
            token(Algorithm::HS384, K, Value::Object(c))
        };
        let cases: Vec<(String, TokenError)> = vec![
            (token(Algorithm::HS384, OTHER, good_claims()), TokenError::BadSignature),
            (token(Algorithm::HS256, K, good_claims()), TokenError::Algorithm),
            (
                with(&|c| drop(c.insert("exp".into(), json!(now() - 120)))),
                TokenError::Expired,
            ),
            (
                with(&|c| drop(c.insert("nbf".into(), json!(now() + 120)))),
                TokenError::NotYetValid,
            ),
            (
                with(&|c| drop(c.insert("iss".into(), json!("https://evil")))),
                TokenError::WrongIssuer,
            ),
            (
                with(&|c| drop(c.insert("aud".into(), json!(OTHER)))),
                TokenError::WrongAudience,
            ),
            (with(&|c| drop(c.remove("sub"))), TokenError::MissingClaim),
            (with(&|c| drop(c.remove("exp"))), TokenError::MissingClaim),
            ("not.a.jwt".into(), TokenError::Malformed),
            ("a".repeat(MAX_TOKEN_LEN + 1), TokenError::TooLarge),
        ];
        for (t, want) in cases {
            assert_eq!(v.verify(&t).unwrap_err(), want, "{t}");
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let v = Verifier::new(&config(&["HS256"], K)).unwrap();
        // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(v.verify(none).is_err());
    }

    #[test]
    fn leeway_forgives_small_skew_only() {
        let v = Verifier::new(&config(&["HS256"], K)).unwrap();
        let mut c = good_claims();
        c["exp"] = json!(now() - 10);
        assert!(
            v.verify(&token(Algorithm::HS256, K, c)).is_ok(),
            "10 s late is within 30 s leeway"
        );
    }

    #[test]
    fn each_issuer_reads_its_own_claims() {
        let mut c = config(&["HS256"], K);
        // A platform whose tokens name the user in `user_id` and whose `admin` means nothing here.
        c.issuers.push(IssuerConfig {
            algorithms: vec!["HS256".into()],
            secret: Some(OTHER.into()),
            user_claim: Some("user_id".into()),
            groups_claim: Some("roles".into()),
            admin_claim: Some(String::new()),
            ..Default::default()
        });
        let v = Verifier::new(&c).unwrap();
        let mut ours = good_claims();
        ours["admin"] = json!(true);
        let id = v.verify(&token(Algorithm::HS256, K, ours)).unwrap();
        assert_eq!((id.user.as_str(), id.admin, id.issuer), ("alice", true, 0));
        let platform = json!({"user_id": "bob", "sub": "x", "roles": ["p1"], "admin": true, "exp": now() + 60});
        let id = v.verify(&token(Algorithm::HS256, OTHER, platform)).unwrap();
        assert_eq!((id.user.as_str(), id.admin, id.issuer), ("bob", false, 1));
        assert_eq!(id.groups, vec!["p1".to_owned()]);
    }

    #[test]
    fn admin_claim_must_be_true() {
        let v = Verifier::new(&config(&["HS256"], K)).unwrap();
        let mut c = good_claims();
        c["admin"] = json!("true");
        assert!(!v.verify(&token(Algorithm::HS256, K, c.clone())).unwrap().admin);
        c["admin"] = json!(true);
        assert!(v.verify(&token(Algorithm::HS256, K, c)).unwrap().admin);
    }

    #[test]
    fn public_key_families_verify_their_own_tokens_only() {
        let cases = [
            (&rcgen::PKCS_ECDSA_P256_SHA256, "ES256", Algorithm::ES256),
            (&rcgen::PKCS_ED25519, "EdDSA", Algorithm::EdDSA),
        ];
        for (i, (alg, name, jwt_alg)) in cases.into_iter().enumerate() {
            let pair = rcgen::KeyPair::generate_for(alg).unwrap();
            let dir = std::env::temp_dir().join(format!("edgeproxy-jwt-{}-{i}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let public = dir.join("key.pub");
            std::fs::write(&public, pair.public_key_pem()).unwrap();
            let config = AuthConfig {
                issuers: vec![IssuerConfig {
                    algorithms: vec![name.to_string()],
                    public_key_file: Some(public),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let v = Verifier::new(&config).unwrap();
            let private = pair.serialize_pem();
            let key = match jwt_alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            };
            let claims = json!({"sub": "alice", "exp": now() + 600});
            let good = encode(&Header::new(jwt_alg), &claims, &key).unwrap();
            assert_eq!(v.verify(&good).unwrap().user, "alice", "{name}");
            let other = rcgen::KeyPair::generate_for(alg).unwrap().serialize_pem();
            let other = match jwt_alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(other.as_bytes()).unwrap(),
                _ => EncodingKey::from_ed_pem(other.as_bytes()).unwrap(),
            };
            let forged = encode(&Header::new(jwt_alg), &claims, &other).unwrap();
            assert_eq!(v.verify(&forged).unwrap_err(), TokenError::BadSignature, "{name}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn hmac_keys_shorter_than_the_hash_are_refused_at_start() {
        // RFC 7518 §3.2, at the boundary of each algorithm, and the empty key.
        for (alg, needed) in [("HS256", 32), ("HS384", 48), ("HS512", 64)] {
            assert!(Verifier::new(&config(&[alg], &"k".repeat(needed))).is_ok(), "{alg}");
            for short in [0, needed - 1] {
                let err = Verifier::new(&config(&[alg], &"k".repeat(short)))
                    .err()
                    .unwrap()
                    .to_string();
                assert!(
                    err.contains("\"https://login.example\"") && err.contains("from secret is"),
                    "{err}"
                );
                assert!(
                    err.contains(&format!("{short} bytes; {alg} needs at least {needed}")),
                    "{err}"
                );
            }
        }
        // An issuer accepting several algorithms needs a key for the strongest of them.
        let err = Verifier::new(&config(&["HS256", "HS512"], &"k".repeat(48)))
            .err()
            .unwrap();
        assert!(err.to_string().contains("HS512 needs at least 64"), "{err}");
    }

    #[test]
    fn the_short_key_error_names_an_unnamed_issuer_by_position_and_the_key_source() {
        let mut c = config(&["HS256"], K);
        let dir = std::env::temp_dir().join(format!("edgeproxy-jwt-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("empty.key");
        // A file holding only a newline is empty once the newline is trimmed.
        std::fs::write(&file, "\n").unwrap();
        c.issuers.push(IssuerConfig {
            algorithms: vec!["HS384".into()],
            secret_file: Some(file.clone()),
            ..Default::default()
        });
        let err = Verifier::new(&c).err().unwrap().to_string();
        assert!(
            err.starts_with("auth issuer #2: the HMAC key from secret_file "),
            "{err}"
        );
        assert!(err.contains("is 0 bytes; HS384 needs at least 48"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

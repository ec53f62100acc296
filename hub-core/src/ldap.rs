//! Signing in against an LDAP directory (`authenticator = "ldap"`): one job, checking a name and
//! password and telling who that is (name, groups, admin).
//!
//! Each sign-in opens its own connection (TLS from the start with `ldaps://`, or upgraded with
//! StartTLS), finds the user's DN (from `bind_dn_template`, or by a search, usually as the
//! service account), binds as that DN with the password (the directory checks it), reads the
//! user's groups, and unbinds. The whole of it runs under `timeout_secs`.
//!
//! What the user is told: a wrong password and an unknown name look the same ("Invalid username
//! or password"); a directory that cannot be reached, times out or fails TLS is "not possible
//! right now" (503), never "wrong password".

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use config::LdapConfig;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Scope, SearchEntry};

use crate::login::{LoggedIn, LoginError};
use crate::model::valid_name;

/// What the login page says when the connection itself fails.
const UNREACHABLE: &str = "the directory cannot be reached";

/// LDAP result codes that say the server is not serving now (busy, unavailable, other), as
/// opposed to a refusal of these credentials.
const SERVER_TROUBLE: [u32; 3] = [51, 52, 80];

/// invalidCredentials: a wrong password, or (for most servers) no such DN.
const INVALID_CREDENTIALS: u32 = 49;

/// A longer "name" is no one's: refused before the directory is asked.
const MAX_NAME_LEN: usize = 256;

pub struct Directory {
    config: LdapConfig,
    /// Built once: reading `ca_file` (or the system roots) at every sign-in would be waste.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The service account's password, read at start-up from wherever the config says.
    search_password: Option<String>,
}

impl Directory {
    /// Reads the CA file and the service account's password; `Err` names what is wrong.
    pub fn new(config: &LdapConfig) -> Result<Directory, String> {
        let tls = if config.uses_tls() {
            let client = config::ClientTls {
                ca: config.ca_file.clone(),
                ..Default::default()
            };
            let tls =
                proxy::tls::client_config(&client, config::TlsVersions::Any).map_err(|e| format!("ca_file: {e}"))?;
            Some(tls)
        } else {
            None
        };
        let search_password = if let Some(password) = &config.search_bind_password {
            Some(password.clone())
        } else if let Some(var) = &config.search_bind_password_env {
            let value = std::env::var(var)
                .map_err(|_| format!("search_bind_password_env: the environment variable {var} is not set"))?;
            Some(value)
        } else if let Some(path) = &config.search_bind_password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("search_bind_password_file {}: {e}", path.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        } else {
            None
        };
        // An empty password would bind as nobody (an "unauthenticated" bind that succeeds).
        if search_password.as_deref() == Some("") {
            return Err("the service account's password (search_bind_password*) is empty".into());
        }
        Ok(Directory {
            config: config.clone(),
            tls,
            search_password,
        })
    }

    /// Checks `name` and `password` against the directory.
    pub async fn check(&self, name: &str, password: &str) -> Result<LoggedIn, LoginError> {
        // A simple bind with an empty password is an unauthenticated bind, which "succeeds" for
        // any DN: it must never reach the directory. Nor may an empty name (the anonymous DN).
        if password.is_empty() || name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(LoginError::BadCredentials);
        }
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let session = async {
            let (conn, mut ldap) = LdapConnAsync::with_settings(self.settings(timeout), &self.config.url)
                .await
                .map_err(|e| self.unreachable(&e))?;
            ldap3::drive!(conn);
            let who = self.sign_in(&mut ldap, name, password).await;
            // Polite; the connection closes either way when `ldap` and its driver are dropped.
            let _ = ldap.unbind().await;
            who
        };
        match tokio::time::timeout(timeout, session).await {
            Ok(who) => who,
            Err(_) => {
                tracing::warn!("LDAP {}: no answer within {timeout:?}", self.config.url);
                Err(LoginError::Unavailable(UNREACHABLE.into()))
            }
        }
    }

    fn settings(&self, timeout: Duration) -> LdapConnSettings {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(self.config.starttls);
        match &self.tls {
            Some(tls) => settings.set_config(tls.clone()),
            None => settings,
        }
    }

    async fn sign_in(&self, ldap: &mut Ldap, name: &str, password: &str) -> Result<LoggedIn, LoginError> {
        let c = &self.config;
        let (dn, entry) = match (&c.bind_dn_template, &c.user_search_base) {
            (Some(template), _) => (fill(template, &[("{username}", name)], escape_dn), None),
            (None, Some(base)) => {
                self.bind_service(ldap).await?;
                let filter = fill(&c.user_search_filter, &[("{username}", name)], escape_filter);
                let mut found = self.search(ldap, base, &filter, &c.username_attribute).await?;
                // Exactly one entry: none is an unknown name, several is a filter that cannot
                // tell users apart, and picking one would let a name sign in as someone else.
                match found.len() {
                    1 => {
                        let entry = found.remove(0);
                        (entry.dn.clone(), Some(entry))
                    }
                    0 => return Err(LoginError::BadCredentials),
                    n => {
                        tracing::warn!("LDAP: {n} entries match {filter} under {base}; sign-in refused");
                        return Err(LoginError::BadCredentials);
                    }
                }
            }
            (None, None) => {
                return Err(LoginError::Unavailable(
                    "the hub's directory settings are incomplete".into(),
                ));
            }
        };

        // The user's own bind is the password check.
        let bound = ldap
            .simple_bind(&dn, password)
            .await
            .map_err(|e| self.unreachable(&e))?;
        match bound.rc {
            0 => {}
            INVALID_CREDENTIALS => return Err(LoginError::BadCredentials),
            rc if SERVER_TROUBLE.contains(&rc) => return Err(self.refused("the sign-in", &bound)),
            _ => {
                // Locked, disabled, a malformed DN from the name: no sign-in, and not the
                // directory's fault either.
                tracing::info!("LDAP bind of {dn} refused: {bound}");
                return Err(LoginError::BadCredentials);
            }
        }

        // The hub name is the directory's spelling of it (`ALICE` signs in as `alice`).
        let entry = match entry {
            Some(entry) => Some(entry),
            None => self.own_entry(ldap, &dn).await,
        };
        let hub_name = entry
            .as_ref()
            .and_then(|e| directory_name(e, &c.username_attribute, name))
            .unwrap_or_else(|| name.to_owned());
        if !valid_name(&hub_name) {
            return Err(LoginError::BadName(hub_name));
        }

        let groups = self.groups(ldap, &dn, &hub_name).await?;
        let member_of = |wanted: &[String]| wanted.iter().any(|g| groups.contains(g));
        if !c.allowed_groups.is_empty() && !member_of(&c.allowed_groups) {
            return Err(LoginError::NotInAllowedGroup(hub_name));
        }
        Ok(LoggedIn {
            admin: member_of(&c.admin_groups),
            // They travel comma-joined in X-Forwarded-Groups: only names the user-name rule
            // allows go on.
            groups: groups.iter().filter(|g| valid_name(g)).cloned().collect(),
            name: hub_name,
            platform_session: None,
        })
    }

    /// Binds as the service account; without one, the connection stays as it is (anonymous
    /// before the user's bind, the user after it).
    async fn bind_service(&self, ldap: &mut Ldap) -> Result<(), LoginError> {
        let (Some(dn), Some(password)) = (&self.config.search_bind_dn, &self.search_password) else {
            return Ok(());
        };
        let bound = ldap.simple_bind(dn, password).await.map_err(|e| self.unreachable(&e))?;
        if bound.rc != 0 {
            return Err(self.refused("the hub's service account", &bound));
        }
        Ok(())
    }

    /// The user's own entry, read as the user; `None` when the directory does not let them.
    async fn own_entry(&self, ldap: &mut Ldap, dn: &str) -> Option<SearchEntry> {
        let attrs = vec![self.config.username_attribute.as_str()];
        let (entries, _) = ldap
            .search(dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .ok()?
            .success()
            .ok()?;
        entries.into_iter().find_map(as_entry)
    }

    /// The names of the user's groups (every value of `group_name_attribute`), sorted.
    async fn groups(&self, ldap: &mut Ldap, dn: &str, name: &str) -> Result<Vec<String>, LoginError> {
        let c = &self.config;
        let Some(base) = &c.group_search_base else {
            return Ok(Vec::new());
        };
        // The service account reads groups when there is one; otherwise the user's binding.
        self.bind_service(ldap).await?;
        let filter = fill(
            &c.group_search_filter,
            &[("{dn}", dn), ("{username}", name)],
            escape_filter,
        );
        let found = self.search(ldap, base, &filter, &c.group_name_attribute).await?;
        let mut groups: Vec<String> = found
            .iter()
            .flat_map(|e| values(e, &c.group_name_attribute))
            .cloned()
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// A subtree search asking for one attribute. Any result but success is the directory's
    /// trouble (a missing base, a filter it cannot take), not the user's.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attr: &str,
    ) -> Result<Vec<SearchEntry>, LoginError> {
        let result = ldap
            .search(base, Scope::Subtree, filter, vec![attr])
            .await
            .map_err(|e| self.unreachable(&e))?;
        if result.1.rc != 0 {
            return Err(self.refused("the hub's search", &result.1));
        }
        Ok(result.0.into_iter().filter_map(as_entry).collect())
    }

    fn unreachable(&self, e: &LdapError) -> LoginError {
        tracing::warn!("LDAP {}: {e}", self.config.url);
        LoginError::Unavailable(UNREACHABLE.into())
    }

    fn refused(&self, what: &str, result: &LdapResult) -> LoginError {
        tracing::warn!("LDAP {} refused {what}: {result}", self.config.url);
        LoginError::Unavailable(format!("the directory refused {what}"))
    }
}

/// A search result as an entry; referrals and intermediate messages are not entries, and
/// `SearchEntry::construct` panics on what it cannot parse, so a malformed answer is dropped
/// rather than brought down the request.
fn as_entry(result: ldap3::ResultEntry) -> Option<SearchEntry> {
    if result.is_ref() || result.is_intermediate() {
        return None;
    }
    std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(result))).ok()
}

/// The values of `attr` (attribute names are case-insensitive).
fn values<'a>(entry: &'a SearchEntry, attr: &str) -> impl Iterator<Item = &'a String> {
    entry
        .attrs
        .iter()
        .filter(move |(key, _)| key.eq_ignore_ascii_case(attr))
        .flat_map(|(_, values)| values)
}

/// The user's name as the directory spells it: of several values (uid may have more than one),
/// the one the user typed, in any case, else the first.
fn directory_name(entry: &SearchEntry, attr: &str, typed: &str) -> Option<String> {
    let all: Vec<&String> = values(entry, attr).collect();
    all.iter()
        .find(|v| v.eq_ignore_ascii_case(typed))
        .or(all.first())
        .map(|v| (*v).clone())
}

/// A filter assertion value (RFC 4515): `*`, `(`, `)`, `\` and NUL become `\2a` and the like, so
/// `*` or `alice)(uid=*` match only a user of that very name.
pub fn escape_filter(value: &str) -> String {
    ldap3::ldap_escape(value).into_owned()
}

/// An attribute value in a DN (RFC 4514): `,` `+` `"` `\` `<` `>` `;` `=` NUL, and a leading
/// `#` or space or a trailing space, are escaped, so a name cannot add an RDN of its own.
pub fn escape_dn(value: &str) -> String {
    ldap3::dn_escape(value).into_owned()
}

/// `template` with each placeholder replaced by its escaped value, in one pass: a value that
/// itself contains a placeholder (a DN with `{username}` in it) is not replaced again.
pub fn fill(template: &str, values: &[(&str, &str)], escape: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    'next: while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        for (placeholder, value) in values {
            if let Some(after) = rest.strip_prefix(placeholder) {
                out.push_str(&escape(value));
                rest = after;
                continue 'next;
            }
        }
        out.push('{');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_cannot_widen_the_filter() {
        let f = |name: &str| fill("(uid={username})", &[("{username}", name)], escape_filter);
        assert_eq!(f("alice"), "(uid=alice)");
        assert_eq!(f("*"), "(uid=\\2a)");
        assert_eq!(f("al*"), "(uid=al\\2a)");
        assert_eq!(f("alice)(uid=*"), "(uid=alice\\29\\28uid=\\2a)");
        assert_eq!(f("a\\b"), "(uid=a\\5cb)");
        assert_eq!(f("a\0b"), "(uid=a\\00b)");
        // Every escaped filter still parses as the one equality it was.
        for name in ["*", "alice)(uid=*", "x)(|(uid=*", "\\", "a\0"] {
            assert!(ldap3::parse_filter(f(name)).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn dn_values_cannot_add_rdns() {
        let d = |name: &str| {
            fill(
                "uid={username},ou=people,dc=example,dc=org",
                &[("{username}", name)],
                escape_dn,
            )
        };
        assert_eq!(d("alice"), "uid=alice,ou=people,dc=example,dc=org");
        assert_eq!(d("a,ou=admins"), "uid=a\\2cou\\3dadmins,ou=people,dc=example,dc=org");
        assert_eq!(d("a+cn=x"), "uid=a\\2bcn\\3dx,ou=people,dc=example,dc=org");
        assert_eq!(d("#x "), "uid=\\23x\\20,ou=people,dc=example,dc=org");
        assert_eq!(d("a\\\"<>;"), "uid=a\\5c\\22\\3c\\3e\\3b,ou=people,dc=example,dc=org");
    }

    #[test]
    fn placeholders_are_replaced_once() {
        let dn = "cn={username}\\2c x,dc=org";
        assert_eq!(
            fill(
                "(|(member={dn})(memberUid={username}))",
                &[("{dn}", dn), ("{username}", "bob")],
                escape_filter
            ),
            "(|(member=cn={username}\\5c2c x,dc=org)(memberUid=bob))"
        );
        assert_eq!(
            fill("{other}{username}", &[("{username}", "a")], escape_filter),
            "{other}a"
        );
    }
}

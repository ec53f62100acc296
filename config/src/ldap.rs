//! `[auth.ldap]`: signing in against an LDAP directory (`authenticator = "ldap"`).
//!
//! Two ways to find the user's entry: bind directly with a DN made from the name
//! (`bind_dn_template`), or search for it first, usually as a service account
//! (`user_search_base`), then bind with the DN found. Groups come from a search, and
//! `allowed_groups` / `admin_groups` decide who may sign in and who is an admin.

use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// The directory: `ldap://host:389` or `ldaps://host:636` (the port defaults to those).
    /// Required.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent; refused with
    /// `ldaps://`, which is TLS from the start. Default: false.
    pub starttls: bool,
    /// PEM file of the CA(s) the directory's certificate must chain to (`ldaps://` or
    /// StartTLS). Default: none, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for one whole sign-in (connect, TLS, binds, searches), seconds; past it the
    /// directory counts as unreachable. Default: 5.
    pub timeout_secs: u64,
    /// Bind directly as the user with this DN, `{username}` replaced by the name given (escaped
    /// for a DN), e.g. `uid={username},ou=people,dc=example,dc=org`. Default: none. Exactly one
    /// of this and `user_search_base` is required.
    pub bind_dn_template: Option<String>,
    /// Search for the user's entry under this base, then bind with the DN found. Default: none.
    pub user_search_base: Option<String>,
    /// The search's filter, `{username}` replaced by the name given (escaped for a filter). The
    /// user must match exactly once. Default: `(uid={username})`.
    pub user_search_filter: String,
    /// Attribute of the user's entry holding the hub user name (so `ALICE` signs in as the
    /// directory's `alice`); when the entry cannot be read, the name given is used. Default: `uid`.
    pub username_attribute: String,
    /// The service account that searches (users and groups), e.g.
    /// `cn=reader,dc=example,dc=org`. Default: none, searches are anonymous (the user's own
    /// binding for groups with `bind_dn_template`).
    pub search_bind_dn: Option<String>,
    /// Its password, inline. Prefer `search_bind_password_env` or `search_bind_password_file`.
    /// Default: none; one of the three is required with `search_bind_dn`.
    pub search_bind_password: Option<String>,
    /// Name of an environment variable holding its password. Default: none.
    pub search_bind_password_env: Option<String>,
    /// File holding its password (a trailing newline is ignored). Default: none.
    pub search_bind_password_file: Option<PathBuf>,
    /// Search for the user's groups under this base. Default: none (users have no groups).
    pub group_search_base: Option<String>,
    /// The groups' filter: `{dn}` is replaced by the user's DN and `{username}` by the user
    /// name, both escaped for a filter. Default:
    /// `(|(member={dn})(uniqueMember={dn})(memberUid={username}))` (groupOfNames,
    /// groupOfUniqueNames and posixGroup).
    pub group_search_filter: String,
    /// Attribute naming a group. Names that are not valid hub names (letters, digits and
    /// `- _ . @ +`) are left out of the user's groups. Default: `cn`.
    pub group_name_attribute: String,
    /// Only members of one of these groups may sign in. Default: empty, anyone who binds.
    pub allowed_groups: Vec<String>,
    /// Members of one of these groups are admins. Default: empty.
    pub admin_groups: Vec<String>,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            starttls: false,
            ca_file: None,
            timeout_secs: 5,
            bind_dn_template: None,
            user_search_base: None,
            user_search_filter: "(uid={username})".to_owned(),
            username_attribute: "uid".to_owned(),
            search_bind_dn: None,
            search_bind_password: None,
            search_bind_password_env: None,
            search_bind_password_file: None,
            group_search_base: None,
            group_search_filter: "(|(member={dn})(uniqueMember={dn})(memberUid={username}))".to_owned(),
            group_name_attribute: "cn".to_owned(),
            allowed_groups: Vec::new(),
            admin_groups: Vec::new(),
        }
    }
}

impl LdapConfig {
    /// Whether the connection is TLS (from the start or upgraded).
    pub fn uses_tls(&self) -> bool {
        self.starttls || self.url.starts_with("ldaps://")
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, value: String, expected: &'static str| ConfigError::Invalid {
            setting,
            value,
            expected,
        };
        let host = self
            .url
            .strip_prefix("ldap://")
            .or_else(|| self.url.strip_prefix("ldaps://"));
        // A host is required: the client would otherwise guess one.
        if host.is_none_or(|rest| rest.is_empty() || rest.starts_with([':', '/'])) {
            return Err(invalid(
                "auth.ldap.url",
                self.url.clone(),
                "ldap://host:389 or ldaps://host:636",
            ));
        }
        if self.starttls && self.url.starts_with("ldaps://") {
            return Err(invalid(
                "auth.ldap.starttls",
                "true".into(),
                "false with an ldaps:// url (ldaps is TLS from the start; StartTLS upgrades ldap://)",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("auth.ldap.timeout_secs", "0".into(), "at least 1"));
        }
        match (&self.bind_dn_template, &self.user_search_base) {
            (Some(template), None) => {
                if !template.contains("{username}") {
                    return Err(invalid(
                        "auth.ldap.bind_dn_template",
                        template.clone(),
                        "a DN with {username}, e.g. uid={username},ou=people,dc=example,dc=org",
                    ));
                }
            }
            (None, Some(_)) => {
                if !self.user_search_filter.contains("{username}") {
                    return Err(invalid(
                        "auth.ldap.user_search_filter",
                        self.user_search_filter.clone(),
                        "a filter with {username}, e.g. (uid={username})",
                    ));
                }
            }
            (template, base) => {
                return Err(invalid(
                    "auth.ldap.bind_dn_template",
                    format!(
                        "{} with user_search_base {}",
                        if template.is_some() { "set" } else { "unset" },
                        if base.is_some() { "set" } else { "unset" }
                    ),
                    "exactly one of bind_dn_template (bind as the user) and user_search_base (search, then bind)",
                ));
            }
        }
        let passwords = [
            self.search_bind_password.is_some(),
            self.search_bind_password_env.is_some(),
            self.search_bind_password_file.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        match (&self.search_bind_dn, passwords) {
            (Some(_), 1) | (None, 0) => {}
            (Some(dn), _) => {
                // No password would be an unauthenticated bind, which "succeeds" as anonymous.
                return Err(invalid(
                    "auth.ldap.search_bind_password",
                    format!("{passwords} given for {dn}"),
                    "exactly one of search_bind_password, search_bind_password_env, search_bind_password_file",
                ));
            }
            (None, _) => {
                return Err(invalid(
                    "auth.ldap.search_bind_dn",
                    "none".into(),
                    "the service account's DN, with a search_bind_password*",
                ));
            }
        }
        if self.username_attribute.is_empty() {
            return Err(invalid(
                "auth.ldap.username_attribute",
                String::new(),
                "an attribute name",
            ));
        }
        if self.group_search_base.is_some() {
            if !self.group_search_filter.contains("{dn}") && !self.group_search_filter.contains("{username}") {
                return Err(invalid(
                    "auth.ldap.group_search_filter",
                    self.group_search_filter.clone(),
                    "a filter with {dn} or {username}, e.g. (member={dn})",
                ));
            }
            if self.group_name_attribute.is_empty() {
                return Err(invalid(
                    "auth.ldap.group_name_attribute",
                    String::new(),
                    "an attribute name",
                ));
            }
        } else {
            for (setting, groups) in [
                ("auth.ldap.allowed_groups", &self.allowed_groups),
                ("auth.ldap.admin_groups", &self.admin_groups),
            ] {
                if !groups.is_empty() {
                    return Err(invalid(
                        setting,
                        groups.join(", "),
                        "auth.ldap.group_search_base too: groups are read from there",
                    ));
                }
            }
        }
        Ok(())
    }
}

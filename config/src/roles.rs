//! Roles (`[[roles]]` in edgehub's configuration), as JupyterHub's `load_roles`: a named set of
//! scopes given to users, to every member of groups, and to services. The common case on a
//! teaching hub: instructors may use and manage their students' servers
//! (`access:servers!group=students`, `servers!group=students`).
//!
//! The hub's own roles keep their meaning and their names: every user holds `user` (their own
//! resources), the admins of `admin_users` (and the API's `admin` flag) hold `admin`, a server's
//! token holds `server`, a token `token`. A `[[roles]]` entry adds to those; it cannot redefine
//! them.

use serde::Deserialize;

use crate::ConfigError;

/// The role names JupyterHub defines, which a configured role may not take.
pub const BUILT_IN: &[&str] = &["admin", "user", "server", "token"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The role's name: 3 to 255 lowercase letters, digits, `-`, `_`, `~` and `.`, starting with
    /// a letter and ending with a letter or digit (JupyterHub's rule); it appears in the `roles`
    /// of its holders' models. Required.
    pub name: String,
    /// What it is for, shown nowhere but kept with it. Default: none.
    #[serde(default)]
    pub description: String,
    /// What its holders may do, as JupyterHub scopes (`access:servers!group=students`,
    /// `read:users`, `admin-ui`…). Default: none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Users who hold it. Default: none.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups whose members hold it, while they are members. Default: none.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Services (`[[services]]` names) whose tokens hold it. Default: none.
    #[serde(default)]
    pub services: Vec<String>,
}

/// Checks every role on its own, then that no two share a name and that the services they name
/// are configured.
pub fn validate(roles: &[RoleConfig], services: &[crate::ServiceConfig]) -> Result<(), ConfigError> {
    let invalid = ConfigError::invalid;
    let mut names = std::collections::BTreeSet::new();
    for role in roles {
        // JupyterHub's rule: `^[a-z][a-z0-9\-_~.]{1,253}[a-z0-9]$`.
        let good_name = (3..=255).contains(&role.name.len())
            && role.name.starts_with(|c: char| c.is_ascii_lowercase())
            && role
                .name
                .ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && role
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '~' | '.'));
        if !good_name {
            return Err(invalid(
                "roles.name",
                role.name.clone(),
                "3 to 255 lowercase letters, digits, '-', '_', '~' and '.', starting with a letter and ending with a letter or digit",
            ));
        }
        if BUILT_IN.contains(&role.name.as_str()) {
            return Err(invalid(
                "roles.name",
                role.name.clone(),
                "a name of its own: admin, user, server and token are the hub's (admins are set by admin_users)",
            ));
        }
        if !names.insert(role.name.as_str()) {
            return Err(invalid("roles.name", role.name.clone(), "a name no other role has"));
        }
        if let Some(scope) = role.scopes.iter().find(|t| *t == "self" || *t == "inherit") {
            return Err(invalid(
                "roles.scopes",
                scope.clone(),
                "scopes with no 'self' or 'inherit': every user already holds their own resources",
            ));
        }
        if let Some(missing) = role.services.iter().find(|s| !services.iter().any(|c| c.name == **s)) {
            return Err(invalid(
                "roles.services",
                missing.clone(),
                "the name of a configured [[services]] entry",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<RoleConfig>, String> {
        #[derive(Deserialize)]
        struct File {
            roles: Vec<RoleConfig>,
            #[serde(default)]
            services: Vec<crate::ServiceConfig>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(&file.roles, &file.services).map_err(|e| e.to_string())?;
        Ok(file.roles)
    }

    #[test]
    fn an_instructor_role_for_a_group() {
        let roles = read(
            r#"
            [[roles]]
            name = "instructor"
            scopes = ["access:servers!group=students", "servers!group=students", "admin-ui"]
            groups = ["instructors"]
            users = ["prof"]
            "#,
        )
        .unwrap();
        assert_eq!(roles[0].groups, ["instructors"]);
        assert!(roles[0].services.is_empty() && roles[0].description.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| read(text).unwrap_err();
        assert!(err("[[roles]]\nname = \"admin\"\nusers = [\"x\"]").contains("admin_users"));
        assert!(err("[[roles]]\nname = \"Grader\"").contains("roles.name"));
        assert!(err("[[roles]]\nname = \"tas\"\n[[roles]]\nname = \"tas\"").contains("roles.name"));
        assert!(err("[[roles]]\nname = \"tas\"\nscopes = [\"self\"]").contains("'self'"));
        assert!(err("[[roles]]\nname = \"tas\"\nservices = [\"ghost\"]").contains("\"ghost\""));
        assert!(err("[[roles]]\nname = \"tas\"\nmembers = [\"x\"]").contains("unknown field"));
        let with_service = "[[services]]\nname = \"grader\"\n[[roles]]\nname = \"tas\"\nservices = [\"grader\"]";
        assert_eq!(read(with_service).unwrap()[0].services, ["grader"]);
    }
}

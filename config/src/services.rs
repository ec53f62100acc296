//! JupyterHub services (`[[services]]` in edgehub's configuration): programs that use the hub's
//! REST API with a token of their own, such as jupyterhub-idle-culler or a dashboard. A service
//! with a `command` is managed: the hub starts it, restarts it when it exits and stops it with
//! the hub. A service with a `url` is served behind the proxy at `{base_url}services/{name}/`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's name: letters, digits, `-`, `_` and `.`; it names the service in the API
    /// and in its URL. Required.
    pub name: String,
    /// The token it calls the API with (`Authorization: token …`). Default: none. A managed
    /// service without one is given a token derived from the hub's session signing key (the
    /// same on every replica and across restarts) in `JUPYTERHUB_API_TOKEN`; an external service
    /// without one cannot call the API.
    #[serde(default)]
    pub api_token: Option<String>,
    /// Whether its token may do everything an admin may. Default: false.
    #[serde(default)]
    pub admin: bool,
    /// What its token may do, as JupyterHub scopes (`list:users`, `delete:servers`,
    /// `read:users!group=x`…); JupyterHub grants them through a role naming the service.
    /// Default: none, which still lets the service ask who it is (`GET /hub/api/user`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Where the service's own web server listens, e.g. `http://127.0.0.1:10101`; the proxy then
    /// sends `{base_url}services/{name}/` there. Default: none, no route.
    #[serde(default)]
    pub url: Option<String>,
    /// Program and arguments of a managed service. Default: none, the service runs elsewhere.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment of a managed service. Default: none.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Who the edge lets through to its `url` (edge authentication, on under `edgehub up`):
    /// `public` (everyone: the service decides, as JupyterHub's services do), `users` (anyone
    /// signed in, named to the service in `X-Forwarded-User`), or `admins` (admins, and members
    /// of `groups`). Default: `public`.
    #[serde(default)]
    pub access: ServiceAccess,
    /// With `access = "admins"`: groups whose members may reach it too. Default: none.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether signed-in users see a link to it (its `url` is needed) in the pages' "Services"
    /// menu. Default: true.
    #[serde(default = "shown")]
    pub display: bool,
}

fn shown() -> bool {
    true
}

/// Who may reach a service's web pages through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAccess {
    #[default]
    Public,
    Users,
    Admins,
}

impl ServiceConfig {
    /// Whether the hub runs it.
    pub fn managed(&self) -> bool {
        !self.command.is_empty()
    }

    /// Its prefix under the base URL, with the trailing slash: `services/{name}/`.
    pub fn prefix_under_base(&self) -> String {
        format!("services/{}/", self.name)
    }
}

/// Checks every service on its own, then that no two share a name or a token.
pub fn validate(services: &[ServiceConfig]) -> Result<(), ConfigError> {
    let invalid = ConfigError::invalid;
    let mut names = std::collections::BTreeSet::new();
    let mut tokens = std::collections::BTreeSet::new();
    for s in services {
        let good_name = !s.name.is_empty()
            && s.name.len() <= 255
            && !s.name.starts_with('.')
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !good_name {
            return Err(invalid(
                "services.name",
                s.name.clone(),
                "letters, digits, '-', '_' and '.', not starting with '.'",
            ));
        }
        // `admin-token` is what `GET /hub/api/user` calls the tokens of `api_tokens`.
        if !names.insert(s.name.as_str()) || s.name == "admin-token" {
            return Err(invalid("services.name", s.name.clone(), "a name no other service has"));
        }
        if let Some(token) = &s.api_token {
            if token.len() < 8 || token.chars().any(char::is_whitespace) {
                // The value is a secret: name the service, not the token.
                return Err(invalid(
                    "services.api_token",
                    format!("(the token of {})", s.name),
                    "at least 8 characters, no whitespace",
                ));
            }
            if !tokens.insert(token.as_str()) {
                return Err(invalid(
                    "services.api_token",
                    format!("(the token of {})", s.name),
                    "a token no other service has",
                ));
            }
        }
        if let Some(url) = &s.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("services.url", url.clone(), "an http:// or https:// URL"));
        }
        if s.command.first().is_some_and(String::is_empty) {
            return Err(invalid(
                "services.command",
                format!("{:?}", s.command),
                "a program and its arguments",
            ));
        }
        if !s.managed() && !s.environment.is_empty() {
            return Err(invalid(
                "services.environment",
                s.name.clone(),
                "a command too: the environment is that of the process the hub starts",
            ));
        }
        if s.access != ServiceAccess::Public && s.url.is_none() {
            return Err(invalid(
                "services.access",
                s.name.clone(),
                "a url too: access says who reaches the service's pages",
            ));
        }
        if !s.groups.is_empty() && s.access != ServiceAccess::Admins {
            return Err(invalid(
                "services.groups",
                s.name.clone(),
                "access = \"admins\": the groups whose members may reach it beside the admins",
            ));
        }
        if let Some(scope) = s.scopes.iter().find(|t| *t == "self" || *t == "inherit") {
            return Err(invalid(
                "services.scopes",
                scope.clone(),
                "scopes of their own: a service has no user whose rights it could take",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Vec<ServiceConfig>, String> {
        #[derive(Deserialize)]
        struct File {
            services: Vec<ServiceConfig>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(&file.services).map_err(|e| e.to_string())?;
        Ok(file.services)
    }

    #[test]
    fn a_managed_culler_and_an_external_dashboard() {
        let services = one(r#"
            [[services]]
            name = "idle-culler"
            command = ["python3", "-m", "jupyterhub_idle_culler", "--timeout=3600"]
            scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]

            [[services]]
            name = "grafana"
            url = "http://127.0.0.1:3000"
            api_token = "0123456789abcdef"
            "#)
        .unwrap();
        assert!(services[0].managed() && !services[1].managed());
        assert_eq!(services[1].prefix_under_base(), "services/grafana/");
        assert!(!services[0].admin && services[0].api_token.is_none());
        assert!(services[1].display, "shown unless said otherwise");
        assert_eq!(services[1].access, ServiceAccess::Public);
    }

    #[test]
    fn mistakes_are_named() {
        let refused = |text: &str, needle: &str| {
            let e = one(text).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        refused("[[services]]\nname = \"a b\"", "services.name");
        refused("[[services]]\nname = \"\"", "services.name");
        refused(
            "[[services]]\nname = \"x\"\n[[services]]\nname = \"x\"",
            "no other service",
        );
        refused("[[services]]\nname = \"x\"\napi_token = \"short\"", "(the token of x)");
        refused(
            "[[services]]\nname = \"x\"\napi_token = \"secret-token\"\n[[services]]\nname = \"y\"\napi_token = \"secret-token\"",
            "no other service has",
        );
        refused("[[services]]\nname = \"x\"\nurl = \"127.0.0.1:80\"", "services.url");
        refused("[[services]]\nname = \"x\"\ncommand = [\"\"]", "services.command");
        refused(
            "[[services]]\nname = \"x\"\nenvironment = { A = \"1\" }",
            "a command too",
        );
        refused("[[services]]\nname = \"x\"\nscopes = [\"self\"]", "services.scopes");
        refused("[[services]]\nname = \"x\"\naccess = \"users\"", "a url too");
        refused(
            "[[services]]\nname = \"x\"\nurl = \"http://h:1\"\naccess = \"users\"\ngroups = [\"g\"]",
            "services.groups",
        );
        refused(
            "[[services]]\nname = \"x\"\nurl = \"http://h:1\"\naccess = \"friends\"",
            "unknown variant",
        );
        refused("[[services]]\nname = \"x\"\nadmn = true", "unknown field");
    }
}

//! Typed configuration for every edgehub binary.
//!
//! `edgeproxy` turns its flags and environment into a [`ProxyConfig`] (and its `--auth-config`
//! TOML file into an [`AuthConfig`]); `edgehub up` reads its TOML file into a [`HubConfig`], with
//! the `[kubernetes]` table in [`kubernetes::KubernetesConfig`], and applies its flags over it.
//! Each then calls `validate`, whose errors name the setting, the bad value and what is accepted.
//! Defaults are stated on each field and in `docs/configuration.md`.

use std::path::PathBuf;
use std::time::Duration;

mod auth;
mod hub;
pub mod kubernetes;
mod ldap;
mod proxy;
mod roles;
mod services;
pub use auth::*;
pub use hub::*;
pub use ldap::LdapConfig;
pub use proxy::*;
pub use roles::RoleConfig;
pub use services::{ServiceAccess, ServiceConfig};

/// A configuration mistake, reported before anything starts listening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {value:?} is not valid: {expected}")]
    Invalid {
        setting: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{setting} is not supported by edgeproxy: {why}")]
    Unsupported { setting: &'static str, why: &'static str },
}

impl ConfigError {
    /// `setting` holds `value`, which is not what it must be (`expected`).
    pub fn invalid(setting: &'static str, value: String, expected: &'static str) -> ConfigError {
        ConfigError::Invalid {
            setting,
            value,
            expected,
        }
    }
}

/// Where a listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// An IP address or host name and a port. The empty host, `*` and `::` mean every
    /// interface, IPv4 and IPv6 (one dual-stack socket), as in configurable-http-proxy.
    Tcp { host: String, port: u16 },
    /// A UNIX-domain socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Listen::Tcp { host, port } if host.is_empty() => write!(f, "*:{port}"),
            Listen::Tcp { host, port } => write!(f, "{host}:{port}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// PEM files for a TLS server listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTls {
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    /// CA bundle used to verify client certificates.
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate. Default: false.
    pub request_cert: bool,
    /// With `request_cert`, refuse clients without a valid one. Default: false.
    pub reject_unauthorized: bool,
}

impl ServerTls {
    /// TLS is on when a key or a certificate is given (CHP's rule).
    pub fn enabled(&self) -> bool {
        self.key.is_some() || self.cert.is_some()
    }
}

/// Settings for TLS connections to `https` targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Client certificate key and chain presented to upstreams (mutual TLS).
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    /// CA bundle that upstream certificates must chain to. Default: the system's roots.
    pub ca: Option<PathBuf>,
    /// Skip upstream certificate verification (`--insecure`). Default: false.
    pub insecure: bool,
}

/// TLS protocol versions a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersions {
    /// TLS 1.2 and 1.3 (default).
    #[default]
    Any,
    Tls12Only,
    Tls13Only,
}

/// Log verbosity, as `--log-level` spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl std::str::FromStr for LogLevel {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "debug" | "trace" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(ConfigError::Invalid {
                setting: "log-level",
                value: s.to_owned(),
                expected: "one of debug, info, warn, error",
            }),
        }
    }
}

/// Parses a millisecond count as configurable-http-proxy's timeout flags take it.
pub fn parse_millis(setting: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ConfigError::Invalid {
            setting,
            value: value.to_owned(),
            expected: "a whole number of milliseconds",
        })
}

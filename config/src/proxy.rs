//! Configuration of `edgeproxy`, the data plane.

use std::path::PathBuf;
use std::time::Duration;

use crate::{AuthConfig, ClientTls, ConfigError, Listen, LogLevel, ServerTls, TlsVersions};

/// Everything `edgeproxy` needs to run. `Default` gives configurable-http-proxy's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Public listener. Default: every interface, port 8000.
    pub public: Listen,
    /// Admin API listener. Default: `localhost`, the public port + 1 (8001).
    pub api: Listen,
    /// Prometheus metrics listener, plain HTTP. Default: none.
    pub metrics: Option<Listen>,
    /// Plain-HTTP listener that redirects to https (needs public TLS). Default: none.
    pub redirect_port: Option<u16>,
    /// Port written into redirect `Location`s. Default: the public port.
    pub redirect_to: Option<u16>,
    pub public_tls: ServerTls,
    pub api_tls: ServerTls,
    pub client_tls: ClientTls,
    /// `--ssl-protocol`: TLS versions on every listener and upstream. Default: 1.2 and 1.3.
    pub tls_versions: TlsVersions,
    /// Route `/` added at start-up. Default: none.
    pub default_target: Option<String>,
    /// Server asked for error pages as `<url>/<code>?url=<original>`. Default: none.
    pub error_target: Option<String>,
    /// Directory of `<code>.html` / `error.html` pages. Default: the built-in pages.
    pub error_path: Option<PathBuf>,
    /// File the process id is written to and removed from at exit. Default: none.
    pub pid_file: Option<PathBuf>,
    /// Add `X-Forwarded-{For,Port,Proto,Host}`. Default: true.
    pub x_forward: bool,
    /// Prepend the target's path to the forwarded path. Default: true.
    pub prepend_path: bool,
    /// Keep the matched route prefix in the forwarded path. Default: true.
    pub include_prefix: bool,
    /// Rewrite the host:port of redirect `Location`s to the request's host. Default: false.
    pub auto_rewrite: bool,
    /// Send the target's host:port as `Host`. Default: false.
    pub change_origin: bool,
    /// Rewrite the scheme of redirect `Location`s. Default: none.
    pub protocol_rewrite: Option<String>,
    /// Extra headers sent upstream on every request, over the client's. Default: none.
    pub custom_headers: Vec<(String, String)>,
    /// Route by `Host` as the first path segment. Default: false.
    pub host_routing: bool,
    pub log_level: LogLevel,
    /// Client inactivity limit for proxied HTTP: the connection is closed. Default: none.
    pub timeout: Option<Duration>,
    /// Upstream inactivity limit for proxied HTTP: 503. Default: none.
    pub proxy_timeout: Option<Duration>,
    /// Idle time allowed between requests on a public keep-alive connection, and for a client to
    /// send a request's headers. Default: 5 s.
    pub keep_alive_timeout: Duration,
    /// Admin API token (`CONFIGPROXY_AUTH_TOKEN`). Default: none, the API is open.
    pub auth_token: Option<String>,
    /// Worker threads. Default: the number of CPUs.
    pub workers: Option<usize>,
    /// Open client connections across all public listeners; more wait in the kernel's
    /// backlog. Default: 50,000.
    pub max_connections: usize,
    /// Time allowed to connect to an upstream. Default: 10 s.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per upstream and worker. Default: 1,024 (a burst's worth,
    /// so the requests after it reuse them instead of opening new ones).
    pub upstream_idle_per_host: usize,
    /// How long an idle upstream connection is kept. Default: 60 s.
    pub upstream_idle_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may finish. Default: 10 s.
    pub shutdown_grace: Duration,
    /// Edge authentication (`--auth-config`). Default: none, every route public as in CHP.
    pub auth: Option<AuthConfig>,
    /// Where the route table lives (`--storage-backend`). Default: in this process's memory.
    pub storage: RouteStorage,
}

/// Where the route table lives (docs/route-store.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RouteStorage {
    /// In this process only, as configurable-http-proxy: a restarted proxy starts empty and the
    /// hub fills it again.
    #[default]
    Memory,
    /// Shared by every replica through Redis: written there atomically, followed through a
    /// Redis Stream, loaded whole at start.
    Redis(RedisRouteStore),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisRouteStore {
    /// `redis://host:port/db`, `rediss://…` or `unix:///path/redis.sock` (`?db=N`).
    pub url: String,
    /// Prefix of every key the store uses, so several proxy fleets can share one Redis.
    /// Default: `edgeproxy:`.
    pub prefix: String,
}

impl RedisRouteStore {
    pub const DEFAULT_PREFIX: &'static str = "edgeproxy:";

    /// The store at `url` with the default key prefix.
    pub fn at(url: impl Into<String>) -> RedisRouteStore {
        RedisRouteStore {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl RouteStorage {
    /// From the command line's (or the environment's) backend name, URL and prefix: `memory`
    /// (the default) or `redis`, which needs a URL; a URL alone means `redis`.
    pub fn from_parts(
        backend: Option<&str>,
        url: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<RouteStorage, ConfigError> {
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        match (backend.map(str::trim), url) {
            (None | Some("memory"), None) => Ok(RouteStorage::Memory),
            (Some("memory"), Some(_)) => Err(ConfigError::Conflict(
                "--storage-url is for --storage-backend redis; the memory backend keeps routes in this process",
            )),
            (None | Some("redis"), Some(url)) => {
                if !["redis://", "rediss://", "unix://", "redis+unix://"]
                    .iter()
                    .any(|s| url.starts_with(s))
                {
                    return Err(ConfigError::Invalid {
                        setting: "storage-url",
                        value: url.to_owned(),
                        expected: "a redis://, rediss:// or unix:// URL",
                    });
                }
                Ok(RouteStorage::Redis(RedisRouteStore {
                    url: url.to_owned(),
                    prefix: prefix.unwrap_or(RedisRouteStore::DEFAULT_PREFIX).to_owned(),
                }))
            }
            (Some("redis"), None) => Err(ConfigError::Conflict(
                "--storage-backend redis needs --storage-url (or EDGEPROXY_STORAGE_URL), e.g. redis://127.0.0.1:6379/0",
            )),
            (Some(other), _) => Err(ConfigError::Invalid {
                setting: "storage-backend",
                value: other.to_owned(),
                expected: "memory or redis (edgeproxy cannot load configurable-http-proxy's JavaScript storage modules)",
            }),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            public: Listen::Tcp {
                host: String::new(),
                port: 8000,
            },
            api: Listen::Tcp {
                host: "localhost".to_owned(),
                port: 8001,
            },
            metrics: None,
            redirect_port: None,
            redirect_to: None,
            public_tls: ServerTls::default(),
            api_tls: ServerTls::default(),
            client_tls: ClientTls::default(),
            tls_versions: TlsVersions::Any,
            default_target: None,
            error_target: None,
            error_path: None,
            pid_file: None,
            x_forward: true,
            prepend_path: true,
            include_prefix: true,
            auto_rewrite: false,
            change_origin: false,
            protocol_rewrite: None,
            custom_headers: Vec::new(),
            host_routing: false,
            log_level: LogLevel::Info,
            timeout: None,
            proxy_timeout: None,
            keep_alive_timeout: Duration::from_secs(5),
            auth_token: None,
            workers: None,
            max_connections: 50_000,
            connect_timeout: Duration::from_secs(10),
            upstream_idle_per_host: 1024,
            upstream_idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            auth: None,
            storage: RouteStorage::Memory,
        }
    }
}

impl ProxyConfig {
    /// Checks the combinations configurable-http-proxy refuses, with its messages.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.error_target.is_some() && self.error_path.is_some() {
            return Err(ConfigError::Conflict(
                "Cannot specify both error-target and error-path. Pick one.",
            ));
        }
        if self.redirect_port.is_some() && !self.public_tls.enabled() {
            return Err(ConfigError::Conflict(
                "HTTPS redirection specified but certificates not provided.",
            ));
        }
        for (setting, tls) in [("ssl", &self.public_tls), ("api-ssl", &self.api_tls)] {
            if tls.enabled() && (tls.key.is_none() || tls.cert.is_none()) {
                return Err(ConfigError::Invalid {
                    setting,
                    value: "only one of key and cert".to_owned(),
                    expected: "both --<listener>-ssl-key and --<listener>-ssl-cert",
                });
            }
        }
        if self.client_tls.key.is_some() != self.client_tls.cert.is_some() {
            return Err(ConfigError::Invalid {
                setting: "client-ssl",
                value: "only one of key and cert".to_owned(),
                expected: "both --client-ssl-key and --client-ssl-cert, or neither",
            });
        }
        if self.workers == Some(0) {
            return Err(ConfigError::Invalid {
                setting: "workers",
                value: "0".to_owned(),
                expected: "at least 1",
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                setting: "max-connections",
                value: "0".to_owned(),
                expected: "at least 1",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_chps() {
        let c = ProxyConfig::default();
        assert_eq!(
            c.public,
            Listen::Tcp {
                host: String::new(),
                port: 8000
            }
        );
        assert_eq!(
            c.api,
            Listen::Tcp {
                host: "localhost".into(),
                port: 8001
            }
        );
        assert!(c.x_forward && c.prepend_path && c.include_prefix);
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(5));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn refuses_chps_conflicts_with_its_messages() {
        let c = ProxyConfig {
            error_target: Some("http://x".into()),
            error_path: Some("/tmp".into()),
            ..Default::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "Cannot specify both error-target and error-path. Pick one."
        );
        let c = ProxyConfig {
            redirect_port: Some(80),
            ..Default::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "HTTPS redirection specified but certificates not provided."
        );
    }

    #[test]
    fn storage_backends_parse() {
        assert_eq!(RouteStorage::from_parts(None, None, None), Ok(RouteStorage::Memory));
        assert_eq!(
            RouteStorage::from_parts(Some("memory"), None, None),
            Ok(RouteStorage::Memory)
        );
        let url = "redis://127.0.0.1:6379/2";
        let redis = RouteStorage::Redis(RedisRouteStore::at(url));
        assert_eq!(
            RouteStorage::from_parts(Some("redis"), Some(url), None),
            Ok(redis.clone())
        );
        assert_eq!(
            RouteStorage::from_parts(None, Some(url), None),
            Ok(redis),
            "a URL alone means redis"
        );
        let err = |b, u| RouteStorage::from_parts(b, u, None).unwrap_err().to_string();
        assert!(err(Some("redis"), None).contains("needs --storage-url"));
        assert!(err(Some("configurable-http-proxy-redis-backend"), Some(url)).contains("memory or redis"));
        assert!(err(Some("redis"), Some("http://x")).contains("redis://"));
        assert!(err(Some("memory"), Some(url)).contains("--storage-url"));
    }

    #[test]
    fn log_levels_parse_case_insensitively() {
        assert_eq!("WARN".parse::<LogLevel>().unwrap(), LogLevel::Warn);
        let err = "loud".parse::<LogLevel>().unwrap_err().to_string();
        assert!(
            err.contains("log-level") && err.contains("loud") && err.contains("debug, info"),
            "{err}"
        );
    }
}

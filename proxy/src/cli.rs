//! The command line: configurable-http-proxy 5.x's flags with the same names, defaults and
//! meanings (docs/configuration.md), plus a few of edgeproxy's own, turned into a `ProxyConfig`.

use std::path::PathBuf;

use clap::Parser;
use config::{
    ClientTls, ConfigError, Listen, LogLevel, ProxyConfig, RouteStorage, ServerTls, TlsVersions, parse_millis,
};

#[derive(Parser, Debug)]
#[command(
    name = "edgeproxy",
    version,
    about = "A fast, drop-in replacement for configurable-http-proxy, with a hot-swappable route table.",
    after_help = "The admin API token is read from the environment variable CONFIGPROXY_AUTH_TOKEN."
)]
pub struct Cli {
    /// Public-facing IP of the proxy ('' or '*' for every interface)
    #[arg(long, value_name = "ip-address", conflicts_with = "socket")]
    ip: Option<String>,
    /// Public-facing port of the proxy; 0 for any free one [default: 8000]
    #[arg(long, value_name = "n", conflicts_with = "socket")]
    port: Option<String>,
    /// Path to a UNIX domain socket for the proxy, instead of ip/port
    #[arg(long, value_name = "path")]
    socket: Option<PathBuf>,
    /// SSL key to use, if any
    #[arg(long, value_name = "keyfile")]
    ssl_key: Option<PathBuf>,
    /// SSL certificate to use, if any
    #[arg(long, value_name = "certfile")]
    ssl_cert: Option<PathBuf>,
    /// SSL certificate authority, to verify client certificates
    #[arg(long, value_name = "ca-file")]
    ssl_ca: Option<PathBuf>,
    /// Request SSL certificates from clients
    #[arg(long)]
    ssl_request_cert: bool,
    /// Reject clients without a valid certificate (with --ssl-request-cert)
    #[arg(long)]
    ssl_reject_unauthorized: bool,
    /// Pin the TLS version: TLSv1_2 or TLSv1_3 (older versions are refused)
    #[arg(long, value_name = "ssl-protocol")]
    ssl_protocol: Option<String>,
    /// Accepted for compatibility and ignored: rustls offers only modern AEAD suites
    #[arg(long, value_name = "ciphers")]
    ssl_ciphers: Option<String>,
    /// Accepted for compatibility and ignored: RC4 is never offered
    #[arg(long)]
    ssl_allow_rc4: bool,
    /// Accepted for compatibility and ignored: only ECDHE key exchange is offered
    #[arg(long, value_name = "dhparam-file")]
    ssl_dhparam: Option<PathBuf>,
    /// Inward-facing IP for the API [default: localhost]
    #[arg(long, value_name = "ip", conflicts_with = "api_socket")]
    api_ip: Option<String>,
    /// Inward-facing port for the API; 0 for any free one [default: port + 1]
    #[arg(long, value_name = "n", conflicts_with = "api_socket")]
    api_port: Option<String>,
    /// Path to a UNIX domain socket for the API, instead of ip/port
    #[arg(long, value_name = "path")]
    api_socket: Option<PathBuf>,
    /// SSL key for the API
    #[arg(long, value_name = "keyfile")]
    api_ssl_key: Option<PathBuf>,
    /// SSL certificate for the API
    #[arg(long, value_name = "certfile")]
    api_ssl_cert: Option<PathBuf>,
    /// SSL certificate authority for API client certificates
    #[arg(long, value_name = "ca-file")]
    api_ssl_ca: Option<PathBuf>,
    /// Request SSL certificates from API clients
    #[arg(long)]
    api_ssl_request_cert: bool,
    /// Reject API clients without a valid certificate
    #[arg(long)]
    api_ssl_reject_unauthorized: bool,
    /// SSL key presented to https targets
    #[arg(long, value_name = "keyfile")]
    client_ssl_key: Option<PathBuf>,
    /// SSL certificate presented to https targets
    #[arg(long, value_name = "certfile")]
    client_ssl_cert: Option<PathBuf>,
    /// SSL certificate authority that https targets must chain to
    #[arg(long, value_name = "ca-file")]
    client_ssl_ca: Option<PathBuf>,
    /// Accepted for compatibility; has no effect on outgoing connections (as in CHP)
    #[arg(long)]
    client_ssl_request_cert: bool,
    /// Accepted for compatibility; has no effect on outgoing connections (as in CHP)
    #[arg(long)]
    client_ssl_reject_unauthorized: bool,
    /// Default proxy target (proto://host[:port]), added as route /
    #[arg(long, value_name = "host")]
    default_target: Option<String>,
    /// Alternate server for handling proxy errors (proto://host[:port])
    #[arg(long, value_name = "host")]
    error_target: Option<String>,
    /// Alternate error page directory (<code>.html, error.html)
    #[arg(long, value_name = "path")]
    error_path: Option<PathBuf>,
    /// Redirect HTTP requests on this port to the HTTPS port
    #[arg(long, value_name = "redirect-port")]
    redirect_port: Option<u16>,
    /// Redirect HTTP requests to this port [default: the proxy port]
    #[arg(long, value_name = "port")]
    redirect_to: Option<u16>,
    /// Write our PID to a file
    #[arg(long, value_name = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Don't add 'X-forward-' headers to proxied requests
    #[arg(long)]
    no_x_forward: bool,
    /// Avoid prepending target paths to proxied requests
    #[arg(long)]
    no_prepend_path: bool,
    /// Don't include the routing prefix in proxied requests
    #[arg(long)]
    no_include_prefix: bool,
    /// Rewrite the Location header host/port in redirect responses
    #[arg(long)]
    auto_rewrite: bool,
    /// Change the Host header to the target URL's host
    #[arg(long)]
    change_origin: bool,
    /// Rewrite the Location header protocol in redirect responses to the specified protocol
    #[arg(long, value_name = "proto")]
    protocol_rewrite: Option<String>,
    /// Additional header to add to proxied requests, "key: value"; repeatable
    #[arg(long, value_name = "header")]
    custom_header: Vec<String>,
    /// Disable certificate verification of https targets (CHP ignores this flag; we honour it)
    #[arg(long)]
    insecure: bool,
    /// Use host routing (host as first level of path)
    #[arg(long)]
    host_routing: bool,
    /// IP for the metrics server ('' for every interface)
    #[arg(long, value_name = "ip", conflicts_with = "metrics_socket")]
    metrics_ip: Option<String>,
    /// Port of the metrics server; metrics are off without it
    #[arg(long, value_name = "n", conflicts_with = "metrics_socket")]
    metrics_port: Option<u16>,
    /// Path to a UNIX domain socket for the metrics server
    #[arg(long, value_name = "path")]
    metrics_socket: Option<PathBuf>,
    /// Log level (debug, info, warn, error)
    #[arg(long, value_name = "loglevel", default_value = "info")]
    log_level: String,
    /// Timeout (in millis) when a client is inactive: the connection is closed
    #[arg(long, value_name = "n")]
    timeout: Option<String>,
    /// Timeout (in millis) when an upstream is inactive: 503
    #[arg(long, value_name = "n")]
    proxy_timeout: Option<String>,
    /// Where the route table lives: memory (this process, the default) or redis (shared by every
    /// replica, needs --storage-url)
    #[arg(long, value_name = "storage-backend", env = "EDGEPROXY_STORAGE_BACKEND")]
    storage_backend: Option<String>,
    /// The Redis of the route store: redis://host:port/db, rediss://… or unix:///path; alone, it
    /// selects the redis backend
    #[arg(long, value_name = "url", env = "EDGEPROXY_STORAGE_URL")]
    storage_url: Option<String>,
    /// Prefix of the route store's Redis keys [default: edgeproxy:]
    #[arg(long, value_name = "prefix", env = "EDGEPROXY_STORAGE_PREFIX")]
    storage_prefix: Option<String>,
    /// Keep-alive idle timeout (in millis) of the public listener [default: 5000]
    #[arg(long, value_name = "n")]
    keep_alive_timeout: Option<String>,

    // edgeproxy's own flags.
    /// Worker threads [default: the number of CPUs]
    #[arg(long, value_name = "n")]
    workers: Option<usize>,
    /// Maximum open client connections; more wait in the listen backlog [default: 50000]
    #[arg(long, value_name = "n")]
    max_connections: Option<usize>,
    /// Timeout (in millis) for connecting to an upstream [default: 10000]
    #[arg(long, value_name = "n")]
    connect_timeout: Option<String>,
    /// How long (in millis) in-flight requests may finish after SIGTERM [default: 10000]
    #[arg(long, value_name = "n")]
    shutdown_timeout: Option<String>,
    /// Edge authentication: TOML file of issuers, token sources, sessions (docs/auth.md) [default: off]
    #[arg(long, value_name = "file", env = "EDGEPROXY_AUTH_CONFIG")]
    auth_config: Option<PathBuf>,
}

/// Warnings to log once logging is up (flags accepted but meaningless here).
#[derive(Debug)]
pub struct Parsed {
    pub config: ProxyConfig,
    pub warnings: Vec<String>,
}

/// CHP's `parseInt(port) || default`: anything unparseable means the default. Unlike CHP, `0`
/// is port 0, any free port, reported in the start-up lines (`Proxying http://…`): CHP turns it
/// into the default, which no caller can mean (the caller then expects the proxy on port 0).
fn port_or(value: Option<&str>, default: u16) -> u16 {
    value.and_then(|v| v.trim().parse::<u16>().ok()).unwrap_or(default)
}

fn ip(value: Option<String>, default: &str, warnings: &mut Vec<String>) -> String {
    match value {
        Some(v) if v == "*" => {
            warnings.push("Interpreting ip='*' as all-interfaces. Preferred usage is ''.".to_owned());
            String::new()
        }
        Some(v) => v,
        None => default.to_owned(),
    }
}

pub fn custom_header(raw: &str) -> Result<(String, String), String> {
    match raw.find(':') {
        Some(i) if i > 0 => Ok((raw[..i].trim().to_owned(), raw[i + 1..].trim().to_owned())),
        _ => Err(format!("A colon was expected in custom header: {raw}")),
    }
}

impl Cli {
    pub fn into_config(self, auth_token: Option<String>) -> Result<Parsed, String> {
        let err = |e: ConfigError| e.to_string();
        let mut warnings = Vec::new();
        let storage = RouteStorage::from_parts(
            self.storage_backend.as_deref(),
            self.storage_url.as_deref(),
            self.storage_prefix.as_deref(),
        )
        .map_err(err)?;
        if self.ssl_ciphers.is_some() || self.ssl_allow_rc4 || self.ssl_dhparam.is_some() {
            warnings.push("--ssl-ciphers, --ssl-allow-rc4 and --ssl-dhparam are ignored: rustls offers only modern AEAD suites with ECDHE".to_owned());
        }
        let tls_versions = match self.ssl_protocol.as_deref() {
            None | Some("TLS") | Some("SSLv23") => TlsVersions::Any,
            Some("TLSv1_2") => TlsVersions::Tls12Only,
            Some("TLSv1_3") => TlsVersions::Tls13Only,
            Some(other) => {
                return Err(err(ConfigError::Invalid {
                    setting: "--ssl-protocol",
                    value: other.to_owned(),
                    expected: "TLSv1_2 or TLSv1_3 (older protocols are not supported)",
                }));
            }
        };
        let port = port_or(self.port.as_deref(), 8000);
        let public = match self.socket {
            Some(path) => Listen::Unix(path),
            None => Listen::Tcp {
                host: ip(self.ip, "", &mut warnings),
                port,
            },
        };
        let api_default_port = match &public {
            Listen::Unix(_) => 8001,
            // "port + 1" of a port the system has not chosen yet: any free one as well.
            Listen::Tcp { port: 0, .. } => 0,
            Listen::Tcp { .. } => port.wrapping_add(1),
        };
        let api = match self.api_socket {
            Some(path) => Listen::Unix(path),
            None => Listen::Tcp {
                host: ip(self.api_ip, "localhost", &mut warnings),
                port: port_or(self.api_port.as_deref(), api_default_port),
            },
        };
        let metrics = match (self.metrics_socket, self.metrics_port) {
            (Some(path), _) => Some(Listen::Unix(path)),
            (None, Some(port)) => Some(Listen::Tcp {
                host: ip(self.metrics_ip, "", &mut warnings),
                port,
            }),
            (None, None) => None,
        };
        let custom_headers = self
            .custom_header
            .iter()
            .map(|h| custom_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let millis = |setting, v: Option<String>| v.map(|v| parse_millis(setting, &v)).transpose().map_err(err);
        let defaults = ProxyConfig::default();
        let config = ProxyConfig {
            public,
            api,
            metrics,
            redirect_port: self.redirect_port,
            redirect_to: self.redirect_to,
            public_tls: ServerTls {
                key: self.ssl_key,
                cert: self.ssl_cert,
                ca: self.ssl_ca,
                request_cert: self.ssl_request_cert,
                reject_unauthorized: self.ssl_reject_unauthorized,
            },
            api_tls: ServerTls {
                key: self.api_ssl_key,
                cert: self.api_ssl_cert,
                ca: self.api_ssl_ca,
                request_cert: self.api_ssl_request_cert,
                reject_unauthorized: self.api_ssl_reject_unauthorized,
            },
            client_tls: ClientTls {
                key: self.client_ssl_key,
                cert: self.client_ssl_cert,
                ca: self.client_ssl_ca,
                insecure: self.insecure,
            },
            tls_versions,
            default_target: self.default_target,
            error_target: self.error_target,
            error_path: self.error_path,
            pid_file: self.pid_file,
            x_forward: !self.no_x_forward,
            prepend_path: !self.no_prepend_path,
            include_prefix: !self.no_include_prefix,
            auto_rewrite: self.auto_rewrite,
            change_origin: self.change_origin,
            protocol_rewrite: self.protocol_rewrite,
            custom_headers,
            host_routing: self.host_routing,
            log_level: self.log_level.parse::<LogLevel>().map_err(err)?,
            timeout: millis("--timeout", self.timeout)?,
            proxy_timeout: millis("--proxy-timeout", self.proxy_timeout)?,
            keep_alive_timeout: millis("--keep-alive-timeout", self.keep_alive_timeout)?
                .unwrap_or(defaults.keep_alive_timeout),
            auth_token,
            workers: self.workers,
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            connect_timeout: millis("--connect-timeout", self.connect_timeout)?.unwrap_or(defaults.connect_timeout),
            shutdown_grace: millis("--shutdown-timeout", self.shutdown_timeout)?.unwrap_or(defaults.shutdown_grace),
            auth: match &self.auth_config {
                Some(path) => Some(config::AuthConfig::from_file(path).map_err(|e| format!("--auth-config: {e}"))?),
                None => None,
            },
            storage,
            ..defaults
        };
        config.validate().map_err(err)?;
        if let Some(session) = config.auth.as_ref().and_then(|a| a.session.as_ref())
            && session.in_process()
        {
            // Only a program embedding the proxy can write that store; run alone, every request
            // to a checked route would be refused.
            return Err(format!(
                "--auth-config: {}",
                err(ConfigError::Unsupported {
                    setting: "auth.session.redis_url = \"memory:\"",
                    why: "the in-process session store is for a program embedding the proxy (edgehub up); give edgeproxy a redis:// or unix:// URL",
                })
            ));
        }
        if config.auth_token.is_none() {
            warnings.push("REST API is not authenticated.".to_owned());
        }
        Ok(Parsed { config, warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("edgeproxy").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.into_config(Some("t".into()))
    }

    #[test]
    fn custom_headers_split_at_the_first_colon_and_trim() {
        assert_eq!(custom_header("k1: v1"), Ok(("k1".into(), "v1".into())));
        assert_eq!(custom_header(" k2 : host:123 "), Ok(("k2".into(), "host:123".into())));
        assert!(custom_header("invalid").unwrap_err().contains("colon was expected"));
        assert!(custom_header(":v").is_err());
    }

    #[test]
    fn ports_default_like_chp() {
        let c = parse(&[]).unwrap().config;
        assert_eq!(
            c.public,
            Listen::Tcp {
                host: "".into(),
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
        let c = parse(&["--port", "9000", "--ip", "*"]).unwrap();
        assert_eq!(
            c.config.public,
            Listen::Tcp {
                host: "".into(),
                port: 9000
            }
        );
        assert_eq!(
            c.config.api,
            Listen::Tcp {
                host: "localhost".into(),
                port: 9001
            }
        );
        assert!(c.warnings.iter().any(|w| w.contains("all-interfaces")));
        let c = parse(&["--port", "abc"]).unwrap().config;
        assert_eq!(
            c.public,
            Listen::Tcp {
                host: "".into(),
                port: 8000
            }
        );
        // Port 0 is any free port (CHP reads it as 8000), for the API too unless given.
        let c = parse(&["--port", "0"]).unwrap().config;
        assert_eq!(
            (c.public, c.api),
            (
                Listen::Tcp {
                    host: "".into(),
                    port: 0
                },
                Listen::Tcp {
                    host: "localhost".into(),
                    port: 0
                }
            )
        );
        let c = parse(&["--port", "0", "--api-port", "9001"]).unwrap().config;
        assert_eq!(
            c.api,
            Listen::Tcp {
                host: "localhost".into(),
                port: 9001
            }
        );
        let c = parse(&["--socket", "/tmp/p.sock"]).unwrap().config;
        assert_eq!(
            c.api,
            Listen::Tcp {
                host: "localhost".into(),
                port: 8001
            }
        );
    }

    #[test]
    fn jupyterhubs_arguments_parse() {
        let args = [
            "--ip",
            "",
            "--port",
            "8000",
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            "8001",
            "--error-target",
            "http://127.0.0.1:8081/hub/error",
            "--log-level",
            "info",
        ];
        let c = parse(&args).unwrap().config;
        assert_eq!(
            c.api,
            Listen::Tcp {
                host: "127.0.0.1".into(),
                port: 8001
            }
        );
        assert_eq!(c.error_target.as_deref(), Some("http://127.0.0.1:8081/hub/error"));
    }

    #[test]
    fn refuses_what_cannot_work() {
        assert!(
            parse(&["--storage-backend", "x"])
                .unwrap_err()
                .contains("memory or redis")
        );
        assert!(
            parse(&["--storage-backend", "redis"])
                .unwrap_err()
                .contains("needs --storage-url")
        );
        assert!(parse(&["--ssl-protocol", "SSLv3"]).unwrap_err().contains("TLSv1_2"));
        assert!(
            parse(&["--redirect-port", "9"])
                .unwrap_err()
                .contains("HTTPS redirection")
        );
        assert!(parse(&["--socket", "/x", "--port", "1"]).is_err());
        assert!(parse(&["--log-level", "loud"]).unwrap_err().contains("log-level"));
        assert!(parse(&["--timeout", "soon"]).unwrap_err().contains("--timeout"));
        assert!(parse(&["--bogus"]).is_err());
    }
}

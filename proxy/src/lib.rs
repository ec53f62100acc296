//! edgeproxy: the data plane of edgehub, and a drop-in replacement for configurable-http-proxy.
//!
//! The request path is [`pipeline`]; the routing table is [`route_table`]; the admin API is
//! [`admin_api`]; [`server`] binds and serves the listeners. [`Proxy`] holds what they share and
//! is what an embedding program (the hub's `edgehub up`) creates and runs.

pub mod activity;
pub mod admin_api;
pub mod auth;
pub mod body;
pub mod cli;
pub mod client_head;
pub mod client_io;
pub mod error_page;
pub mod forward;
pub mod h1_server;
pub mod headers;
pub mod http1;
pub mod listener;
pub mod metrics;
pub mod open_files;
pub mod pipeline;
pub mod recycle;
pub mod redirect;
pub mod redis_link;
pub mod request_path;
pub mod route_policy;
pub mod route_store;
pub mod route_table;
pub mod server;
pub mod target;
pub mod timestamp;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod workers;
pub mod ws_tunnel;

use std::sync::Arc;
use std::time::Duration;

use config::ProxyConfig;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::auth::{AuthSetupError, EdgeAuth};
use crate::error_page::ErrorPages;
use crate::metrics::Metrics;
use crate::route_store::{Change, RouteStore};
use crate::route_table::Routes;
use crate::upstream::Upstream;

/// Why the proxy could not start. The binary prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    // Not a `source`: the reason is in the message already, and a report that follows the
    // chain (anyhow's) would print it twice.
    #[error("cannot bind the {role} listener on {listen}: {error}")]
    Bind {
        role: server::Role,
        listen: String,
        error: std::io::Error,
    },
    #[error("cannot read --error-path: {0}")]
    ErrorPath(std::io::Error),
    #[error("--error-target: {0}")]
    ErrorTarget(target::TargetError),
    #[error("custom header {0:?} is not a valid HTTP header")]
    CustomHeader(String),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error("cannot write the pid file {0}: {1}")]
    PidFile(String, std::io::Error),
    #[error("--storage-url: {0}")]
    StorageUrl(redis::RedisError),
}

/// Request-path settings, derived once from the configuration.
pub struct Settings {
    pub x_forward: bool,
    pub prepend_path: bool,
    pub include_prefix: bool,
    pub host_routing: bool,
    pub change_origin: bool,
    pub auto_rewrite: bool,
    pub protocol_rewrite: Option<String>,
    pub custom_headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Option<Duration>,
    pub proxy_timeout: Option<Duration>,
    pub keep_alive_timeout: Duration,
    pub redirect: Option<RedirectSettings>,
}

pub struct RedirectSettings {
    /// The proxy's own `--port`.
    pub https_port: u16,
    pub to: Option<u16>,
}

/// Everything the listeners share: settings, the routing table, the upstream pool, error pages,
/// metrics and the admin token.
pub struct Proxy {
    pub settings: Settings,
    /// The table requests are routed by; shared with the store, which applies changes to it.
    pub routes: Arc<Routes>,
    /// Where changes to the table are made: this process, or Redis for every replica.
    pub store: RouteStore,
    /// `--default-target`, written to the store once it is loaded.
    default_route: Option<Change>,
    pub upstream: Upstream,
    pub errors: ErrorPages,
    pub metrics: Metrics,
    pub auth_token: Option<String>,
    /// Edge authentication, when `--auth-config` is given; every route is public otherwise.
    pub auth: Option<Arc<EdgeAuth>>,
}

impl Proxy {
    /// Validates `config` and prepares everything but the listeners (see [`server::bind`]).
    pub fn new(config: &ProxyConfig) -> Result<Arc<Proxy>, StartError> {
        config.validate()?;
        let custom_headers = config
            .custom_headers
            .iter()
            .map(|(k, v)| {
                let name =
                    HeaderName::from_bytes(k.as_bytes()).map_err(|_| StartError::CustomHeader(format!("{k}: {v}")))?;
                let value = HeaderValue::from_str(v).map_err(|_| StartError::CustomHeader(format!("{k}: {v}")))?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        let errors = match (&config.error_target, &config.error_path) {
            (Some(url), _) => ErrorPages::from_target(url).map_err(StartError::ErrorTarget)?,
            (None, Some(dir)) => ErrorPages::from_dir(dir).map_err(StartError::ErrorPath)?,
            (None, None) => ErrorPages::builtin(),
        };
        let public_port = match &config.public {
            config::Listen::Tcp { port, .. } => *port,
            config::Listen::Unix(_) => 443,
        };
        let metrics = if config.metrics.is_some() {
            Metrics::enabled()
        } else {
            Metrics::disabled()
        };
        let client_tls = tls::client_config(&config.client_tls, config.tls_versions)?;
        let auth = match &config.auth {
            Some(auth) => {
                auth.validate()?;
                let fetcher = Upstream::new(client_tls.clone(), config.connect_timeout, 1, Duration::from_secs(60));
                Some(Arc::new(EdgeAuth::new(auth, &metrics, fetcher)?))
            }
            None => None,
        };
        let routes = Arc::new(Routes::default());
        let store = RouteStore::new(&config.storage, routes.clone(), &metrics).map_err(StartError::StorageUrl)?;
        let default_route = config.default_target.as_ref().map(|target| {
            let mut data = Map::new();
            data.insert("target".to_owned(), Value::String(target.clone()));
            Change::Set {
                key: "/".to_owned(),
                data,
            }
        });
        let mut proxy = Proxy {
            settings: Settings {
                x_forward: config.x_forward,
                prepend_path: config.prepend_path,
                include_prefix: config.include_prefix,
                host_routing: config.host_routing,
                change_origin: config.change_origin,
                auto_rewrite: config.auto_rewrite,
                protocol_rewrite: config.protocol_rewrite.clone(),
                custom_headers,
                timeout: config.timeout,
                proxy_timeout: config.proxy_timeout,
                keep_alive_timeout: config.keep_alive_timeout,
                redirect: config.redirect_port.map(|_| RedirectSettings {
                    https_port: public_port,
                    to: config.redirect_to,
                }),
            },
            routes,
            store,
            default_route: None,
            upstream: Upstream::new(
                client_tls,
                config.connect_timeout,
                config.upstream_idle_per_host,
                config.upstream_idle_timeout,
            ),
            errors,
            metrics,
            auth_token: config.auth_token.clone().filter(|t| !t.is_empty()),
            auth,
        };
        match (&proxy.store, default_route, &config.default_target) {
            // The memory table is the store: the route is there before anything is served.
            (RouteStore::Memory, Some(route), Some(target)) => {
                proxy.routes.update(|t| route.apply(t, timestamp::now_ms()));
                proxy.metrics.routes.set(1.0);
                tracing::info!("Route added / -> {target}");
            }
            (_, route, _) => proxy.default_route = route,
        }
        Ok(Arc::new(proxy))
    }

    /// Starts the store's background work (for Redis: load, follow, share activity). Called
    /// by [`server::Bound::serve`] before the listeners accept.
    pub fn start_store(&self) {
        self.store.start(self.default_route.clone());
    }
}

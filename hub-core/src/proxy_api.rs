//! The hub's side of the proxy's admin API (configurable-http-proxy's REST API, which edgeproxy
//! speaks too): add, delete and list routes. The same client drives the embedded proxy of
//! `edgehub up`, an external edgeproxy, or a stock configurable-http-proxy.
//!
//! Routes are keyed as CHP keys them: the routespec without its trailing `/` (`/user/alice`),
//! except the root `/`. Every route the hub adds carries `"jupyterhub": true`, which is how
//! reconcile tells its own routes from an operator's.
//!
//! A proxy may run as several replicas, each with its own in-memory table (`replicas = "dns"`:
//! every address the API host resolves to, as a Kubernetes headless Service lists its pods). Then a route change goes to every replica at once and stands if at least one took it
//! (reconcile brings the others in line), and a listing comes from the first replica that answers.
//! Reconcile itself checks each replica's table separately (`ProxyApi::replicas`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, join_all};
use http::{Method, StatusCode, header};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::http_client::{self, ClientError, HttpUrl};

/// Calls in flight at once, as JupyterHub's CHP client (`concurrency = 10`).
const CONCURRENCY: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ProxyApiError {
    #[error("proxy admin API: {0}")]
    Client(#[from] ClientError),
    #[error("proxy admin API answered {status} to {method} {path}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("proxy admin API sent a routing table that is not a JSON object: {0}")]
    Json(String),
    #[error("cannot find the proxy's replicas: {0} resolves to no address ({1})")]
    Resolve(String, String),
}

/// One route as `GET /api/routes` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyRoute {
    pub target: String,
    /// Everything else the route carries: `user`, `server_name`, `hub`, `jupyterhub`, …
    pub data: Map<String, Value>,
    pub last_activity_ms: Option<u64>,
}

impl ProxyRoute {
    pub fn is_hubs(&self) -> bool {
        self.data.get("jupyterhub").and_then(Value::as_bool) == Some(true)
    }
}

/// Turns the API's `host:port` into the addresses of the proxy's replicas. Real DNS
/// ([`dns_resolver`]) in production; tests give a fixed list.
pub type Resolver = Arc<dyn Fn(String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// A [`Resolver`] from an async function of the `host:port`.
pub fn resolver<F, Fut>(resolve: F) -> Resolver
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static,
{
    Arc::new(move |authority| Box::pin(resolve(authority)))
}

/// The resolver `replicas = "dns"` uses: the system's, as `getaddrinfo` answers.
pub fn dns_resolver() -> Resolver {
    resolver(|authority| async move { Ok(tokio::net::lookup_host(authority).await?.collect()) })
}

/// The proxy (or proxies) the hub drives. Cheap to clone; clones share their call limits.
#[derive(Clone)]
pub struct ProxyApi {
    /// The configured API, which is the only replica unless `replicas` is set.
    configured: ProxyEndpoint,
    replicas: Option<Replicas>,
}

/// Replicas found by resolving the configured API's host.
#[derive(Clone)]
struct Replicas {
    resolve: Resolver,
    /// The last resolution's endpoints, so a replica keeps its call limit across resolutions.
    known: Arc<Mutex<Vec<ProxyEndpoint>>>,
}

/// One proxy's admin API.
#[derive(Clone)]
pub struct ProxyEndpoint {
    base: HttpUrl,
    token: Option<String>,
    limit: Arc<Semaphore>,
}

/// The CHP key of a routespec: `/user/alice/` → `/user/alice`; `/` stays `/`.
pub fn route_key(routespec: &str) -> String {
    let spec = if routespec.starts_with('/') {
        routespec.to_owned()
    } else {
        format!("/{routespec}")
    };
    match spec.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed.to_owned(),
        _ => spec,
    }
}

impl ProxyApi {
    /// The one proxy at `api_url`.
    pub fn new(api_url: &str, token: Option<String>) -> Result<ProxyApi, ClientError> {
        Ok(ProxyApi {
            configured: ProxyEndpoint {
                base: HttpUrl::parse(api_url)?,
                token: token.filter(|t| !t.is_empty()),
                limit: Arc::new(Semaphore::new(CONCURRENCY)),
            },
            replicas: None,
        })
    }

    /// Every address `resolve` gives for the API's host is a replica (`replicas = "dns"`).
    pub fn with_replicas(self, resolve: Resolver) -> ProxyApi {
        ProxyApi {
            replicas: Some(Replicas {
                resolve,
                known: Arc::default(),
            }),
            ..self
        }
    }

    /// The replicas as of now: the configured API, or one endpoint per address its host
    /// resolves to (same port, path and token).
    pub async fn replicas(&self) -> Result<Vec<ProxyEndpoint>, ProxyApiError> {
        let Some(replicas) = &self.replicas else {
            return Ok(vec![self.configured.clone()]);
        };
        let authority = self.configured.base.authority.clone();
        let addrs = match (replicas.resolve)(authority.clone()).await {
            Ok(addrs) if !addrs.is_empty() => addrs,
            Ok(_) => return Err(ProxyApiError::Resolve(authority, "no records".into())),
            Err(e) => return Err(ProxyApiError::Resolve(authority, e.to_string())),
        };
        let mut known = replicas.known.lock().unwrap_or_else(|p| p.into_inner());
        let endpoints: Vec<ProxyEndpoint> = addrs
            .iter()
            .map(|addr| {
                let authority = addr.to_string();
                known
                    .iter()
                    .find(|e| e.base.authority == authority)
                    .cloned()
                    .unwrap_or_else(|| self.configured.at(authority))
            })
            .collect();
        *known = endpoints.clone();
        Ok(endpoints)
    }

    /// Adds or replaces the route on every replica; an error only if none took it.
    pub async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        data: Map<String, Value>,
    ) -> Result<(), ProxyApiError> {
        let replicas = self.replicas().await?;
        let calls = replicas.iter().map(|r| r.add_route(routespec, target, data.clone()));
        at_least_one("adding", routespec, &replicas, join_all(calls).await)
    }

    /// Deletes the route from every replica; an error only if none did.
    pub async fn delete_route(&self, routespec: &str) -> Result<(), ProxyApiError> {
        let replicas = self.replicas().await?;
        let calls = replicas.iter().map(|r| r.delete_route(routespec));
        at_least_one("deleting", routespec, &replicas, join_all(calls).await)
    }

    /// The table of the first replica that answers.
    pub async fn routes(&self) -> Result<BTreeMap<String, ProxyRoute>, ProxyApiError> {
        let mut last = None;
        for replica in self.replicas().await? {
            match replica.routes().await {
                Ok(routes) => return Ok(routes),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ProxyApiError::Resolve(self.configured.address().into(), "no records".into())))
    }
}

/// A fanned-out change stands if one replica took it: reconcile repairs the others, and a
/// replica going away (a rolling restart) must not fail spawns. Failures are logged here.
fn at_least_one(
    doing: &str,
    routespec: &str,
    replicas: &[ProxyEndpoint],
    results: Vec<Result<(), ProxyApiError>>,
) -> Result<(), ProxyApiError> {
    let mut failed = None;
    let mut took = false;
    for (replica, result) in replicas.iter().zip(results) {
        match result {
            Ok(()) => took = true,
            Err(e) if replicas.len() > 1 => {
                tracing::warn!(
                    "{doing} the route {routespec} on the proxy replica {}: {e}",
                    replica.address()
                );
                failed = Some(e);
            }
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) if !took => Err(e),
        _ => Ok(()),
    }
}

impl ProxyEndpoint {
    /// This API at another `host:port`: the same path and token, a call limit of its own.
    fn at(&self, authority: String) -> ProxyEndpoint {
        ProxyEndpoint {
            base: HttpUrl {
                authority,
                path: self.base.path.clone(),
            },
            token: self.token.clone(),
            limit: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    /// `host:port`, for logs.
    pub fn address(&self) -> &str {
        &self.base.authority
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http_client::Reply, ProxyApiError> {
        let _permit = self.limit.acquire().await;
        let mut headers = Vec::new();
        if let Some(token) = &self.token {
            headers.push((header::AUTHORIZATION, format!("token {token}")));
        }
        let url = self.base.join(path);
        let reply = http_client::call(method.clone(), &url, &headers, body, TIMEOUT).await?;
        if !reply.status.is_success() {
            return Err(ProxyApiError::Status {
                method,
                path: path.to_owned(),
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).chars().take(200).collect(),
            });
        }
        Ok(reply)
    }

    /// Adds or replaces the route `routespec` → `target`, tagged as the hub's.
    pub async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        mut data: Map<String, Value>,
    ) -> Result<(), ProxyApiError> {
        data.insert("target".into(), Value::String(target.to_owned()));
        data.insert("jupyterhub".into(), Value::Bool(true));
        let body = serde_json::to_vec(&data).unwrap_or_default();
        let path = format!("/api/routes{}", api_path(&route_key(routespec)));
        self.call(Method::POST, &path, Some(body)).await?;
        Ok(())
    }

    /// Deletes a route; a route already gone is not an error.
    pub async fn delete_route(&self, routespec: &str) -> Result<(), ProxyApiError> {
        let path = format!("/api/routes{}", api_path(&route_key(routespec)));
        match self.call(Method::DELETE, &path, None).await {
            Err(ProxyApiError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The whole table, by CHP key.
    pub async fn routes(&self) -> Result<BTreeMap<String, ProxyRoute>, ProxyApiError> {
        let reply = self.call(Method::GET, "/api/routes", None).await?;
        parse_routes(&reply.body)
    }
}

/// Route keys go into the API path as they are, except characters a path cannot hold.
fn api_path(key: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'%');
    utf8_percent_encode(key, PATH).to_string()
}

pub fn parse_routes(body: &[u8]) -> Result<BTreeMap<String, ProxyRoute>, ProxyApiError> {
    let table: Map<String, Value> = serde_json::from_slice(body).map_err(|e| ProxyApiError::Json(e.to_string()))?;
    let mut routes = BTreeMap::new();
    for (key, value) in table {
        let Value::Object(mut data) = value else { continue };
        let Some(Value::String(target)) = data.remove("target") else {
            continue;
        };
        let last_activity_ms = match data.remove("last_activity") {
            Some(Value::String(s)) => proxy::timestamp::parse_iso(&s).and_then(|ms| u64::try_from(ms).ok()),
            _ => None,
        };
        routes.insert(
            key,
            ProxyRoute {
                target,
                data,
                last_activity_ms,
            },
        );
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_drop_one_trailing_slash() {
        assert_eq!(route_key("/user/alice/"), "/user/alice");
        assert_eq!(route_key("/"), "/");
        assert_eq!(route_key("user/a/b/"), "/user/a/b");
        assert_eq!(api_path("/user/a b%"), "/user/a%20b%25");
    }

    #[test]
    fn a_chp_table_is_read() {
        let body = br#"{"/":{"target":"http://127.0.0.1:8081","hub":true,"jupyterhub":true,"last_activity":"2026-11-21T10:12:11.692Z"},
            "/user/foo":{"target":"http://127.0.0.1:18011","jupyterhub":true,"user":"foo","server_name":""},
            "/weird": 5}"#;
        let routes = parse_routes(body).unwrap();
        assert_eq!(routes.len(), 2);
        assert!(routes["/"].is_hubs());
        assert!(routes["/"].last_activity_ms.is_some());
        assert_eq!(routes["/user/foo"].data["user"], "foo");
        assert!(parse_routes(b"[]").is_err());
    }
}

//! The hub's side of the proxy's admin API (configurable-http-proxy's REST API, which edgeproxy
//! speaks too): add, delete and list routes. The same client drives the embedded proxy of
//! `edgehub up`, an external edgeproxy, or a stock configurable-http-proxy.
//!
//! Routes are keyed as CHP keys them: the routespec without its trailing `/` (`/user/alice`),
//! except the root `/`. Every route the hub adds carries `"jupyterhub": true`, which is how
//! reconcile tells its own routes from an operator's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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

#[derive(Clone)]
pub struct ProxyApi {
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
    pub fn new(api_url: &str, token: Option<String>) -> Result<ProxyApi, ClientError> {
        Ok(ProxyApi {
            base: HttpUrl::parse(api_url)?,
            token: token.filter(|t| !t.is_empty()),
            limit: Arc::new(Semaphore::new(CONCURRENCY)),
        })
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

//! Keeping a JWKS current: read at start-up, re-read on a timer, and on demand (rate-limited)
//! when a token names a `kid` we do not know (a key rotation).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request};
use http_body_util::{BodyExt, Limited};

use super::EdgeAuth;
use super::jwt::{JwksKeys, JwksSource, KeyError};
use crate::body::RequestBody;
use crate::target::Target;

/// Larger documents are refused: a JWKS holds a handful of keys.
const MAX_JWKS_BYTES: usize = 1 << 20;

pub async fn keep_fresh(jwks: Arc<JwksKeys>, auth: Arc<EdgeAuth>) {
    loop {
        if let Err(e) = refresh(&jwks, &auth).await {
            tracing::warn!("{e}");
        }
        tokio::time::sleep(jwks.refresh_every).await;
    }
}

/// Fetches the document and swaps it in; the old keys stay when anything fails.
pub async fn refresh(jwks: &JwksKeys, auth: &EdgeAuth) -> Result<usize, KeyError> {
    let document = match &jwks.source {
        // A few KiB read rarely: not worth a blocking-pool hop.
        JwksSource::File(path) => std::fs::read(path).map_err(|e| KeyError::Read(path.display().to_string(), e))?,
        JwksSource::Url(url) => tokio::time::timeout(Duration::from_secs(5), fetch(url, auth))
            .await
            .map_err(|_| KeyError::Jwks(url.clone(), "timed out after 5 s".into()))??,
    };
    let n = jwks.install(&document)?;
    tracing::debug!("JWKS {} loaded: {n} keys", jwks.source);
    Ok(n)
}

async fn fetch(url: &str, auth: &EdgeAuth) -> Result<Vec<u8>, KeyError> {
    let err = |m: String| KeyError::Jwks(url.to_owned(), m);
    let target = Target::parse(url).map_err(|e| err(e.to_string()))?;
    let conn = auth.fetcher().connect(&target).await.map_err(|e| err(e.to_string()))?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(target.path_and_query())
        .header(http::header::HOST, target.authority())
        .header(http::header::ACCEPT, "application/json")
        .body(())
        .map_err(|e| err(e.to_string()))?
        .into_parts()
        .0;
    let resp = conn
        .send(&req, RequestBody::Empty, &())
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("answered {}", resp.status())));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(body.to_bytes().to_vec())
}

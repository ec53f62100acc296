//! Keeping a JWKS current: read at start-up, re-read on a timer, and on demand (rate-limited)
//! when a token names a `kid` we do not know (a key rotation).

use std::sync::Arc;
use std::time::Duration;

use super::EdgeAuth;
use super::document_fetch;
use super::jwt::{JwksKeys, JwksSource, KeyError};
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
    let (status, body) = document_fetch::get(auth.fetcher(), &target, None, MAX_JWKS_BYTES)
        .await
        .map_err(err)?;
    if !status.is_success() {
        return Err(err(format!("answered {status}")));
    }
    Ok(body.to_vec())
}

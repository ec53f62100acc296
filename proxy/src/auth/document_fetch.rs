//! A GET of a small JSON document through the edge's own upstream pool: a JWKS
//! ([`super::jwks_fetch`]), the hub's answer about an API token ([`super::hub_tokens`]).

use bytes::Bytes;
use http::header::{ACCEPT, HOST, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::body::RequestBody;
use crate::target::Target;
use crate::upstream::Upstream;

/// The answer's status and, for a success, its body (at most `max_bytes`; more is an error).
/// `credential` is a header sent with the request (`Authorization`, or a `Cookie`). `Err` says
/// why no answer came.
pub async fn get(
    fetcher: &Upstream,
    target: &Target,
    credential: Option<(HeaderName, HeaderValue)>,
    max_bytes: usize,
) -> Result<(StatusCode, Bytes), String> {
    let conn = fetcher.connect(target).await.map_err(|e| e.to_string())?;
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(target.path_and_query())
        .header(HOST, target.authority())
        .header(ACCEPT, "application/json");
    if let Some((name, value)) = credential {
        req = req.header(name, value);
    }
    let req = req.body(()).map_err(|e| e.to_string())?.into_parts().0;
    let resp = conn
        .send(&req, RequestBody::Empty, &())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        return Ok((status, Bytes::new()));
    }
    let body = Limited::new(resp.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes()))
}

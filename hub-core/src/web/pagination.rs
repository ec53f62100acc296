//! JupyterHub's pagination of list endpoints (`/hub/api/users`, `/hub/api/groups`): `offset` and
//! `limit` in the query, and with `Accept: application/jupyterhub-pagination+json` the page
//! wrapped as `{"items": [...], "_pagination": {offset, limit, total, next}}`. Without that
//! header the bare list is sent, as older clients expect.

use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::hub::Hub;
use crate::web::input::Refusal;
use crate::web::{Body, Req, json};

/// The most items one page holds (JupyterHub's `api_page_max_limit` default).
pub const MAX_LIMIT: usize = 200;

const PAGINATED: &str = "application/jupyterhub-pagination+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Page {
    /// The page a request asks for. A limit outside 1..=200 is brought inside it, and a
    /// negative number taken as its absolute value, as JupyterHub does; a value that is no
    /// integer is a 400, with JupyterHub's message.
    pub fn of(req: &Req) -> Result<Page, Refusal> {
        let number = |name: &str, default: usize| match req.query_param(name) {
            None => Ok(default),
            Some(v) => {
                let v = v.trim();
                v.strip_prefix('-')
                    .unwrap_or(v)
                    .parse::<usize>()
                    .map_err(|_| Refusal::bad("Invalid argument type, offset and limit must be integers"))
            }
        };
        Ok(Page {
            offset: number("offset", 0)?,
            limit: number("limit", MAX_LIMIT)?.clamp(1, MAX_LIMIT),
        })
    }
}

/// The response for one page of `items` out of `total`, for the list the request asked: the
/// bare list, or with `Accept: application/jupyterhub-pagination+json` the page model.
pub fn respond(hub: &Hub, req: &Req, page: Page, items: Vec<Value>, total: usize) -> http::Response<Body> {
    let paginated = req.header(header::ACCEPT).is_some_and(|a| a.contains(PAGINATED));
    if !paginated {
        return json(StatusCode::OK, &Value::Array(items));
    }
    let mut response = json(StatusCode::OK, &model(hub, req, page, items, total));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PAGINATED));
    response
}

/// The page model whatever the request accepts: JupyterHub's share lists are always sent so.
pub fn wrapped(hub: &Hub, req: &Req, page: Page, items: Vec<Value>, total: usize) -> http::Response<Body> {
    json(StatusCode::OK, &model(hub, req, page, items, total))
}

/// `{"items", "_pagination": {offset, limit, total, next}}`; `next` holds the next page's
/// absolute URL, the request's own with the other filters kept: clients
/// (jupyterhub-idle-culler) fetch it as it is.
fn model(hub: &Hub, req: &Req, page: Page, items: Vec<Value>, total: usize) -> Value {
    let Page { offset, limit } = page;
    let next = (offset + items.len() < total).then(|| {
        let next_offset = offset + items.len();
        let host = req.header(header::HOST).unwrap_or("localhost");
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in req
            .query
            .as_deref()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if k != "offset" && k != "limit" {
                query.append_pair(&k, &v);
            }
        }
        query.append_pair("offset", &next_offset.to_string());
        query.append_pair("limit", &limit.to_string());
        let url = format!("http://{host}{}{}?{}", hub.base, req.path, query.finish());
        json!({"offset": next_offset, "limit": limit, "url": url})
    });
    json!({"items": items, "_pagination": {"offset": offset, "limit": limit, "total": total, "next": next}})
}

//! `/hub/api/share-codes/{owner}/{server}` and `/hub/accept-share` (JupyterHub 5's share
//! codes): the owner makes a code that anyone signed in may exchange, before it expires, for a
//! share of the server with the code's scopes. The code is shown once; only its hash is kept.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::hub::Hub;
use crate::model::iso;
use crate::store::{Grantee, ShareCodeRecord, ShareRecord, StoreError};
use crate::tokens::Caller;
use crate::web::pagination::{self, Page};
use crate::web::shares::{
    Target, follow_in_route, grantable_scopes, no_such_server, refuse, server_exists, server_model,
};
use crate::web::{Body, Req, empty, json, json_error, optional_strings};

type Resp = http::Response<Body>;

/// How long a code lives unless asked otherwise, and the bounds JupyterHub sets.
const DEFAULT_LIFETIME_SECS: u64 = 86_400;
const LIFETIME_SECS: std::ops::RangeInclusive<u64> = 60..=525_600 * 60;

pub async fn handle(hub: &Hub, req: &Req, who: &Caller, owner: &str, server: Option<&str>) -> Resp {
    if let Some(denied) = refuse(hub, req, who, &Target::Owner { owner, server }) {
        return denied;
    }
    let result = match (&req.method, server) {
        (&Method::GET, _) => list(hub, req, owner, server),
        (&Method::POST, Some(server)) => create(hub, req, who, owner, server),
        (&Method::DELETE, Some(server)) => delete(hub, req, owner, server),
        _ => Ok(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET lists every share code of a user; name the server to change them",
        )),
    };
    result.unwrap_or_else(|e| {
        tracing::error!("share codes API: {e}");
        crate::web::input::store_failed(&e)
    })
}

fn model(hub: &Hub, code: &ShareCodeRecord) -> Value {
    json!({
        "server": server_model(hub, &code.owner, &code.server),
        "scopes": code.scopes,
        "id": format!("sc_{}", code.id),
        "created_at": iso(Some(code.created_ms)),
        "expires_at": iso(Some(code.expires_ms)),
        "exchange_count": code.exchange_count,
        "last_exchanged_at": iso(code.last_exchanged_ms),
    })
}

fn list(hub: &Hub, req: &Req, owner: &str, server: Option<&str>) -> Result<Resp, StoreError> {
    let page = match Page::of(req) {
        Ok(page) => page,
        Err(bad) => return Ok(bad.response()),
    };
    if let Some(server) = server
        && !server_exists(hub, owner, server)
    {
        return Ok(no_such_server(owner, server));
    }
    let codes: Vec<ShareCodeRecord> = hub
        .store
        .share_codes(proxy::timestamp::now_ms())?
        .into_iter()
        .filter(|c| c.owner == owner && server.is_none_or(|s| c.server == s))
        .collect();
    let total = codes.len();
    let items: Vec<Value> = codes
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|c| model(hub, c))
        .collect();
    Ok(pagination::wrapped(hub, req, page, items, total))
}

fn create(hub: &Hub, req: &Req, who: &Caller, owner: &str, server: &str) -> Result<Resp, StoreError> {
    let body = match crate::web::input::object(req) {
        Ok(fields) => fields.into_value(),
        Err(refusal) => return Ok(refusal.response()),
    };
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !["scopes", "expires_in"].contains(&k.as_str())))
    {
        return Ok(json_error(
            StatusCode::BAD_REQUEST,
            &format!("Unexpected field {unknown:?}"),
        ));
    }
    let lifetime = match &body["expires_in"] {
        Value::Null => DEFAULT_LIFETIME_SECS,
        v => match v.as_u64().filter(|s| LIFETIME_SECS.contains(s)) {
            Some(secs) => secs,
            None => {
                return Ok(json_error(
                    StatusCode::BAD_REQUEST,
                    "expires_in must be a whole number of seconds from 60 to one year",
                ));
            }
        },
    };
    let Ok(asked) = optional_strings(&body, "scopes") else {
        return Ok(json_error(StatusCode::BAD_REQUEST, "scopes must be a list of strings"));
    };
    let scopes = match grantable_scopes(hub, who, asked.as_deref(), owner, server) {
        Ok(scopes) => scopes,
        Err((status, why)) => return Ok(json_error(status, &why)),
    };
    if !server_exists(hub, owner, server) {
        return Ok(no_such_server(owner, server));
    }
    let code = crate::tokens::generate();
    let now = proxy::timestamp::now_ms();
    let mut record = ShareCodeRecord {
        id: 0,
        hash: crate::tokens::hash(&code),
        owner: owner.to_owned(),
        server: server.to_owned(),
        scopes,
        created_ms: now,
        expires_ms: now + lifetime * 1000,
        exchange_count: 0,
        last_exchanged_ms: None,
    };
    record.id = hub.store.add_share_code(&record)?;
    tracing::info!("a share code for {owner}/{server} made, valid {lifetime} s");
    let mut m = model(hub, &record);
    let accept = format!("{}hub/accept-share?code={code}", hub.base);
    m["code"] = json!(code);
    m["accept_url"] = json!(accept);
    m["full_accept_url"] = Value::Null;
    Ok(json(StatusCode::OK, &m))
}

/// `DELETE …?code=…` or `?id=sc_N` deletes one code, neither deletes them all.
fn delete(hub: &Hub, req: &Req, owner: &str, server: &str) -> Result<Resp, StoreError> {
    if !server_exists(hub, owner, server) {
        return Ok(no_such_server(owner, server));
    }
    let id = if let Some(code) = req.query_param("code") {
        match find(hub, &code)? {
            Some(c) if c.owner == owner && c.server == server => Some(c.id),
            _ => return Ok(json_error(StatusCode::NOT_FOUND, "No matching code found")),
        }
    } else if let Some(id) = req.query_param("id") {
        match id.strip_prefix("sc_").and_then(|n| n.parse().ok()) {
            Some(n) => Some(n),
            None => {
                return Ok(json_error(
                    StatusCode::NOT_FOUND,
                    &format!("No code found matching id={id}"),
                ));
            }
        }
    } else {
        None
    };
    let gone = hub.store.delete_share_codes(owner, server, id)?;
    if id.is_some() && gone == 0 {
        return Ok(json_error(StatusCode::NOT_FOUND, "No matching code found"));
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// What exchanging a code at `/hub/accept-share` came to.
pub enum Accepted {
    /// The share exists now; the server's URL.
    Shared {
        owner: String,
        server: String,
    },
    NotFound,
    OwnCode,
}

/// The live code `code` names, if any.
pub fn find(hub: &Hub, code: &str) -> Result<Option<ShareCodeRecord>, StoreError> {
    let hash = crate::tokens::hash(code);
    Ok(hub
        .store
        .share_codes(proxy::timestamp::now_ms())?
        .into_iter()
        .find(|c| c.hash == hash))
}

/// Exchanges `code` for a share of its server with `user`.
pub async fn accept(hub: &Hub, user: &str, code: &str) -> Result<Accepted, StoreError> {
    let Some(found) = find(hub, code)? else {
        return Ok(Accepted::NotFound);
    };
    if found.owner == user {
        return Ok(Accepted::OwnCode);
    }
    let now = proxy::timestamp::now_ms();
    hub.store.grant_share(&ShareRecord {
        owner: found.owner.clone(),
        server: found.server.clone(),
        grantee: Grantee::User(user.to_owned()),
        scopes: found.scopes.clone(),
        created_ms: now,
    })?;
    hub.store.note_share_code_exchange(found.id, now)?;
    tracing::info!("{user} accepted a share code for {}/{}", found.owner, found.server);
    follow_in_route(hub, &found.owner, &found.server).await;
    Ok(Accepted::Shared {
        owner: found.owner,
        server: found.server,
    })
}

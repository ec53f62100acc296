//! `/hub/api/shares/…`, `/hub/api/users/{name}/shared` and `/hub/api/groups/{name}/shared`:
//! JupyterHub 5's sharing endpoints, with its paths, bodies and share model. A share grants
//! `access:servers!server={owner}/{server}`, the one scope edgehub grants; every change writes
//! the server's route again (`crate::shares`), so the edge follows within a second.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::hub::Hub;
use crate::model::{Phase, iso};
use crate::scopes::Target as Scope;
use crate::shares::refresh_route;
use crate::store::{Grantee, ShareRecord, StoreError};
use crate::tokens::Caller;
use crate::web::caller;
use crate::web::pagination::{self, Page};
use crate::web::{Body, Req, empty, json, json_error, optional_strings};

type Resp = http::Response<Body>;

/// Which shares a request is about.
pub enum Target<'a> {
    /// `/shares/{owner}` (every server) or `/shares/{owner}/{server}`.
    Owner { owner: &'a str, server: Option<&'a str> },
    /// `/users/{name}/shared`: what is shared with a user.
    SharedWithUser(&'a str),
    /// `/groups/{name}/shared`: what is shared with a group.
    SharedWithGroup(&'a str),
}

/// The target of `/hub/api/shares/…`, from the raw path below `shares/`: a trailing slash
/// names the default server (`/shares/alice/`), none means every server (`/shares/alice`).
pub fn owner_target(raw_tail: &str) -> Option<(String, Option<String>)> {
    let decode = |s: &str| proxy::request_path::percent_decode(s).ok().map(|c| c.into_owned());
    match raw_tail.split_once('/') {
        None if !raw_tail.is_empty() => Some((decode(raw_tail)?, None)),
        Some((owner, server)) if !owner.is_empty() && !server.contains('/') => {
            Some((decode(owner)?, Some(decode(server)?)))
        }
        _ => None,
    }
}

pub async fn handle(hub: &Arc<Hub>, req: &Req, who: &Caller, target: Target<'_>) -> Resp {
    if let Some(denied) = refuse(hub, req, who, &target) {
        return denied;
    }
    let result = match (&req.method, &target) {
        (&Method::GET, _) => list(hub, req, &target),
        (
            &Method::POST,
            Target::Owner {
                owner,
                server: Some(server),
            },
        ) => grant(hub, req, who, owner, server).await,
        (
            &Method::PATCH,
            Target::Owner {
                owner,
                server: Some(server),
            },
        ) => revoke(hub, req, owner, server).await,
        (
            &Method::DELETE,
            Target::Owner {
                owner,
                server: Some(server),
            },
        ) => revoke_all(hub, owner, server).await,
        (_, Target::Owner { server: None, .. }) => Ok(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET lists every share of a user; name the server to change one",
        )),
        _ => Ok(json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")),
    };
    result.unwrap_or_else(|e| {
        tracing::error!("shares API: {e}");
        crate::web::input::store_failed(&e)
    })
}

/// JupyterHub's scopes: `shares` to change a server's shares, `read:shares` to list them,
/// `read:users:shares` / `read:groups:shares` for what a user or group was given. An owner
/// holds the first two on their servers (`self`); a server's own token never manages shares.
pub(super) fn refuse(hub: &Hub, req: &Req, who: &Caller, target: &Target<'_>) -> Option<Resp> {
    let (scope, on) = match target {
        Target::Owner { owner, server } => {
            let scope = if req.method == Method::GET {
                "read:shares"
            } else {
                "shares"
            };
            let on = match server {
                Some(server) => Scope::server(owner, server),
                None => Scope::user(owner),
            };
            (scope, on)
        }
        Target::SharedWithUser(name) => ("read:users:shares", Scope::user(name)),
        Target::SharedWithGroup(group) => ("read:groups:shares", Scope::group(group)),
    };
    if who.server.is_some() && req.method != Method::GET {
        return Some(json_error(StatusCode::FORBIDDEN, "A server's token cannot share"));
    }
    (!caller::allowed(hub, who, scope, on)).then(|| caller::forbidden(scope))
}

/// The trimmed server model shares and share codes carry.
pub(super) fn server_model(hub: &Hub, owner: &str, server: &str) -> Value {
    let ready = hub.server(owner, server).is_some_and(|s| s.phase() == Phase::Running);
    json!({
        "user": {"name": owner},
        "name": server,
        "url": hub.prefix(owner, server),
        "full_url": Value::Null,
        "ready": ready,
    })
}

/// JupyterHub's share model: the server (trimmed), scopes, who, and when.
fn model(hub: &Hub, share: &ShareRecord) -> Value {
    let name = |n: &str| json!({"name": n});
    json!({
        "server": server_model(hub, &share.owner, &share.server),
        "scopes": share.scopes,
        "user": match &share.grantee { Grantee::User(n) => name(n), Grantee::Group(_) => Value::Null },
        "group": match &share.grantee { Grantee::Group(n) => name(n), Grantee::User(_) => Value::Null },
        "kind": share.grantee.kind(),
        "created_at": iso(Some(share.created_ms)),
    })
}

/// Share lists are always paginated (`{"items", "_pagination"}`), as JupyterHub sends them.
fn list(hub: &Hub, req: &Req, target: &Target<'_>) -> Result<Resp, StoreError> {
    let page = match Page::of(req) {
        Ok(page) => page,
        Err(bad) => return Ok(bad.response()),
    };
    if let Target::Owner {
        owner,
        server: Some(server),
    } = target
        && !server_exists(hub, owner, server)
    {
        return Ok(no_such_server(owner, server));
    }
    let shares: Vec<ShareRecord> = match target {
        // What is shared with a user includes what is shared with their groups, as JupyterHub
        // lists it.
        Target::SharedWithUser(name) => crate::shares::with_user(hub, name)?,
        Target::Owner { owner, server } => hub
            .store
            .shares()?
            .into_iter()
            .filter(|s| s.owner == *owner && server.is_none_or(|name| s.server == name))
            .collect(),
        Target::SharedWithGroup(name) => hub
            .store
            .shares()?
            .into_iter()
            .filter(|s| s.grantee == Grantee::Group((*name).to_owned()))
            .collect(),
    };
    let total = shares.len();
    let items: Vec<Value> = shares
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|s| model(hub, s))
        .collect();
    Ok(pagination::wrapped(hub, req, page, items, total))
}

/// The grantee a grant or revoke body names: exactly one of `user` and `group`, and nothing but
/// them and `scopes` (JupyterHub refuses unknown fields too).
fn grantee_of(body: &Value) -> Result<(Grantee, Option<Vec<String>>), String> {
    let Some(fields) = body.as_object() else {
        return Err("Specify exactly one of `user` or `group`".into());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["user", "group", "scopes"].contains(&k.as_str()))
    {
        return Err(format!("Unexpected field {unknown:?}"));
    }
    let text = |key: &str| match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => Ok(Some(name.clone())),
        Some(other) => Err(crate::web::input::must_be(key, "a string", other).message),
    };
    let grantee = match (text("user")?, text("group")?) {
        (Some(user), None) => Grantee::User(user),
        (None, Some(group)) => Grantee::Group(group),
        (Some(_), Some(_)) => return Err("Expected exactly one of `user` or `group`, not both.".into()),
        (None, None) => return Err("Specify exactly one of `user` or `group`".into()),
    };
    let scopes = optional_strings(body, "scopes").map_err(|_| "scopes must be a list of strings")?;
    Ok((grantee, scopes))
}

async fn grant(hub: &Hub, req: &Req, who: &Caller, owner: &str, server: &str) -> Result<Resp, StoreError> {
    let body = match crate::web::input::object(req) {
        Ok(fields) => fields.into_value(),
        Err(refusal) => return Ok(refusal.response()),
    };
    let (grantee, scopes) = match grantee_of(&body) {
        Ok(parsed) => parsed,
        Err(why) => return Ok(json_error(StatusCode::BAD_REQUEST, &why)),
    };
    let scopes = match grantable_scopes(hub, who, scopes.as_deref(), owner, server) {
        Ok(scopes) => scopes,
        Err((status, why)) => return Ok(json_error(status, &why)),
    };
    if !server_exists(hub, owner, server) {
        return Ok(no_such_server(owner, server));
    }
    let exists = match &grantee {
        Grantee::User(name) => hub.users().contains_key(name) || hub.store.load_user(name)?.is_some(),
        Grantee::Group(name) => hub.store.group(name)?.is_some(),
    };
    if !exists {
        let kind = grantee.kind();
        return Ok(json_error(
            StatusCode::BAD_REQUEST,
            &format!("No such {kind}: {}", grantee.name()),
        ));
    }
    let share = ShareRecord {
        owner: owner.to_owned(),
        server: server.to_owned(),
        grantee,
        scopes,
        created_ms: proxy::timestamp::now_ms(),
    };
    hub.store.grant_share(&share)?;
    tracing::info!(
        "{owner}/{server} shared with {} {}",
        share.grantee.kind(),
        share.grantee.name()
    );
    follow_in_route(hub, owner, server).await;
    let stored = hub
        .store
        .shares()?
        .into_iter()
        .find(|s| s.owner == share.owner && s.server == share.server && s.grantee == share.grantee)
        .unwrap_or(share);
    Ok(json(StatusCode::OK, &model(hub, &stored)))
}

/// The scopes a share or share code of `owner/server` asked for, filtered to the server
/// (400 for one that cannot be shared), each held by whoever shares (403 otherwise; an owner
/// holds all of them on their servers).
pub(super) fn grantable_scopes(
    hub: &Hub,
    who: &Caller,
    asked: Option<&[String]>,
    owner: &str,
    server: &str,
) -> Result<Vec<String>, (StatusCode, String)> {
    let scopes = crate::shares::server_scopes(asked, owner, server).map_err(|why| (StatusCode::BAD_REQUEST, why))?;
    let on = Scope::server(owner, server);
    match scopes
        .iter()
        .filter_map(|s| crate::scopes::parse(s).ok())
        .find(|s| !caller::allowed(hub, who, s.name, on))
    {
        Some(missing) => Err((
            StatusCode::FORBIDDEN,
            format!("Do not have permission to grant share with scope {missing}"),
        )),
        None => Ok(scopes),
    }
}

/// `PATCH`: revokes one share. The share has one scope, so revoking any of it ends it; the
/// answer is `{}`, as JupyterHub's for a share that is gone.
async fn revoke(hub: &Hub, req: &Req, owner: &str, server: &str) -> Result<Resp, StoreError> {
    let body = match crate::web::input::object(req) {
        Ok(fields) => fields.into_value(),
        Err(refusal) => return Ok(refusal.response()),
    };
    let (grantee, _) = match grantee_of(&body) {
        Ok(parsed) => parsed,
        Err(why) => return Ok(json_error(StatusCode::BAD_REQUEST, &why)),
    };
    if !server_exists(hub, owner, server) {
        return Ok(no_such_server(owner, server));
    }
    if hub.store.revoke_share(owner, server, &grantee)? {
        tracing::info!(
            "{owner}/{server} no longer shared with {} {}",
            grantee.kind(),
            grantee.name()
        );
        follow_in_route(hub, owner, server).await;
    }
    Ok(json(StatusCode::OK, &json!({})))
}

async fn revoke_all(hub: &Hub, owner: &str, server: &str) -> Result<Resp, StoreError> {
    if !server_exists(hub, owner, server) {
        return Ok(no_such_server(owner, server));
    }
    let gone = hub.store.revoke_server_shares(owner, Some(server))?;
    tracing::info!("{gone} shares of {owner}/{server} revoked");
    follow_in_route(hub, owner, server).await;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Writes the route again; a proxy that cannot be reached is repaired by the next reconcile,
/// which reads the same shares.
pub(super) async fn follow_in_route(hub: &Hub, owner: &str, server: &str) {
    if let Err(e) = refresh_route(hub, owner, server).await {
        tracing::warn!("the route of {owner}/{server} waits for the next reconcile to follow its shares: {e}");
    }
}

/// The default server exists for every user; a named one once it has been made.
pub(super) fn server_exists(hub: &Hub, owner: &str, server: &str) -> bool {
    hub.users()
        .get(owner)
        .is_some_and(|u| server.is_empty() || u.servers.contains_key(server))
}

pub(super) fn no_such_server(owner: &str, server: &str) -> Resp {
    json_error(StatusCode::NOT_FOUND, &format!("No such server: {owner}/{server}"))
}

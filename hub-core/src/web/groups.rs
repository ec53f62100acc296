//! `/hub/api/groups`: JupyterHub's group endpoints, with its paths, bodies, status codes and
//! group model (`{"kind": "group", "name", "users", "properties", "roles"}`).
//!
//! Groups live in the state database only (both backends), read when asked: they change rarely,
//! and every replica then answers alike with nothing to keep in step. A user's groups go into
//! their session token at login, where the edge's group policy reads them.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::hub::Hub;
use crate::model::valid_name;
use crate::scopes::Target;
use crate::store::{GroupRecord, StoreError};
use crate::tokens::Caller;
use crate::web::caller;
use crate::web::pagination::{self, Page};
use crate::web::{Body, Req, empty, json, json_error, optional_strings};

type Resp = http::Response<Body>;

/// JupyterHub's group model.
pub fn model(group: &GroupRecord) -> Value {
    json!({
        "kind": "group",
        "name": group.name,
        "users": group.users,
        "properties": group.properties,
        "roles": [],
    })
}

/// Every user's groups, from the groups with their members (for user models, the admin page).
pub fn by_user(groups: &[GroupRecord]) -> BTreeMap<String, Vec<String>> {
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for group in groups {
        for user in &group.users {
            by_user.entry(user.clone()).or_default().push(group.name.clone());
        }
    }
    by_user
}

/// At login: the groups an authenticator knows the user by (a directory's, a platform token's)
/// become hub groups the user is in, made if new; returns every group the user is in, for the
/// session token. Memberships given through the API are kept.
pub fn on_login(hub: &Hub, user: &str, from_authenticator: &[String]) -> Result<Vec<String>, StoreError> {
    if !from_authenticator.is_empty() {
        for group in from_authenticator {
            hub.store.create_group(group, &json!({}))?;
        }
        let member = [user.to_owned()];
        for group in from_authenticator {
            hub.store.set_group_members(group, &member, true)?;
        }
    }
    hub.store.user_groups(user)
}

/// Handles `/hub/api/groups…` (`tail` is what follows `groups`). Database calls may wait on
/// PostgreSQL, so they run on the blocking pool.
pub async fn handle(hub: &Arc<Hub>, req: &Req, who: &Caller, tail: &[&str]) -> Resp {
    let scope = needed_scope(&req.method, tail);
    let target = match tail {
        [name, ..] => Target::group(name),
        [] => Target::hub(),
    };
    if !caller::allowed(hub, who, scope, target) {
        return caller::forbidden(scope);
    }
    let changes = req.method != Method::GET;
    let (hub, req, tail) = (
        hub.clone(),
        req.clone(),
        tail.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>(),
    );
    let resp = {
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || {
            let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
            match answer(&hub, &req, &tail) {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::error!("groups API: {e}");
                    crate::web::input::store_failed(&e)
                }
            }
        })
        .await
        .unwrap_or_else(|_| json_error(StatusCode::INTERNAL_SERVER_ERROR, "The groups request failed"))
    };
    if changes && resp.status().is_success() && !hub.roles.is_empty() {
        // A role's `!group=` filter lets people into the servers of the group's members, so a
        // change of members changes who those routes admit: written again before the answer,
        // so that one who left is refused as soon as it is given.
        if let Err(e) = crate::reconcile::check_routes(&hub).await {
            tracing::warn!("writing routes again after a change of group members: {e}");
        }
    }
    resp
}

/// The scope each call needs, as JupyterHub's group handlers ask for it.
fn needed_scope(method: &Method, tail: &[&str]) -> &'static str {
    match (method, tail) {
        (&Method::GET, []) => "list:groups",
        (&Method::GET, _) => "read:groups",
        (&Method::POST, [] | [_]) => "admin:groups",
        (&Method::DELETE, [_]) => "delete:groups",
        _ => "groups",
    }
}

fn answer(hub: &Hub, req: &Req, tail: &[&str]) -> Result<Resp, StoreError> {
    Ok(match (&req.method, tail) {
        (&Method::GET, []) => list(hub, req)?,
        (&Method::POST, []) => create_many(hub, req)?,
        (&Method::GET, [name]) => match hub.store.group(name)? {
            Some(group) => json(StatusCode::OK, &model(&group)),
            None => no_such_group(name),
        },
        (&Method::POST, [name]) => create_one(hub, req, name)?,
        (&Method::DELETE, [name]) => {
            let members = hub.store.group(name)?.map(|g| g.users).unwrap_or_default();
            if let Some(refusal) = end_sessions(hub, &members, name) {
                return Ok(refusal);
            }
            if hub.store.delete_group(name)? {
                tracing::info!("group {name} deleted");
                empty(StatusCode::NO_CONTENT)
            } else {
                no_such_group(name)
            }
        }
        (&Method::POST, [name, "users"]) => change_members(hub, req, name, true)?,
        (&Method::DELETE, [name, "users"]) => change_members(hub, req, name, false)?,
        (&Method::PUT, [name, "properties"]) => {
            let properties = match crate::web::input::object(req) {
                Ok(_) if req.json() == Ok(Value::Null) => {
                    return Ok(json_error(StatusCode::BAD_REQUEST, "Must specify properties"));
                }
                Ok(fields) => fields.into_value(),
                Err(refusal) => return Ok(refusal.response()),
            };
            if !hub.store.set_group_properties(name, &properties)? {
                return Ok(no_such_group(name));
            }
            group_reply(hub, name, StatusCode::OK)?
        }
        _ => json_error(StatusCode::NOT_FOUND, "No such API endpoint"),
    })
}

fn list(hub: &Hub, req: &Req) -> Result<Resp, StoreError> {
    let page = match Page::of(req) {
        Ok(page) => page,
        Err(bad) => return Ok(bad.response()),
    };
    let groups = hub.store.groups()?;
    let total = groups.len();
    let items = groups.iter().skip(page.offset).take(page.limit).map(model).collect();
    Ok(pagination::respond(hub, req, page, items, total))
}

/// `POST /groups` `{"groups": [...], "users": [...]}`: all or nothing.
fn create_many(hub: &Hub, req: &Req) -> Result<Resp, StoreError> {
    let body = match crate::web::input::object(req) {
        Ok(fields) => fields.into_value(),
        Err(refusal) => return Ok(refusal.response()),
    };
    let names = match names_in(&body, "groups") {
        Ok(names) if !names.is_empty() => names,
        Ok(_) => {
            return Ok(json_error(
                StatusCode::BAD_REQUEST,
                "Must specify at least one group to create",
            ));
        }
        Err(bad) => return Ok(bad_request(&bad)),
    };
    let users = match existing_users(hub, &body) {
        Ok(users) => users,
        Err(bad) => return Ok(bad_request(&bad)),
    };
    for name in &names {
        if let Some(bad) = invalid_group_name(name) {
            return Ok(bad);
        }
        if hub.store.group(name)?.is_some() {
            return Ok(json_error(
                StatusCode::CONFLICT,
                &format!("Group {name} already exists"),
            ));
        }
    }
    let mut created = Vec::new();
    for name in &names {
        hub.store.create_group(name, &json!({}))?;
        hub.store.set_group_members(name, &users, true)?;
        tracing::info!("group {name} created with {} users", users.len());
        created.extend(hub.store.group(name)?.as_ref().map(model));
    }
    Ok(json(StatusCode::CREATED, &Value::Array(created)))
}

/// `POST /groups/{name}` with an optional `{"users": [...]}`.
fn create_one(hub: &Hub, req: &Req, name: &str) -> Result<Resp, StoreError> {
    let body = match crate::web::input::object(req) {
        Ok(fields) => fields.into_value(),
        Err(refusal) => return Ok(refusal.response()),
    };
    if let Some(bad) = invalid_group_name(name) {
        return Ok(bad);
    }
    let users = match existing_users(hub, &body) {
        Ok(users) => users,
        Err(bad) => return Ok(bad_request(&bad)),
    };
    if !hub.store.create_group(name, &json!({}))? {
        return Ok(json_error(
            StatusCode::CONFLICT,
            &format!("Group {name} already exists"),
        ));
    }
    hub.store.set_group_members(name, &users, true)?;
    tracing::info!("group {name} created with {} users", users.len());
    group_reply(hub, name, StatusCode::CREATED)
}

fn change_members(hub: &Hub, req: &Req, name: &str, add: bool) -> Result<Resp, StoreError> {
    let body = match crate::web::input::object(req) {
        Ok(fields) => fields.into_value(),
        Err(refusal) => return Ok(refusal.response()),
    };
    if body.get("users").is_none() {
        let verb = if add { "add" } else { "delete" };
        return Ok(json_error(
            StatusCode::BAD_REQUEST,
            &format!("Must specify users to {verb}"),
        ));
    }
    let Some(group) = hub.store.group(name)? else {
        return Ok(no_such_group(name));
    };
    let users = match existing_users(hub, &body) {
        Ok(users) => users,
        Err(bad) => return Ok(bad_request(&bad)),
    };
    if !add {
        let leaving: Vec<String> = users.iter().filter(|u| group.users.contains(u)).cloned().collect();
        if let Some(refusal) = end_sessions(hub, &leaving, name) {
            return Ok(refusal);
        }
    }
    hub.store.set_group_members(name, &users, add)?;
    group_reply(hub, name, StatusCode::OK)
}

/// Ends the login sessions of `users`, who are leaving the group `group`: their tokens name it,
/// and the edge admits by the token. On the blocking pool, as the rest of this API.
fn end_sessions(hub: &Hub, users: &[String], group: &str) -> Option<Resp> {
    let handle = tokio::runtime::Handle::current();
    let because = format!("is leaving group {group}");
    users
        .iter()
        .find_map(|user| handle.block_on(crate::web::api::end_sessions(hub, user, &because)))
}

fn group_reply(hub: &Hub, name: &str, status: StatusCode) -> Result<Resp, StoreError> {
    Ok(match hub.store.group(name)? {
        Some(group) => json(status, &model(&group)),
        // Deleted meanwhile by someone else.
        None => no_such_group(name),
    })
}

/// The names listed under `key`: absent is none; anything but a list of strings is a 400
/// (`Err` holds its message).
fn names_in(body: &Value, key: &str) -> Result<Vec<String>, String> {
    optional_strings(body, key)
        .map(Option::unwrap_or_default)
        .map_err(|_| format!("{key} must be a list of names"))
}

/// The body's `users`, each of whom must exist (JupyterHub: 400 `No such user`).
fn existing_users(hub: &Hub, body: &Value) -> Result<Vec<String>, String> {
    let users = names_in(body, "users")?;
    for user in &users {
        let known = hub.users().contains_key(user)
            || (hub.store.shared() && hub.store.load_user(user).is_ok_and(|u| u.is_some()));
        if !known {
            return Err(format!("No such user: {user}"));
        }
    }
    Ok(users)
}

fn bad_request(message: &str) -> Resp {
    json_error(StatusCode::BAD_REQUEST, message)
}

/// Group names travel comma-joined in `X-Forwarded-Groups` and in session tokens: the user-name
/// rule keeps commas and spaces out.
fn invalid_group_name(name: &str) -> Option<Resp> {
    (!valid_name(name)).then(|| {
        json_error(
            StatusCode::BAD_REQUEST,
            &format!("Invalid group name: {name:?} (letters, digits and - _ . @ +)"),
        )
    })
}

fn no_such_group(name: &str) -> Resp {
    json_error(StatusCode::NOT_FOUND, &format!("No such group: {name}"))
}

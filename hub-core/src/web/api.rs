//! The REST API under `/hub/api`, following JupyterHub's paths, status codes and JSON models
//! for what it implements (listed in docs/hub.md; JupyterHub's own reference:
//! <https://jupyterhub.readthedocs.io/en/stable/reference/rest-api.html>), so tools written for
//! JupyterHub, such as jupyterhub-idle-culler, work unchanged.
//!
//! Permissions are JupyterHub's scopes (`scopes`, `web::caller::allowed`): an admin (admin user
//! or admin token) may do everything; a user may act on themself, and on what configured roles
//! and servers shared with them reach; a server's token acts for its user.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::hub::{Hub, JUPYTERHUB_API_VERSION};
use crate::lifecycle::{self, StartRefused, StopOutcome};
use crate::model::{Phase, valid_name};
use crate::scopes::{Scopes, Target};
use crate::tokens::{Caller, CallerKind};
use crate::web::caller::{self, Authenticated};
use crate::web::input::{self, Refusal, internal_error};
use crate::web::pagination::{self, Page};
use crate::web::{Body, Req, empty, json, json_error, oauth, progress_stream};
use crate::web::{groups, share_codes, shares};

type Resp = http::Response<Body>;

pub async fn handle(hub: &Arc<Hub>, req: &Req, rest: &str) -> Resp {
    let seg = match input::path_segments(rest) {
        Ok(seg) => seg,
        Err(refusal) => return refusal.response(),
    };
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    // The version is public: clients read it before authenticating.
    if seg.is_empty() && req.method == Method::GET {
        return json(StatusCode::OK, &json!({"version": JUPYTERHUB_API_VERSION}));
    }
    // A server trades its code with its client secret, not with a user's credentials.
    if req.method == Method::POST && seg == ["oauth2", "token"] {
        return oauth::token(hub, req);
    }
    let Some(auth) = caller::identify(hub, req).await else {
        if req.method == Method::GET && seg == ["oauth2", "authorize"] {
            // A browser on its way into its server: sign in first, then come back here.
            let here = format!(
                "{}hub/api/oauth2/authorize?{}",
                hub.base,
                req.query.as_deref().unwrap_or("")
            );
            return crate::web::redirect(&crate::pages::urls::with_next(
                crate::pages::urls::login(&hub.base),
                Some(&here),
            ));
        }
        return json_error(StatusCode::FORBIDDEN, "Missing or invalid credentials");
    };
    if !caller::xsrf_ok(req, &auth.via) {
        return json_error(
            StatusCode::FORBIDDEN,
            "'_xsrf' argument missing from POST: send the _xsrf cookie's value in X-XSRFToken",
        );
    }
    let who = &auth.caller;
    if let Some(tail) = rest.trim_start_matches('/').strip_prefix("shares/") {
        return match shares::owner_target(tail) {
            Some((owner, server)) => {
                let target = shares::Target::Owner {
                    owner: &owner,
                    server: server.as_deref(),
                };
                shares::handle(hub, req, who, target).await
            }
            None => json_error(StatusCode::NOT_FOUND, "No such API endpoint"),
        };
    }
    if let Some(tail) = rest.trim_start_matches('/').strip_prefix("share-codes/") {
        return match shares::owner_target(tail) {
            Some((owner, server)) => share_codes::handle(hub, req, who, &owner, server.as_deref()).await,
            None => json_error(StatusCode::NOT_FOUND, "No such API endpoint"),
        };
    }
    match (&req.method, seg.as_slice()) {
        (&Method::GET, ["users", name, "shared"]) => {
            shares::handle(hub, req, who, shares::Target::SharedWithUser(name)).await
        }
        (&Method::GET, ["groups", name, "shared"]) => {
            shares::handle(hub, req, who, shares::Target::SharedWithGroup(name)).await
        }
        (&Method::GET, ["oauth2", "authorize"]) => oauth::authorize(hub, req, &auth),
        (&Method::GET, ["info"]) => {
            need(hub, who, "read:hub", Target::hub()).unwrap_or_else(|| json(StatusCode::OK, &hub.info()))
        }
        (&Method::GET, ["user"]) => whoami(hub, who),
        (&Method::GET, ["users"]) => match visible_users(hub, who) {
            Some(visible) => list_users(hub, req, visible.as_ref()),
            None => caller::forbidden("list:users"),
        },
        (&Method::POST, ["users"]) => {
            need(hub, who, "admin:users", Target::hub()).unwrap_or_else(|| create_users(hub, req))
        }
        (_, ["users", name, tail @ ..]) => {
            let target = match tail {
                ["server", ..] => Target::server(name, ""),
                ["servers", server, ..] => Target::server(name, server),
                _ => Target::user(name),
            };
            if let Some(denied) = need(hub, who, user_scope(&req.method, tail), target) {
                return denied;
            }
            user_routes(hub, req, &auth, name, tail).await
        }
        (_, ["groups", tail @ ..]) => groups::handle(hub, req, who, tail).await,
        (&Method::GET, ["proxy"]) => match need(hub, who, "proxy", Target::hub()) {
            Some(denied) => denied,
            None => match hub.proxy.routes().await {
                Ok(routes) => json(StatusCode::OK, &routes_json(&routes)),
                Err(e) => json_error(StatusCode::BAD_GATEWAY, &e.to_string()),
            },
        },
        (&Method::POST, ["proxy"]) => match need(hub, who, "proxy", Target::hub()) {
            Some(denied) => denied,
            None => match crate::reconcile::check_routes(hub).await {
                Ok(_) => empty(StatusCode::OK),
                Err(e) => json_error(StatusCode::BAD_GATEWAY, &e.to_string()),
            },
        },
        (&Method::GET, ["services"]) => match need(hub, who, "list:services", Target::hub()) {
            Some(denied) => denied,
            None => {
                let full = caller::allowed(hub, who, "read:services", Target::hub());
                let models: serde_json::Map<String, Value> = hub
                    .services
                    .iter()
                    .map(|s| (s.config.name.clone(), s.model(&hub.base, full)))
                    .collect();
                json(StatusCode::OK, &Value::Object(models))
            }
        },
        (&Method::GET, ["services", name]) => match need(hub, who, "read:services:name", Target::hub()) {
            Some(denied) => denied,
            None => match hub.services.get(name) {
                Some(s) => {
                    let full = caller::allowed(hub, who, "read:services", Target::hub());
                    json(StatusCode::OK, &s.model(&hub.base, full))
                }
                None => json_error(StatusCode::NOT_FOUND, &format!("No such service: {name}")),
            },
        },
        (&Method::POST, ["shutdown"]) => match need(hub, who, "shutdown", Target::hub()) {
            Some(denied) => denied,
            None => shutdown(hub, req, who),
        },
        _ => json_error(StatusCode::NOT_FOUND, "No such API endpoint"),
    }
}

/// `POST /hub/api/shutdown` (JupyterHub's): 202, then the hub ends. With `"servers": true` every
/// user server is stopped first; by default they keep running, for the next start to adopt
/// (edgehub never stops them on its own, as z2jh's `cleanup_servers = False`). `proxy` is taken
/// and changes nothing: the embedded proxy ends with the hub, and an external one is not the
/// hub's to stop.
fn shutdown(hub: &Arc<Hub>, req: &Req, who: &Caller) -> Resp {
    let parsed = input::object(req).and_then(|body| {
        body.only(&["servers", "proxy"])?;
        body.boolean("proxy")?;
        Ok(body.boolean("servers")?.unwrap_or(false))
    });
    let servers = match parsed {
        Ok(servers) => servers,
        Err(refusal) => return refusal.response(),
    };
    tracing::warn!(
        "{} asked the hub to shut down{}",
        who.name,
        if servers { ", stopping every server" } else { "" }
    );
    let hub = hub.clone();
    let why = format!("{} asked for it (POST /hub/api/shutdown)", who.name);
    tokio::spawn(async move {
        if servers {
            crate::lifecycle::stop_all(&hub).await;
        }
        hub.shutdown.request(crate::shutdown::Shutdown { why, failed: false });
    });
    json(StatusCode::ACCEPTED, &json!({"message": "Shutting down Hub"}))
}

/// A user model with the user's groups filled in from the database.
fn with_groups(hub: &Hub, mut model: Value) -> Value {
    let Some(name) = model["name"].as_str() else {
        return model;
    };
    match hub.store.user_groups(name) {
        Ok(names) => {
            with_roles(hub, &mut model, &names);
            model["groups"] = json!(names);
        }
        Err(e) => tracing::warn!("the groups of {name}: {e}"),
    }
    model
}

/// Adds to a user model's `roles` the configured roles its user holds, as a member of `groups`.
fn with_roles(hub: &Hub, model: &mut Value, groups: &[String]) {
    let (Some(name), false) = (model["name"].as_str(), hub.roles.is_empty()) else {
        return;
    };
    let held: Vec<Value> = hub
        .roles
        .of_user(name, &|_| groups.to_vec())
        .map(|r| json!(r.config.name))
        .collect();
    if let Some(roles) = model["roles"].as_array_mut() {
        roles.extend(held);
    }
}

/// `None` if the caller may do `scope` on `target`, else JupyterHub's 403.
fn need(hub: &Hub, who: &Caller, scope: &str, target: Target<'_>) -> Option<Resp> {
    (!caller::allowed(hub, who, scope, target)).then(|| caller::forbidden(scope))
}

/// The scope a call under `/users/{name}/` needs, as JupyterHub's handlers ask for it.
fn user_scope(method: &Method, tail: &[&str]) -> &'static str {
    match (method, tail) {
        (&Method::GET, []) => "read:users",
        (&Method::POST | &Method::PATCH, []) => "admin:users",
        (&Method::DELETE, []) => "delete:users",
        (&Method::GET, [.., "progress"]) => "read:servers",
        (&Method::POST, ["server" | "servers", ..]) => "start:servers",
        (&Method::DELETE, ["server" | "servers", ..]) => "delete:servers",
        (_, ["activity"]) => "users:activity",
        (&Method::GET, ["tokens", ..]) => "read:tokens",
        (_, ["tokens", ..]) => "tokens",
        (_, ["shared", ..]) => "read:users:shares",
        _ => "read:users",
    }
}

fn whoami(hub: &Hub, who: &Caller) -> Resp {
    if let Some(service) = hub.services.get(&who.name).filter(|_| who.kind == CallerKind::Service) {
        let mut model = service.model(&hub.base, true);
        model["scopes"] = match who.admin {
            true => json!(hub.admin_scopes.to_strings()),
            false => json!(service.scope_names()),
        };
        return json(StatusCode::OK, &model);
    }
    if who.kind == CallerKind::Service {
        return json(
            StatusCode::OK,
            &json!({"kind": "service", "name": who.name, "admin": true, "roles": ["admin"], "scopes": ["admin-ui", "admin:users", "admin:servers", "list:users", "read:users:activity", "read:servers", "delete:servers", "access:servers"]}),
        );
    }
    let Some((model, servers)) = hub.users().get(&who.name).map(|user| {
        let servers: Vec<String> = user.servers.keys().cloned().collect();
        (user.to_json(&hub.base, false, false), servers)
    }) else {
        return Refusal::no_such_user(&who.name).response();
    };
    let mut model = with_groups(hub, model);
    let scopes = if who.admin {
        json!([
            "admin-ui",
            "admin:users",
            "admin:servers",
            "list:users",
            "read:users",
            "read:servers",
            "delete:servers",
            "servers",
            "access:servers"
        ])
    } else if let Some(server) = &who.server {
        json!([
            format!("access:servers!server={}/{server}", who.name),
            format!("read:users:name!user={}", who.name),
            format!("users:activity!user={}", who.name)
        ])
    } else {
        json!([
            format!("self"),
            format!("servers!user={}", who.name),
            format!("access:servers!user={}", who.name),
            format!("read:users!user={}", who.name),
            format!("tokens!user={}", who.name)
        ])
    };
    model["scopes"] = scopes;
    // Read with the model above: the roles' and services' access below need them, not another read.
    let groups: Vec<String> = model["groups"]
        .as_array()
        .map(|names| names.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if !who.admin
        && who.server.is_none()
        && let Some(list) = model["scopes"].as_array_mut()
    {
        // What their configured roles give them, expanded as JupyterHub lists a role's scopes.
        let from_roles = hub.roles.scopes_of_user(&who.name, &|_| groups.clone());
        list.extend(from_roles.to_strings().into_iter().map(Value::String));
    }
    if who.server.is_none()
        && let Some(list) = model["scopes"].as_array_mut()
    {
        // The exact scope each of the user's servers checks (`JUPYTERHUB_OAUTH_ACCESS_SCOPES`),
        // and each server shared with them.
        for server in &servers {
            list.push(json!(crate::shares::access_scope(&who.name, server)));
        }
        // The services whose pages they may sign in to, as JupyterHub lists `access:services`.
        list.extend(
            hub.services
                .iter()
                .filter(|s| s.config.url.is_some() && s.usable_by(who, || groups.clone()))
                .map(|s| json!(s.access_scope())),
        );
        match crate::shares::shared_with(hub, &who.name) {
            Ok(shared) => list.extend(
                shared
                    .iter()
                    .map(|(owner, server)| json!(crate::shares::access_scope(owner, server))),
            ),
            Err(e) => tracing::warn!("the servers shared with {}: {e}", who.name),
        }
    }
    if let Some(limited) = &who.scopes {
        // A token made with scopes holds those, no more (JupyterHub lists them expanded).
        model["scopes"] = json!(limited.to_strings());
    }
    if let Some(server) = &who.server {
        model["session_id"] = Value::Null;
        model["server_name"] = json!(server);
    }
    json(StatusCode::OK, &model)
}

/// Whom `GET /users` lists for `who`: `Some(None)` everyone (`list:users` on all), `Some(names)`
/// those a filtered `list:users` reaches (an instructor's `list:users!group=students`: the
/// students, maybe none yet), as JupyterHub narrows the query; `None` (403) without any
/// `list:users`.
fn visible_users(hub: &Hub, who: &Caller) -> Option<Option<BTreeSet<String>>> {
    if caller::allowed(hub, who, "list:users", Target::hub()) {
        return Some(None);
    }
    // Of a user's rights only their roles hold a filtered `list:users` (their own role and
    // shares do not); a service holds its scopes, checked with the token's below.
    let groups_of = |user: &str| hub.store.user_groups(user).unwrap_or_default();
    let role_lists = match who.kind {
        CallerKind::User => hub.roles.scopes_of_user(&who.name, &groups_of).holds_any("list:users"),
        CallerKind::Service => true,
    };
    let token_lists = who.scopes.as_ref().is_none_or(|s| s.holds_any("list:users"));
    if !(role_lists && token_lists) {
        return None;
    }
    Some(Some(caller::listable_users(hub, who)))
}

/// `GET /users`: `offset`, `limit`, `state` (`active`, `ready`, `inactive`),
/// `include_stopped_servers`; paginated JSON when asked with JupyterHub's media type. `visible`
/// narrows it to those users (`None`: everyone).
fn list_users(hub: &Hub, req: &Req, visible: Option<&BTreeSet<String>>) -> Resp {
    let Page { offset, limit } = match Page::of(req) {
        Ok(page) => page,
        Err(bad) => return bad.response(),
    };
    let state = req.query_param("state");
    let include_stopped = req.query_param("include_stopped_servers").is_some();
    let state_filter = match state.as_deref() {
        None | Some("") => None,
        Some(s @ ("active" | "ready" | "inactive")) => Some(s.to_owned()),
        Some(other) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("Unrecognized state filter: {other:?}; use active, ready or inactive"),
            );
        }
    };
    let groups = hub.store.groups().map(|g| groups::by_user(&g)).unwrap_or_else(|e| {
        tracing::warn!("listing users without their groups: {e}");
        Default::default()
    });
    let users = hub.users();
    let matching: Vec<_> = users
        .values()
        .filter(|u| visible.is_none_or(|names| names.contains(&u.record.name)))
        .filter(|u| {
            let active = u.servers.values().any(|s| s.phase().is_active());
            let ready = u.servers.values().any(|s| s.phase() == Phase::Running);
            match state_filter.as_deref() {
                Some("active") => active,
                Some("ready") => ready,
                Some("inactive") => !active,
                _ => true,
            }
        })
        .collect();
    let total = matching.len();
    let items: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|u| {
            let mut m = u.to_json(&hub.base, include_stopped, false);
            let names = groups.get(&u.record.name).cloned().unwrap_or_default();
            with_roles(hub, &mut m, &names);
            if !names.is_empty() {
                m["groups"] = json!(names);
            }
            if state_filter.as_deref() == Some("ready")
                && let Some(servers) = m["servers"].as_object_mut()
            {
                servers.retain(|_, s| s["ready"] == true);
            }
            m
        })
        .collect();
    pagination::respond(hub, req, Page { offset, limit }, items, total)
}

/// `POST /users` `{"usernames": [...], "admin"?}`: every name is checked before any user is
/// made.
fn create_users(hub: &Hub, req: &Req) -> Resp {
    let parsed = input::object(req).and_then(|body| {
        body.only(&[&["usernames"], input::USER_MODEL_KEYS].concat())?;
        let names = body.strings("usernames")?.unwrap_or_default();
        if names.is_empty() {
            return Err(Refusal::bad("Must specify at least one user to create"));
        }
        let admin = body.boolean("admin")?.unwrap_or(false);
        if let Some(bad) = names.iter().find(|n| !valid_name(n)) {
            return Err(Refusal::bad(format!("Invalid username: {bad:?}")));
        }
        Ok((names, admin))
    });
    let (names, admin) = match parsed {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.response(),
    };
    let mut created = Vec::new();
    for name in &names {
        if hub.users().contains_key(name) {
            continue;
        }
        if let Err(e) = hub.ensure_user(name, admin) {
            return internal_error(&format!("creating user {name}"), e);
        }
        created.push(name.clone());
    }
    if created.is_empty() {
        return json_error(
            StatusCode::CONFLICT,
            &format!("All {} users already exist", names.len()),
        );
    }
    let users = hub.users();
    let models: Vec<Value> = created
        .iter()
        .filter_map(|n| users.get(n))
        .map(|u| u.to_json(&hub.base, false, false))
        .collect();
    json(StatusCode::CREATED, &Value::Array(models))
}

async fn user_routes(hub: &Arc<Hub>, req: &Req, auth: &Authenticated, name: &str, tail: &[&str]) -> Resp {
    let who = &auth.caller;
    if hub.store.shared() && (req.method == Method::GET || !hub.users().contains_key(name)) {
        // Another replica may have changed this user a moment ago (made them, started their
        // server): what is read, and a user this copy has not seen yet, come from the database,
        // not from a copy that may lag it. Changes need no such read: they are claimed there.
        let (hub, user) = (hub.clone(), name.to_owned());
        let fresh = tokio::task::spawn_blocking(move || hub.refresh_user(&user, hub.store.as_ref())).await;
        if let Ok(Err(e)) = fresh {
            tracing::error!("reading user {name} from the state database: {e}");
            let mut r = json_error(StatusCode::SERVICE_UNAVAILABLE, "The state database cannot be reached");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
    }
    // Every call but the one that makes the user is about a user who must exist: 404 before
    // the body is read (JupyterHub's order), and nothing reaches the database for a stranger.
    // JupyterHub answers a token request for a stranger with 403.
    let makes_the_user = req.method == Method::POST && tail.is_empty();
    if !makes_the_user && !hub.users().contains_key(name) {
        if req.method == Method::POST && tail == ["tokens"] {
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("User {name} not found or no permissions to generate tokens"),
            );
        }
        return Refusal::no_such_user(name).response();
    }
    match (&req.method, tail) {
        (&Method::GET, []) => {
            let include_stopped = req.query_param("include_stopped_servers").is_some();
            let model = hub
                .users()
                .get(name)
                .map(|u| u.to_json(&hub.base, include_stopped, who.admin));
            match model {
                Some(model) => json(StatusCode::OK, &with_groups(hub, model)),
                None => Refusal::no_such_user(name).response(),
            }
        }
        (&Method::POST, []) => {
            if !who.admin {
                return json_error(StatusCode::FORBIDDEN, "Action requires admin rights");
            }
            // As JupyterHub: a body that is not JSON first, then an existing user, then the model.
            let body = match input::object(req) {
                Ok(body) => body,
                Err(refusal) => return refusal.response(),
            };
            if hub.users().contains_key(name) {
                return json_error(StatusCode::CONFLICT, &format!("User {name} already exists"));
            }
            let admin = body.only(input::USER_MODEL_KEYS).and_then(|()| body.boolean("admin"));
            let admin = match admin {
                Ok(admin) => admin.unwrap_or(false),
                Err(refusal) => return refusal.response(),
            };
            if !valid_name(name) {
                return json_error(StatusCode::BAD_REQUEST, &format!("Invalid username: {name:?}"));
            }
            if let Err(e) = hub.ensure_user(name, admin) {
                return internal_error(&format!("creating user {name}"), e);
            }
            let model = hub.users().get(name).map(|u| u.to_json(&hub.base, false, false));
            json(StatusCode::CREATED, &model.unwrap_or(Value::Null))
        }
        (&Method::PATCH, []) => {
            if !who.admin {
                return json_error(StatusCode::FORBIDDEN, "Action requires admin rights");
            }
            let admin = match patch_of(req, name) {
                Ok(admin) => admin,
                Err(refusal) => return refusal.response(),
            };
            let Some(was_admin) = hub.users().get(name).map(|u| u.record.admin) else {
                return Refusal::no_such_user(name).response();
            };
            // Their session tokens say admin, and the edge believes them: they go first.
            if was_admin
                && admin == Some(false)
                && let Some(refusal) = end_sessions(hub, name, "is no longer an admin").await
            {
                return refusal;
            }
            let mut users = hub.users();
            let Some(u) = users.get_mut(name) else {
                return Refusal::no_such_user(name).response();
            };
            // Written first: a failed write leaves memory as the database has it.
            let record = crate::model::UserRecord {
                admin: admin.unwrap_or(u.record.admin),
                ..u.record.clone()
            };
            if let Err(e) = hub.store.put_user(&record) {
                return internal_error(&format!("changing user {name}"), e);
            }
            u.record = record;
            json(StatusCode::OK, &u.to_json(&hub.base, false, false))
        }
        (&Method::DELETE, []) => delete_user(hub, who, name).await,
        (_, ["server"]) => server_action(hub, req, name, "").await,
        (&Method::GET, ["server", "progress"]) => progress_stream::respond(hub, name, ""),
        (_, ["servers", server]) => server_action(hub, req, name, server).await,
        (&Method::GET, ["servers", server, "progress"]) => progress_stream::respond(hub, name, server),
        (&Method::POST, ["activity"]) => activity(hub, req, name),
        (&Method::GET, ["tokens"]) => {
            let tokens: Vec<Value> = hub.tokens.of_user(name).iter().map(token_json).collect();
            json(StatusCode::OK, &json!({"api_tokens": tokens}))
        }
        (&Method::POST, ["tokens"]) => {
            if who.server.is_some() {
                return json_error(StatusCode::FORBIDDEN, "A server's token cannot make tokens");
            }
            let (note, expires, body) = match token_request(req) {
                Ok(asked) => asked,
                Err(refusal) => return refusal.response(),
            };
            let scopes = match requested_scopes(hub, who, name, &body) {
                Ok(scopes) => scopes,
                Err((status, why)) => return json_error(status, &why),
            };
            match hub.issue_token(name, None, &note, expires, scopes) {
                Ok((token, record)) => {
                    let mut model = token_json(&record);
                    model["token"] = json!(token);
                    json(StatusCode::CREATED, &model)
                }
                Err(e) => internal_error(&format!("issuing a token for {name}"), e),
            }
        }
        (&Method::GET, ["tokens", id]) => match hub.tokens.of_user(name).iter().find(|t| token_id(t) == *id) {
            Some(t) => json(StatusCode::OK, &token_json(t)),
            None => json_error(StatusCode::NOT_FOUND, "No such token"),
        },
        (&Method::DELETE, ["tokens", id]) => {
            let Some(t) = hub.tokens.of_user(name).into_iter().find(|t| token_id(t) == *id) else {
                return json_error(StatusCode::NOT_FOUND, "No such token");
            };
            // The database first: if it fails, the token still works everywhere, as it says.
            if let Err(e) = hub.store.delete_token(t.id) {
                return internal_error(&format!("deleting token {id} of {name}"), e);
            }
            hub.tokens.remove_id(t.id);
            empty(StatusCode::NO_CONTENT)
        }
        _ => json_error(StatusCode::NOT_FOUND, "No such API endpoint"),
    }
}

async fn delete_user(hub: &Arc<Hub>, who: &Caller, name: &str) -> Resp {
    if !who.admin {
        return json_error(StatusCode::FORBIDDEN, "Action requires admin rights");
    }
    let servers: Vec<String> = match hub.users().get(name) {
        Some(u) => u.servers.keys().cloned().collect(),
        None => return Refusal::no_such_user(name).response(),
    };
    for server in servers {
        if let Ok(StopOutcome::Stopping) = lifecycle::stop(hub, name, &server).await {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("{name}'s server is still stopping; try again when it has stopped"),
            );
        }
    }
    if let Some(refusal) = end_sessions(hub, name, "is deleted").await {
        return refusal;
    }
    // The database first: if it fails, the user is still there, everywhere.
    if let Err(e) = hub.store.delete_user(name) {
        return internal_error(&format!("deleting user {name}"), e);
    }
    hub.users().remove(name);
    hub.tokens.remove_user(name);
    hub.update_gauges();
    empty(StatusCode::NO_CONTENT)
}

/// Ends `user`'s login sessions before a change that makes what their tokens say untrue
/// ([`crate::session::Sessions::end_all_of`]); `Some(503)` if they could not all be ended, and
/// then the change must not be made (fail closed).
pub async fn end_sessions(hub: &Hub, user: &str, because: &str) -> Option<Resp> {
    match hub.sessions.end_all_of(user).await {
        Ok(0) => None,
        Ok(n) => {
            tracing::info!("{user} {because}: {n} login session(s) ended");
            None
        }
        Err(e) => {
            tracing::error!("{user} {because}, but their login sessions cannot be ended: {e}");
            Some(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{user}'s login sessions cannot be ended ({e}); nothing was changed"),
            ))
        }
    }
}

pub fn token_id(t: &crate::model::TokenRecord) -> String {
    format!("a{}", t.id)
}

/// The `scopes` of a token request: each one known, and held both by the token's owner and
/// by whoever asks (a scoped token cannot make a broader one); 400 otherwise, as JupyterHub.
/// `None`: all the owner holds.
fn requested_scopes(
    hub: &Hub,
    who: &Caller,
    owner: &str,
    body: &Value,
) -> Result<Option<Vec<String>>, (StatusCode, String)> {
    let list = |key: &str| -> Result<Option<Vec<String>>, (StatusCode, String)> {
        let bad = || {
            (
                StatusCode::BAD_REQUEST,
                format!("token {key} must be null or a list of strings"),
            )
        };
        crate::web::optional_strings(body, key).map_err(|_| bad())
    };
    let (scopes, roles) = (list("scopes")?, list("roles")?);
    if scopes.is_none() && roles.is_none() {
        return Ok(None);
    }
    // Roles (JupyterHub's older way to ask) are their scopes.
    let mut texts = scopes.unwrap_or_default();
    for name in roles.unwrap_or_default() {
        match crate::scopes::role(&name, owner) {
            Some(scopes) => texts.extend(scopes),
            None => return Err((StatusCode::BAD_REQUEST, format!("role {name:?} does not exist"))),
        }
    }
    let requested = match Scopes::requested(&texts, owner) {
        Ok(Some(scopes)) => scopes,
        Ok(None) => return Ok(None),
        Err(e) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
    };
    let groups_of = |user: &str| hub.store.user_groups(user).unwrap_or_default();
    let owner_holds = if hub.is_admin(owner) {
        hub.admin_scopes.clone()
    } else {
        let mut holds = Scopes::own(owner);
        holds.union(&hub.roles.scopes_of_user(owner, &groups_of));
        holds
    };
    let mut holders = vec![(owner.to_owned(), owner_holds)];
    if let Some(asker) = &who.scopes {
        holders.push((format!("the requesting token of {}", who.name), (**asker).clone()));
    }
    for (holder, holds) in holders {
        if let Err(scope) = holds.covers(&requested, &groups_of) {
            // JupyterHub answers 400 here: the request asks for what cannot be given.
            return Err((
                StatusCode::BAD_REQUEST,
                format!("Not assigning requested scopes {scope}: not held by {holder}"),
            ));
        }
    }
    Ok(Some(texts))
}

fn token_json(t: &crate::model::TokenRecord) -> Value {
    let iso = |ms: Option<u64>| ms.map(proxy::timestamp::format_iso);
    json!({
        "id": token_id(t),
        "kind": "api_token",
        "user": t.user,
        "note": t.note,
        "created": iso(Some(t.created_ms)),
        "expires_at": iso(t.expires_ms),
        "last_activity": Value::Null,
        "roles": [],
        // JupyterHub lists a token's scopes expanded (`read:users` with `read:users:name`…).
        "scopes": match (&t.scopes, &t.server) {
            (Some(scopes), _) => match Scopes::requested(scopes, &t.user) {
                Ok(Some(expanded)) => json!(expanded.to_strings()),
                _ => json!(scopes),
            },
            (None, Some(_)) => json!(["access:servers"]),
            (None, None) => json!(["inherit"]),
        },
        "session_id": Value::Null,
        // JupyterHub's own client made API tokens; a server's OAuth login made the others.
        "oauth_client": t.note.strip_prefix("oauth: ").unwrap_or("JupyterHub"),
    })
}

/// `POST|DELETE /users/{name}/server` and `/users/{name}/servers/{server}`.
async fn server_action(hub: &Arc<Hub>, req: &Req, user: &str, server: &str) -> Resp {
    if !server.is_empty() && !hub.config.allow_named_servers {
        return json_error(StatusCode::BAD_REQUEST, "Named servers are not enabled on this hub");
    }
    match req.method {
        Method::POST => {
            let options = match input::object(req).and_then(user_options) {
                Ok(options) => options,
                Err(refusal) => return refusal.response(),
            };
            match lifecycle::request_start(hub, user, server, options) {
                Ok(()) => {
                    let mut r = empty(StatusCode::ACCEPTED);
                    if let Ok(v) = HeaderValue::from_str(&crate::model::progress_url(&hub.base, user, server)) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    r
                }
                Err(refused) => start_refused(refused),
            }
        }
        Method::DELETE => {
            let remove = match input::object(req).and_then(|body| body.boolean("remove")) {
                Ok(remove) => remove.unwrap_or(false),
                Err(refusal) => return refusal.response(),
            };
            if !server.is_empty() && hub.server(user, server).is_none() {
                return json_error(StatusCode::NOT_FOUND, &format!("{user} has no server named {server:?}"));
            }
            match lifecycle::stop(hub, user, server).await {
                Ok(StopOutcome::Stopped) => {
                    if remove && !server.is_empty() {
                        if let Err(e) = hub.store.delete_server(user, server) {
                            return internal_error(&format!("forgetting server {user}/{server}"), e);
                        }
                        if let Some(u) = hub.users().get_mut(user) {
                            u.servers.remove(server);
                        }
                    }
                    empty(StatusCode::NO_CONTENT)
                }
                Ok(StopOutcome::Stopping) => empty(StatusCode::ACCEPTED),
                Err(refused) => start_refused(refused),
            }
        }
        _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "Use POST to start, DELETE to stop"),
    }
}

/// The user options of a start: JupyterHub 6's `{"user_options": {…} | null, "display_name"?}`,
/// or, without either key, the body itself (as JupyterHub took them before).
fn user_options(body: input::Fields) -> Result<Value, Refusal> {
    if !body.has("user_options") && !body.has("display_name") {
        return Ok(body.into_value());
    }
    body.string("display_name")?;
    Ok(Value::Object(body.object("user_options")?.cloned().unwrap_or_default()))
}

fn start_refused(refused: StartRefused) -> Resp {
    let message = refused.to_string();
    match refused {
        StartRefused::NoSuchUser => json_error(StatusCode::NOT_FOUND, &message),
        StartRefused::Throttled(secs) | StartRefused::TooManyServers(secs) => {
            let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, &message);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        StartRefused::Changed => json_error(StatusCode::CONFLICT, &message),
        StartRefused::Store(e) => internal_error("starting a server", e),
        _ => json_error(StatusCode::BAD_REQUEST, &message),
    }
}

/// `POST /users/{name}/activity`: `{last_activity?, servers?: {name: {last_activity}}}`, at
/// least one of them. Everything is checked, as JupyterHub checks it, before anything is noted.
fn activity(hub: &Hub, req: &Req, user: &str) -> Resp {
    let parsed = input::object(req).and_then(|body| activity_of(hub, user, &body));
    let (user_level, servers) = match parsed {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.response(),
    };
    for (server, at) in servers {
        if let Err(e) = hub.note_activity(user, Some(&server), at) {
            return internal_error(&format!("noting the activity of {user}/{server}"), e);
        }
    }
    if let Some(at) = user_level
        && let Err(e) = hub.note_activity(user, None, at)
    {
        return internal_error(&format!("noting the activity of {user}"), e);
    }
    empty(StatusCode::OK)
}

/// The timestamps of an activity report: the user's, and each named server's.
type Activity = (Option<u64>, Vec<(String, u64)>);

fn activity_of(hub: &Hub, user: &str, body: &input::Fields) -> Result<Activity, Refusal> {
    const SHAPE: &str = "servers must be a dict of the form {server_name: {last_activity: timestamp}}";
    let user_level = body.get("last_activity").map(timestamp).transpose()?;
    let servers = match body.get("servers") {
        None => None,
        Some(Value::Object(servers)) => Some(servers),
        Some(_) => return Err(Refusal::bad(SHAPE)),
    };
    if user_level.is_none() && servers.is_none_or(|s| s.is_empty()) {
        return Err(Refusal::bad(
            "body must contain at least one of `last_activity` or `servers`",
        ));
    }
    let mut noted = Vec::new();
    for (server, info) in servers.into_iter().flatten() {
        if !shares::server_exists(hub, user, server) {
            return Err(Refusal::bad(format!("No such server '{server}' for user {user}")));
        }
        match info.get("last_activity") {
            Some(at) => noted.push((server.clone(), timestamp(at)?)),
            None => return Err(Refusal::bad(SHAPE)),
        }
    }
    Ok((user_level, noted))
}

/// An activity timestamp: ISO 8601, and not more than an hour ahead (JupyterHub's rule).
fn timestamp(value: &Value) -> Result<u64, Refusal> {
    let Some(text) = value.as_str() else {
        return Err(input::must_be("last_activity", "an ISO 8601 timestamp", value));
    };
    let ms = proxy::timestamp::parse_iso(text)
        .and_then(|ms| u64::try_from(ms).ok())
        .ok_or_else(|| input::must_be("last_activity", "an ISO 8601 timestamp", value))?;
    if ms > proxy::timestamp::now_ms() + 59 * 60 * 1000 {
        return Err(Refusal::bad(format!(
            "Rejecting activity from more than an hour in the future: {text}"
        )));
    }
    Ok(ms)
}

/// `PATCH /users/{name}`: `{"admin"?}`; a new `name` (JupyterHub renames) is refused rather
/// than ignored.
fn patch_of(req: &Req, name: &str) -> Result<Option<bool>, Refusal> {
    let body = input::object(req)?;
    body.only(input::USER_MODEL_KEYS)?;
    if body.string("name")?.is_some_and(|new| new != name) {
        return Err(Refusal::bad("Renaming users is not supported by this hub"));
    }
    body.boolean("admin")
}

/// `POST /users/{name}/tokens`: the note, the lifetime in seconds (`None` or 0: it never
/// expires) and the body, for its `scopes` and `roles`.
fn token_request(req: &Req) -> Result<(String, Option<u64>, Value), Refusal> {
    let body = input::object(req)?;
    let note = body
        .string("note")?
        .filter(|n| !n.is_empty())
        .unwrap_or("Requested via api")
        .to_owned();
    let expires = body.count("expires_in")?.filter(|s| *s > 0);
    // Checked here for their type; `requested_scopes` checks what they name.
    body.strings("scopes")?;
    body.strings("roles")?;
    Ok((note, expires, body.into_value()))
}

fn routes_json(routes: &std::collections::BTreeMap<String, crate::proxy_api::ProxyRoute>) -> Value {
    let mut out = serde_json::Map::new();
    for (key, route) in routes {
        let routespec = if key == "/" { key.clone() } else { format!("{key}/") };
        let mut data = route.data.clone();
        data.remove("jupyterhub");
        if let Some(ms) = route.last_activity_ms {
            data.insert("last_activity".into(), json!(proxy::timestamp::format_iso(ms)));
        }
        out.insert(
            routespec.clone(),
            json!({"routespec": routespec, "target": route.target, "data": data}),
        );
    }
    Value::Object(out)
}

/// `GET /hub/metrics`: Prometheus text, for holders of `read:metrics` (as JupyterHub 3+ with
/// `authenticate_prometheus`): admins, and tokens made with that scope, such as a scraper's.
pub async fn metrics(hub: &Arc<Hub>, req: &Req) -> Resp {
    match caller::identify(hub, req).await {
        Some(a) if caller::allowed(hub, &a.caller, "read:metrics", crate::scopes::Target::hub()) => {
            hub.update_active_users(proxy::timestamp::now_ms());
            let mut r = http::Response::new(crate::web::full(hub.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => json_error(
            StatusCode::FORBIDDEN,
            "Metrics need a token with the read:metrics scope (an admin's holds it)",
        ),
    }
}

//! Who is asking: an API token (`Authorization: token …`), an externally issued JWT
//! (`Authorization: Bearer …`, the platform case), or the login session cookie. Anything that
//! cannot be checked is treated as anonymous (fail closed); a session store that cannot be
//! reached is logged.
//!
//! Cookie-authenticated requests that change state must also carry the `_xsrf` cookie's value
//! in `X-XSRFToken` (or the `_xsrf` form field): a cookie is sent by the browser on any site's
//! behalf, a header is not.

use http::header;

use crate::hub::Hub;
use crate::scopes::{Scopes, Target};
use crate::tokens::{Caller, CallerKind, TokenRecordOrAdmin};
use crate::web::{Req, cookies};

pub const XSRF_COOKIE: &str = "_xsrf";

/// How a request authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Token,
    Cookie { jti: String },
}

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    pub via: Via,
}

/// A platform JWT in `Authorization`: `Bearer <jwt>`, or the bare `<jwt>` when
/// `auth.bare_authorization` is on. `None` when the hub takes no platform tokens.
pub fn platform_jwt<'r>(hub: &Hub, req: &'r Req) -> Option<&'r str> {
    if !hub.auth.has_issuers() {
        return None;
    }
    let value = req.header(header::AUTHORIZATION)?;
    let jwt = proxy::auth::token_source::bare_jwt;
    match value.split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") => jwt(credential.as_bytes()),
        None if hub.config.auth.bare_authorization => jwt(value.as_bytes()),
        _ => None,
    }
}

pub async fn identify(hub: &Hub, req: &Req) -> Option<Authenticated> {
    if let Some(auth) = req.header(header::AUTHORIZATION) {
        if !auth.contains(' ') {
            return platform_caller(hub, platform_jwt(hub, req)?).await;
        }
        let (scheme, credential) = auth.split_once(' ')?;
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
            if let Some(found) = hub.lookup_token(credential) {
                let caller = token_caller(hub, found);
                // A blocked user's tokens stay in the database (unblocking restores them) but
                // are refused, here and so at the edge, which asks the hub about them.
                if caller.kind == CallerKind::User && hub.is_blocked(&caller.name) {
                    return None;
                }
                return Some(Authenticated {
                    caller,
                    via: Via::Token,
                });
            }
            if let Some(jwt) = platform_jwt(hub, req) {
                return platform_caller(hub, jwt).await;
            }
        }
        return None;
    }
    let token = cookies::get(&req.headers, &hub.config.session.cookie)?;
    match hub.sessions.check(token).await {
        Ok(Some(claims)) if hub.users().contains_key(&claims.sub) && !hub.is_blocked(&claims.sub) => {
            Some(Authenticated {
                caller: Caller {
                    admin: hub.is_admin(&claims.sub),
                    name: claims.sub,
                    kind: CallerKind::User,
                    server: None,
                    scopes: None,
                },
                via: Via::Cookie { jti: claims.jti },
            })
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("session check: {e}");
            None
        }
    }
}

/// A platform token as the caller: checked as a login is (signature and platform session),
/// on every request, since nothing of it is kept.
async fn platform_caller(hub: &Hub, jwt: &str) -> Option<Authenticated> {
    let who = match hub.auth.check_token(jwt).await {
        Ok(who) => who,
        Err(e) => {
            tracing::debug!("platform token refused: {e}");
            return None;
        }
    };
    if !hub.may_sign_in(&who.name, who.admin) {
        tracing::debug!("platform token of {}, who may not sign in, refused", who.name);
        return None;
    }
    hub.ensure_user(&who.name, who.admin).ok()?;
    Some(Authenticated {
        caller: Caller {
            admin: who.admin || hub.is_admin(&who.name),
            name: who.name,
            kind: CallerKind::User,
            server: None,
            scopes: None,
        },
        via: Via::Token,
    })
}

fn token_caller(hub: &Hub, found: TokenRecordOrAdmin) -> Caller {
    match found {
        TokenRecordOrAdmin::Service(name) => match hub.services.get(&name) {
            Some(service) => service.caller(),
            // Not reachable (the token table is made from the services), but never an admin.
            None => Caller {
                name,
                kind: CallerKind::Service,
                admin: false,
                server: None,
                scopes: Some(Default::default()),
            },
        },
        TokenRecordOrAdmin::Admin => Caller {
            name: "admin-token".to_owned(),
            kind: CallerKind::Service,
            admin: true,
            server: None,
            scopes: None,
        },
        TokenRecordOrAdmin::Record(r) => Caller {
            // A server's own token acts for its user, never as an admin.
            admin: r.server.is_none() && hub.is_admin(&r.user),
            scopes: r.scopes.as_ref().and_then(|texts| {
                // Scopes that no longer parse (a newer hub's?) allow nothing: fail closed.
                let parsed = Scopes::requested(texts, &r.user).unwrap_or_else(|e| {
                    tracing::warn!(
                        "token {} of {} has scopes this hub cannot read ({e}); it may do nothing",
                        r.id,
                        r.user
                    );
                    Some(Scopes::default())
                });
                parsed.map(std::sync::Arc::new)
            }),
            name: r.user,
            kind: CallerKind::User,
            server: r.server,
        },
    }
}

/// Whether the caller may do `scope` on `target`: their role allows it (an admin everything, a
/// user their own resources and what their configured roles and the servers shared with them
/// grant) and, for a token made with scopes, so do those.
pub fn allowed(hub: &Hub, who: &Caller, scope: &str, target: Target<'_>) -> bool {
    let groups_of = |user: &str| hub.store.user_groups(user).unwrap_or_default();
    let role_allows = if who.admin {
        hub.admin_scopes.allows(scope, target, &groups_of)
    } else {
        match who.kind {
            CallerKind::User => {
                Scopes::own(&who.name).allows(scope, target, &groups_of)
                    || hub.roles.allow_user(&who.name, scope, target, &groups_of)
                    // Then what servers shared with them grant (a project server's group may
                    // start and stop it). Read only when their own role does not answer.
                    || crate::shares::granted_to(hub, &who.name).is_ok_and(|s| s.allows(scope, target, &groups_of))
            }
            // A service's role is its configured scopes, checked below; without them, nothing.
            CallerKind::Service => who.scopes.is_some(),
        }
    };
    role_allows && who.scopes.as_ref().is_none_or(|s| s.allows(scope, target, &groups_of))
}

/// The users `who` may list (`list:users` on each: everyone for an admin, an instructor's
/// students), for `GET /hub/api/users` and the admin page. Decided outside the users' lock: a
/// role's or share's check may read the state database.
pub fn listable_users(hub: &Hub, who: &Caller) -> std::collections::BTreeSet<String> {
    let names: Vec<String> = hub.users().keys().cloned().collect();
    names
        .into_iter()
        .filter(|name| allowed(hub, who, "list:users", Target::user(name)))
        .collect()
}

/// The 403 JupyterHub answers when a scope is missing.
pub fn forbidden(scope: &str) -> http::Response<crate::web::Body> {
    crate::web::json_error(
        http::StatusCode::FORBIDDEN,
        &format!("Action is not authorized with current scopes; requires any of [{scope}]"),
    )
}

/// For cookie-authenticated requests that change state: the `_xsrf` cookie must be echoed in the
/// `X-XSRFToken` header or the `_xsrf` form field.
pub fn xsrf_ok(req: &Req, via: &Via) -> bool {
    *via == Via::Token || matches!(req.method, http::Method::GET | http::Method::HEAD) || xsrf_echoed(req)
}

/// The `_xsrf` cookie's value came back in `X-XSRFToken` or the `_xsrf` form field.
pub fn xsrf_echoed(req: &Req) -> bool {
    let Some(cookie) = cookies::get(&req.headers, XSRF_COOKIE) else {
        return false;
    };
    let sent = req
        .header(header::HeaderName::from_static("x-xsrftoken"))
        .map(str::to_owned)
        .or_else(|| req.form_field("_xsrf"));
    sent.is_some_and(|s| {
        !cookie.is_empty() && proxy::headers::secret::constant_time_eq(s.as_bytes(), cookie.as_bytes())
    })
}

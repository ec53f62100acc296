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

pub async fn identify(hub: &Hub, req: &Req) -> Option<Authenticated> {
    if let Some(auth) = req.header(header::AUTHORIZATION) {
        let (scheme, credential) = auth.split_once(' ')?;
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
            if let Some(found) = hub.lookup_token(credential) {
                return Some(Authenticated {
                    caller: token_caller(hub, found),
                    via: Via::Token,
                });
            }
            if scheme.eq_ignore_ascii_case("bearer") && hub.auth.has_issuers() {
                let who = hub.auth.check_token(credential).ok()?;
                hub.ensure_user(&who.name, who.admin).ok()?;
                return Some(Authenticated {
                    caller: Caller {
                        admin: who.admin || hub.is_admin(&who.name),
                        name: who.name,
                        kind: CallerKind::User,
                        server: None,
                    },
                    via: Via::Token,
                });
            }
        }
        return None;
    }
    let token = cookies::get(&req.headers, &hub.config.session.cookie)?;
    match hub.sessions.check(token).await {
        Ok(Some(claims)) if hub.users().contains_key(&claims.sub) => Some(Authenticated {
            caller: Caller {
                admin: hub.is_admin(&claims.sub),
                name: claims.sub,
                kind: CallerKind::User,
                server: None,
            },
            via: Via::Cookie { jti: claims.jti },
        }),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("session check: {e}");
            None
        }
    }
}

fn token_caller(hub: &Hub, found: TokenRecordOrAdmin) -> Caller {
    match found {
        TokenRecordOrAdmin::Admin => Caller {
            name: "admin-token".to_owned(),
            kind: CallerKind::Service,
            admin: true,
            server: None,
        },
        TokenRecordOrAdmin::Record(r) => Caller {
            // A server's own token acts for its user, never as an admin.
            admin: r.server.is_none() && hub.is_admin(&r.user),
            name: r.user,
            kind: CallerKind::User,
            server: r.server,
        },
    }
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
    sent.is_some_and(|s| !cookie.is_empty() && proxy::admin_api::constant_time_eq(s.as_bytes(), cookie.as_bytes()))
}

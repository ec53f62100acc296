//! The browser side: login and logout, home, the spawn flow, the "not running" page, error pages
//! (the proxy's error target) and the static assets. Rendering is `crate::pages`; this module
//! decides what to show and sets cookies.
//!
//! The spawn flow, as a user sees it: `/user/alice/` has no route, so the proxy sends it to the
//! hub; it is redirected to `/hub/user/alice/`, which starts the server and redirects to the
//! pending page; that page follows the progress stream and goes back to `/user/alice/` once the
//! route is in. A failed spawn is not retried on its own: the page says why and offers a button.

use std::sync::Arc;

use http::{HeaderValue, Method, StatusCode, header};

use crate::hub::Hub;
use crate::lifecycle::{self, StartRefused};
use crate::model::{Phase, Server, progress_url};
use crate::pages::{self as render, LoginOptions, NamedServers, PageContext, ServerPhase, ServerView};
use crate::web::caller::{self, Authenticated, Via, XSRF_COOKIE};
use crate::web::{Body, Req, cookies, html, redirect, segments};

type Resp = http::Response<Body>;

/// How many times the hub sends a browser back to a server it believes is running before it
/// gives up and shows a page (JupyterHub's redirect-loop guard).
const MAX_REDIRECTS: u32 = 4;

pub fn context(hub: &Hub, auth: Option<&Authenticated>, xsrf: &str) -> PageContext {
    PageContext {
        base: hub.base.clone(),
        user: auth.map(|a| a.caller.name.clone()),
        // The Admin link, for whoever may open the page: admins, and holders of a role with
        // `admin-ui`.
        admin: auth.is_some_and(|a| caller::allowed(hub, &a.caller, "admin-ui", crate::scopes::Target::hub())),
        services: hub
            .services
            .iter()
            .filter_map(|s| Some((s.config.name.clone(), s.menu_link(&hub.base)?)))
            .collect(),
        xsrf: xsrf.to_owned(),
        announcements: hub.config.announcements.all.iter().cloned().collect(),
    }
}

/// [`context`] with the page's own notice (`[announcements]` `login`, `home`, `spawn`) after the
/// one on every page.
fn announced(mut ctx: PageContext, notice: &Option<String>) -> PageContext {
    ctx.announcements.extend(notice.iter().cloned());
    ctx
}

/// The request's `_xsrf` cookie, or a new one to set. The cookie lives under `hub/` (a user's
/// server has an `_xsrf` of its own), so a page answered outside it (a 404 for the browser's
/// `/favicon.ico`, through the proxy's default route) never sees the browser's cookie. Setting a
/// new one there would replace the value the forms already open in the browser carry, and their
/// next POST would fail as expired: such a page gets no token instead.
fn xsrf(req: &Req) -> (String, Option<String>) {
    match cookies::get(&req.headers, XSRF_COOKIE) {
        Some(v) if !v.is_empty() && v.len() <= 128 => (v.to_owned(), None),
        _ if !req.path.starts_with("hub/") => (String::new(), None),
        _ => {
            let value = crate::tokens::generate();
            (value.clone(), Some(value))
        }
    }
}

fn with_cookie(mut r: Resp, cookie: Option<String>) -> Resp {
    if let Some(c) = cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A page response that also sets the `_xsrf` cookie when the browser has none yet.
fn page(hub: &Hub, req: &Req, status: StatusCode, render: impl FnOnce(&str) -> String) -> Resp {
    let (value, new) = xsrf(req);
    let cookie = new.map(|v| {
        cookies::set(
            XSRF_COOKIE,
            &v,
            &format!("{}hub/", hub.base),
            None,
            hub.config.session.secure_cookies,
            true,
        )
    });
    with_cookie(html(status, render(&value)), cookie)
}

fn error_page(hub: &Hub, req: &Req, auth: Option<&Authenticated>, code: u16, message: &str) -> Resp {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    page(hub, req, status, |x| {
        render::error(&context(hub, auth, x), code, message)
    })
}

/// Where to go after signing in: the `next` of the query or the form, if it stays on this hub.
fn safe_next(hub: &Hub, req: &Req) -> Option<String> {
    req.query_param("next")
        .or_else(|| req.form_field("next"))
        .filter(|n| stays_on_hub(&hub.base, n))
}

/// A path under the base that a browser cannot read as another host: not `//host`, no `\`
/// (browsers take it for `/`), and no control characters or spaces, which browsers drop from
/// an address before reading it, so that `/<TAB>/evil.example` becomes `//evil.example`.
fn stays_on_hub(base: &str, next: &str) -> bool {
    next.starts_with(base)
        && !next.starts_with("//")
        && !next.bytes().any(|b| b == b'\\' || b == b' ' || b.is_ascii_control())
}

/// Where a signed-in user goes when they asked for no page in particular. With
/// `redirect_to_server` (JupyterHub's default), to their default server: its address when it
/// runs, its progress when it starts, and the spawn handler, which starts it, when it is
/// stopped. Otherwise, and while it stops, the home page.
fn landing(hub: &Hub, user: &str) -> String {
    if !hub.config.redirect_to_server {
        return render::urls::home(&hub.base);
    }
    match hub.server(user, "").map(|s| s.phase()) {
        Some(Phase::Running) => hub.prefix(user, ""),
        Some(Phase::Pending) => render::urls::spawn_pending(&hub.base, user, ""),
        Some(Phase::Stopping) => render::urls::home(&hub.base),
        Some(Phase::Stopped) | None => render::urls::spawn(&hub.base, user, ""),
    }
}

pub async fn handle(hub: &Arc<Hub>, req: &Req) -> Resp {
    let Some(seg) = segments(&req.path) else {
        return error_page(hub, req, None, 400, "The address is not valid");
    };
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["hub", "static", file] => static_file(file),
        ["hub", "error", code, ..] => {
            let code: u16 = code.parse().unwrap_or(500);
            let auth = caller::identify(hub, req).await;
            let message = match code {
                // The proxy's answer to an address it cannot decode (`%ZZ`).
                400 => "The address is not valid.",
                // The proxy's edge auth refusing a signed-in user another's server.
                403 => "You may not open this server: it is not yours, and it has not been shared with you.",
                404 => "This page does not exist.",
                503 => "The server is not reachable right now.",
                _ => "Something went wrong.",
            };
            error_page(hub, req, auth.as_ref(), code, message)
        }
        ["hub", "login"] => login(hub, req).await,
        ["hub", "logout"] => logout(hub, req).await,
        ["user", rest @ ..] if !rest.is_empty() => {
            // The proxy had no route for this server: over to the hub's handler for it.
            let path = req.path.strip_prefix("user/").unwrap_or("");
            redirect(&format!("{}hub/user/{path}{}", hub.base, req.query_suffix()))
        }
        [] | ["hub"] => match caller::identify(hub, req).await {
            Some(auth) => redirect(&landing(hub, &auth.caller.name)),
            None => redirect(&render::urls::login(&hub.base)),
        },
        _ => logged_in_pages(hub, req, &seg).await,
    }
}

async fn logged_in_pages(hub: &Arc<Hub>, req: &Req, seg: &[&str]) -> Resp {
    let Some(auth) = caller::identify(hub, req).await else {
        let here = format!("{}/{}{}", hub.base.trim_end_matches('/'), req.path, req.query_suffix());
        return redirect(&render::urls::with_next(render::urls::login(&hub.base), Some(&here)));
    };
    if !caller::xsrf_ok(req, &auth.via) {
        return error_page(
            hub,
            req,
            Some(&auth),
            403,
            "This form has expired. Go back, reload the page and try again.",
        );
    }
    let me = auth.caller.name.clone();
    // Your own servers, any server for an admin, and a server shared with you with the right
    // to start it (a project server of your group).
    let may = |user: &str| {
        // `/hub/spawn/alice/gpu`, `/hub/user/alice/gpu/…`: a server's name if alice has one by
        // it, else her default server (as `user_redirect` reads it).
        let server = seg
            .get(3)
            .copied()
            .filter(|name| seg[1] == "spawn" || hub.server(user, name).is_some())
            .unwrap_or("");
        auth.caller.admin
            || user == me
            || caller::allowed(
                hub,
                &auth.caller,
                "start:servers",
                crate::scopes::Target::server(user, server),
            )
    };
    match seg {
        ["hub", "home"] => home(hub, req, &auth),
        ["hub", "admin"] => admin_page(hub, req, &auth),
        ["hub", "accept-share"] => accept_share(hub, req, &auth).await,
        ["hub", "token"] => token_page(hub, req, &auth),
        ["hub", "spawn"] => start_and_follow(hub, req, &auth, &me, "", safe_next(hub, req)).await,
        ["hub", "spawn", user] if may(user) => start_and_follow(hub, req, &auth, user, "", safe_next(hub, req)).await,
        ["hub", "spawn", user, server] if may(user) => {
            start_and_follow(hub, req, &auth, user, server, safe_next(hub, req)).await
        }
        ["hub", "spawn-pending", user] if may(user) => pending(hub, req, &auth, user, ""),
        ["hub", "spawn-pending", user, server] if may(user) => pending(hub, req, &auth, user, server),
        ["hub", "user-redirect", ..] => {
            // JupyterHub's links into whoever follows them's own server (nbgitpuller, course
            // material): `/hub/user-redirect/lab/tree/x.ipynb` opens `/user/<me>/lab/tree/x.ipynb`.
            let rest = req.path.strip_prefix("hub/user-redirect").unwrap_or("");
            redirect(&format!(
                "{}{}{}",
                hub.prefix(&me, ""),
                rest.trim_start_matches('/'),
                req.query_suffix()
            ))
        }
        ["hub", "user", user, rest @ ..] => {
            if !may(user) {
                return error_page(
                    hub,
                    req,
                    Some(&auth),
                    403,
                    &format!("This is {user}'s server, not yours."),
                );
            }
            user_redirect(hub, req, &auth, user, rest).await
        }
        ["hub", "spawn" | "spawn-pending", ..] => {
            error_page(hub, req, Some(&auth), 403, "You may only start your own servers.")
        }
        _ => error_page(hub, req, Some(&auth), 404, "This page does not exist."),
    }
}

fn static_file(file: &str) -> Resp {
    let Some(asset) = render::assets::asset(file) else {
        return crate::web::empty(StatusCode::NOT_FOUND);
    };
    let mut r = http::Response::new(crate::web::full(asset.body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // Unversioned URLs: browsers revalidate, so a new hub's assets are picked up at once.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn login_page(hub: &Hub, req: &Req, status: StatusCode, error: Option<String>, username: Option<String>) -> Resp {
    let next = safe_next(hub, req);
    page(hub, req, status, |x| {
        render::login(
            &announced(context(hub, None, x), &hub.config.announcements.login),
            &LoginOptions {
                error,
                next,
                username,
                ask_password: hub.auth.asks_password(),
                hint: hub.auth.hint().map(str::to_owned),
            },
        )
    })
}

async fn login(hub: &Arc<Hub>, req: &Req) -> Resp {
    let began = std::time::Instant::now();
    let next = |user: &str| safe_next(hub, req).unwrap_or_else(|| landing(hub, user));
    let platform_token = req
        .query_param("token")
        .filter(|_| req.method == Method::GET)
        .or_else(|| caller::platform_jwt(hub, req).map(str::to_owned));
    let who = if let Some(token) = platform_token {
        // The platform case: an externally issued token, handed over once (in the URL or in
        // `Authorization`), checked as the edge checks it.
        hub.auth.check_token(&token).await
    } else if req.method == Method::POST {
        // No session yet: the form's own `_xsrf` is what shows it came from our login page.
        if !caller::xsrf_echoed(req) {
            return login_page(
                hub,
                req,
                StatusCode::FORBIDDEN,
                Some("The form expired; please sign in again.".into()),
                None,
            );
        }
        let field = |name: &str| req.form_field(name).unwrap_or_default();
        if !hub.auth.accepts_form() {
            Err(crate::login::LoginError::TokenOnly)
        } else {
            hub.auth.check_password(&field("username"), &field("password")).await
        }
    } else {
        if let Some(auth) = caller::identify(hub, req).await {
            return redirect(&next(&auth.caller.name));
        }
        return login_page(hub, req, StatusCode::OK, None, None);
    };
    let who = match who {
        Ok(who) if !hub.may_sign_in(&who.name, who.admin) => Err(crate::login::LoginError::NotAllowed(who.name)),
        other => other,
    };
    let who = match who {
        Ok(who) => who,
        Err(e) => {
            hub.metrics.login(false).record(began.elapsed().as_secs_f64());
            let username = req.form_field("username");
            return login_page(hub, req, e.status(), Some(e.to_string()), username);
        }
    };
    let recorded = hub
        .ensure_user(&who.name, who.admin)
        .and_then(|()| crate::web::groups::on_login(hub, &who.name, &who.groups));
    let groups = match recorded {
        Ok(groups) => groups,
        Err(e) => {
            return error_page(hub, req, None, 500, &logged("The hub could not record your sign-in", e));
        }
    };
    let token = match hub
        .sessions
        .create(
            &who.name,
            who.admin || hub.is_admin(&who.name),
            &groups,
            who.platform_session.as_ref(),
        )
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("login of {}: {e}", who.name);
            let (status, why) = match &e {
                crate::session::SessionError::Store(store) if store.is_full() => (
                    507,
                    "Signing in is not possible right now: the hub's state database is full. Tell the hub's operator.",
                ),
                _ => (
                    503,
                    "Signing in is not possible right now: the session store cannot be reached. Try again in a minute.",
                ),
            };
            return error_page(hub, req, None, status, why);
        }
    };
    hub.metrics.login(true).record(began.elapsed().as_secs_f64());
    tracing::info!("{} signed in", who.name);
    let cookie = cookies::set(
        &hub.config.session.cookie,
        &token,
        &hub.base,
        Some(hub.sessions.lifetime().as_secs()),
        hub.config.session.secure_cookies,
        false,
    );
    with_cookie(redirect(&next(&who.name)), Some(cookie))
}

async fn logout(hub: &Arc<Hub>, req: &Req) -> Resp {
    let began = std::time::Instant::now();
    if let Some(Authenticated {
        via: Via::Cookie { jti },
        caller,
    }) = caller::identify(hub, req).await
    {
        if let Err(e) = hub.sessions.end(&jti).await {
            tracing::error!("logout of {}: {e}", caller.name);
            return error_page(
                hub,
                req,
                None,
                503,
                "Signing out did not complete: the session store cannot be reached. Try again in a minute.",
            );
        }
        tracing::info!("{} signed out", caller.name);
    }
    hub.metrics.logout_duration.record(began.elapsed().as_secs_f64());
    with_cookie(
        redirect(&render::urls::login(&hub.base)),
        Some(cookies::clear(&hub.config.session.cookie, &hub.base)),
    )
}

fn view(hub: &Hub, s: &Server) -> ServerView {
    ServerView {
        name: s.record.name.clone(),
        phase: match s.phase() {
            Phase::Stopped => ServerPhase::Stopped,
            Phase::Pending => ServerPhase::Pending,
            Phase::Running => ServerPhase::Running,
            Phase::Stopping => ServerPhase::Stopping,
        },
        url: hub.prefix(&s.record.user, &s.record.name),
        progress_url: progress_url(&hub.base, &s.record.user, &s.record.name),
        last_activity: s.record.last_activity_ms.map(proxy::timestamp::format_iso),
        options_url: (!hub.spawner.profiles().is_empty())
            .then(|| render::urls::spawn(&hub.base, &s.record.user, &s.record.name)),
    }
}

/// `/hub/accept-share?code=…`: `GET` shows what the code offers, `POST` (the page's form)
/// exchanges it and sends the browser to the server.
async fn accept_share(hub: &Arc<Hub>, req: &Req, auth: &Authenticated) -> Resp {
    use crate::web::share_codes::{self, Accepted};
    let code = if req.method == Method::POST {
        req.form_field("code")
    } else {
        req.query_param("code")
    }
    .unwrap_or_default();
    let gone = || {
        error_page(
            hub,
            req,
            Some(auth),
            404,
            "This share code does not exist or has expired.",
        )
    };
    let own = || error_page(hub, req, Some(auth), 403, "You cannot share a server with yourself.");
    let unreadable = |e: crate::store::StoreError| {
        error_page(
            hub,
            req,
            Some(auth),
            503,
            &logged("The state database cannot be reached", e),
        )
    };
    if req.method == Method::POST {
        return match share_codes::accept(hub, &auth.caller.name, &code).await {
            Ok(Accepted::Shared { owner, server }) => redirect(&hub.prefix(&owner, &server)),
            Ok(Accepted::NotFound) => gone(),
            Ok(Accepted::OwnCode) => own(),
            Err(e) => unreadable(e),
        };
    }
    match share_codes::find(hub, &code) {
        Ok(Some(found)) if found.owner == auth.caller.name => own(),
        Ok(Some(found)) => {
            let offer = render::ShareOffer {
                owner: found.owner,
                server: found.server,
                scopes: found.scopes,
                code,
            };
            page(hub, req, StatusCode::OK, |x| {
                render::accept_share(&context(hub, Some(auth), x), &offer)
            })
        }
        Ok(None) => gone(),
        Err(e) => unreadable(e),
    }
}

/// `/hub/admin`: for holders of `admin-ui`.
fn admin_page(hub: &Hub, req: &Req, auth: &Authenticated) -> Resp {
    if !caller::allowed(hub, &auth.caller, "admin-ui", crate::scopes::Target::hub()) {
        return error_page(hub, req, Some(auth), 403, "The admin page is for admins.");
    }
    let (groups, by_user) = match hub.store.groups() {
        Ok(groups) => {
            let by_user = crate::web::groups::by_user(&groups);
            (groups, by_user)
        }
        Err(e) => {
            return error_page(
                hub,
                req,
                Some(auth),
                503,
                &logged("The state database cannot be read", e),
            );
        }
    };
    // A role's holder with `admin-ui` sees the users and groups their scopes let them list
    // (an instructor: the students), as JupyterHub's admin page shows what its API calls return;
    // the buttons call the API, which checks each action again.
    let who = &auth.caller;
    let lists_group = |name: &str| caller::allowed(hub, who, "list:groups", crate::scopes::Target::group(name));
    let names = caller::listable_users(hub, who);
    let users: Vec<render::AdminUser> = hub
        .users()
        .values()
        .filter(|u| names.contains(&u.record.name))
        .map(|u| {
            let default = u.servers.get("").map(|s| view(hub, s));
            render::AdminUser {
                name: u.record.name.clone(),
                admin: u.record.admin,
                phase: default.as_ref().map_or(ServerPhase::Stopped, |s| s.phase),
                last_activity: u.record.last_activity_ms.map(proxy::timestamp::format_iso),
                groups: by_user.get(&u.record.name).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let groups: Vec<render::AdminGroup> = groups
        .into_iter()
        .filter(|g| lists_group(&g.name))
        .map(|g| render::AdminGroup {
            name: g.name,
            users: g.users,
        })
        .collect();
    page(hub, req, StatusCode::OK, |x| {
        render::admin(&context(hub, Some(auth), x), &users, &groups)
    })
}

/// `/hub/token`: the caller's own API tokens.
fn token_page(hub: &Hub, req: &Req, auth: &Authenticated) -> Resp {
    let me = &auth.caller.name;
    let mut tokens: Vec<crate::model::TokenRecord> = hub
        .tokens
        .of_user(me)
        .into_iter()
        // A server's own token comes and goes with the server; it is not the user's to revoke.
        .filter(|t| t.server.is_none())
        .collect();
    tokens.sort_by_key(|t| std::cmp::Reverse(t.created_ms));
    let views: Vec<render::TokenView> = tokens
        .iter()
        .map(|t| render::TokenView {
            id: crate::web::api::token_id(t),
            note: t.note.clone(),
            scopes: t.scopes.clone().unwrap_or_else(|| vec!["inherit".to_owned()]),
            created: Some(proxy::timestamp::format_iso(t.created_ms)),
            expires: t.expires_ms.map(proxy::timestamp::format_iso),
        })
        .collect();
    page(hub, req, StatusCode::OK, |x| {
        render::tokens(&context(hub, Some(auth), x), &views)
    })
}

fn home(hub: &Hub, req: &Req, auth: &Authenticated) -> Resp {
    let me = &auth.caller.name;
    let mut servers: Vec<ServerView> = hub
        .users()
        .get(me)
        .map(|u| u.servers.values().map(|s| view(hub, s)).collect())
        .unwrap_or_default();
    if !servers.iter().any(|s| s.name.is_empty()) {
        servers.insert(0, view(hub, &Server::new(me, "")));
    }
    let named = NamedServers {
        allowed: hub.config.allow_named_servers,
        limit: hub.config.named_server_limit_per_user,
    };
    page(hub, req, StatusCode::OK, |x| {
        render::home(
            &announced(context(hub, Some(auth), x), &hub.config.announcements.home),
            &servers,
            named,
        )
    })
}

/// Starts the server and sends the browser to its pending page, which opens `next` (the page in
/// the server that was asked for), or else the server's own address, once it is ready. When the
/// spawner offers profiles, a request that chose none (a link, the implicit start from
/// `/user/…`) gets the options page first, as JupyterHub's options form does; its POST carries
/// `profile`, and the form's address keeps `next`.
async fn start_and_follow(
    hub: &Arc<Hub>,
    req: &Req,
    auth: &Authenticated,
    user: &str,
    server: &str,
    next: Option<String>,
) -> Resp {
    let profiles = hub.spawner.profiles();
    let mut options = serde_json::Map::new();
    if !profiles.is_empty() {
        let chosen = (req.method == http::Method::POST)
            .then(|| req.form_field("profile"))
            .flatten();
        match chosen {
            Some(slug) => {
                options.insert("profile".into(), slug.into());
            }
            None => return options_page(hub, req, auth, user, server, next.as_deref()),
        }
    }
    match lifecycle::request_start(hub, user, server, options.into()) {
        Ok(()) => redirect(&render::urls::with_next(
            render::urls::spawn_pending(&hub.base, user, server),
            next.as_deref(),
        )),
        Err(StartRefused::AlreadyRunning) => redirect(&next.unwrap_or_else(|| hub.prefix(user, server))),
        Err(refused @ (StartRefused::Throttled(_) | StartRefused::TooManyServers(_))) => {
            let secs = refused.retry_after().unwrap_or_default();
            let mut r = error_page(hub, req, Some(auth), 429, &format!("{refused} (retry in {secs} s)"));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(StartRefused::NoSuchUser) => error_page(hub, req, Some(auth), 404, "No such user."),
        Err(StartRefused::Store(e)) => {
            let message = logged("The hub could not record the spawn", e);
            error_page(hub, req, Some(auth), 500, &message)
        }
        Err(other) => error_page(hub, req, Some(auth), 400, &other.to_string()),
    }
}

fn options_page(hub: &Hub, req: &Req, auth: &Authenticated, user: &str, server: &str, next: Option<&str>) -> Resp {
    if hub.server(user, server).is_some_and(|s| s.phase() != Phase::Stopped) {
        // Already starting or running: nothing to choose.
        return redirect(&render::urls::with_next(
            render::urls::spawn_pending(&hub.base, user, server),
            next,
        ));
    }
    page(hub, req, StatusCode::OK, |x| {
        render::spawn_options(
            &announced(context(hub, Some(auth), x), &hub.config.announcements.spawn),
            user,
            server,
            hub.spawner.profiles(),
            &render::urls::with_next(render::urls::spawn(&hub.base, user, server), next),
        )
    })
}

fn pending(hub: &Hub, req: &Req, auth: &Authenticated, user: &str, server: &str) -> Resp {
    let next = safe_next(hub, req);
    let prefix = next.clone().unwrap_or_else(|| hub.prefix(user, server));
    match hub.server(user, server) {
        Some(s) if s.phase() == Phase::Running => redirect(&prefix),
        Some(s) if s.phase() == Phase::Pending || s.spawn_failed() => page(hub, req, StatusCode::OK, |x| {
            render::spawn_pending(
                &announced(context(hub, Some(auth), x), &hub.config.announcements.spawn),
                user,
                server,
                &progress_url(&hub.base, user, server),
                &prefix,
            )
        }),
        _ => page(hub, req, StatusCode::from_u16(424).unwrap_or(StatusCode::OK), |x| {
            render::not_running(
                &context(hub, Some(auth), x),
                user,
                server,
                &render::urls::with_next(render::urls::spawn(&hub.base, user, server), next.as_deref()),
            )
        }),
    }
}

/// Query pairs as `a=1&b=2`.
fn encode_query(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `/hub/user/{user}[/{server}]/…`: the proxy had no route. Start the server (once), or send the
/// browser back if it is running now, or explain.
async fn user_redirect(hub: &Arc<Hub>, req: &Req, auth: &Authenticated, user: &str, rest: &[&str]) -> Resp {
    // `/user/alice/lab/tree`: `lab` is a named server only if alice has one by that name.
    let server = rest
        .first()
        .filter(|first| hub.server(user, first).is_some())
        .map_or("", |s| *s);
    let phase = hub.server(user, server).map(|s| (s.phase(), s.last_failure.is_some()));
    // The address the browser asked for (`/user/alice/lab?x=1`), without the count of redirects
    // through here: opened once the server is up.
    let path = req.path.strip_prefix("hub/").unwrap_or(&req.path);
    let mut query: Vec<(String, String)> = req
        .query
        .as_deref()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "redirects")
                .collect()
        })
        .unwrap_or_default();
    let asked_for = match query.is_empty() {
        true => format!("{}{path}", hub.base),
        false => format!("{}{path}?{}", hub.base, encode_query(&query)),
    };
    // The server's own address is where the browser goes anyway.
    let prefix = hub.prefix(user, server);
    let asked_for =
        Some(asked_for).filter(|a| *a != prefix && *a != prefix.trim_end_matches('/') && stays_on_hub(&hub.base, a));
    let api_request = rest.get(usize::from(!server.is_empty())) == Some(&"api") || req.wants_json();
    match phase {
        Some((Phase::Running, _)) => {
            let redirects: u32 = req.query_param("redirects").and_then(|v| v.parse().ok()).unwrap_or(0);
            if redirects >= MAX_REDIRECTS {
                return error_page(
                    hub,
                    req,
                    Some(auth),
                    503,
                    "Your server is running but cannot be reached through the proxy. Try again in a moment.",
                );
            }
            query.push(("redirects".into(), (redirects + 1).to_string()));
            let query = encode_query(&query);
            // Give the proxy a moment to take a route just added.
            tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(redirects))).await;
            redirect(&format!("{}{path}?{query}", hub.base))
        }
        Some((Phase::Pending, _)) => redirect(&render::urls::with_next(
            render::urls::spawn_pending(&hub.base, user, server),
            asked_for.as_deref(),
        )),
        _ if api_request => crate::web::json_error(
            StatusCode::from_u16(424).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            &format!("{user}'s server is not running"),
        ),
        Some((_, false)) | None if user == auth.caller.name => {
            start_and_follow(hub, req, auth, user, server, asked_for).await
        }
        _ => page(hub, req, StatusCode::from_u16(424).unwrap_or(StatusCode::OK), |x| {
            render::not_running(
                &context(hub, Some(auth), x),
                user,
                server,
                &render::urls::with_next(render::urls::spawn(&hub.base, user, server), asked_for.as_deref()),
            )
        }),
    }
}

/// What a page says of a failure of the hub's own: `what`, while the error itself, which may
/// hold SQL, goes to the log only.
fn logged(what: &str, error: impl std::fmt::Display) -> String {
    tracing::error!("{what}: {error}");
    what.to_owned()
}

#[cfg(test)]
mod tests {
    use super::stays_on_hub;

    #[test]
    fn next_must_stay_on_the_hub() {
        for next in ["/hub/home", "/user/alice/lab?x=1", "/hub/spawn/alice/gpu"] {
            assert!(stays_on_hub("/", next), "{next}");
        }
        for next in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example/",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "",
        ] {
            assert!(!stays_on_hub("/", next), "{next:?}");
        }
        assert!(stays_on_hub("/jh/", "/jh/hub/home"));
        assert!(!stays_on_hub("/jh/", "/hub/home"));
    }
}

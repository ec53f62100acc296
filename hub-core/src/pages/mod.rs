//! Server-rendered pages: login, home, spawn pending, not running, errors. Each is a pure function
//! from what the hub knows to an HTML5 document; the hub picks the status code and headers.
//!
//! Every interpolated value goes through [`escape`], URLs are built by [`urls`], and behaviour
//! lives in one static script ([`assets::SCRIPT`]) driven by `data-*` attributes, so the pages run
//! under a `script-src 'self'` Content-Security-Policy.

mod admin;
pub mod assets;
mod errors;
mod escape;
mod home;
mod layout;
mod login;
mod share;
mod spawn;
mod token;
pub mod urls;

pub use admin::{AdminGroup, AdminUser, admin};
pub use assets::{SCRIPT, STYLESHEET};
pub use errors::error;
pub use escape::escape;
pub use home::{NamedServers, home};
pub use login::{LoginOptions, login};
pub use share::{ShareOffer, accept_share};
pub use spawn::{not_running, spawn_options, spawn_pending};
pub use token::{TokenView, tokens};

/// What every page needs to know about the request.
#[derive(Debug, Clone, Default)]
pub struct PageContext {
    /// The hub's base prefix, `/` or `/jhub/` (always ending in `/`); every link is built on it.
    pub base: String,
    /// The logged-in user, if any.
    pub user: Option<String>,
    pub admin: bool,
    /// The services signed-in users see in the "Services" menu: `(name, href)`.
    pub services: Vec<(String, String)>,
    /// Value for the `_xsrf` form field and the `X-XSRFToken` header of API calls from pages.
    pub xsrf: String,
    /// The operator's notices for this page (`[announcements]`), HTML, shown first in `<main>`.
    pub announcements: Vec<String>,
}

/// The state of one server as the home page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPhase {
    Stopped,
    Pending,
    Running,
    Stopping,
}

#[derive(Debug, Clone)]
pub struct ServerView {
    /// `""` for the default server.
    pub name: String,
    pub phase: ServerPhase,
    /// Where the server is reached, e.g. `/user/alice/` or `/user/alice/lab2/`.
    pub url: String,
    /// The progress event stream, e.g. `/hub/api/users/alice/server/progress`.
    pub progress_url: String,
    /// RFC 3339, if known.
    pub last_activity: Option<String>,
    /// When the spawner offers profiles: the options page, which Start leads to instead of
    /// starting at once.
    pub options_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = r#"<script>alert("x")</script>'"#;

    fn hostile_pages() -> Vec<(&'static str, String)> {
        let ctx = PageContext {
            base: "/".into(),
            user: Some(HOSTILE.into()),
            admin: true,
            services: vec![(HOSTILE.into(), HOSTILE.into())],
            xsrf: HOSTILE.into(),
            announcements: Vec::new(),
        };
        let server = |name: &str, phase| ServerView {
            name: name.into(),
            phase,
            url: format!("/user/{HOSTILE}/"),
            progress_url: HOSTILE.into(),
            last_activity: Some(HOSTILE.into()),
            options_url: None,
        };
        let servers = [server("", ServerPhase::Running), server(HOSTILE, ServerPhase::Pending)];
        let login_opts = LoginOptions {
            error: Some(HOSTILE.into()),
            next: Some(HOSTILE.into()),
            username: Some(HOSTILE.into()),
            ask_password: true,
            hint: Some(HOSTILE.into()),
        };
        vec![
            ("login", login(&ctx, &login_opts)),
            (
                "home",
                home(
                    &ctx,
                    &servers,
                    NamedServers {
                        allowed: true,
                        limit: 0,
                    },
                ),
            ),
            ("spawn_pending", spawn_pending(&ctx, HOSTILE, HOSTILE, HOSTILE, HOSTILE)),
            ("not_running", not_running(&ctx, HOSTILE, HOSTILE, HOSTILE)),
            ("error 404", error(&ctx, 404, HOSTILE)),
            ("error 503", error(&ctx, 503, HOSTILE)),
            ("error 500", error(&ctx, 500, HOSTILE)),
        ]
    }

    #[test]
    fn every_interpolated_value_is_escaped() {
        for (page, html) in hostile_pages() {
            assert!(!html.contains("<script>"), "{page}: raw <script>\n{html}");
            assert!(!html.contains(r#"("x")"#), "{page}: raw quotes\n{html}");
            // The one script tag is the layout's.
            assert_eq!(html.matches("<script").count(), 1, "{page}");
            // The name is shown (escaped), not dropped.
            assert!(
                html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;"),
                "{page}\n{html}"
            );
        }
    }

    #[test]
    fn user_name_shows_in_the_header_escaped() {
        for (page, html) in hostile_pages() {
            assert!(
                html.contains("Signed in as <strong>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;</strong>"),
                "{page}"
            );
        }
    }

    /// The script and the pages meet only through these attributes; a rename on one side alone
    /// would break the buttons silently.
    #[test]
    fn script_hooks_exist_on_both_sides() {
        let ctx = PageContext {
            base: "/".into(),
            user: Some("alice".into()),
            admin: false,
            services: Vec::new(),
            xsrf: "t".into(),
            announcements: Vec::new(),
        };
        let server = |name: &str, phase| ServerView {
            name: name.into(),
            phase,
            url: format!("/user/alice/{name}"),
            progress_url: String::new(),
            last_activity: Some("2024-05-01T12:00:00Z".into()),
            options_url: None,
        };
        let servers = [server("", ServerPhase::Running), server("lab", ServerPhase::Stopped)];
        let pages = [
            home(
                &ctx,
                &servers,
                NamedServers {
                    allowed: true,
                    limit: 0,
                },
            ),
            spawn_pending(&ctx, "alice", "", "/p", "/user/alice/"),
        ]
        .concat();
        // (as the script reads it, as the page writes it)
        let hooks = [
            ("dataset.xsrf", "data-xsrf="),
            ("[data-home]", "data-home "),
            ("dataset.userApi", "data-user-api="),
            ("[data-status]", "data-status"),
            ("button[data-action]", "data-action="),
            (r#"button.dataset.action === "start""#, r#"data-action="start""#),
            ("[data-server]", "data-server="),
            ("data-phase=\"stopping\"", "data-phase="),
            ("api: apiUrl, pending: pendingUrl, server: name", "data-api="),
            ("form[data-new-server]", "data-new-server "),
            ("form.dataset.apiBase", "data-api-base="),
            ("form.dataset.pendingBase", "data-pending-base="),
            (r#"input[name="name"]"#, r#"name="name""#),
            ("[data-pending-page]", "data-pending-page "),
            ("dataset.progressUrl", "data-progress-url="),
            ("dataset.serverUrl", "data-server-url="),
            ("[data-bar]", "data-bar"),
            ("[data-log]", "data-log"),
            ("[data-note]", "data-note"),
            ("[data-failed]", "data-failed "),
            ("[data-failed-message]", "data-failed-message"),
            ("time[data-relative]", "data-relative"),
        ];
        for (in_script, in_page) in hooks {
            assert!(SCRIPT.contains(in_script), "script lacks {in_script}");
            assert!(pages.contains(in_page), "pages lack {in_page}");
        }
    }
}

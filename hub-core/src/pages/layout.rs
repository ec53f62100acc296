//! The frame every page shares: doctype, viewport, the one stylesheet and the one script, a header
//! with the hub's name and who is signed in, and `<main>`.
//!
//! The script is loaded with `defer` from the hub (never inline), so pages work under a
//! `script-src 'self'` Content-Security-Policy; it finds its work through `data-*` attributes,
//! and the XSRF token for its API calls rides on `<body data-xsrf>`.

use std::fmt::Write;

use super::escape::escape;
use super::{PageContext, urls};

/// Wraps `main` (HTML, already escaped) in the shared layout. `title` is text and is escaped
/// here; `head` is extra markup for `<head>` (e.g. a `<noscript>` refresh), already escaped.
pub(super) fn page(ctx: &PageContext, title: &str, head: &str, main: &str) -> String {
    let base = &ctx.base;
    let mut html = String::with_capacity(2048 + main.len());
    let _ = write!(
        html,
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · edgehub</title>
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
{head}</head>
<body{xsrf}>
<a class="skip" href="#main">Skip to content</a>
<header class="topbar">
<a class="brand" href="{home}">edgehub</a>
"##,
        title = escape(title),
        css = escape(&urls::static_file(base, "style.css")),
        js = escape(&urls::static_file(base, "edgehub.js")),
        xsrf = if ctx.xsrf.is_empty() {
            String::new()
        } else {
            format!(r#" data-xsrf="{}""#, escape(&ctx.xsrf))
        },
        home = escape(&urls::home(base)),
    );
    if let Some(user) = &ctx.user {
        let _ = write!(
            html,
            r#"<nav class="account" aria-label="Account">
<span class="who">Signed in as <strong>{user}</strong></span>
{services}<a href="{token}">Token</a>
{admin}<a href="{logout}">Log out</a>
</nav>
"#,
            user = escape(user),
            services = services_menu(&ctx.services),
            token = escape(&urls::token_page(base)),
            admin = if ctx.admin {
                format!("<a href=\"{}\">Admin</a>\n", escape(&urls::admin(base)))
            } else {
                String::new()
            },
            logout = escape(&urls::logout(base)),
        );
    }
    html.push_str("</header>\n<main id=\"main\">\n");
    for notice in &ctx.announcements {
        // The operator's own HTML (links, emphasis), as JupyterHub's templates take it.
        let _ = writeln!(html, r#"<div class="announcement" role="note">{notice}</div>"#);
    }
    let _ = write!(html, "{main}</main>\n</body>\n</html>\n");
    html
}

/// JupyterHub's "Services" menu: a disclosure (no script needed) listing the services to link.
fn services_menu(services: &[(String, String)]) -> String {
    if services.is_empty() {
        return String::new();
    }
    let mut html = String::from("<details class=\"services\"><summary>Services</summary>\n<ul>\n");
    for (name, href) in services {
        let _ = writeln!(html, r#"<li><a href="{}">{}</a></li>"#, escape(href), escape(name));
    }
    html.push_str("</ul>\n</details>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(user: Option<&str>) -> PageContext {
        PageContext {
            base: "/jhub/".into(),
            user: user.map(Into::into),
            admin: false,
            services: Vec::new(),
            xsrf: "tok".into(),
            announcements: Vec::new(),
        }
    }

    #[test]
    fn frame_links_assets_and_home_under_the_base() {
        let html = page(&ctx(None), "Sign in", "", "<p>hello</p>\n");
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#));
        assert!(html.contains("<title>Sign in · edgehub</title>"));
        assert!(html.contains(r#"<link rel="stylesheet" href="/jhub/hub/static/style.css">"#));
        assert!(html.contains(r#"<script src="/jhub/hub/static/edgehub.js" defer></script>"#));
        assert!(html.contains(r#"<a class="brand" href="/jhub/hub/home">edgehub</a>"#));
        assert!(html.contains(r#"<body data-xsrf="tok">"#));
        assert!(html.contains("<main id=\"main\">\n<p>hello</p>\n</main>"));
        // No inline script: the CSP is `script-src 'self'`.
        assert_eq!(html.matches("<script").count(), 1);
    }

    #[test]
    fn account_bar_only_when_signed_in() {
        let anonymous = page(&ctx(None), "t", "", "");
        assert!(!anonymous.contains("Log out"));
        assert!(!anonymous.contains("Signed in as"));

        let signed_in = page(&ctx(Some("alice")), "t", "", "");
        assert!(signed_in.contains("Signed in as <strong>alice</strong>"));
        assert!(signed_in.contains(r#"<a href="/jhub/hub/logout">Log out</a>"#));
        assert!(!signed_in.contains("Services"), "no menu without services to show");
    }

    #[test]
    fn notices_come_first_in_main_as_the_operator_wrote_them() {
        let notices = vec!["<b>Down</b> on Friday".to_owned(), "Welcome".to_owned()];
        let html = page(
            &PageContext {
                announcements: notices,
                ..ctx(None)
            },
            "t",
            "",
            "<p>page</p>\n",
        );
        let main = html.split("<main id=\"main\">\n").nth(1).unwrap();
        assert!(main.starts_with(
            "<div class=\"announcement\" role=\"note\"><b>Down</b> on Friday</div>\n<div class=\"announcement\" role=\"note\">Welcome</div>\n<p>page</p>"
        ));
        assert!(
            !page(&ctx(None), "t", "", "").contains("announcement"),
            "none configured"
        );
    }

    #[test]
    fn services_menu_for_signed_in_users() {
        let services = vec![("usage".to_owned(), "/jhub/services/usage/".to_owned())];
        let anonymous = page(
            &PageContext {
                services: services.clone(),
                ..ctx(None)
            },
            "t",
            "",
            "",
        );
        assert!(!anonymous.contains("Services"));
        let html = page(
            &PageContext {
                services,
                ..ctx(Some("alice"))
            },
            "t",
            "",
            "",
        );
        assert!(html.contains("<summary>Services</summary>"), "{html}");
        assert!(
            html.contains(r#"<li><a href="/jhub/services/usage/">usage</a></li>"#),
            "{html}"
        );
    }

    #[test]
    fn no_xsrf_attribute_without_a_token() {
        let html = page(
            &PageContext {
                base: "/".into(),
                ..PageContext::default()
            },
            "t",
            "",
            "",
        );
        assert!(html.contains("<body>"));
    }
}

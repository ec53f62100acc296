//! The pages around starting a server: "Starting your server", which follows the progress event
//! stream until the server is ready, and "Your server is not running" (served with 424, as
//! JupyterHub does), which offers to start it.
//!
//! The pending page renders every element the script fills or reveals (bar, log, failure notice
//! with its "Try again" link) so the script only sets text and attributes, never builds HTML
//! from what the stream sends.

use std::fmt::Write;

use super::escape::escape;
use super::{PageContext, layout, urls};
use crate::spawner::Profile;

/// "Server options": the profiles to choose from, posted to `spawn_url` as `profile`.
pub fn spawn_options(
    ctx: &PageContext,
    user: &str,
    server_name: &str,
    profiles: &[Profile],
    spawn_url: &str,
) -> String {
    let mut choices = String::new();
    let checked = profiles.iter().position(|p| p.default).unwrap_or(0);
    for (i, p) in profiles.iter().enumerate() {
        let _ = writeln!(
            choices,
            r#"<label class="choice"><input type="radio" name="profile" value="{slug}"{checked}> <span class="choice-name">{name}</span>{description}</label>"#,
            slug = escape(&p.slug),
            checked = if i == checked { " checked" } else { "" },
            name = escape(&p.display_name),
            description = if p.description.is_empty() {
                String::new()
            } else {
                format!(r#" <span class="choice-description">{}</span>"#, escape(&p.description))
            },
        );
    }
    let main = format!(
        r#"<section class="card" aria-labelledby="options-heading">
<h1 id="options-heading">Server options</h1>
<p>{whose} starts with the profile you choose.</p>
<form method="post" action="{spawn}">
<input type="hidden" name="_xsrf" value="{xsrf}">
<fieldset class="choices">
<legend>Profile</legend>
{choices}</fieldset>
<button type="submit" class="primary">Start</button>
</form>
</section>
"#,
        whose = whose(ctx, user, server_name),
        spawn = escape(spawn_url),
        xsrf = escape(&ctx.xsrf),
    );
    layout::page(ctx, "Server options", "", &main)
}

/// Follows the spawn of `user`'s server `server_name` through the event stream at
/// `progress_url`, then goes to `server_url`: the server, or the page in it that was asked for.
pub fn spawn_pending(ctx: &PageContext, user: &str, server_name: &str, progress_url: &str, server_url: &str) -> String {
    let mut main = String::with_capacity(2048);
    let _ = write!(
        main,
        r#"<section class="card" aria-labelledby="pending-heading" data-pending-page data-progress-url="{progress}" data-server-url="{server}">
<h1 id="pending-heading">Starting your server</h1>
<p class="lede">{whose} is starting. This page follows its progress and takes you there when it is ready.</p>
<progress max="100" aria-label="Server start progress" data-bar></progress>
<ol class="log" aria-live="polite" aria-label="Start-up messages" data-log></ol>
<p class="note" role="status" data-note></p>
<div class="failed" data-failed hidden>
<h2>Your server failed to start</h2>
<p role="alert" data-failed-message></p>
<p><a class="button primary" href="{home}">Try again</a></p>
</div>
<noscript><p class="note">This page reloads every 5 seconds until your server is ready. <a href="{server}">Go to your server</a></p></noscript>
</section>
"#,
        progress = escape(progress_url),
        server = escape(server_url),
        whose = whose(ctx, user, server_name),
        home = escape(&urls::home(&ctx.base)),
    );
    // Without the script, the page polls by reloading; the hub redirects once the server is up.
    let head = "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\n";
    layout::page(ctx, "Starting your server", head, &main)
}

/// Offers to start `user`'s stopped server `server_name` with a form posted to `spawn_url`.
pub fn not_running(ctx: &PageContext, user: &str, server_name: &str, spawn_url: &str) -> String {
    let main = format!(
        r#"<section class="card narrow" aria-labelledby="not-running-heading">
<h1 id="not-running-heading">Your server is not running</h1>
<p>{whose} is stopped. Would you like to start it?</p>
<form method="post" action="{spawn}">
<input type="hidden" name="_xsrf" value="{xsrf}">
<button type="submit" class="primary">Start server</button>
</form>
<p><a href="{home}">Go to the home page</a></p>
</section>
"#,
        whose = whose(ctx, user, server_name),
        spawn = escape(spawn_url),
        xsrf = escape(&ctx.xsrf),
        home = escape(&urls::home(&ctx.base)),
    );
    layout::page(ctx, "Server not running", "", &main)
}

/// "Your server", "Your server <strong>lab2</strong>", or "bob’s server" when an admin looks at
/// someone else's; HTML.
fn whose(ctx: &PageContext, user: &str, server_name: &str) -> String {
    let mut s = if ctx.user.as_deref() == Some(user) {
        "Your server".to_string()
    } else {
        format!("<strong>{}</strong>’s server", escape(user))
    };
    if !server_name.is_empty() {
        let _ = write!(s, " <strong>{}</strong>", escape(server_name));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PageContext {
        PageContext {
            base: "/".into(),
            user: Some("alice".into()),
            admin: false,
            services: Vec::new(),
            xsrf: "xsrf-1".into(),
            announcements: Vec::new(),
        }
    }

    #[test]
    fn pending_page_has_bar_log_and_hooks() {
        let html = spawn_pending(
            &ctx(),
            "alice",
            "",
            "/hub/api/users/alice/server/progress",
            "/user/alice/",
        );
        let want = [
            "<h1 id=\"pending-heading\">Starting your server</h1>",
            r#"data-pending-page data-progress-url="/hub/api/users/alice/server/progress" data-server-url="/user/alice/""#,
            r#"<progress max="100" aria-label="Server start progress" data-bar></progress>"#,
            r#"<ol class="log" aria-live="polite""#,
            r#"<a class="button primary" href="/hub/home">Try again</a>"#,
            "<div class=\"failed\" data-failed hidden>",
            r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#,
            "Your server is starting.",
        ];
        for w in want {
            assert!(html.contains(w), "missing {w}\n{html}");
        }
        // The refresh is for no-script browsers only.
        assert!(
            !html
                .replace(r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#, "")
                .contains("refresh")
        );
    }

    #[test]
    fn not_running_offers_a_start_form() {
        let html = not_running(&ctx(), "alice", "lab", "/hub/spawn/alice/lab");
        let want = [
            "<h1 id=\"not-running-heading\">Your server is not running</h1>",
            "Your server <strong>lab</strong> is stopped.",
            r#"<form method="post" action="/hub/spawn/alice/lab">"#,
            r#"<input type="hidden" name="_xsrf" value="xsrf-1">"#,
            r#"<button type="submit" class="primary">Start server</button>"#,
        ];
        for w in want {
            assert!(html.contains(w), "missing {w}\n{html}");
        }
    }

    #[test]
    fn options_page_offers_each_profile_with_the_default_checked() {
        let profiles = [
            Profile {
                slug: "small".into(),
                display_name: "Small".into(),
                description: "1 CPU, 2 GB".into(),
                default: false,
            },
            Profile {
                slug: "gpu".into(),
                display_name: "GPU <fast>".into(),
                description: String::new(),
                default: true,
            },
        ];
        let html = spawn_options(&ctx(), "alice", "", &profiles, "/hub/spawn/alice");
        let want = [
            "<h1 id=\"options-heading\">Server options</h1>",
            "Your server starts with the profile you choose.",
            r#"<form method="post" action="/hub/spawn/alice">"#,
            r#"<input type="hidden" name="_xsrf" value="xsrf-1">"#,
            r#"<input type="radio" name="profile" value="small"> <span class="choice-name">Small</span> <span class="choice-description">1 CPU, 2 GB</span>"#,
            r#"<input type="radio" name="profile" value="gpu" checked> <span class="choice-name">GPU &lt;fast&gt;</span></label>"#,
        ];
        for w in want {
            assert!(html.contains(w), "missing {w}\n{html}");
        }
        assert_eq!(html.matches(" checked").count(), 1);
    }

    #[test]
    fn whose_server() {
        let cases = [
            (Some("alice"), "alice", "", "Your server"),
            (Some("alice"), "alice", "lab2", "Your server <strong>lab2</strong>"),
            (Some("admin"), "bob", "", "<strong>bob</strong>’s server"),
            (None, "bob", "x", "<strong>bob</strong>’s server <strong>x</strong>"),
        ];
        for (viewer, user, server, want) in cases {
            let ctx = PageContext {
                user: viewer.map(Into::into),
                ..ctx()
            };
            assert_eq!(whose(&ctx, user, server), want, "viewer {viewer:?}, {user}/{server}");
        }
    }
}

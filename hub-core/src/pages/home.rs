//! The home page: the user's default server, then their named servers, each with the actions its
//! phase allows (Start; Open and Stop; progress while starting), and a form to add a named server.
//!
//! The buttons call the REST API from the page script (`assets/edgehub.js`); everything the script
//! needs (API and pending-page URLs, the server's name and phase) is rendered here into `data-*`
//! attributes, so URL building stays in [`super::urls`] and the script holds no hub layout.

use std::borrow::Cow;
use std::fmt::Write;

use super::escape::escape;
use super::{PageContext, ServerPhase, ServerView, layout, urls};

/// The hub's named-server settings, as far as the home page shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedServers {
    /// JupyterHub's `allow_named_servers`.
    pub allowed: bool,
    /// Most named servers a user may have; `0` means no limit (`named_server_limit_per_user`).
    pub limit: u32,
}

/// Renders the home page of `ctx.user`, who owns `servers` (in any order; the default server,
/// named `""`, is shown as stopped when absent).
pub fn home(ctx: &PageContext, servers: &[ServerView], named: NamedServers) -> String {
    let base = &ctx.base;
    let user = ctx.user.as_deref().unwrap_or_default();
    let stopped_default = ServerView {
        name: String::new(),
        phase: ServerPhase::Stopped,
        url: String::new(),
        progress_url: String::new(),
        last_activity: None,
        options_url: None,
    };
    let default = servers.iter().find(|s| s.name.is_empty()).unwrap_or(&stopped_default);
    let mut named_servers: Vec<&ServerView> = servers.iter().filter(|s| !s.name.is_empty()).collect();
    named_servers.sort_by(|a, b| a.name.cmp(&b.name));

    let mut main = String::with_capacity(4096);
    let _ = write!(
        main,
        r#"<div class="servers" data-home data-user-api="{user_api}">
<h1>Your servers</h1>
<p class="status" role="status" data-status></p>
<noscript><p class="note">Starting and stopping servers from this page needs JavaScript.</p></noscript>
<section class="card server" aria-labelledby="default-server-heading"{data}>
<h2 id="default-server-heading">Default server</h2>
<p class="state">{badge}{activity}</p>
<div class="actions">{actions}</div>
</section>
"#,
        user_api = escape(&urls::user_api(base, user)),
        data = server_data(base, user, default),
        badge = badge(default.phase),
        activity = default.last_activity.as_deref().map(last_activity).unwrap_or_default(),
        actions = actions(base, user, default, None),
    );

    if named.allowed || !named_servers.is_empty() {
        named_section(&mut main, base, user, &named_servers, named);
    }
    main.push_str("</div>\n");
    layout::page(ctx, "Home", "", &main)
}

fn named_section(main: &mut String, base: &str, user: &str, servers: &[&ServerView], named: NamedServers) {
    main.push_str(
        "<section class=\"card\" aria-labelledby=\"named-heading\">\n<h2 id=\"named-heading\">Named servers</h2>\n",
    );
    if servers.is_empty() {
        main.push_str("<p class=\"muted\">You have no named servers yet.</p>\n");
    } else {
        main.push_str(
            "<table class=\"server-table\">\n<thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">Last activity</th><th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n",
        );
        for server in servers {
            // `data-label` heads each cell when the table is stacked on narrow screens.
            let _ = write!(
                main,
                r#"<tr class="server"{data}>
<th scope="row">{name}</th>
<td data-label="Status">{badge}</td>
<td data-label="Last activity">{activity}</td>
<td><div class="actions">{actions}</div></td>
</tr>
"#,
                data = server_data(base, user, server),
                name = escape(&server.name),
                badge = badge(server.phase),
                activity = server.last_activity.as_deref().map_or_else(|| "—".to_string(), time),
                actions = actions(base, user, server, Some(&server.name)),
            );
        }
        main.push_str("</tbody>\n</table>\n");
    }

    // With named servers switched off, the ones from before still show, but no new ones.
    if named.allowed {
        new_server_form(main, base, user, servers.len(), named.limit);
    }
    main.push_str("</section>\n");
}

/// The form that adds and starts a named server, or why there is none: the user has `count`
/// named servers and may have `limit` (0: any number).
fn new_server_form(main: &mut String, base: &str, user: &str, count: usize, limit: u32) {
    if limit > 0 {
        let _ = writeln!(main, r#"<p class="muted">{count} of {limit} named servers in use.</p>"#);
    }
    // JupyterHub counts every named server, running or not, against the limit.
    if limit > 0 && count >= limit as usize {
        let _ = writeln!(
            main,
            r#"<p class="note">You have reached the limit of {limit} named servers.</p>"#
        );
        return;
    }
    // The script appends the percent-encoded name to these two prefixes.
    let _ = write!(
        main,
        r#"<form class="new-server" data-new-server data-api-base="{api}" data-pending-base="{pending}">
<label for="new-server-name">New server name</label>
<div class="inline">
<input id="new-server-name" name="name" type="text" required maxlength="255" autocomplete="off" autocapitalize="off" spellcheck="false">
<button type="submit" class="primary">Add and start</button>
</div>
</form>
"#,
        api = escape(&urls::named_server_api_prefix(base, user)),
        pending = escape(&urls::spawn_pending_prefix(base, user)),
    );
}

/// The attributes the script reads off a server's element.
fn server_data(base: &str, user: &str, server: &ServerView) -> String {
    format!(
        r#" data-server="{name}" data-phase="{phase}" data-api="{api}" data-pending="{pending}""#,
        name = escape(&server.name),
        phase = phase_id(server.phase),
        api = escape(&urls::server_api(base, user, &server.name)),
        pending = escape(&urls::spawn_pending(base, user, &server.name)),
    )
}

/// Buttons and links for the server's phase. `label` names a named server to assistive
/// technology, where a table holds many "Start" buttons.
fn actions(base: &str, user: &str, server: &ServerView, label: Option<&str>) -> String {
    let aria = |verb: &str| match label {
        Some(name) => format!(r#" aria-label="{verb} {}""#, escape(name)),
        None => String::new(),
    };
    let stop = format!(
        r#"<button type="button" class="danger" data-action="stop"{}>Stop</button>"#,
        aria("Stop")
    );
    match server.phase {
        ServerPhase::Stopped => match &server.options_url {
            Some(options) => format!(
                r#"<a class="button primary" href="{}"{}>Start</a>"#,
                escape(options),
                aria("Start")
            ),
            None => format!(
                r#"<button type="button" class="primary" data-action="start"{}>Start</button>"#,
                aria("Start")
            ),
        },
        ServerPhase::Pending => format!(
            r#"<a class="button" href="{}"{}>View progress</a> {stop}"#,
            escape(&urls::spawn_pending(base, user, &server.name)),
            aria("View progress of"),
        ),
        ServerPhase::Running => {
            format!(
                r#"<a class="button primary" href="{}"{}>Open</a> {stop}"#,
                escape(&server.url),
                aria("Open")
            )
        }
        // Nothing to do but wait; the script polls and reloads when it is gone.
        ServerPhase::Stopping => String::new(),
    }
}

fn phase_id(phase: ServerPhase) -> &'static str {
    match phase {
        ServerPhase::Stopped => "stopped",
        ServerPhase::Pending => "pending",
        ServerPhase::Running => "running",
        ServerPhase::Stopping => "stopping",
    }
}

fn badge(phase: ServerPhase) -> String {
    let text = match phase {
        ServerPhase::Stopped => "Stopped",
        ServerPhase::Pending => "Starting…",
        ServerPhase::Running => "Running",
        ServerPhase::Stopping => "Stopping…",
    };
    format!(r#"<span class="badge {}">{text}</span>"#, phase_id(phase))
}

fn last_activity(ts: &str) -> String {
    format!(r#" <span class="activity">Last activity {}</span>"#, time(ts))
}

/// A `<time>` the script rewrites as "5 minutes ago"; readable without the script too.
fn time(ts: &str) -> String {
    format!(
        r#"<time datetime="{}" data-relative>{}</time>"#,
        escape(ts),
        escape(&readable_time(ts))
    )
}

/// `2024-05-01T12:03:04.5Z` → `2024-05-01 12:03 UTC`; anything not shaped like RFC 3339 as is.
fn readable_time(ts: &str) -> Cow<'_, str> {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shaped = b.len() >= 16
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16);
    if !shaped {
        return Cow::Borrowed(ts);
    }
    // Skip seconds and fractions; what is left is the offset.
    let zone = ts[16..].trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == '.');
    let zone = match zone {
        "Z" | "z" | "+00:00" => " UTC".to_string(),
        "" => String::new(),
        other => format!(" {other}"),
    };
    Cow::Owned(format!("{} {}{zone}", &ts[..10], &ts[11..16]))
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

    fn server(name: &str, phase: ServerPhase) -> ServerView {
        let url = if name.is_empty() {
            "/user/alice/".to_string()
        } else {
            format!("/user/alice/{name}/")
        };
        ServerView {
            name: name.into(),
            phase,
            progress_url: format!("{url}progress"),
            url,
            last_activity: None,
            options_url: None,
        }
    }

    const ALLOWED: NamedServers = NamedServers {
        allowed: true,
        limit: 0,
    };
    const NOT_ALLOWED: NamedServers = NamedServers {
        allowed: false,
        limit: 0,
    };

    /// The HTML of the element carrying `data-server="{name}"`, up to its end tag.
    fn server_html<'a>(html: &'a str, name: &str) -> &'a str {
        let start = html.find(&format!(r#"data-server="{name}""#)).expect("server element");
        let rest = &html[start..];
        let end = rest
            .find("</section>")
            .into_iter()
            .chain(rest.find("</tr>"))
            .min()
            .unwrap();
        &rest[..end]
    }

    #[test]
    fn default_server_actions_by_phase() {
        // (phase, must show, must not show)
        let cases: [(ServerPhase, &[&str], &[&str]); 4] = [
            (
                ServerPhase::Stopped,
                &[r#"data-action="start""#, ">Start</button>", "Stopped"],
                &["Open", r#"data-action="stop""#],
            ),
            (
                ServerPhase::Pending,
                &[
                    r#"<a class="button" href="/hub/spawn-pending/alice">View progress</a>"#,
                    r#"data-action="stop""#,
                ],
                &[r#"data-action="start""#, ">Open<"],
            ),
            (
                ServerPhase::Running,
                &[
                    r#"<a class="button primary" href="/user/alice/">Open</a>"#,
                    ">Stop</button>",
                    "Running",
                ],
                &[r#"data-action="start""#],
            ),
            (ServerPhase::Stopping, &["Stopping…"], &["<button", ">Open<"]),
        ];
        for (phase, present, absent) in cases {
            let html = home(&ctx(), &[server("", phase)], NOT_ALLOWED);
            let element = server_html(&html, "");
            for want in present {
                assert!(element.contains(want), "{phase:?}: missing {want}\n{element}");
            }
            for unwanted in absent {
                assert!(
                    !element.contains(unwanted),
                    "{phase:?}: unexpected {unwanted}\n{element}"
                );
            }
        }
    }

    #[test]
    fn server_elements_carry_what_the_script_needs() {
        let html = home(
            &ctx(),
            &[server("", ServerPhase::Running), server("lab 2", ServerPhase::Stopped)],
            ALLOWED,
        );
        assert!(html.contains(r#"data-home data-user-api="/hub/api/users/alice""#));
        assert!(html.contains(
            r#"data-server="" data-phase="running" data-api="/hub/api/users/alice/server" data-pending="/hub/spawn-pending/alice""#
        ));
        assert!(html.contains(
            r#"data-server="lab 2" data-phase="stopped" data-api="/hub/api/users/alice/servers/lab%202" data-pending="/hub/spawn-pending/alice/lab%202""#
        ));
        assert!(html.contains(
            r#"data-new-server data-api-base="/hub/api/users/alice/servers/" data-pending-base="/hub/spawn-pending/alice/""#
        ));
        assert!(html.contains(r#"<body data-xsrf="xsrf-1">"#));
        assert!(html.contains(r#"role="status""#));
        assert!(html.contains(r#"<a href="/hub/logout">Log out</a>"#));
    }

    #[test]
    fn default_server_comes_first_and_is_stopped_when_absent() {
        let html = home(
            &ctx(),
            &[server("b", ServerPhase::Running), server("a", ServerPhase::Stopped)],
            ALLOWED,
        );
        let default = html.find(r#"data-server="""#).unwrap();
        let a = html.find(r#"data-server="a""#).unwrap();
        let b = html.find(r#"data-server="b""#).unwrap();
        assert!(default < a && a < b, "default first, then named by name");
        assert!(server_html(&html, "").contains(r#"data-action="start""#));
        assert!(server_html(&html, "a").contains(r#"aria-label="Start a""#));
        assert!(
            server_html(&html, "b")
                .contains(r#"<a class="button primary" href="/user/alice/b/" aria-label="Open b">Open</a>"#)
        );
    }

    #[test]
    fn named_server_section_follows_the_settings() {
        struct Case {
            servers: Vec<ServerView>,
            named: NamedServers,
            present: &'static [&'static str],
            absent: &'static [&'static str],
        }
        let cases = [
            Case {
                servers: vec![],
                named: NOT_ALLOWED,
                present: &[],
                absent: &["Named servers", "data-new-server"],
            },
            Case {
                servers: vec![],
                named: ALLOWED,
                present: &[
                    "Named servers",
                    "You have no named servers yet.",
                    "data-new-server",
                    "Add and start",
                ],
                absent: &["<table", "in use"],
            },
            Case {
                servers: vec![server("lab", ServerPhase::Running)],
                named: NamedServers {
                    allowed: true,
                    limit: 2,
                },
                present: &["<table", "1 of 2 named servers in use.", "data-new-server"],
                absent: &["reached the limit"],
            },
            Case {
                servers: vec![server("a", ServerPhase::Stopped), server("b", ServerPhase::Running)],
                named: NamedServers {
                    allowed: true,
                    limit: 2,
                },
                present: &[
                    "2 of 2 named servers in use.",
                    "You have reached the limit of 2 named servers.",
                ],
                absent: &["data-new-server"],
            },
            // Switched off with servers left over: they stay visible, nothing new can be added.
            Case {
                servers: vec![server("old", ServerPhase::Stopped)],
                named: NOT_ALLOWED,
                present: &["Named servers", r#"data-server="old""#],
                absent: &["data-new-server"],
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let html = home(&ctx(), &case.servers, case.named);
            for want in case.present {
                assert!(html.contains(want), "case {i}: missing {want}");
            }
            for unwanted in case.absent {
                assert!(!html.contains(unwanted), "case {i}: unexpected {unwanted}");
            }
        }
    }

    #[test]
    fn last_activity_is_shown_when_known() {
        let mut running = server("", ServerPhase::Running);
        running.last_activity = Some("2024-05-01T12:03:04.123Z".into());
        let html = home(&ctx(), &[running], NOT_ALLOWED);
        assert!(html.contains(
            r#"Last activity <time datetime="2024-05-01T12:03:04.123Z" data-relative>2024-05-01 12:03 UTC</time>"#
        ));
        let html = home(&ctx(), &[server("", ServerPhase::Running)], NOT_ALLOWED);
        assert!(!html.contains("Last activity"));
    }

    #[test]
    fn readable_times() {
        let cases = [
            ("2024-05-01T12:03:04Z", "2024-05-01 12:03 UTC"),
            ("2024-05-01T12:03:04.123456Z", "2024-05-01 12:03 UTC"),
            ("2024-05-01T12:03:04+00:00", "2024-05-01 12:03 UTC"),
            ("2024-05-01T12:03:04.5+02:00", "2024-05-01 12:03 +02:00"),
            ("2024-05-01 12:03", "2024-05-01 12:03"),
            ("2024-05-01T12:03:04", "2024-05-01 12:03"),
            ("yesterday", "yesterday"),
            ("2024-05-01", "2024-05-01"),
            ("2024-05-01Tab:cd", "2024-05-01Tab:cd"),
            ("2024-05-01T12:0é", "2024-05-01T12:0é"),
        ];
        for (input, want) in cases {
            assert_eq!(readable_time(input), want, "readable_time({input:?})");
        }
    }
}

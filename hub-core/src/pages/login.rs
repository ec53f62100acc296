//! The sign-in page: one form that posts to `{base}hub/login`.
//!
//! The form carries the XSRF token and the `next` URL as hidden fields, so the hub checks the
//! token and redirects after a successful login without relying on the query string surviving.

use std::fmt::Write;

use super::escape::escape;
use super::{PageContext, layout, urls};

/// What the login form shows besides the fields.
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// Why the last attempt failed, e.g. "Invalid username or password."; shown as an alert.
    pub error: Option<String>,
    /// Where to go after signing in; passed through as a hidden field.
    pub next: Option<String>,
    /// Pre-filled user name (after a failed attempt, or from the authenticator).
    pub username: Option<String>,
    /// Whether the authenticator needs a password (a token- or SSO-style login does not).
    pub ask_password: bool,
    /// A line of help under the heading, e.g. "Use your university account."
    pub hint: Option<String>,
}

pub fn login(ctx: &PageContext, opts: &LoginOptions) -> String {
    let mut main = String::with_capacity(1536);
    main.push_str(
        "<section class=\"card narrow\" aria-labelledby=\"login-heading\">\n<h1 id=\"login-heading\">Sign in</h1>\n",
    );
    if let Some(hint) = &opts.hint {
        let _ = writeln!(main, r#"<p class="hint">{}</p>"#, escape(hint));
    }
    if let Some(error) = &opts.error {
        let _ = writeln!(
            main,
            r#"<p class="error" id="login-error" role="alert">{}</p>"#,
            escape(error)
        );
    }
    // Fields point at the error so a screen reader reads it with the field it is about.
    let described = if opts.error.is_some() {
        r#" aria-describedby="login-error" aria-invalid="true""#
    } else {
        ""
    };
    let username = opts.username.as_deref().unwrap_or("");
    // Focus goes where typing starts: the password when the name is already there.
    let focus_password = opts.ask_password && !username.is_empty();

    let _ = write!(
        main,
        r#"<form class="stack" method="post" action="{action}">
<input type="hidden" name="_xsrf" value="{xsrf}">
"#,
        action = escape(&urls::login(&ctx.base)),
        xsrf = escape(&ctx.xsrf),
    );
    if let Some(next) = &opts.next {
        let _ = writeln!(main, r#"<input type="hidden" name="next" value="{}">"#, escape(next));
    }
    let _ = write!(
        main,
        r#"<label for="username">Username</label>
<input id="username" name="username" type="text" value="{value}" autocomplete="username" autocapitalize="off" spellcheck="false" required{autofocus}{described}>
"#,
        value = escape(username),
        autofocus = if focus_password { "" } else { " autofocus" },
    );
    if opts.ask_password {
        let _ = write!(
            main,
            r#"<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{autofocus}{described}>
"#,
            autofocus = if focus_password { " autofocus" } else { "" },
        );
    }
    main.push_str("<button type=\"submit\" class=\"primary\">Sign in</button>\n</form>\n</section>\n");
    layout::page(ctx, "Sign in", "", &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PageContext {
        PageContext {
            base: "/jhub/".into(),
            user: None,
            admin: false,
            services: Vec::new(),
            xsrf: "xsrf-1".into(),
            announcements: Vec::new(),
        }
    }

    fn opts() -> LoginOptions {
        LoginOptions {
            ask_password: true,
            ..LoginOptions::default()
        }
    }

    #[test]
    fn form_posts_to_the_hub_with_the_token() {
        let html = login(&ctx(), &opts());
        assert!(html.contains(r#"<form class="stack" method="post" action="/jhub/hub/login">"#));
        assert!(html.contains(r#"<input type="hidden" name="_xsrf" value="xsrf-1">"#));
        assert!(html.contains(r#"<label for="username">Username</label>"#));
        assert!(html.contains(r#"<input id="username" name="username""#));
        assert!(html.contains(r#"<label for="password">Password</label>"#));
        assert!(html.contains(r#"name="password" type="password""#));
        assert!(html.contains(r#"<button type="submit" class="primary">Sign in</button>"#));
        assert!(!html.contains(r#"name="next""#));
        assert!(!html.contains("role=\"alert\""));
    }

    #[test]
    fn fields_follow_the_options() {
        struct Case {
            opts: LoginOptions,
            present: &'static [&'static str],
            absent: &'static [&'static str],
        }
        let cases = [
            Case {
                opts: LoginOptions {
                    ask_password: false,
                    ..opts()
                },
                present: &[r#"name="username""#],
                absent: &[r#"name="password""#, "Password"],
            },
            Case {
                opts: LoginOptions {
                    next: Some("/user/alice/lab?a=1&b=2".into()),
                    ..opts()
                },
                present: &[r#"<input type="hidden" name="next" value="/user/alice/lab?a=1&amp;b=2">"#],
                absent: &[],
            },
            Case {
                opts: LoginOptions {
                    error: Some("Invalid username or password.".into()),
                    ..opts()
                },
                present: &[
                    r#"<p class="error" id="login-error" role="alert">Invalid username or password.</p>"#,
                    r#"aria-describedby="login-error""#,
                ],
                absent: &[],
            },
            Case {
                opts: LoginOptions {
                    hint: Some("Use your lab account.".into()),
                    ..opts()
                },
                present: &[r#"<p class="hint">Use your lab account.</p>"#],
                absent: &[],
            },
            // Empty name: focus the name.
            Case {
                opts: opts(),
                present: &["required autofocus>"],
                absent: &[r#"type="password" autocomplete="current-password" required autofocus"#],
            },
            // Name known: focus the password.
            Case {
                opts: LoginOptions {
                    username: Some("alice".into()),
                    ..opts()
                },
                present: &[
                    r#"value="alice""#,
                    r#"type="password" autocomplete="current-password" required autofocus"#,
                ],
                absent: &["spellcheck=\"false\" required autofocus"],
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let html = login(&ctx(), &case.opts);
            for want in case.present {
                assert!(html.contains(want), "case {i}: missing {want}\n{html}");
            }
            for unwanted in case.absent {
                assert!(!html.contains(unwanted), "case {i}: unexpected {unwanted}\n{html}");
            }
        }
    }

    #[test]
    fn exactly_one_autofocus() {
        for username in [None, Some("alice".to_string())] {
            for ask_password in [false, true] {
                let html = login(
                    &ctx(),
                    &LoginOptions {
                        username: username.clone(),
                        ask_password,
                        ..opts()
                    },
                );
                assert_eq!(
                    html.matches("autofocus").count(),
                    1,
                    "username {username:?}, password {ask_password}"
                );
            }
        }
    }
}

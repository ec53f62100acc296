//! Error pages, for the hub's own errors and as the proxy's error target (`/hub/error/{code}`):
//! a sentence a user understands first, the code and the detail after it.
//!
//! When the proxy fetches one, the browser shows it at the URL that failed, so every link here is
//! absolute under the base, and "Try again" is the empty reference, i.e. that URL again.

use std::fmt::Write;

use super::escape::escape;
use super::{PageContext, layout, urls};

pub fn error(ctx: &PageContext, code: u16, message: &str) -> String {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let (heading, explanation, retry) = match code {
        404 => (
            "This page does not exist",
            "Check the address, or start again from your home page.",
            false,
        ),
        503 => (
            "The server is not reachable right now…",
            "It may be restarting. Wait a moment, then try again.",
            true,
        ),
        _ => ("Something went wrong", "", true),
    };

    let mut main = String::with_capacity(1024);
    let _ = write!(
        main,
        r#"<section class="card narrow" aria-labelledby="error-heading">
<h1 id="error-heading">{heading}</h1>
<p class="code">Error {code}: {reason}</p>
"#
    );
    if !explanation.is_empty() {
        let _ = writeln!(main, "<p>{explanation}</p>");
    }
    if !message.is_empty() {
        let _ = writeln!(main, r#"<p class="detail">{}</p>"#, escape(message));
    }
    main.push_str("<p class=\"actions\">");
    if retry {
        main.push_str(r#"<a class="button primary" href="">Try again</a> "#);
    }
    let _ = write!(
        main,
        "<a class=\"button\" href=\"{}\">Go to the home page</a></p>\n</section>\n",
        escape(&urls::home(&ctx.base))
    );
    layout::page(ctx, &format!("{code} {reason}"), "", &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_code() {
        let ctx = PageContext {
            base: "/jhub/".into(),
            ..PageContext::default()
        };
        // (code, message, must show, must not show)
        let cases: [(u16, &str, &[&str], &[&str]); 4] = [
            (
                404,
                "",
                &[
                    "<title>404 Not Found · edgehub</title>",
                    "This page does not exist",
                    "Error 404: Not Found",
                    r#"href="/jhub/hub/home">Go to the home page</a>"#,
                ],
                &["Try again", "class=\"detail\""],
            ),
            (
                503,
                "/user/alice/ is not answering",
                &[
                    "The server is not reachable right now…",
                    "It may be restarting.",
                    r#"<p class="detail">/user/alice/ is not answering</p>"#,
                    r#"<a class="button primary" href="">Try again</a>"#,
                ],
                &[],
            ),
            (
                500,
                "boom",
                &["Something went wrong", "Error 500: Internal Server Error", "boom"],
                &[],
            ),
            (
                599,
                "",
                &[
                    "Something went wrong",
                    "Error 599: Error",
                    "<title>599 Error · edgehub</title>",
                ],
                &[],
            ),
        ];
        for (code, message, present, absent) in cases {
            let html = error(&ctx, code, message);
            for want in present {
                assert!(html.contains(want), "{code}: missing {want}\n{html}");
            }
            for unwanted in absent {
                assert!(!html.contains(unwanted), "{code}: unexpected {unwanted}\n{html}");
            }
        }
    }
}

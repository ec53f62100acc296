//! The hub's static files: one stylesheet and one script for every page, compiled into the
//! binary so the hub needs no files beside it and no CDN. Pages link them as
//! `{base}hub/static/{name}` ([`super::urls::static_file`]).

/// `{base}hub/static/style.css`.
pub const STYLESHEET: &str = include_str!("assets/style.css");

/// `{base}hub/static/edgehub.js`: the home page's server buttons and the pending page's progress
/// follower, driven by `data-*` attributes (no inline script anywhere).
pub const SCRIPT: &str = include_str!("assets/edgehub.js");

/// A static file as the hub serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The file served at `{base}hub/static/{name}`, if there is one.
pub fn asset(name: &str) -> Option<Asset> {
    match name {
        "style.css" => Some(Asset {
            content_type: "text/css; charset=utf-8",
            body: STYLESHEET,
        }),
        "edgehub.js" => Some(Asset {
            content_type: "text/javascript; charset=utf-8",
            body: SCRIPT,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_by_name() {
        assert_eq!(asset("style.css").map(|a| a.body), Some(STYLESHEET));
        assert_eq!(
            asset("edgehub.js").map(|a| a.content_type),
            Some("text/javascript; charset=utf-8")
        );
        for missing in ["", "style", "../style.css", "STYLE.CSS", "edgehub.js.map"] {
            assert_eq!(asset(missing), None, "{missing:?}");
        }
    }

    #[test]
    fn stylesheet_is_self_contained_and_keeps_focus_visible() {
        assert!(STYLESHEET.contains(":focus-visible"));
        for external in ["@import", "url(", "http://", "https://"] {
            assert!(!STYLESHEET.contains(external), "stylesheet loads something: {external}");
        }
    }

    #[test]
    fn script_never_renders_untrusted_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "script uses {sink}");
        }
    }
}

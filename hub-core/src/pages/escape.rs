//! HTML escaping for every value a page interpolates: user and server names, messages, URLs,
//! the XSRF token. Pages always quote attributes with `"`, and `'` is escaped too, so one function
//! is safe both in text and in attribute values.
//!
//! It does not make a URL safe to follow (a `javascript:` URL stays one); pages only link to URLs
//! the hub built.

use std::borrow::Cow;

/// `s` with `& < > " '` replaced by character references; borrowed when there is nothing to do,
/// which is the common case for names and URLs.
pub fn escape(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(['&', '<', '>', '"', '\'']) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_characters_and_nothing_else() {
        let cases = [
            ("", ""),
            ("alice", "alice"),
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("a & b", "a &amp; b"),
            (r#"" onmouseover="x"#, "&quot; onmouseover=&quot;x"),
            ("it's", "it&#39;s"),
            ("&amp;", "&amp;amp;"),
            ("ünïcödé → ok", "ünïcödé → ok"),
            ("/user/alice/?a=1&b=2", "/user/alice/?a=1&amp;b=2"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "escape({input:?})");
        }
    }

    #[test]
    fn borrows_when_clean() {
        assert!(matches!(escape("/hub/home"), Cow::Borrowed(_)));
        assert!(matches!(escape("a<b"), Cow::Owned(_)));
    }
}

//! The `Date` header value (RFC 9110 §6.6.1), formatted once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Appends `date: <IMF-fixdate>\r\n`.
pub fn write_date_line(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(cached.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_line_is_an_imf_fixdate() {
        let mut out = Vec::new();
        super::write_date_line(&mut out);
        let line = String::from_utf8(out).unwrap();
        let value = line.strip_prefix("date: ").unwrap().strip_suffix("\r\n").unwrap();
        assert!(value.ends_with(" GMT") && value.len() == 29, "{value}");
        assert!(httpdate::parse_http_date(value).is_ok());
    }
}

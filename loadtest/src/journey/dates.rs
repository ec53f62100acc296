//! The two date formats the journey meets: HTTP dates in cookie `Expires` attributes (RFC 9110
//! §5.6.7, IMF-fixdate) and the ISO 8601 UTC timestamps of Jupyter message headers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// Seconds since the Unix epoch of an HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT`, or of
/// the RFC 850 form with dashes (`Sunday, 06-Nov-94 08:49:37 GMT`) that some servers still send
/// in cookies. `None` when it does not parse.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let rest = text.split_once(',').map_or(text, |(_, r)| r).trim();
    let mut parts = rest.split([' ', '-']).filter(|p| !p.is_empty());
    let day: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| month.len() >= 3 && month[..3].eq_ignore_ascii_case(m))? as i64
        + 1;
    let mut year: i64 = parts.next()?.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = parts.next()?.split(':').map(|v| v.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `2026-05-04T13:22:01.123456Z` for a time given as microseconds since the Unix epoch.
pub fn iso8601_utc(unix_us: i64) -> String {
    let secs = unix_us.div_euclid(1_000_000);
    let us = unix_us.rem_euclid(1_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// The current time for a Jupyter message header.
pub fn iso8601_now() -> String {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    iso8601_utc(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        let cases = [
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Tue, 29 Feb 2028 23:59:59 GMT", Some(1_835_481_599)),
            ("not a date", None),
            ("Sun, 06 Foo 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_http_date(text), want, "{text}");
        }
    }

    #[test]
    fn iso_timestamps_round_trip_the_calendar() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601_utc(784_111_777_000_042), "1994-11-06T08:49:37.000042Z");
        assert_eq!(iso8601_utc(1_835_481_599_000_000), "2028-02-29T23:59:59.000000Z");
    }
}

//! `last_activity` timestamps: milliseconds since the Unix epoch, written as ISO-8601 UTC with
//! milliseconds and `Z` (`2026-11-21T10:13:15.717Z`, what JupyterHub parses), and read back
//! leniently for `?inactive_since=` (the ISO-8601 forms clients send, see [`parse_iso`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_iso(ms: u64) -> String {
    let mut out = Vec::with_capacity(24);
    write_iso(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the `format_iso` text to `out` without allocating (the route listing writes one per
/// route).
pub fn write_iso(out: &mut Vec<u8>, ms: u64) {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let digits = |out: &mut Vec<u8>, v: i64, width: u32| {
        for i in (0..width).rev() {
            out.push(b'0' + ((v / 10_i64.pow(i)) % 10) as u8);
        }
    };
    digits(out, y, 4);
    out.push(b'-');
    digits(out, m, 2);
    out.push(b'-');
    digits(out, d, 2);
    out.push(b'T');
    digits(out, rem / 3600, 2);
    out.push(b':');
    digits(out, rem % 3600 / 60, 2);
    out.push(b':');
    digits(out, rem % 60, 2);
    out.push(b'.');
    digits(out, (ms % 1000) as i64, 3);
    out.push(b'Z');
}

/// Parses the ISO-8601 forms clients send for `inactive_since`: a date (`2026-11-21`), or a date
/// and time with optional seconds, fraction and offset (`Z`, `+01:00`, `+0100`). A time without an
/// offset is read as UTC (CHP reads it as the proxy's local time, which in a container is UTC).
/// Returns epoch milliseconds, possibly negative.
pub fn parse_iso(input: &str) -> Option<i64> {
    let s = input.trim();
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = parse_digits(date_parts.next()?, 4)?;
    let month: i64 = parse_digits(date_parts.next()?, 2)?;
    let day: i64 = parse_digits(date_parts.next()?, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if let Some(time) = time {
        let (clock, offset_ms) = split_offset(time)?;
        let (hms, frac) = match clock.split_once('.') {
            Some((hms, frac)) => (hms, Some(frac)),
            None => (clock, None),
        };
        let mut parts = hms.split(':');
        let hour: i64 = parse_digits(parts.next()?, 2)?;
        let minute: i64 = parse_digits(parts.next()?, 2)?;
        let second: i64 = match parts.next() {
            Some(p) => parse_digits(p, 2)?,
            None => 0,
        };
        if parts.next().is_some() || hour > 24 || minute > 59 || second > 59 {
            return None;
        }
        let millis = match frac {
            Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                let padded = format!("{f:0<3}");
                padded[..3].parse::<i64>().ok()?
            }
            Some(_) => return None,
            None => 0,
        };
        ms += ((hour * 60 + minute) * 60 + second) * 1000 + millis - offset_ms;
    }
    Some(ms)
}

fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    match time.rfind(['+', '-']) {
        Some(i) => {
            let sign = if &time[i..=i] == "-" { -1 } else { 1 };
            let off = time[i + 1..].replace(':', "");
            // Checked before slicing: a non-ASCII offset must not split a character.
            if off.len() != 4 || !off.is_ascii() {
                return None;
            }
            let hours: i64 = parse_digits(&off[..2], 2)?;
            let minutes: i64 = parse_digits(&off[2..], 2)?;
            Some((&time[..i], sign * (hours * 60 + minutes) * 60_000))
        }
        None => Some((time, 0)),
    }
}

fn parse_digits(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil and its inverse: exact for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(format_iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(format_iso(1_795_256_995_717), "2026-11-21T10:29:55.717Z");
        assert_eq!(format_iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_iso_forms() {
        let cases = [
            ("1970-01-01T00:00:00.001Z", Some(1)),
            ("2026-11-21T10:29:55.717Z", Some(1_795_256_995_717)),
            ("2026-11-21T10:29:55Z", Some(1_795_256_995_000)),
            ("2026-11-21T10:29:55.7Z", Some(1_795_256_995_700)),
            ("2026-11-21T10:29:55.717123Z", Some(1_795_256_995_717)),
            ("2026-11-21T11:29:55.717+01:00", Some(1_795_256_995_717)),
            ("2026-11-21T09:29:55.717-0100", Some(1_795_256_995_717)),
            ("2026-11-21T10:29", Some(1_795_256_940_000)),
            ("2026-11-21", Some(1_795_219_200_000)),
            ("2000-01-01T00:00:00Z", Some(946_684_800_000)),
            ("1969-12-31T23:59:59.999Z", Some(-1)),
            ("endoftheuniverse", None),
            ("garbage", None),
            ("2026-13-01", None),
            ("2026-02-30", None),
            ("2026-11-21T25:00Z", None),
            ("2026-11-21T10:29:55.Z", None),
            ("2026-11-21T10:29+aé1", None),
            ("2026-11-21T10:29:55+é:é", None),
            ("é", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_iso(input), want, "parsing {input:?}");
        }
    }

    #[test]
    fn round_trips() {
        for ms in [0, 1, 999, 1_000, 86_399_999, 1_795_256_995_717, 4_102_444_800_000] {
            assert_eq!(parse_iso(&format_iso(ms)), Some(ms as i64));
        }
    }
}

//! Durations on the command line: `10s`, `500ms`, `2m`, `1.5s`, `250us`; a bare number is seconds.

use std::time::Duration;

/// A duration argument that could not be read. The message names the text and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: expected a number with an optional unit us, ms, s, m or h (e.g. 10s, 500ms)")]
pub struct DurationError {
    pub text: String,
}

/// Parses `text` as a non-negative duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError { text: text.to_owned() };
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| err())?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("10", Duration::from_secs(10)),
            ("10s", Duration::from_secs(10)),
            ("1.5s", Duration::from_millis(1500)),
            ("500ms", Duration::from_millis(500)),
            ("250us", Duration::from_micros(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            (" 0 ", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejected_forms_name_the_text() {
        for text in ["", "s", "ten", "10x", "-1s", "1..2s", "1e3"] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
        }
    }
}

//! Kubernetes resource quantities (`"500m"`, `"2"`, `"64Gi"`, `"1e3"`) as integers.
//!
//! The scheduler compares requests against capacity in milli-units (cpu) or plain units (bytes,
//! GPUs). Parsing is exact decimal arithmetic, not floating point, so `"0.1"` is 100 milli-units
//! and never 101; fractions below the unit round up, as `Quantity.MilliValue()` does upstream.

/// A parsed quantity in thousandths of its unit (cpu `"1"` = 1000, memory `"1Ki"` = 1_024_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    millis: u128,
}

impl Quantity {
    /// The value in milli-units, rounded up (cpu millicores).
    pub fn millis(self) -> u64 {
        u64::try_from(self.millis).unwrap_or(u64::MAX)
    }

    /// The value in whole units, rounded up (bytes, GPUs).
    pub fn units(self) -> u64 {
        u64::try_from(self.millis.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

/// Parses a quantity; `None` for anything Kubernetes would reject (negative numbers included).
pub fn parse(text: &str) -> Option<Quantity> {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() || number == "." {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if !int_part.chars().chain(frac_part.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let mantissa: u128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    // value = mantissa * 10^(exp10) * 2^(exp2); we want value * 1000.
    let mut exp10: i32 = 3 - i32::try_from(frac_part.len()).ok()?;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        exponent if exponent.starts_with(['e', 'E']) => {
            let e: i32 = exponent[1..].parse().ok()?;
            if e.abs() > 30 {
                return None;
            }
            exp10 += e;
        }
        _ => return None,
    }
    let scaled = mantissa.checked_mul(1u128.checked_shl(exp2)?)?;
    let millis = if exp10 >= 0 {
        scaled.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?
    } else {
        scaled.div_ceil(10u128.checked_pow(exp10.unsigned_abs())?)
    };
    Some(Quantity { millis })
}

/// Formats whole units the way the API server prints capacities (`"16"`, `"68719476736"`).
pub fn format_units(units: u64) -> String {
    units.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_pods_and_nodes_use() {
        let cases: &[(&str, u64, u64)] = &[
            ("1", 1000, 1),
            ("500m", 500, 1),
            ("0.1", 100, 1),
            ("1.5", 1500, 2),
            ("64Gi", 64 * (1 << 30) * 1000, 64 * (1 << 30)),
            ("128Mi", 128 * (1 << 20) * 1000, 128 * (1 << 20)),
            ("1G", 1_000_000_000_000, 1_000_000_000),
            ("1k", 1_000_000, 1000),
            ("129e6", 129_000_000_000, 129_000_000),
            ("1n", 1, 1),
            ("0", 0, 0),
            ("+2", 2000, 2),
        ];
        for (text, millis, units) in cases {
            let q = parse(text).unwrap_or_else(|| panic!("{text} should parse"));
            assert_eq!(q.millis(), *millis, "millis of {text}");
            assert_eq!(q.units(), *units, "units of {text}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for text in ["", "-1", "abc", "1Qi", "1.2.3", ".", "1e999"] {
            assert!(parse(text).is_none(), "{text:?} should not parse");
        }
    }
}

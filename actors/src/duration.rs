//! Duration strings as the API accepts them: `90s`, `5m`, `1m30s`, `250ms`,
//! `1h` — and, where a parameter allows it, plain seconds (`300`).

use std::time::Duration;

/// Parses a duration as Go's `time.ParseDuration` (and so
/// `metav1.Duration`, what Go clients send) does: `<number><unit>` groups
/// with units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` and decimal numbers —
/// `90s`, `1m30s`, `1.5s`, `1h0m0s`, `0s`, `0`. Negative durations are
/// refused; arithmetic is checked (Go's limit: about 290 years), so no input
/// can make it panic.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let err = |why: &str| format!("invalid duration {s:?}: {why}");
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t.starts_with('-') {
        return Err(err("it is negative"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        rest = &rest[num_len..];
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(err("expected a number before each unit"));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("missing unit (ns, us, ms, s, m or h)")),
            other => return Err(err(&format!("unknown unit {other:?}"))),
        };
        let too_large = || err("too large");
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| too_large())?
        };
        let mut value = whole.checked_mul(nanos_per).ok_or_else(too_large)?;
        // The fraction, digit by digit (beyond nanoseconds it cannot count).
        let mut scale = nanos_per;
        for d in frac.bytes().take(30) {
            scale /= 10;
            value += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(too_large)?;
        if total > u128::from(u64::MAX) {
            return Err(too_large());
        }
    }
    let total = u64::try_from(total).map_err(|_| err("too large"))?;
    Ok(Duration::from_nanos(total))
}

/// Like [`parse_duration`], but a bare integer means seconds.
pub fn parse_seconds_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse_duration(s),
    }
}

/// Formats a duration as the shortest `XhYmZs` string (`0s` for zero).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn parses_what_go_clients_send() {
        // metav1.Duration renders 1.5s, 0s, 1h0m0s; Go accepts these too.
        for (s, want) in [
            ("1.5s", Duration::from_millis(1500)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("1h0m0s", Duration::from_secs(3600)),
            ("2m0.5s", Duration::from_millis(120_500)),
            ("300ms", Duration::from_millis(300)),
            ("1500us", Duration::from_micros(1500)),
            ("1500µs", Duration::from_micros(1500)),
            ("10ns", Duration::from_nanos(10)),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_garbage_naming_it() {
        for bad in [
            "",
            "5",
            "m5",
            "5x",
            "1.5",
            "-3s",
            "s",
            "1d",
            ".s",
            "1..5s",
            "18446744073709551615s",
            "99999999999999999999999s",
            "999999999999999999999999999999999999999999h",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn seconds_or_duration() {
        assert_eq!(
            parse_seconds_or_duration("300"),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            parse_seconds_or_duration("2m"),
            Ok(Duration::from_secs(120))
        );
        assert!(parse_seconds_or_duration("soon").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["1h", "5m", "1m30s", "45s"] {
            assert_eq!(format_duration(parse_duration(s).expect(s)), s);
        }
    }
}

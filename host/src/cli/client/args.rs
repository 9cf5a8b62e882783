//! Value parsers for client flags, used by clap so a malformed value is a
//! usage error (exit 2) before anything is sent: sizes (`64MiB`), durations
//! (`5s`), points in time (`10m` ago or RFC 3339), JSON given inline or as
//! `@file`, and `key=value` pairs. Also the `--yes` confirmation prompt.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::http::Failure;

/// A byte count: a plain number, or a number with a unit. `KiB`/`Ki`/`K`
/// (and M, G, T) are powers of 1024, `KB`/`MB`/… powers of 1000; case is
/// ignored and a space may separate number and unit. `1.5GiB` is allowed.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {s:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        }
    };
    let invalid =
        || format!("invalid size {s:?}: expected a number and an optional unit, like 64MiB");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(invalid());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let too_big = || format!("size {s:?} is too large");
    let mut total = whole.checked_mul(multiplier).ok_or_else(too_big)?;
    if !fraction.is_empty() {
        if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let scale = 10u128.pow(fraction.len() as u32);
        let part =
            fraction.parse::<u128>().map_err(|_| invalid())? * u128::from(multiplier) / scale;
        total = total
            .checked_add(u64::try_from(part).map_err(|_| too_big())?)
            .ok_or_else(too_big)?;
    }
    Ok(total)
}

/// A humantime duration such as `250ms`, `5s`, `1h 30m`; a unit is required.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// `--expires-in`: checked like a duration, sent as written (`30d`).
pub(crate) fn parse_expires(s: &str) -> Result<String, String> {
    parse_duration(s).map(|_| s.trim().to_string())
}

/// A point in time for `--since` / `--until` / `--before`, as milliseconds
/// since the epoch: see [`parse_time_at`].
pub(crate) fn parse_time(s: &str) -> Result<u64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    parse_time_at(s, now)
}

/// A point in time relative to `now_ms`: a duration ago (`10m`, `2h ago`),
/// an RFC 3339 time (`2025-01-31T12:00:00Z`, `…+02:00`, a missing offset
/// meaning UTC), a date (`2025-01-31`, midnight UTC), or epoch milliseconds.
pub(crate) fn parse_time_at(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?} is too large"));
    }
    if let Ok(ms) = parse_rfc3339_ms(s) {
        return Ok(ms);
    }
    let ago = s.strip_suffix("ago").unwrap_or(s).trim();
    match humantime::parse_duration(ago) {
        Ok(d) => Ok(now_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        Err(_) => Err(format!(
            "invalid time {s:?}: expected a duration ago (10m, 2h), an RFC 3339 time (2025-01-31T12:00:00Z) or a date (2025-01-31)"
        )),
    }
}

fn parse_rfc3339_ms(s: &str) -> Result<u64, ()> {
    let is_date = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    let (text, offset_s): (String, i64) = if is_date {
        (format!("{s}T00:00:00Z"), 0)
    } else {
        match split_offset(s) {
            Some((rest, offset)) => (format!("{rest}Z"), offset),
            None => (s.to_string(), 0),
        }
    };
    let t = humantime::parse_rfc3339_weak(&text).map_err(|_| ())?;
    let ms = t.duration_since(UNIX_EPOCH).map_err(|_| ())?.as_millis();
    let ms = i64::try_from(ms).map_err(|_| ())? - offset_s * 1000;
    u64::try_from(ms).map_err(|_| ())
}

/// Splits a `+HH:MM` / `-HH:MM` suffix off a timestamp, returning the
/// offset in seconds east of UTC.
fn split_offset(s: &str) -> Option<(&str, i64)> {
    let b = s.as_bytes();
    if b.len() < 25 || b[b.len() - 3] != b':' {
        return None;
    }
    let sign = match b[b.len() - 6] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i64 = s[s.len() - 5..s.len() - 3].parse().ok()?;
    let minutes: i64 = s[s.len() - 2..].parse().ok()?;
    Some((&s[..s.len() - 6], sign * (hours * 3600 + minutes * 60)))
}

/// JSON given inline, or `@path` to read a file (`@-`: standard input).
pub(crate) fn parse_json_arg(s: &str) -> Result<Value, String> {
    match s.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            parse_json_text(&text, "standard input")
        }
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            parse_json_text(&text, path)
        }
        None => parse_json_text(s, "the argument"),
    }
}

fn parse_json_text(text: &str, origin: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("{origin} is not valid JSON: {e} (give JSON inline, or @FILE to read a file)")
    })
}

/// `key=value`; the value may contain `=`, the key may not be empty.
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Asks before something irreversible, unless `--yes` was given. Without a
/// terminal to ask on, refuses.
pub(crate) fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            Failure::new(format!("refusing to {question} without confirmation"))
                .with_hint("pass --yes")
                .into(),
        );
    }
    eprint!("{question}? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure::new("aborted").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn byte_sizes() {
        let table = [
            ("0", 0),
            ("1048576", 1 << 20),
            ("512B", 512),
            ("64MiB", 64 << 20),
            ("64 MiB", 64 << 20),
            ("64mib", 64 << 20),
            ("64Mi", 64 << 20),
            ("64M", 64 << 20),
            ("1GiB", 1 << 30),
            ("1.5GiB", 3 << 29),
            (".5KiB", 512),
            ("2KB", 2000),
            ("3MB", 3_000_000),
            ("1TiB", 1 << 40),
        ];
        for (s, want) in table {
            assert_eq!(parse_bytes(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "MiB",
            "lots",
            "64 parsecs",
            "1.2.3MiB",
            "-1",
            "1e9",
            ".",
            "99999999999TiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_expires("30d").as_deref(), Ok("30d"));
        assert!(parse_expires("soon").is_err());
    }

    #[test]
    fn points_in_time() {
        let now = 1_735_689_600_000; // 2025-01-01T00:00:00Z
        let table = [
            ("10m", now - 600_000),
            ("10m ago", now - 600_000),
            ("1h 30m", now - 5_400_000),
            ("2025-01-01T00:00:00Z", now),
            ("2025-01-01T00:00:00.250Z", now + 250),
            ("2025-01-01T00:00:00", now),
            ("2025-01-01 00:00:00", now),
            ("2025-01-01T02:00:00+02:00", now),
            ("2024-12-31T19:00:00-05:00", now),
            ("2025-01-01", now),
            ("1735689600000", now),
        ];
        for (s, want) in table {
            assert_eq!(parse_time_at(s, now), Ok(want), "{s}");
        }
        for bad in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-01-01T25:00:00Z",
            "10 parsecs",
        ] {
            assert!(parse_time_at(bad, now).is_err(), "{bad:?}");
        }
        assert_eq!(parse_time_at("1000y", now), Ok(0));
    }

    #[test]
    fn json_arguments() {
        assert_eq!(parse_json_arg(r#"{"a":1}"#), Ok(json!({"a": 1})));
        assert_eq!(parse_json_arg("42"), Ok(json!(42)));
        let err = parse_json_arg("{nope").unwrap_err();
        assert!(err.contains("@FILE"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"greeting": "hi"}"#).unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(parse_json_arg(&arg), Ok(json!({"greeting": "hi"})));
        let missing = format!("@{}", dir.path().join("missing.json").display());
        assert!(
            parse_json_arg(&missing)
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }
}

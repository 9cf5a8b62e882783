//! Everything the client prints: aligned tables, `key: value` blocks, human
//! durations, sizes and times, the daemon's JSON re-indented without
//! reordering it, and the guard that strips control characters from text
//! that may come from an untrusted handler.
//!
//! Formats are deliberately plain (two spaces between columns, `-` for an
//! absent value, RFC 3339 UTC times) so scripts and tests can match them.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

/// Epoch milliseconds from here on are timestamps (2001-09-09); below, a
/// `*_ms` number is a duration.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// Longest cell in a table; `show` prints the whole value.
const CELL_CHARS_MAX: usize = 80;

/// Writes text to stdout; a closed pipe comes back as an error for `finish`.
pub(crate) fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()
}

/// Replaces control characters (escape sequences, newlines, tabs) with spaces.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The value at the first of `paths` that is present and not null; a path is
/// keys separated by dots (`event.type`).
pub(crate) fn get<'a>(v: &'a Value, paths: &[&str]) -> Option<&'a Value> {
    paths.iter().find_map(|path| {
        path.split('.')
            .try_fold(v, |cur, key| cur.get(key))
            .filter(|found| !found.is_null())
    })
}

/// The string at a path, or "".
pub(crate) fn get_str<'a>(v: &'a Value, paths: &[&str]) -> &'a str {
    get(v, paths).and_then(Value::as_str).unwrap_or("")
}

/// `850µs`, `12.3ms`, `1.25s`, `2m 5s`.
pub(crate) fn duration_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => trim_decimals(us as f64 / 1e3, 1, "ms"),
        1_000_000..60_000_000 => trim_decimals(us as f64 / 1e6, 2, "s"),
        _ => humantime::format_duration(Duration::from_secs(us / 1_000_000)).to_string(),
    }
}

/// `512 B`, `64 KiB`, `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    trim_decimals(value, 1, &format!(" {}", UNITS[unit]))
}

/// `2025-01-31T12:00:00Z` for milliseconds since the epoch.
pub(crate) fn time_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn trim_decimals(value: f64, decimals: usize, unit: &str) -> String {
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

/// One value for humans, formatted by what its key says it is: `*_us` and
/// small `*_ms` are durations, large `*_ms` are times, `*_bytes` are sizes.
pub(crate) fn field(key: &str, v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_u64() {
            Some(n) if key.ends_with("_us") => duration_us(n),
            Some(n) if key.ends_with("_ms") && n >= EPOCH_MS_FLOOR => time_ms(n),
            Some(n) if key.ends_with("_ms") => duration_us(n.saturating_mul(1000)),
            Some(n) if key.ends_with("_bytes") => bytes(n),
            _ => n.to_string(),
        },
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => items
            .iter()
            .map(|i| field(key, i))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let text = clean(&text);
    if text.is_empty() {
        "-".to_string()
    } else {
        text
    }
}

/// A table cell: [`field`] cut to a readable width.
pub(crate) fn cell(key: &str, v: Option<&Value>) -> String {
    let text = v.map_or_else(|| "-".to_string(), |v| field(key, v));
    if text.chars().count() <= CELL_CHARS_MAX {
        return text;
    }
    let mut cut: String = text.chars().take(CELL_CHARS_MAX - 1).collect();
    cut.push('…');
    cut
}

/// Columns aligned on the widest cell, two spaces apart, no trailing spaces.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.as_ref().to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let width = |i: usize| {
            std::iter::once(&self.headers)
                .chain(&self.rows)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let mut text = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `key: value` lines, keys padded to align, nested objects indented below
/// their key.
pub(crate) fn key_values(v: &Value) -> String {
    let mut text = String::new();
    write_key_values(&mut text, v, 0);
    text
}

fn write_key_values(text: &mut String, v: &Value, depth: usize) {
    let Some(map) = v.as_object() else {
        text.push_str(&format!("{}{}\n", "  ".repeat(depth), field("", v)));
        return;
    };
    let pad = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    for (k, val) in map {
        let indent = "  ".repeat(depth);
        let key = clean(k);
        match val {
            Value::Object(inner) if !inner.is_empty() => {
                text.push_str(&format!("{indent}{key}:\n"));
                write_key_values(text, val, depth + 1);
            }
            _ => {
                let gap = " ".repeat(pad - k.chars().count());
                text.push_str(&format!("{indent}{key}:{gap} {}\n", field(k, val)));
            }
        }
    }
}

/// Re-indents JSON text two spaces per level, keeping its key order and
/// number spelling exactly (parsing into a `Value` would sort the keys).
/// The input must be valid JSON.
pub(crate) fn pretty_json(raw: &str) -> String {
    let mut text = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.chars().peekable();
    let newline = |text: &mut String, depth: usize| {
        text.push('\n');
        text.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            text.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                text.push(c);
            }
            '{' | '[' => {
                text.push(c);
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    text.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut text, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut text, depth);
                text.push(c);
            }
            ',' => {
                text.push(c);
                newline(&mut text, depth);
            }
            ':' => text.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => text.push(c),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        let table = [
            (0, "0µs"),
            (850, "850µs"),
            (1_000, "1ms"),
            (12_345, "12.3ms"),
            (999_999, "1000ms"),
            (1_250_000, "1.25s"),
            (2_000_000, "2s"),
            (125_000_000, "2m 5s"),
        ];
        for (us, want) in table {
            assert_eq!(duration_us(us), want, "{us}");
        }
    }

    #[test]
    fn sizes() {
        let table = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (64 << 20, "64 MiB"),
            (3 << 29, "1.5 GiB"),
        ];
        for (n, want) in table {
            assert_eq!(bytes(n), want, "{n}");
        }
    }

    #[test]
    fn fields_by_key() {
        assert_eq!(
            field("created_ms", &json!(1_735_689_600_000u64)),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(field("timeout_ms", &json!(5000)), "5s");
        assert_eq!(field("duration_us", &json!(1500)), "1.5ms");
        assert_eq!(field("memory_bytes", &json!(65536)), "64 KiB");
        assert_eq!(field("fuel", &json!(123456)), "123456");
        assert_eq!(field("events", &json!(["a", "b.*"])), "a,b.*");
        assert_eq!(field("events", &json!([])), "-");
        assert_eq!(field("x", &json!(null)), "-");
        assert_eq!(field("x", &json!({"k": 1})), r#"{"k":1}"#);
        assert_eq!(field("error", &json!("bad\n\u{1b}[31mred")), "bad  [31mred");
    }

    #[test]
    fn nested_lookups() {
        let v = json!({"event": {"type": "message"}, "a": null, "b": 1});
        assert_eq!(get(&v, &["type", "event.type"]), Some(&json!("message")));
        assert_eq!(get(&v, &["a", "b"]), Some(&json!(1)));
        assert_eq!(get(&v, &["event.nope.deeper"]), None);
        assert_eq!(get_str(&v, &["b"]), "");
    }

    #[test]
    fn tables_align_without_trailing_spaces() {
        let mut t = Table::new(&["name", "status", "error"]);
        t.row(vec!["echo".into(), "enabled".into(), "-".into()]);
        t.row(vec![
            "keyword-responder".into(),
            "disabled".into(),
            "ünïcode".into(),
        ]);
        assert_eq!(
            t.render(),
            "NAME               STATUS    ERROR\n\
             echo               enabled   -\n\
             keyword-responder  disabled  ünïcode\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "e".repeat(200);
        let c = cell("error", Some(&json!(long)));
        assert_eq!(c.chars().count(), CELL_CHARS_MAX);
        assert!(c.ends_with('…'));
        assert_eq!(cell("x", None), "-");
    }

    #[test]
    fn key_value_blocks() {
        // Keys in sorted order: serde_json sorts them unless `preserve_order`
        // is unified in, and this test must hold either way.
        let v = json!({"config": {}, "enabled": true, "limits": {"fuel": 10, "timeout_ms": 250}, "name": "echo"});
        assert_eq!(
            key_values(&v),
            "config:  {}\nenabled: true\nlimits:\n  fuel:       10\n  timeout_ms: 250ms\nname:    echo\n"
        );
    }

    #[test]
    fn pretty_json_keeps_order_and_strings() {
        let raw = r#"{"z":1,"a":[],"s":"x,{\"y\":[1]}","o":{},"n":[1.50,{"k":null}]}"#;
        let want = "{\n  \"z\": 1,\n  \"a\": [],\n  \"s\": \"x,{\\\"y\\\":[1]}\",\n  \"o\": {},\n  \"n\": [\n    1.50,\n    {\n      \"k\": null\n    }\n  ]\n}";
        assert_eq!(pretty_json(raw), want);
        let back: Value = serde_json::from_str(&pretty_json(raw)).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(raw).unwrap());
        assert_eq!(pretty_json(" [ ] "), "[]");
    }
}

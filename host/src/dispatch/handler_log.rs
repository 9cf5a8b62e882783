//! What a delivery logged, after it ran: kept with its delivery-log entry
//! (so `GET /v1/logs`, `GET /v1/events/{id}`, the live stream and `hookbox
//! logs --verbose` show it) and forwarded to the daemon's own tracing
//! output at the record's level, with the handler, event, tenant and
//! attempt as fields, so whatever collects the daemon's logs gets it too.
//!
//! Forwarded records use the tracing target [`TARGET`], so an operator can
//! turn them down or up on their own (`log_level = "info,hookbox::handler=warn"`).
//! The guest's text is escaped (`\n` as `\\n`, control characters as
//! `\u{…}`) before it reaches a text-format log line, so a handler cannot
//! forge daemon log lines.

use std::collections::BTreeMap;

use crate::event::Event;
use crate::runtime::{LogLevel, LogRecord, LogStream};
use crate::store::HandlerLog;

/// The tracing target of forwarded handler records.
pub const TARGET: &str = "hookbox::handler";

/// The store's shape of a delivery's records.
pub(super) fn to_store(records: &[LogRecord]) -> Vec<HandlerLog> {
    records
        .iter()
        .map(|r| HandlerLog {
            level: r.level.as_str().to_string(),
            stream: stream_name(r.stream).to_string(),
            message: r.message.clone(),
            fields: r.fields.iter().cloned().collect::<BTreeMap<_, _>>(),
        })
        .collect()
}

fn stream_name(s: LogStream) -> &'static str {
    match s {
        LogStream::Log => "log",
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    }
}

/// Emits each record as a tracing event at its level.
pub(super) fn forward(handler: &str, event: &Event, attempt: u32, records: &[LogRecord]) {
    for r in records {
        let fields = Fields(&r.fields);
        let message = r.message.escape_debug();
        let stream = stream_name(r.stream);
        macro_rules! at {
            ($level:expr) => {
                tracing::event!(
                    target: TARGET,
                    $level,
                    handler = %handler,
                    event = %event.id,
                    tenant = %event.tenant,
                    attempt,
                    stream = %stream,
                    fields = %fields,
                    "{message}"
                )
            };
        }
        match r.level {
            LogLevel::Trace => at!(tracing::Level::TRACE),
            LogLevel::Debug => at!(tracing::Level::DEBUG),
            LogLevel::Info => at!(tracing::Level::INFO),
            LogLevel::Warn => at!(tracing::Level::WARN),
            LogLevel::Error => at!(tracing::Level::ERROR),
        }
    }
}

/// A record's fields as `k=v k2=v2`, escaped like the message.
struct Fields<'a>(&'a [(String, String)]);

impl std::fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", k.escape_debug(), v.escape_debug())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_level_stream_message_and_fields() {
        let records = [
            LogRecord {
                level: LogLevel::Error,
                message: "boom".into(),
                fields: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
                stream: LogStream::Log,
            },
            LogRecord {
                level: LogLevel::Warn,
                message: "stderr line".into(),
                fields: vec![],
                stream: LogStream::Stderr,
            },
        ];
        let lines = to_store(&records);
        assert_eq!(lines[0].level, "error");
        assert_eq!(lines[0].stream, "log");
        assert_eq!(lines[0].fields.get("k").map(String::as_str), Some("2"));
        assert_eq!(
            (lines[1].level.as_str(), lines[1].stream.as_str()),
            ("warn", "stderr")
        );
    }

    #[test]
    fn fields_are_escaped() {
        let fields = [("a\nb".to_string(), "x\u{1b}[31m".to_string())];
        assert_eq!(Fields(&fields).to_string(), "a\\nb=x\\u{1b}[31m");
    }
}

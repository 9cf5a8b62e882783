//! Pieces the connectors' status reports share: the last error, and the
//! Prometheus rendering of per-connector series.

use std::fmt::Write;

pub use crate::zulip::LastError;

use crate::event::now_ms;

impl LastError {
    /// An error that happened now.
    pub(crate) fn now(kind: &str, message: &str) -> LastError {
        LastError {
            kind: kind.to_string(),
            message: message.to_string(),
            time_ms: now_ms(),
        }
    }
}

/// One metric: name, help, and a value per connector.
pub(crate) type Series<'a> = (&'static str, &'static str, Vec<(&'a str, i64)>);

/// Counters in the Prometheus text format, one line per connector
/// labelled `label="<name>"`; nothing for a metric without connectors.
pub(crate) fn render_counters(label: &str, series: &[Series<'_>]) -> String {
    render("counter", label, series)
}

/// Gauges, like [`render_counters`].
pub(crate) fn render_gauges(label: &str, series: &[Series<'_>]) -> String {
    render("gauge", label, series)
}

fn render(kind: &str, label: &str, series: &[Series<'_>]) -> String {
    let mut out = String::new();
    for (name, help, rows) in series {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (who, value) in rows {
            let _ = writeln!(out, "{name}{{{label}=\"{who}\"}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_connector() {
        let text = render_counters(
            "bus",
            &[
                ("hookbox_x_total", "Xs.", vec![("a", 1), ("b", 2)]),
                ("hookbox_y_total", "Ys.", vec![]),
            ],
        );
        assert_eq!(
            text,
            "# HELP hookbox_x_total Xs.\n# TYPE hookbox_x_total counter\n\
             hookbox_x_total{bus=\"a\"} 1\nhookbox_x_total{bus=\"b\"} 2\n"
        );
        assert!(render_gauges("bus", &[("g", "G.", vec![("a", -1)])]).contains("g{bus=\"a\"} -1"));
    }
}

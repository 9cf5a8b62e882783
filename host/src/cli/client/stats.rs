//! `hookbox stats`: queue depths and per-handler counters from `GET /v1/stats`.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::http::Client;
use super::output::{self, Table, cell, get};
use super::{ClientOpts, finish};

/// Runs `stats`; prints its own errors (see the module docs).
pub async fn stats(opts: &ClientOpts) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        let reply = client
            .call(client.request(Method::GET, &["v1", "stats"]))
            .await?;
        if client.json {
            reply.print()?;
        } else {
            output::out(&stats_text(&reply.value))?;
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `queue: …` then a table of handlers.
pub(crate) fn stats_text(v: &Value) -> String {
    let queue: Vec<String> = ["critical", "high", "normal", "low"]
        .iter()
        .map(|p| format!("{p} {}", cell(p, get(v, &[&format!("queue.{p}")]))))
        .collect();
    let mut text = format!("queue: {}\n", queue.join(", "));
    if let Some(r) = v.get("resident").filter(|r| r.is_object()) {
        text.push_str(&resident_line(r));
    }
    let rows = v
        .get("handlers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        text.push_str("no handlers\n");
        return text;
    }
    let columns = [
        ("handler", "handler"),
        ("processed", "processed"),
        ("ok", "ok"),
        ("failed", "failed"),
        ("retries", "retries"),
        ("dead", "dead_lettered"),
        ("fuel", "fuel_total"),
        ("p50", "latency_p50_us"),
        ("p90", "latency_p90_us"),
        ("p99", "latency_p99_us"),
        ("last", "last_outcome_ms"),
    ];
    let mut headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    headers.push("outcomes");
    let mut table = Table::new(&headers);
    for h in rows {
        let mut row: Vec<String> = columns
            .iter()
            .map(|(_, k)| cell(k, get(h, &[*k])))
            .collect();
        let outcomes: Vec<String> = h
            .get("by_outcome")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, n)| format!("{}={n}", output::clean(k)))
            .collect();
        row.push(if outcomes.is_empty() {
            "-".into()
        } else {
            outcomes.join(",")
        });
        table.row(row);
    }
    text.push_str(&table.render());
    text
}

/// `resident: 3 of 10 handlers loaded …`: the compiled code in memory.
fn resident_line(r: &Value) -> String {
    let n = |k: &str| r.get(k).and_then(Value::as_u64);
    let num = |k: &str| n(k).map_or_else(|| "-".to_string(), |v| v.to_string());
    let size = |k: &str| n(k).map_or_else(|| "-".to_string(), output::bytes);
    format!(
        "resident: {} of {} handlers loaded, {} modules, {} (budget {} modules, {}); \
         loads {}{}, evictions {}\n",
        num("handlers"),
        num("deployed"),
        num("modules"),
        size("code_bytes"),
        num("budget_modules"),
        size("budget_bytes"),
        num("loads"),
        n("load_mean_us").map_or_else(String::new, |us| format!(
            " (mean {})",
            output::duration_us(us)
        )),
        num("evictions"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_table() {
        let v = json!({
            "handlers": [{"handler": "echo", "processed": 10, "ok": 9, "failed": 1,
                "by_outcome": {"ok": 9, "trap": 1}, "retries": 1, "dead_lettered": 0,
                "fuel_total": 5000, "latency_p50_us": 800, "latency_p90_us": 2000,
                "latency_p99_us": 1_500_000, "last_outcome_ms": 1_735_689_600_000u64}],
            "queue": {"critical": 0, "high": 1, "normal": 22, "low": 0},
            "resident": {"handlers": 1, "deployed": 3, "modules": 1, "code_bytes": 3_145_728,
                "budget_modules": 1000, "budget_bytes": 1_073_741_824u64, "loads": 4,
                "evictions": 2, "load_mean_us": 250},
        });
        assert_eq!(
            stats_text(&v),
            "queue: critical 0, high 1, normal 22, low 0\n\
             resident: 1 of 3 handlers loaded, 1 modules, 3 MiB (budget 1000 modules, 1 GiB); \
             loads 4 (mean 250µs), evictions 2\n\
             HANDLER  PROCESSED  OK  FAILED  RETRIES  DEAD  FUEL  P50    P90  P99   LAST                  OUTCOMES\n\
             echo     10         9   1       1        0     5000  800µs  2ms  1.5s  2025-01-01T00:00:00Z  ok=9,trap=1\n"
        );
        assert_eq!(
            stats_text(&json!({"handlers": [], "queue": {}})),
            "queue: critical -, high -, normal -, low -\nno handlers\n"
        );
    }
}

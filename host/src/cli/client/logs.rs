//! `hookbox logs`: a page of the delivery log from `GET /v1/logs` as a
//! table, or with `--follow` the live `GET /v1/stream` (server-sent events)
//! printed one line per delivery until Ctrl-C. `--verbose` prints each
//! attempt on its own line followed by what the handler logged during it.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::args::parse_time;
use super::http::{Client, Failure};
use super::output::{self, Table, cell, get, get_str};
use super::sse::SseParser;
use super::{ClientOpts, finish};

/// Show the delivery log.
#[derive(Clone, Debug, clap::Args)]
pub struct LogsArgs {
    /// Only this handler.
    #[arg(long)]
    pub handler: Option<String>,
    /// Only this event type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this outcome (`ok`, `trap`, `out_of_fuel`, `timeout`, …).
    #[arg(long, conflicts_with = "failed")]
    pub outcome: Option<String>,
    /// Only failed attempts (any outcome but `ok` and `expired`).
    #[arg(long)]
    pub failed: bool,
    /// Only attempts since this time: `10m` (ago), RFC 3339, or a date.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<u64>,
    /// Only attempts before this time (same forms as --since).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<u64>,
    /// At most this many entries [default: the daemon's page size].
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue from the `next_cursor` of an earlier page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print new deliveries as they happen, until Ctrl-C.
    #[arg(long, short, conflicts_with_all = ["since", "until", "limit", "cursor"])]
    pub follow: bool,
    /// One line per attempt, followed by the handler's log records and
    /// stdout/stderr lines of that attempt.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Runs `logs`; prints its own errors (see the module docs).
pub async fn logs(opts: &ClientOpts, args: LogsArgs) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        if args.follow {
            follow(&client, &args).await
        } else {
            page(&client, &args).await
        }
    })
    .await
}

fn filters(args: &LogsArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let pairs = [
        ("handler", &args.handler),
        ("type", &args.event_type),
        ("tenant", &args.tenant),
        ("outcome", &args.outcome),
    ];
    for (name, value) in pairs {
        if let Some(v) = value {
            q.push((name, v.clone()));
        }
    }
    q
}

async fn page(client: &Client, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let mut q = filters(args);
    if args.failed {
        q.push(("failed", "true".into()));
    }
    if let Some(t) = args.since {
        q.push(("since", t.to_string()));
    }
    if let Some(t) = args.until {
        q.push(("until", t.to_string()));
    }
    if let Some(n) = args.limit {
        q.push(("limit", n.to_string()));
    }
    if let Some(c) = &args.cursor {
        q.push(("cursor", c.clone()));
    }
    let reply = client
        .call(client.request(Method::GET, &["v1", "logs"]).query(&q))
        .await?;
    if client.json {
        reply.print()?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.verbose {
        output::out(&logs_verbose(&reply.value))?;
    } else {
        output::out(&logs_table(&reply.value))?;
    }
    if let Some(next) = reply.value.get("next_cursor").and_then(Value::as_str) {
        eprintln!("more entries: --cursor {}", output::clean(next));
    }
    Ok(ExitCode::SUCCESS)
}

/// The log page as a table.
pub(crate) fn logs_table(v: &Value) -> String {
    let rows = v
        .get("entries")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        return "no log entries".to_string();
    }
    let columns = [
        ("time", "time_ms"),
        ("handler", "handler"),
        ("version", "version"),
        ("event", "event_id"),
        ("type", "event_type"),
        ("tenant", "tenant"),
        ("outcome", "outcome"),
        ("attempt", "attempt"),
        ("duration", "duration_us"),
        ("fuel", "fuel"),
        ("memory", "memory_bytes"),
        ("error", "error"),
    ];
    let mut table = Table::new(&columns.map(|(h, _)| h));
    for r in rows {
        table.row(columns.iter().map(|(_, k)| cell(k, get(r, &[k]))).collect());
    }
    table.render()
}

/// The log page, each attempt followed by its handler log lines.
pub(crate) fn logs_verbose(v: &Value) -> String {
    let rows = v
        .get("entries")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        return "no log entries".to_string();
    }
    let mut out = String::new();
    for r in rows {
        out.push_str(&delivery_line(r));
        out.push('\n');
        for line in handler_log_lines(r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// What a delivery logged, one indented line per record:
/// `    <level> <stream>  <message>[  k=v …]`.
pub(crate) fn handler_log_lines(d: &Value) -> Vec<String> {
    let records = d.get("logs").and_then(Value::as_array);
    records
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|r| {
            let mut line = format!(
                "    {:<5} {:<6}  {}",
                output::clean(get_str(r, &["level"])),
                output::clean(get_str(r, &["stream"])),
                output::clean(get_str(r, &["message"])),
            );
            if let Some(fields) = r.get("fields").and_then(Value::as_object) {
                for (k, v) in fields {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    line.push_str(&format!("  {}={}", output::clean(k), output::clean(&v)));
                }
            }
            line
        })
        .collect()
}

/// One delivery (a log entry or a stream notice) on one line:
/// `<time>  <handler> v<version>  <type>  tenant=<t>  event=<id>  <outcome>  attempt=<n>  <duration>[  error: <message>]`.
pub(crate) fn delivery_line(d: &Value) -> String {
    let tenant = get_str(d, &["tenant"]);
    let mut line = format!(
        "{}  {} v{}  {}  tenant={}  event={}  {}  attempt={}  {}",
        cell("time_ms", get(d, &["time_ms"])),
        output::clean(get_str(d, &["handler"])),
        cell("version", get(d, &["version"])),
        output::clean(get_str(d, &["event_type"])),
        if tenant.is_empty() {
            "-".to_string()
        } else {
            output::clean(tenant)
        },
        output::clean(get_str(d, &["event_id"])),
        output::clean(get_str(d, &["outcome"])),
        cell("attempt", get(d, &["attempt"])),
        cell("duration_us", get(d, &["duration_us"])),
    );
    if let Some(error) = get(d, &["error"]).and_then(Value::as_str) {
        line.push_str("  error: ");
        line.push_str(&output::clean(error));
    }
    line
}

async fn follow(client: &Client, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let req = client
        .request(Method::GET, &["v1", "stream"])
        .query(&filters(args))
        .header(reqwest::header::ACCEPT, "text/event-stream");
    let mut resp = client.send(req).await?;
    let mut parser = SseParser::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let chunk = tokio::select! {
            _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
            chunk = resp.chunk() => chunk.map_err(|e| client.transport_failure(&e))?,
        };
        let Some(chunk) = chunk else {
            return Err(Failure::new("the daemon closed the event stream").into());
        };
        for event in parser.feed(&chunk).map_err(Failure::new)? {
            if event.event != "delivery" {
                continue;
            }
            if let Some(line) = stream_line(&event.data, args.failed, client.json, args.verbose) {
                output::out(&line)?;
            }
        }
    }
}

/// Whether an outcome name is a failure: anything but `ok` and `expired`
/// (a delivery skipped by the handler's `max_age` filter), as the daemon
/// counts them.
pub(crate) fn is_failure(outcome: &str) -> bool {
    outcome != crate::store::OUTCOME_OK && outcome != crate::store::OUTCOME_EXPIRED
}

/// What `--follow` prints for one notice: the JSON as sent (`--json`, one
/// object per line) or [`delivery_line`] (with `verbose`, followed by
/// [`handler_log_lines`]); `None` when `--failed` filters it out. Data that
/// is not JSON is skipped.
pub(crate) fn stream_line(
    data: &str,
    failed_only: bool,
    json: bool,
    verbose: bool,
) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    if failed_only && !is_failure(get_str(&v, &["outcome"])) {
        return None;
    }
    Some(if json {
        data.trim().to_string()
    } else if verbose {
        let mut lines = vec![delivery_line(&v)];
        lines.extend(handler_log_lines(&v));
        lines.join("\n")
    } else {
        delivery_line(&v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        json!({"id": "L1", "handler": "echo", "version": 3, "event_id": "01JEVT", "event_type": "message",
               "tenant": "acme", "outcome": "trap", "error": "unreachable\nexecuted", "duration_us": 1500,
               "fuel": 1234, "memory_bytes": 131072, "attempt": 2, "time_ms": 1_735_689_600_000u64})
    }

    #[test]
    fn log_table() {
        let mut ok = entry();
        ok["outcome"] = json!("ok");
        ok["error"] = Value::Null;
        ok["tenant"] = json!("");
        let v = json!({"entries": [entry(), ok], "next_cursor": null});
        assert_eq!(
            logs_table(&v),
            "TIME                  HANDLER  VERSION  EVENT   TYPE     TENANT  OUTCOME  ATTEMPT  DURATION  FUEL  MEMORY   ERROR\n\
             2025-01-01T00:00:00Z  echo     3        01JEVT  message  acme    trap     2        1.5ms     1234  128 KiB  unreachable executed\n\
             2025-01-01T00:00:00Z  echo     3        01JEVT  message  -       ok       2        1.5ms     1234  128 KiB  -\n"
        );
        assert_eq!(logs_table(&json!({"entries": []})), "no log entries");
    }

    #[test]
    fn delivery_lines() {
        assert_eq!(
            delivery_line(&entry()),
            "2025-01-01T00:00:00Z  echo v3  message  tenant=acme  event=01JEVT  trap  attempt=2  1.5ms  error: unreachable executed"
        );
    }

    #[test]
    fn stream_lines() {
        let data = entry().to_string();
        assert_eq!(
            stream_line(&data, false, true, false).as_deref(),
            Some(data.as_str())
        );
        assert!(
            stream_line(&data, true, false, false)
                .unwrap()
                .contains("trap")
        );
        let mut ok = entry();
        ok["outcome"] = json!("ok");
        assert_eq!(stream_line(&ok.to_string(), true, false, false), None);
        assert_eq!(stream_line("not json", false, false, false), None);
    }

    #[test]
    fn verbose_lines_show_what_the_handler_logged() {
        let mut e = entry();
        e["logs"] = json!([
            {"level": "info", "stream": "log", "message": "Counted", "fields": {"n": "3"}},
            {"level": "warn", "stream": "stderr", "message": "oops\u{1b}[2J", "fields": {}}
        ]);
        let text = stream_line(&e.to_string(), false, false, true).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "    info  log     Counted  n=3");
        assert_eq!(lines[2], "    warn  stderr  oops [2J");
        let page = logs_verbose(&json!({"entries": [e]}));
        assert_eq!(page.lines().count(), 3);
    }
}

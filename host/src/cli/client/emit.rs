//! `hookbox emit`: submits one event to `POST /v1/events`, optionally waits
//! for its deliveries, and turns their outcomes into the exit code (3 when a
//! handler's last attempt failed or the wait timed out).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::args::{parse_duration, parse_json_arg, parse_key_value};
use super::http::Client;
use super::logs::delivery_line;
use super::output::{self, get, get_str};
use super::{ClientOpts, EXIT_DELIVERY_FAILED, finish};

/// Submit an event.
#[derive(Clone, Debug, clap::Args)]
pub struct EmitArgs {
    /// Event type, e.g. `message`.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// Tenant [default: none].
    #[arg(long)]
    pub tenant: Option<String>,
    /// Payload: JSON, or @FILE (@- for standard input) [default: {}].
    #[arg(long, value_parser = parse_json_arg, value_name = "JSON|@FILE")]
    pub payload: Option<Value>,
    /// Ordering key: events with the same key reach ordered handlers in order.
    #[arg(long)]
    pub key: Option<String>,
    /// Delivery priority [default: normal].
    #[arg(long, value_parser = ["critical", "high", "normal", "low"])]
    pub priority: Option<String>,
    /// Metadata entry (repeatable).
    #[arg(long = "metadata", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub metadata: Vec<(String, String)>,
    /// A repeat with the same key within the dedupe window is not delivered again.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait for every delivery to finish; exit with status 3 if one failed
    /// or the wait timed out.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits [default: the daemon's].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<Duration>,
}

/// The `EventInput` JSON for these flags; absent flags are left to the daemon.
pub(crate) fn event_input(args: &EmitArgs) -> Value {
    let mut e = Map::new();
    e.insert("type".into(), json!(args.event_type));
    if let Some(tenant) = &args.tenant {
        e.insert("tenant".into(), json!(tenant));
    }
    e.insert(
        "payload".into(),
        args.payload.clone().unwrap_or_else(|| json!({})),
    );
    if !args.metadata.is_empty() {
        let metadata: BTreeMap<&str, &str> = args
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        e.insert("metadata".into(), json!(metadata));
    }
    if let Some(key) = &args.key {
        e.insert("key".into(), json!(key));
    }
    if let Some(priority) = &args.priority {
        e.insert("priority".into(), json!(priority));
    }
    if let Some(key) = &args.idempotency_key {
        e.insert("idempotency_key".into(), json!(key));
    }
    Value::Object(e)
}

/// A wait timeout as the daemon's query parameter: `10s`, or `1500ms`.
pub(crate) fn timeout_param(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// Runs `emit`; prints its own errors (see the module docs).
pub async fn emit(opts: &ClientOpts, args: EmitArgs) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        let mut query: Vec<(&str, String)> = Vec::new();
        if args.wait {
            query.push(("wait", "true".into()));
            if let Some(t) = args.timeout {
                query.push(("timeout", timeout_param(t)));
            }
        }
        let req = client
            .request(Method::POST, &["v1", "events"])
            .query(&query)
            .json(&event_input(&args));
        let reply = client.call(req).await?;
        let v = &reply.value;
        if client.json {
            reply.print()?;
        } else {
            output::out(&accepted_text(v))?;
        }
        let problems = failures(v);
        for p in &problems {
            eprintln!("error: {p}");
        }
        Ok(if problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_DELIVERY_FAILED)
        })
    })
    .await
}

/// One line per accepted event, then one per delivery attempt when waited for.
pub(crate) fn accepted_text(v: &Value) -> String {
    let mut text = String::new();
    for e in v
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = output::clean(get_str(e, &["id"]));
        let handlers = output::field("handlers", get(e, &["handlers"]).unwrap_or(&Value::Null));
        let line = if get(e, &["duplicate"]).and_then(Value::as_bool) == Some(true) {
            format!("duplicate {id} (accepted before; not delivered again)")
        } else if handlers == "-" {
            format!("accepted {id} (no handler subscribed)")
        } else {
            format!("accepted {id} (handlers: {handlers})")
        };
        text.push_str(&line);
        text.push('\n');
    }
    for o in outcomes(v) {
        for d in o
            .get("deliveries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            text.push_str(&delivery_line(d));
            text.push('\n');
        }
    }
    text
}

fn outcomes(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("outcomes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// What went wrong in a waited-for emit: each handler whose last attempt
/// failed, and each event whose deliveries did not all finish in time.
pub(crate) fn failures(v: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for o in outcomes(v) {
        let id = output::clean(get_str(o, &["id"]));
        let mut last: BTreeMap<&str, &Value> = BTreeMap::new();
        for d in o
            .get("deliveries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let attempt = |d: &Value| get(d, &["attempt"]).and_then(Value::as_u64).unwrap_or(0);
            let slot = last.entry(get_str(d, &["handler"])).or_insert(d);
            if attempt(d) >= attempt(slot) {
                *slot = d;
            }
        }
        for (handler, d) in last {
            let outcome = get_str(d, &["outcome"]);
            if super::logs::is_failure(outcome) {
                let mut p = format!(
                    "event {id}: handler {} failed: {}",
                    output::clean(handler),
                    output::clean(outcome)
                );
                if let Some(error) = get(d, &["error"]).and_then(Value::as_str) {
                    p.push_str(&format!(": {}", output::clean(error)));
                }
                problems.push(p);
            }
        }
        if get(o, &["complete"]).and_then(Value::as_bool) == Some(false) {
            problems.push(format!("event {id}: timed out waiting for its deliveries"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: EmitArgs,
    }

    fn args(argv: &[&str]) -> EmitArgs {
        Cmd::try_parse_from(std::iter::once("emit").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn event_from_flags() {
        assert_eq!(
            event_input(&args(&["--type", "message"])),
            json!({"type": "message", "payload": {}})
        );
        let a = args(&[
            "--type",
            "message",
            "--tenant",
            "acme",
            "--payload",
            r#"{"content":"hi"}"#,
            "--key",
            "stream-1",
            "--priority",
            "high",
            "--metadata",
            "b=2",
            "--metadata",
            "a=1=x",
            "--idempotency-key",
            "dedupe-1",
        ]);
        assert_eq!(
            event_input(&a),
            json!({
                "type": "message", "tenant": "acme", "payload": {"content": "hi"},
                "metadata": {"a": "1=x", "b": "2"}, "key": "stream-1", "priority": "high",
                "idempotency_key": "dedupe-1",
            })
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_param(Duration::from_secs(10)), "10s");
        assert_eq!(timeout_param(Duration::from_millis(1500)), "1500ms");
        assert_eq!(timeout_param(Duration::from_micros(10)), "1ms");
    }

    fn delivery(handler: &str, attempt: u32, outcome: &str, error: Option<&str>) -> Value {
        json!({"id": "L", "handler": handler, "version": 1, "event_id": "E1", "event_type": "message",
               "tenant": "", "outcome": outcome, "error": error, "duration_us": 1500, "fuel": 10,
               "memory_bytes": 65536, "attempt": attempt, "time_ms": 1_735_689_600_000u64})
    }

    #[test]
    fn verdicts() {
        let ok = json!({
            "events": [{"id": "E1", "duplicate": false, "handlers": ["echo", "flaky"]}],
            "outcomes": [{"id": "E1", "complete": true, "deliveries": [
                delivery("echo", 1, "ok", None),
                delivery("flaky", 1, "trap", Some("boom")),
                delivery("flaky", 2, "ok", None),
            ]}],
        });
        assert!(failures(&ok).is_empty());
        let text = accepted_text(&ok);
        assert!(
            text.starts_with("accepted E1 (handlers: echo,flaky)\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");

        let bad = json!({
            "events": [{"id": "E1", "duplicate": false, "handlers": ["echo"]}],
            "outcomes": [{"id": "E1", "complete": false, "deliveries": [
                delivery("echo", 2, "out_of_fuel", Some("fuel\nexhausted")),
                delivery("echo", 1, "ok", None),
            ]}],
        });
        assert_eq!(
            failures(&bad),
            [
                "event E1: handler echo failed: out_of_fuel: fuel exhausted",
                "event E1: timed out waiting for its deliveries",
            ]
        );
    }

    #[test]
    fn accepted_lines() {
        let v = json!({"events": [
            {"id": "E1", "duplicate": true, "handlers": []},
            {"id": "E2", "duplicate": false, "handlers": []},
        ]});
        assert_eq!(
            accepted_text(&v),
            "duplicate E1 (accepted before; not delivered again)\naccepted E2 (no handler subscribed)\n"
        );
        assert!(failures(&v).is_empty());
    }
}

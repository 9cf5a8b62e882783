//! `hookbox event <id>`: one event from `GET /v1/events/{id}` — its type,
//! tenant and payload, whether any delivery is still pending, and every
//! delivery attempt followed by what the handler logged during it.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::http::Client;
use super::logs::{delivery_line, handler_log_lines};
use super::output::{self, cell, get, get_str};
use super::{ClientOpts, finish};

/// Show one event and its delivery attempts with their logs.
#[derive(Clone, Debug, clap::Args)]
pub struct EventArgs {
    /// The event id (from `emit`, `logs` or the live stream).
    pub id: String,
    /// Only this handler's attempts.
    #[arg(long)]
    pub handler: Option<String>,
    /// Only this attempt number.
    #[arg(long)]
    pub attempt: Option<u32>,
}

/// Runs `event`; prints its own errors (see the module docs).
pub async fn event(opts: &ClientOpts, args: EventArgs) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        let reply = client
            .call(client.request(Method::GET, &["v1", "events", &args.id]))
            .await?;
        client.show(&reply, || event_text(&reply.value, &args))
    })
    .await
}

/// The event's facts and payload, then each (selected) attempt and its logs.
pub(crate) fn event_text(v: &Value, args: &EventArgs) -> String {
    let mut out = String::new();
    let complete = v.get("complete").and_then(Value::as_bool).unwrap_or(false);
    match v.get("event").filter(|e| e.is_object()) {
        Some(e) => {
            let tenant = get_str(e, &["tenant"]);
            out.push_str(&format!(
                "event {}  {}  tenant={}  source={}  accepted {}  {}\n",
                output::clean(get_str(e, &["id"])),
                output::clean(get_str(e, &["type"])),
                if tenant.is_empty() {
                    "-".to_string()
                } else {
                    output::clean(tenant)
                },
                output::clean(get_str(e, &["source"])),
                cell("time_ms", get(e, &["time"])),
                if complete { "complete" } else { "pending" },
            ));
            if let Some(p) = e.get("payload") {
                out.push_str("payload:\n");
                for line in output::pretty_json(&p.to_string()).lines() {
                    out.push_str("  ");
                    out.push_str(&output::clean(line));
                    out.push('\n');
                }
            }
        }
        None => out.push_str(&format!(
            "event {}: its payload is no longer kept  {}\n",
            output::clean(&args.id),
            if complete { "complete" } else { "pending" },
        )),
    }
    let attempts: Vec<&Value> = v
        .get("deliveries")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|d| {
            args.handler
                .as_deref()
                .is_none_or(|h| get_str(d, &["handler"]) == h)
                && args
                    .attempt
                    .is_none_or(|n| d.get("attempt").and_then(Value::as_u64) == Some(n.into()))
        })
        .collect();
    if attempts.is_empty() {
        out.push_str("no delivery attempts\n");
    }
    for d in attempts {
        out.push_str(&delivery_line(d));
        out.push('\n');
        for line in handler_log_lines(d) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(handler: Option<&str>, attempt: Option<u32>) -> EventArgs {
        EventArgs {
            id: "01X".into(),
            handler: handler.map(String::from),
            attempt,
        }
    }

    #[test]
    fn facts_payload_and_each_attempt_with_its_logs() {
        let v = json!({
            "event": {"id": "01X", "type": "order.placed", "tenant": "acme", "source": "http",
                      "time": 1_700_000_000_000u64, "payload": {"n": 1}},
            "complete": true,
            "deliveries": [
                {"handler": "a", "version": 1, "event_id": "01X", "event_type": "order.placed",
                 "tenant": "acme", "outcome": "trap", "attempt": 1, "time_ms": 1_700_000_000_001u64,
                 "duration_us": 10, "error": "boom",
                 "logs": [{"level": "info", "stream": "log", "message": "first try"}]},
                {"handler": "a", "version": 1, "event_id": "01X", "event_type": "order.placed",
                 "tenant": "acme", "outcome": "ok", "attempt": 2, "time_ms": 1_700_000_000_002u64,
                 "duration_us": 10,
                 "logs": [{"level": "info", "stream": "log", "message": "second try"}]},
            ],
        });
        let all = event_text(&v, &args(None, None));
        assert!(
            all.starts_with("event 01X  order.placed  tenant=acme  source=http"),
            "{all}"
        );
        assert!(all.contains("complete"), "{all}");
        assert!(all.contains("\"n\": 1"), "{all}");
        assert!(
            all.contains("first try") && all.contains("second try"),
            "{all}"
        );
        assert!(all.contains("error: boom"), "{all}");
        let second = event_text(&v, &args(Some("a"), Some(2)));
        assert!(
            second.contains("second try") && !second.contains("first try"),
            "{second}"
        );
        let none = event_text(&v, &args(Some("b"), None));
        assert!(none.contains("no delivery attempts"), "{none}");
        let gone = event_text(
            &json!({"event": null, "complete": true, "deliveries": []}),
            &args(None, None),
        );
        assert!(gone.contains("no longer kept"), "{gone}");
    }
}

//! `hookbox dlq …`: list, show, replay and purge dead letters
//! (`/v1/dead-letters`) — deliveries that exhausted their retry policy.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::args::{confirm, parse_time};
use super::http::Client;
use super::output::{self, Table, cell, get, get_str, key_values};
use super::{ClientOpts, finish};

/// Inspect and replay dead letters.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum DlqCmd {
    /// List dead letters, oldest first.
    List {
        /// Only this handler's.
        #[arg(long)]
        handler: Option<String>,
        /// Only those dead-lettered since this time: `10m` (ago), RFC 3339, or a date.
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        since: Option<u64>,
        /// At most this many [default: the daemon's page size].
        #[arg(long)]
        limit: Option<u32>,
        /// Continue from the `next_cursor` of an earlier page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show a dead letter with its event and every attempt's error.
    Show {
        /// Dead-letter id.
        id: String,
    },
    /// Deliver dead letters' events to their handler again: one by id, or
    /// every dead letter of `--handler` (optionally within `--since`/`--until`).
    Replay {
        /// Dead-letter id.
        #[arg(required_unless_present = "handler", conflicts_with_all = ["handler", "since", "until"])]
        id: Option<String>,
        /// Replay every dead letter of this handler.
        #[arg(long)]
        handler: Option<String>,
        /// With --handler: only those dead-lettered since this time: `10m` (ago), RFC 3339, or a date.
        #[arg(long, value_parser = parse_time, value_name = "TIME", requires = "handler")]
        since: Option<u64>,
        /// With --handler: only those dead-lettered until this time.
        #[arg(long, value_parser = parse_time, value_name = "TIME", requires = "handler")]
        until: Option<u64>,
        /// Run this version of the handler [default: the active one].
        #[arg(long)]
        version: Option<u32>,
    },
    /// Delete dead letters for good.
    Purge {
        /// Only this handler's.
        #[arg(long)]
        handler: Option<String>,
        /// Only those older than this time: `7d` (ago), RFC 3339, or a date.
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        before: Option<u64>,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

/// Runs a `dlq` subcommand; prints its own errors (see the module docs).
pub async fn dlq(opts: &ClientOpts, cmd: DlqCmd) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        match cmd {
            DlqCmd::List {
                handler,
                since,
                limit,
                cursor,
            } => {
                let mut q: Vec<(&str, String)> = Vec::new();
                q.extend(handler.map(|h| ("handler", h)));
                q.extend(since.map(|t| ("since", t.to_string())));
                q.extend(limit.map(|n| ("limit", n.to_string())));
                q.extend(cursor.map(|c| ("cursor", c)));
                let req = client
                    .request(Method::GET, &["v1", "dead-letters"])
                    .query(&q);
                let reply = client.call(req).await?;
                let code = client.show(&reply, || dead_letters_table(&reply.value))?;
                if !client.json
                    && let Some(next) = reply.value.get("next_cursor").and_then(Value::as_str)
                {
                    eprintln!("more dead letters: --cursor {}", output::clean(next));
                }
                Ok(code)
            }
            DlqCmd::Show { id } => {
                let reply = client
                    .call(client.request(Method::GET, &["v1", "dead-letters", &id]))
                    .await?;
                client.show(&reply, || key_values(&reply.value))
            }
            DlqCmd::Replay {
                id: Some(id),
                version,
                ..
            } => {
                let body = version.map_or_else(|| json!({}), |v| json!({"version": v}));
                let req = client
                    .request(Method::POST, &["v1", "dead-letters", &id, "replay"])
                    .json(&body);
                let reply = client.call(req).await?;
                client.show(&reply, || match version {
                    Some(v) => format!(
                        "replaying dead letter {} with version {v}",
                        output::clean(&id)
                    ),
                    None => format!("replaying dead letter {}", output::clean(&id)),
                })
            }
            DlqCmd::Replay {
                id: None,
                handler,
                since,
                until,
                version,
            } => {
                let body = bulk_replay_body(handler.as_deref(), since, until, version);
                let req = client
                    .request(Method::POST, &["v1", "dead-letters", "replay"])
                    .json(&body);
                let reply = client.call(req).await?;
                client.show(&reply, || {
                    format!(
                        "replaying {} dead letters ({} skipped: already pending again)",
                        cell("replayed", reply.value.get("replayed")),
                        cell("skipped", reply.value.get("skipped")),
                    )
                })
            }
            DlqCmd::Purge {
                handler,
                before,
                yes,
            } => {
                confirm(yes, &purge_question(handler.as_deref(), before))?;
                let mut q: Vec<(&str, String)> = Vec::new();
                q.extend(handler.map(|h| ("handler", h)));
                q.extend(before.map(|t| ("before", t.to_string())));
                let req = client
                    .request(Method::DELETE, &["v1", "dead-letters"])
                    .query(&q);
                let reply = client.call(req).await?;
                client.show(&reply, || {
                    format!(
                        "purged {} dead letters",
                        cell("purged", reply.value.get("purged"))
                    )
                })
            }
        }
    })
    .await
}

/// The body of `POST /v1/dead-letters/replay`; unset bounds are left out.
fn bulk_replay_body(
    handler: Option<&str>,
    since: Option<u64>,
    until: Option<u64>,
    version: Option<u32>,
) -> Value {
    let mut body = json!({"handler": handler});
    for (k, v) in [
        ("since", since.map(Value::from)),
        ("until", until.map(Value::from)),
        ("version", version.map(Value::from)),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    body
}

fn purge_question(handler: Option<&str>, before: Option<u64>) -> String {
    let mut q = match handler {
        Some(h) => format!("permanently delete the dead letters of handler {h:?}"),
        None => "permanently delete ALL dead letters".to_string(),
    };
    if let Some(t) = before {
        q.push_str(&format!(" older than {}", output::time_ms(t)));
    }
    q
}

/// One row per dead letter; the last attempt's error stands for the rest.
pub(crate) fn dead_letters_table(v: &Value) -> String {
    let rows = v
        .get("dead_letters")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        return "no dead letters".to_string();
    }
    let mut table = Table::new(&[
        "id",
        "time",
        "handler",
        "version",
        "event",
        "type",
        "tenant",
        "attempts",
        "last_error",
    ]);
    for d in rows {
        let errors = d.get("errors").and_then(Value::as_array);
        let last_error = errors.and_then(|e| e.last()).map(|e| {
            let outcome = get_str(e, &["outcome"]);
            match get(e, &["error"]).and_then(Value::as_str) {
                Some(msg) => format!("{outcome}: {msg}"),
                None => outcome.to_string(),
            }
        });
        table.row(vec![
            cell("id", get(d, &["id"])),
            cell("time_ms", get(d, &["time_ms"])),
            cell("handler", get(d, &["handler"])),
            cell("version", get(d, &["version"])),
            cell("event", get(d, &["event.id", "event_id"])),
            cell("type", get(d, &["event.type", "event_type"])),
            cell("tenant", get(d, &["event.tenant", "tenant"])),
            errors.map_or_else(|| "-".to_string(), |e| e.len().to_string()),
            cell("error", last_error.map(Value::String).as_ref()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_table() {
        let v = json!({"dead_letters": [{
            "id": "01JDL", "handler": "flaky", "version": 2, "time_ms": 1_735_689_600_000u64,
            "event": {"id": "01JEVT", "type": "message", "tenant": "", "source": "http",
                      "time": 1_735_689_500_000u64, "priority": "normal", "payload": {}, "metadata": {}},
            "errors": [
                {"attempt": 1, "outcome": "trap", "error": "boom", "time_ms": 1},
                {"attempt": 2, "outcome": "timeout", "error": null, "time_ms": 2},
            ],
        }], "next_cursor": null});
        assert_eq!(
            dead_letters_table(&v),
            "ID     TIME                  HANDLER  VERSION  EVENT   TYPE     TENANT  ATTEMPTS  LAST_ERROR\n\
             01JDL  2025-01-01T00:00:00Z  flaky    2        01JEVT  message  -       2         timeout\n"
        );
        assert_eq!(
            dead_letters_table(&json!({"dead_letters": []})),
            "no dead letters"
        );
    }

    #[test]
    fn bulk_replay_bodies() {
        assert_eq!(
            bulk_replay_body(Some("echo"), None, None, None),
            json!({"handler": "echo"})
        );
        assert_eq!(
            bulk_replay_body(Some("echo"), Some(1), Some(2), Some(3)),
            json!({"handler": "echo", "since": 1, "until": 2, "version": 3})
        );
    }

    #[test]
    fn replay_takes_an_id_or_a_handler() {
        use clap::Parser;

        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: DlqCmd,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["dlq"], args].concat()).map(|c| c.cmd);
        assert!(matches!(
            parse(&["replay", "01JDL"]),
            Ok(DlqCmd::Replay {
                id: Some(_),
                handler: None,
                ..
            })
        ));
        assert!(matches!(
            parse(&["replay", "--handler", "echo", "--since", "5"]),
            Ok(DlqCmd::Replay {
                id: None,
                handler: Some(_),
                since: Some(5),
                ..
            })
        ));
        for bad in [
            &["replay"][..],
            &["replay", "01JDL", "--handler", "echo"],
            &["replay", "01JDL", "--since", "5"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn purge_questions() {
        assert_eq!(
            purge_question(None, None),
            "permanently delete ALL dead letters"
        );
        assert_eq!(
            purge_question(Some("echo"), Some(1_735_689_600_000)),
            "permanently delete the dead letters of handler \"echo\" older than 2025-01-01T00:00:00Z"
        );
    }
}

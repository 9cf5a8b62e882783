//! `hookbox handlers …`: deploy, list, show, versions, rollback, enable,
//! disable, rm and config, one request each against `/v1/handlers`.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::args::{confirm, parse_json_arg};
use super::deploy::{DeployArgs, deploy};
use super::http::{Client, Reply};
use super::output::{self, Table, cell, get, get_str, key_values};
use super::{ClientOpts, finish};

/// Manage handlers.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum HandlersCmd {
    /// Upload a component and its manifest as a new version, and activate it.
    Deploy(DeployArgs),
    /// List handlers.
    List {
        /// Add delivery counters and latencies.
        #[arg(long)]
        stats: bool,
        /// Add each handler's config.
        #[arg(long)]
        config: bool,
        /// Only handlers in this state.
        #[arg(long, value_parser = ["enabled", "disabled"])]
        status: Option<String>,
    },
    /// Show a handler, its active version and its stats.
    Show {
        /// Handler name.
        name: String,
    },
    /// List a handler's deployed versions.
    Versions {
        /// Handler name.
        name: String,
    },
    /// Make an earlier version active again.
    Rollback {
        /// Handler name.
        name: String,
        /// The version to activate [default: the one before the active one].
        #[arg(long, value_name = "VERSION")]
        to: Option<u32>,
    },
    /// Resume deliveries to a handler.
    Enable {
        /// Handler name.
        name: String,
    },
    /// Stop deliveries to a handler (events keep being accepted).
    Disable {
        /// Handler name.
        name: String,
        /// Why, for the other operators.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a handler and all its versions.
    Rm {
        /// Handler name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Replace a handler's config; takes effect on the next delivery.
    Config {
        /// Handler name.
        name: String,
        /// The new config: JSON, or @FILE (@- for standard input).
        #[arg(value_parser = parse_json_arg, value_name = "JSON|@FILE")]
        config: Value,
    },
}

/// Runs a `handlers` subcommand; prints its own errors (see the module docs).
pub async fn handlers(opts: &ClientOpts, cmd: HandlersCmd) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        match cmd {
            HandlersCmd::Deploy(args) => deploy(&client, args).await,
            HandlersCmd::List {
                stats,
                config,
                status,
            } => list(&client, stats, config, status).await,
            HandlersCmd::Show { name } => {
                let reply = client
                    .call(client.request(Method::GET, &["v1", "handlers", &name]))
                    .await?;
                client.show(&reply, || key_values(&reply.value))
            }
            HandlersCmd::Versions { name } => {
                let reply = client
                    .call(client.request(Method::GET, &["v1", "handlers", &name, "versions"]))
                    .await?;
                client.show(&reply, || versions_table(&reply.value))
            }
            HandlersCmd::Rollback { name, to } => {
                let body = to.map_or_else(|| json!({}), |v| json!({"version": v}));
                let reply = post(&client, &name, "rollback", &body).await?;
                client.show(&reply, || {
                    format!(
                        "rolled back {}: active version is now {}",
                        output::clean(&name),
                        cell("active_version", reply.value.get("active_version"))
                    )
                })
            }
            HandlersCmd::Enable { name } => {
                let reply = post(&client, &name, "enable", &json!({})).await?;
                client.show(&reply, || {
                    format!(
                        "enabled {} (version {})",
                        output::clean(&name),
                        cell("active_version", reply.value.get("active_version"))
                    )
                })
            }
            HandlersCmd::Disable { name, reason } => {
                let body = reason.map_or_else(|| json!({}), |r| json!({"reason": r}));
                let reply = post(&client, &name, "disable", &body).await?;
                client.show(&reply, || format!("disabled {}", output::clean(&name)))
            }
            HandlersCmd::Rm { name, yes } => {
                confirm(
                    yes,
                    &format!("delete handler {name:?} and all its versions"),
                )?;
                let reply = client
                    .call(client.request(Method::DELETE, &["v1", "handlers", &name]))
                    .await?;
                client.show(&reply, || {
                    format!("deleted handler {}", output::clean(&name))
                })
            }
            HandlersCmd::Config { name, config } => {
                let req = client
                    .request(Method::PUT, &["v1", "handlers", &name, "config"])
                    .json(&config);
                let reply = client.call(req).await?;
                client.show(&reply, || {
                    format!("updated config of {}", output::clean(&name))
                })
            }
        }
    })
    .await
}

async fn post(client: &Client, name: &str, action: &str, body: &Value) -> anyhow::Result<Reply> {
    let req = client
        .request(Method::POST, &["v1", "handlers", name, action])
        .json(body);
    client.call(req).await
}

async fn list(
    client: &Client,
    stats: bool,
    config: bool,
    status: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(status) = status {
        query.push(("status", status));
    }
    if stats {
        query.push(("stats", "true".into()));
    }
    if config {
        query.push(("config", "true".into()));
    }
    let req = client
        .request(Method::GET, &["v1", "handlers"])
        .query(&query);
    let reply = client.call(req).await?;
    client.show(&reply, || handlers_table(&reply.value, stats, config))
}

/// Columns of `handlers list --stats`: (header, key in the stats object).
const STATS_COLUMNS: [(&str, &str); 7] = [
    ("processed", "processed"),
    ("ok", "ok"),
    ("failed", "failed"),
    ("retries", "retries"),
    ("dead", "dead_lettered"),
    ("p50", "latency_p50_us"),
    ("p99", "latency_p99_us"),
];

pub(crate) fn handlers_table(v: &Value, stats: bool, config: bool) -> String {
    let rows = v
        .get("handlers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        return "no handlers".to_string();
    }
    let mut headers = vec!["name", "status", "version", "events", "tenants", "updated"];
    if stats {
        headers.extend(STATS_COLUMNS.iter().map(|(h, _)| *h));
    }
    if config {
        headers.push("config");
    }
    let mut table = Table::new(&headers);
    for h in rows {
        let status = match get(h, &["enabled"]).and_then(Value::as_bool) {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "-",
        };
        let tenants = match get(h, &["tenants"]) {
            Some(Value::Array(t)) if t.is_empty() => "all".to_string(),
            other => cell("tenants", other),
        };
        let mut row = vec![
            cell("name", get(h, &["name"])),
            status.to_string(),
            cell("version", get(h, &["active_version"])),
            cell("events", get(h, &["events"])),
            tenants,
            cell("updated_ms", get(h, &["updated_ms"])),
        ];
        if stats {
            for (_, key) in STATS_COLUMNS {
                row.push(cell(key, get(h, &[&format!("stats.{key}")])));
            }
        }
        if config {
            row.push(cell("config", get(h, &["config"])));
        }
        table.row(row);
    }
    table.render()
}

pub(crate) fn versions_table(v: &Value) -> String {
    let rows = v
        .get("versions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        return "no versions".to_string();
    }
    let mut table = Table::new(&[
        "version",
        "created",
        "deployed_by",
        "size",
        "hash",
        "events",
    ]);
    for r in rows {
        let hash: String = get_str(r, &["module_hash"]).chars().take(12).collect();
        table.row(vec![
            cell("version", get(r, &["version"])),
            cell("created_ms", get(r, &["created_ms"])),
            cell("deployed_by", get(r, &["deployed_by"])),
            cell("module_bytes", get(r, &["module_bytes"])),
            cell("hash", Some(&Value::String(hash))),
            cell("events", get(r, &["manifest.subscription.events"])),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_list() {
        let v = json!({"handlers": [
            {"name": "echo", "enabled": true, "active_version": 3, "disabled_reason": null,
             "description": "", "events": ["message", "reaction.*"], "tenants": [],
             "created_ms": 1_735_689_600_000u64, "updated_ms": 1_735_689_600_000u64,
             "config": {"k": 1},
             "stats": {"handler": "echo", "processed": 10, "ok": 9, "failed": 1, "retries": 1,
                       "dead_lettered": 0, "latency_p50_us": 1200, "latency_p99_us": 25000}},
            {"name": "keyword-responder", "enabled": false, "active_version": 1,
             "disabled_reason": "noisy", "events": ["*"], "tenants": ["acme"],
             "updated_ms": 1_735_693_200_000u64},
        ]});
        assert_eq!(
            handlers_table(&v, false, false),
            "NAME               STATUS    VERSION  EVENTS              TENANTS  UPDATED\n\
             echo               enabled   3        message,reaction.*  all      2025-01-01T00:00:00Z\n\
             keyword-responder  disabled  1        *                   acme     2025-01-01T01:00:00Z\n"
        );
        let with_stats = handlers_table(&v, true, true);
        let lines: Vec<&str> = with_stats.lines().collect();
        assert!(
            lines[0].ends_with("PROCESSED  OK  FAILED  RETRIES  DEAD  P50    P99   CONFIG"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("10         9   1       1        0     1.2ms  25ms  {\"k\":1}"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("-          -   -       -        -     -      -     -"),
            "{}",
            lines[2]
        );
        assert_eq!(
            handlers_table(&json!({"handlers": []}), false, false),
            "no handlers"
        );
    }

    #[test]
    fn version_list() {
        let v = json!({"versions": [
            {"name": "echo", "version": 1, "module_hash": "0123456789abcdef0123", "module_bytes": 2_500_000,
             "created_ms": 1_735_689_600_000u64, "deployed_by": "token:admin",
             "manifest": {"name": "echo", "subscription": {"events": ["message"]}}},
        ]});
        assert_eq!(
            versions_table(&v),
            "VERSION  CREATED               DEPLOYED_BY  SIZE     HASH          EVENTS\n\
             1        2025-01-01T00:00:00Z  token:admin  2.4 MiB  0123456789ab  message\n"
        );
    }
}

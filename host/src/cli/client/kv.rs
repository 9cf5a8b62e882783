//! `hookbox kv …`: read a handler's KV namespace of one tenant
//! (`GET /v1/handlers/{name}/kv`, `…/kv/{key}`), as the handler sees it.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::http::Client;
use super::output::{self, Table, cell, get, get_str};
use super::{ClientOpts, finish};

/// Read a handler's key-value store.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum KvCmd {
    /// List the keys of a handler's namespace for one tenant, in key order.
    List {
        /// The handler.
        handler: String,
        /// The tenant whose namespace to read [default: events without a tenant].
        #[arg(long, default_value = "")]
        tenant: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many (1–1000) [default: the daemon's page size].
        #[arg(long)]
        limit: Option<u32>,
        /// Continue from the `next_cursor` of an earlier page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Print one key's value (UTF-8 text as is, other bytes as hex).
    Get {
        /// The handler.
        handler: String,
        /// The key.
        key: String,
        /// The tenant whose namespace to read [default: events without a tenant].
        #[arg(long, default_value = "")]
        tenant: String,
    },
}

/// Runs a `kv` subcommand; prints its own errors (see the module docs).
pub async fn kv(opts: &ClientOpts, cmd: KvCmd) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        match cmd {
            KvCmd::List {
                handler,
                tenant,
                prefix,
                limit,
                cursor,
            } => {
                let mut q: Vec<(&str, String)> = vec![("tenant", tenant)];
                q.extend(prefix.map(|p| ("prefix", p)));
                q.extend(limit.map(|n| ("limit", n.to_string())));
                q.extend(cursor.map(|c| ("cursor", c)));
                let req = client
                    .request(Method::GET, &["v1", "handlers", &handler, "kv"])
                    .query(&q);
                let reply = client.call(req).await?;
                let code = client.show(&reply, || kv_table(&reply.value))?;
                if !client.json
                    && let Some(next) = reply.value.get("next_cursor").and_then(Value::as_str)
                {
                    eprintln!("more keys: --cursor {}", output::clean(next));
                }
                Ok(code)
            }
            KvCmd::Get {
                handler,
                key,
                tenant,
            } => {
                let req = client
                    .request(Method::GET, &["v1", "handlers", &handler, "kv", &key])
                    .query(&[("tenant", tenant)]);
                let reply = client.call(req).await?;
                client.show(&reply, || kv_value(&reply.value))
            }
        }
    })
    .await
}

/// One row per key.
pub(crate) fn kv_table(v: &Value) -> String {
    let rows = v
        .get("entries")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        return "no keys".to_string();
    }
    let columns = [
        ("key", "key"),
        ("value", "value"),
        ("encoding", "encoding"),
        ("expires", "expires_ms"),
    ];
    let mut table = Table::new(&columns.map(|(h, _)| h));
    for r in rows {
        table.row(columns.iter().map(|(_, k)| cell(k, get(r, &[k]))).collect());
    }
    table.render()
}

/// The value alone (control characters replaced), with its encoding when
/// it is not text.
pub(crate) fn kv_value(v: &Value) -> String {
    let value = output::clean(get_str(v, &["value"]));
    match get_str(v, &["encoding"]) {
        "utf8" => value,
        other => format!("{value}  ({})", output::clean(other)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_as_a_table_and_a_value_alone() {
        let page = json!({"entries": [
            {"key": "count", "value": "2", "encoding": "utf8", "expires_ms": null},
            {"key": "raw", "value": "00ff", "encoding": "hex", "expires_ms": null},
        ], "next_cursor": null});
        let text = kv_table(&page);
        assert!(text.starts_with("KEY"), "{text}");
        assert!(text.contains("count  2"), "{text}");
        assert!(text.contains("00ff   hex"), "{text}");
        assert_eq!(kv_table(&json!({"entries": []})), "no keys");
        let one = json!({"key": "k", "value": "a\u{1b}[31mb", "encoding": "utf8"});
        assert_eq!(kv_value(&one), "a [31mb");
        let hex = json!({"key": "k", "value": "00ff", "encoding": "hex"});
        assert_eq!(kv_value(&hex), "00ff  (hex)");
    }
}

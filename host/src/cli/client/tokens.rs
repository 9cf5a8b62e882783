//! `hookbox tokens …`: create, list and revoke API tokens (`/v1/tokens`).
//! A new token's secret goes alone to stdout, so it can be captured with
//! `$(hookbox tokens create …)`; the rest of the message goes to stderr.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::args::parse_expires;
use super::http::Client;
use super::output::{self, Table, cell, get, get_str};
use super::{ClientOpts, finish};

/// Manage API tokens.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum TokensCmd {
    /// Create a token and print its secret (shown only this once).
    Create {
        /// A label for the token.
        #[arg(long)]
        name: String,
        /// What it may do (repeatable): admin, publish, read.
        #[arg(long = "scope", required = true, value_parser = ["admin", "publish", "read"])]
        scopes: Vec<String>,
        /// Restrict it to this tenant (repeatable) [default: all tenants].
        #[arg(long = "tenant", value_name = "TENANT")]
        tenants: Vec<String>,
        /// Restrict publishing to this event-type pattern (repeatable) [default: all].
        #[arg(long = "event-type", value_name = "PATTERN")]
        event_types: Vec<String>,
        /// Expire it after this long (`30d`, `12h`) [default: never].
        #[arg(long, value_parser = parse_expires, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token.
    Revoke {
        /// The token's id (from `tokens list`).
        id: String,
    },
}

/// Runs a `tokens` subcommand; prints its own errors (see the module docs).
pub async fn tokens(opts: &ClientOpts, cmd: TokensCmd) -> anyhow::Result<ExitCode> {
    finish(async {
        let client = Client::new(opts)?;
        match cmd {
            TokensCmd::Create {
                name,
                scopes,
                tenants,
                event_types,
                expires_in,
            } => {
                let mut body = json!({
                    "name": name, "scopes": scopes, "tenants": tenants, "event_types": event_types,
                });
                if let Some(e) = expires_in {
                    body["expires_in"] = json!(e);
                }
                let req = client.request(Method::POST, &["v1", "tokens"]).json(&body);
                let reply = client.call(req).await?;
                if client.json {
                    reply.print()?;
                } else {
                    let v = &reply.value;
                    eprintln!(
                        "created token {} ({}); its secret is shown only this once:",
                        output::clean(get_str(v, &["token.id"])),
                        output::clean(get_str(v, &["token.name"]))
                    );
                    output::out(&output::clean(get_str(v, &["secret"])))?;
                }
                Ok(ExitCode::SUCCESS)
            }
            TokensCmd::List => {
                let reply = client
                    .call(client.request(Method::GET, &["v1", "tokens"]))
                    .await?;
                client.show(&reply, || tokens_table(&reply.value))
            }
            TokensCmd::Revoke { id } => {
                let reply = client
                    .call(client.request(Method::DELETE, &["v1", "tokens", &id]))
                    .await?;
                client.show(&reply, || format!("revoked token {}", output::clean(&id)))
            }
        }
    })
    .await
}

pub(crate) fn tokens_table(v: &Value) -> String {
    let rows = v
        .get("tokens")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        return "no tokens".to_string();
    }
    let mut table = Table::new(&[
        "id",
        "name",
        "scopes",
        "tenants",
        "event_types",
        "created",
        "expires",
    ]);
    for t in rows {
        let all = |key: &str| match get(t, &[key]) {
            Some(Value::Array(a)) if a.is_empty() => "all".to_string(),
            other => cell(key, other),
        };
        table.row(vec![
            cell("id", get(t, &["id"])),
            cell("name", get(t, &["name"])),
            cell("scopes", get(t, &["scopes"])),
            all("tenants"),
            all("event_types"),
            cell("created_ms", get(t, &["created_ms"])),
            get(t, &["expires_ms"])
                .map_or_else(|| "never".to_string(), |e| cell("expires_ms", Some(e))),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table() {
        let v = json!({"tokens": [
            {"id": "01JTOK", "name": "admin", "scopes": ["admin"], "tenants": [], "event_types": [],
             "created_ms": 1_735_689_600_000u64, "expires_ms": null},
            {"id": "01JTOL", "name": "zulip-acme", "scopes": ["publish", "read"], "tenants": ["acme"],
             "event_types": ["message", "reaction.*"], "created_ms": 1_735_689_600_000u64,
             "expires_ms": 1_738_281_600_000u64},
        ]});
        assert_eq!(
            tokens_table(&v),
            "ID      NAME        SCOPES        TENANTS  EVENT_TYPES         CREATED               EXPIRES\n\
             01JTOK  admin       admin         all      all                 2025-01-01T00:00:00Z  never\n\
             01JTOL  zulip-acme  publish,read  acme     message,reaction.*  2025-01-01T00:00:00Z  2025-01-31T00:00:00Z\n"
        );
        assert_eq!(tokens_table(&json!({"tokens": []})), "no tokens");
    }
}

//! Example handler: ticket events from a Redis event bus become a Discord
//! embed and a Slack message in each tenant's own channels, and a
//! `NOTIFICATION_SENT` event back on the bus.
//!
//! The handler never sees a URL: its config maps each tenant to the names
//! of `[[webhook]]` endpoints in the daemon's config, which holds the URLs
//! (the allow-list):
//!
//! ```json
//! {"tenants": {"t-acme": {"discord": "acme-discord", "slack": "acme-slack"}},
//!  "publish": true}
//! ```
//!
//! A tenant without an entry is skipped (logged); one with only a Discord
//! or only a Slack endpoint gets that one. With `publish`, a
//! `NOTIFICATION_SENT` event (`ticketId`, `action`, `channels`) goes back on
//! the bus for the application's other subscribers. Every side effect is
//! an emitted event, performed by Hookbox's sinks after the delivery
//! succeeded, with retries: a redelivery sends again, and the sinks' ids
//! (the emitted event's id) let receivers drop duplicates.

use std::collections::BTreeMap;

use hookbox_sdk::discord::{self, Embed};
use hookbox_sdk::{Event, Handler, HandlerError, info, redis, slack};
use serde::Deserialize;
use serde_json::{Value, json};

/// Where a tenant's alerts go: endpoint names from the daemon config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Channels {
    discord: Option<String>,
    slack: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    tenants: BTreeMap<String, Channels>,
    #[serde(default)]
    publish: bool,
}

/// The fields of a `TICKET_*` payload this handler reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ticket {
    #[serde(alias = "id")]
    ticket_id: Option<Value>,
    title: Option<String>,
    status: Option<String>,
    priority: Option<String>,
}

/// Embed colours: green, amber, grey.
const CREATED: u32 = 0x2ECC71;
const UPDATED: u32 = 0xF1C40F;
const CLOSED: u32 = 0x95A5A6;

/// Sends ticket alerts.
#[derive(Debug)]
pub struct TicketAlerts;

impl Handler for TicketAlerts {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let (action, color) = match event.event_type.as_str() {
            "TICKET_CREATED" => ("opened", CREATED),
            "TICKET_UPDATED" => ("updated", UPDATED),
            "TICKET_CLOSED" => ("closed", CLOSED),
            _ => return Ok(()),
        };
        let config: Config = hookbox_sdk::config()?;
        let Some(channels) = config.tenants.get(&event.tenant) else {
            info!(tenant = event.tenant; "No alert channels for this tenant");
            return Ok(());
        };
        let ticket: Ticket = event.payload()?;
        let id = match &ticket.ticket_id {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(HandlerError::fatal("ticket payload has no `ticketId`")),
        };
        let title = ticket.title.as_deref().unwrap_or("(untitled)");
        let headline = format!("Ticket {id} {action}: {title}");
        let mut sent = Vec::new();
        if let Some(endpoint) = &channels.discord {
            let mut embed = Embed::new(format!("{id}: {title}"))
                .description(format!("Ticket {action}"))
                .color(color)
                .footer(format!("tenant {}", event.tenant));
            if let Some(status) = &ticket.status {
                embed = embed.field("Status", status, true);
            }
            if let Some(priority) = &ticket.priority {
                embed = embed.field("Priority", priority, true);
            }
            if let Some(ts) = event.metadata("timestamp") {
                embed = embed.timestamp(ts);
            }
            discord::Message::new()
                .username("Tickets")
                .embed(embed)
                .send(endpoint)?;
            sent.push("discord");
        }
        if let Some(endpoint) = &channels.slack {
            let mut details = Vec::new();
            details.extend(ticket.status.as_ref().map(|s| format!("status *{s}*")));
            details.extend(ticket.priority.as_ref().map(|p| format!("priority *{p}*")));
            let mut message = slack::Message::text(&headline).section(format!("*{id}* {title}"));
            if !details.is_empty() {
                message = message.context(details.join(" · "));
            }
            message.send(endpoint)?;
            sent.push("slack");
        }
        if config.publish && !sent.is_empty() {
            redis::publish(
                "NOTIFICATION_SENT",
                &json!({"ticketId": id, "action": action, "channels": sent}),
            )?;
        }
        info!(tenant = event.tenant, ticket_id = id, action = action; "Alerted {}", sent.join(" and "));
        Ok(())
    }
}

hookbox_sdk::export_handler!(TicketAlerts);

#[cfg(test)]
mod tests {
    use hookbox_sdk::testing::TestHost;

    use super::*;

    fn ticket(event_type: &str, tenant: &str, payload: Value) -> Event {
        Event::builder(event_type)
            .tenant(tenant)
            .source("redis:bus")
            .payload_json(&payload)
            .metadata("timestamp", "2024-05-01T12:00:00.000Z")
            .build()
    }

    fn host() -> TestHost {
        let mut host = TestHost::new();
        host.set_config_json(
            r#"{"tenants": {"t-acme": {"discord": "acme-discord", "slack": "acme-slack"},
                            "t-beta": {"slack": "beta-slack"}},
                "publish": true}"#,
        );
        host
    }

    #[test]
    fn a_new_ticket_reaches_discord_slack_and_the_bus() {
        let mut host = host();
        let event = ticket(
            "TICKET_CREATED",
            "t-acme",
            json!({"tenantId": "t-acme", "ticketId": "T-9", "title": "Printer on fire",
                   "status": "open", "priority": "urgent"}),
        );
        host.run::<TicketAlerts>(event).unwrap();
        let [d, s, r] = host.emitted() else {
            panic!("{:?}", host.emitted())
        };
        assert_eq!(d.event_type, "webhook.send");
        let d = d.payload_value();
        assert_eq!(d["endpoint"], "acme-discord");
        let embed = &d["body"]["embeds"][0];
        assert_eq!(embed["title"], "T-9: Printer on fire");
        assert_eq!(embed["color"], CREATED);
        assert_eq!(
            embed["fields"][1],
            json!({"name": "Priority", "value": "urgent", "inline": true})
        );
        assert_eq!(embed["timestamp"], "2024-05-01T12:00:00.000Z");
        let s = s.payload_value();
        assert_eq!(s["endpoint"], "acme-slack");
        assert_eq!(s["body"]["text"], "Ticket T-9 opened: Printer on fire");
        assert_eq!(r.event_type, "redis.publish");
        assert_eq!(r.tenant, "t-acme");
        assert_eq!(
            r.payload_value(),
            json!({"event_type": "NOTIFICATION_SENT",
                   "payload": {"ticketId": "T-9", "action": "opened", "channels": ["discord", "slack"]}})
        );
    }

    #[test]
    fn each_tenant_gets_only_its_channels() {
        let mut host = host();
        let closed = ticket(
            "TICKET_CLOSED",
            "t-beta",
            json!({"tenantId": "t-beta", "id": 4}),
        );
        host.run::<TicketAlerts>(closed).unwrap();
        let endpoints: Vec<Value> = host
            .emitted()
            .iter()
            .filter(|e| e.event_type == "webhook.send")
            .map(|e| e.payload_value()["endpoint"].clone())
            .collect();
        assert_eq!(endpoints, [json!("beta-slack")]);

        let mut host = self::host();
        let other = ticket(
            "TICKET_CREATED",
            "t-gamma",
            json!({"tenantId": "t-gamma", "ticketId": 1}),
        );
        host.run::<TicketAlerts>(other).unwrap();
        assert!(host.emitted().is_empty());
        assert!(host.logged(hookbox_sdk::log::Level::Info, "No alert channels"));
    }

    #[test]
    fn a_ticket_without_id_is_fatal() {
        let mut host = host();
        let err = host
            .run::<TicketAlerts>(ticket(
                "TICKET_UPDATED",
                "t-acme",
                json!({"tenantId": "t-acme"}),
            ))
            .unwrap_err();
        assert!(
            !err.retryable && err.message.contains("ticketId"),
            "{}",
            err.message
        );
        assert!(host.emitted().is_empty());
    }
}

//! Example handler: tracks open tickets from `TICKET_CREATED`,
//! `TICKET_UPDATED` and `TICKET_CLOSED` events and emits a `notification`
//! event for each.
//!
//! The payload names its tenant in `tenantId` (required: without it the
//! event cannot be attributed, a fatal error) and the ticket in `ticketId`
//! (or `id`; a string or a number), with optional `title`, `status` and
//! `priority`. When the Hookbox event has a tenant too, the two must agree.
//!
//! KV layout, keyed by `tenantId`:
//! - `ticket:<tenantId>:<ticketId>` — an open ticket's latest state (JSON);
//! - `open:<tenantId>` — how many tickets are open (a counter).
//!
//! Redeliveries are safe: a ticket is counted open only when its key is
//! created (by a `compare_and_swap` from absent) and closed only when its key
//! is deleted, so a repeated event does not move the counter; the notification
//! is emitted again, because the earlier attempt's one was discarded with it
//! if it failed.

use hookbox_sdk::emit::{NewEvent, emit};
use hookbox_sdk::{Event, Handler, HandlerError, Priority, info, kv, warn};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event type of the emitted notifications.
pub const NOTIFICATION_EVENT: &str = "notification";

/// The fields of a `TICKET_*` payload this handler reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TicketPayload {
    tenant_id: Option<String>,
    #[serde(alias = "id")]
    ticket_id: Option<Value>,
    title: Option<String>,
    status: Option<String>,
    priority: Option<String>,
}

/// A ticket's state as stored under `ticket:<tenantId>:<ticketId>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTicket {
    /// The title.
    pub title: Option<String>,
    /// The status, as the producer named it.
    pub status: Option<String>,
    /// When the event that set this state was accepted (ms).
    pub updated_ms: u64,
}

/// The payload of a `notification` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The tenant.
    pub tenant_id: String,
    /// The ticket.
    pub ticket_id: String,
    /// `created`, `updated` or `closed`.
    pub action: String,
    /// The title, when known.
    pub title: Option<String>,
    /// The status, when known.
    pub status: Option<String>,
    /// Open tickets of the tenant after this event.
    pub open_tickets: i64,
}

/// The three lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Created,
    Updated,
    Closed,
}

impl Action {
    fn from_type(event_type: &str) -> Option<Action> {
        match event_type {
            "TICKET_CREATED" => Some(Action::Created),
            "TICKET_UPDATED" => Some(Action::Updated),
            "TICKET_CLOSED" => Some(Action::Closed),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Closed => "closed",
        }
    }
}

/// Tracks tickets and notifies.
#[derive(Debug)]
pub struct TicketNotifier;

impl Handler for TicketNotifier {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let Some(action) = Action::from_type(&event.event_type) else {
            warn!(event_type = event.event_type; "Ignored an event that is not TICKET_*");
            return Ok(());
        };
        let payload: TicketPayload = event.payload()?;
        let tenant_id = payload
            .tenant_id
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| HandlerError::fatal("ticket payload has no `tenantId`"))?;
        if !event.tenant.is_empty() && event.tenant != tenant_id {
            return Err(HandlerError::fatal(format!(
                "ticket payload `tenantId` {tenant_id:?} differs from the event tenant {:?}",
                event.tenant
            )));
        }
        let ticket_id = match &payload.ticket_id {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => {
                return Err(HandlerError::fatal(
                    "ticket payload has no `ticketId` (a string or a number)",
                ));
            }
        };

        let open_key = format!("open:{tenant_id}");
        let ticket_key = format!("ticket:{tenant_id}:{ticket_id}");
        let state = StoredTicket {
            title: payload.title.clone(),
            status: payload.status.clone(),
            updated_ms: event.time_ms,
        };
        let open_tickets = match action {
            Action::Created | Action::Updated => {
                let opened = upsert(&ticket_key, &serde_json::to_vec(&state)?)?;
                kv::increment(&open_key, i64::from(opened))
            }
            Action::Closed if kv::delete(&ticket_key) => {
                let open = kv::increment(&open_key, -1);
                if open < 0 {
                    // The counter lost track (e.g. reset by an operator).
                    kv::set(&open_key, "0", None);
                }
                open.max(0)
            }
            Action::Closed => kv::increment(&open_key, 0),
        };

        let notification = Notification {
            tenant_id: tenant_id.clone(),
            ticket_id: ticket_id.clone(),
            action: action.as_str().to_owned(),
            title: payload.title,
            status: payload.status,
            open_tickets,
        };
        let urgent = matches!(payload.priority.as_deref(), Some("urgent" | "critical"));
        emit(
            NewEvent::new(NOTIFICATION_EVENT)
                .tenant(&tenant_id)
                .payload(&notification)
                .metadata("ticket_id", &ticket_id)
                .metadata("source_event", &event.id)
                .key(format!("ticket:{ticket_id}"))
                .priority(if urgent {
                    Priority::High
                } else {
                    Priority::Normal
                }),
        )?;
        info!(tenant_id = tenant_id, ticket_id = ticket_id, action = action.as_str(),
            open_tickets = open_tickets; "Ticket {}", action.as_str());
        Ok(())
    }
}

hookbox_sdk::export_handler!(TicketNotifier);

/// How often [`upsert`] tries before giving up with a retryable error.
const MAX_ATTEMPTS: usize = 5;

/// Writes `value` to `key`, atomically with respect to a concurrent close
/// (which deletes the key). Returns whether the key was created.
fn upsert(key: &str, value: &[u8]) -> Result<bool, HandlerError> {
    for _ in 0..MAX_ATTEMPTS {
        let current = kv::get(key);
        if kv::compare_and_swap(key, current.as_deref(), Some(value)) {
            return Ok(current.is_none());
        }
    }
    Err(HandlerError::retryable(format!(
        "`{key}` kept changing during {MAX_ATTEMPTS} update attempts"
    )))
}

#[cfg(test)]
mod tests {
    use hookbox_sdk::testing::TestHost;
    use serde_json::json;

    use super::*;

    fn ticket(event_type: &str, payload: Value) -> Event {
        Event::builder(event_type)
            .tenant("acme")
            .source("http")
            .payload_json(&payload)
            .build()
    }

    fn created(id: Value) -> Event {
        ticket(
            "TICKET_CREATED",
            json!({"tenantId": "acme", "ticketId": id, "title": "Printer on fire",
                   "status": "open", "priority": "urgent", "reporter": "ann"}),
        )
    }

    fn closed(id: Value) -> Event {
        ticket(
            "TICKET_CLOSED",
            json!({"tenantId": "acme", "ticketId": id, "status": "closed"}),
        )
    }

    fn open(host: &TestHost) -> Option<String> {
        host.kv_get_string("acme", "open:acme")
    }

    #[test]
    fn created_counts_stores_and_notifies() {
        let mut host = TestHost::new();
        host.run::<TicketNotifier>(created(json!("T-1"))).unwrap();
        assert_eq!(open(&host).as_deref(), Some("1"));
        let stored: StoredTicket = host.kv_get_json("acme", "ticket:acme:T-1").unwrap();
        assert_eq!(stored.title.as_deref(), Some("Printer on fire"));
        let [n] = host.emitted() else {
            panic!("{:?}", host.emitted())
        };
        assert_eq!(n.event_type, "notification");
        assert_eq!(n.tenant, "acme");
        assert_eq!(n.priority, Priority::High);
        assert_eq!(n.key.as_deref(), Some("ticket:T-1"));
        assert_eq!(n.metadata("ticket_id"), Some("T-1"));
        assert_eq!(
            n.payload::<Notification>(),
            Notification {
                tenant_id: "acme".into(),
                ticket_id: "T-1".into(),
                action: "created".into(),
                title: Some("Printer on fire".into()),
                status: Some("open".into()),
                open_tickets: 1,
            }
        );
    }

    #[test]
    fn lifecycle_and_redeliveries_keep_the_count_right() {
        let mut host = TestHost::new();
        let first = created(json!(7));
        host.run::<TicketNotifier>(first.clone()).unwrap();
        host.run::<TicketNotifier>(Event {
            attempt: 2,
            ..first
        })
        .unwrap();
        host.run::<TicketNotifier>(created(json!(8))).unwrap();
        assert_eq!(
            open(&host).as_deref(),
            Some("2"),
            "a redelivery is not a new ticket"
        );

        let update = ticket(
            "TICKET_UPDATED",
            json!({"tenantId": "acme", "id": 7, "status": "waiting"}),
        );
        host.run::<TicketNotifier>(update).unwrap();
        let stored: StoredTicket = host.kv_get_json("acme", "ticket:acme:7").unwrap();
        assert_eq!(stored.status.as_deref(), Some("waiting"));
        assert_eq!(open(&host).as_deref(), Some("2"));

        host.run::<TicketNotifier>(closed(json!(7))).unwrap();
        host.run::<TicketNotifier>(closed(json!(7))).unwrap();
        assert_eq!(
            open(&host).as_deref(),
            Some("1"),
            "closing twice closes once"
        );
        assert_eq!(host.kv_get("acme", "ticket:acme:7"), None);

        let actions: Vec<(String, i64)> = host
            .emitted()
            .iter()
            .map(|e| {
                let n: Notification = e.payload();
                (n.action, n.open_tickets)
            })
            .collect();
        let expected = [
            ("created", 1),
            ("created", 1),
            ("created", 2),
            ("updated", 2),
            ("closed", 1),
            ("closed", 1),
        ];
        let expected: Vec<(String, i64)> = expected
            .iter()
            .map(|(a, n)| ((*a).to_owned(), *n))
            .collect();
        assert_eq!(actions, expected);
    }

    #[test]
    fn an_update_of_an_unseen_ticket_opens_it() {
        let mut host = TestHost::new();
        let update = ticket(
            "TICKET_UPDATED",
            json!({"tenantId": "acme", "ticketId": "X"}),
        );
        host.run::<TicketNotifier>(update).unwrap();
        assert_eq!(open(&host).as_deref(), Some("1"));
        assert_eq!(host.emitted()[0].priority, Priority::Normal);
    }

    #[test]
    fn the_open_count_never_goes_negative() {
        let mut host = TestHost::new();
        host.run::<TicketNotifier>(closed(json!("ghost"))).unwrap();
        assert_eq!(open(&host).as_deref(), Some("0"));
        // A ticket known while the counter was reset to 0.
        host.kv_set("acme", "ticket:acme:old", "{}", None);
        host.run::<TicketNotifier>(closed(json!("old"))).unwrap();
        assert_eq!(open(&host).as_deref(), Some("0"));
        let counts: Vec<i64> = host
            .emitted()
            .iter()
            .map(|e| e.payload::<Notification>().open_tickets)
            .collect();
        assert_eq!(counts, [0, 0]);
    }

    #[test]
    fn missing_tenant_id_is_fatal_and_emits_nothing() {
        let mut host = TestHost::new();
        for payload in [
            json!({"ticketId": 1, "title": "x"}),
            json!({"tenantId": "", "ticketId": 1}),
            json!({"tenantId": null, "ticketId": 1}),
        ] {
            let err = host
                .run::<TicketNotifier>(ticket("TICKET_CREATED", payload.clone()))
                .unwrap_err();
            assert!(!err.retryable, "{payload}");
            assert!(err.message.contains("tenantId"), "{}", err.message);
        }
        assert!(host.emitted().is_empty());
        assert!(host.kv_keys("acme").is_empty());
    }

    #[test]
    fn other_malformed_payloads_are_fatal() {
        let mut host = TestHost::new();
        let cases = [
            (
                ticket("TICKET_CREATED", json!({"tenantId": "acme"})),
                "ticketId",
            ),
            (
                ticket(
                    "TICKET_CREATED",
                    json!({"tenantId": "acme", "ticketId": [1]}),
                ),
                "ticketId",
            ),
            (
                ticket(
                    "TICKET_CREATED",
                    json!({"tenantId": "other", "ticketId": 1}),
                ),
                "differs",
            ),
            (
                Event::builder("TICKET_CLOSED")
                    .payload_raw("{not json")
                    .build(),
                "invalid payload",
            ),
        ];
        for (event, expected) in cases {
            let err = host.run::<TicketNotifier>(event).unwrap_err();
            assert!(!err.retryable);
            assert!(err.message.contains(expected), "{}", err.message);
        }
        assert!(host.emitted().is_empty());
    }

    #[test]
    fn an_event_without_tenant_uses_the_payload_tenant() {
        let mut host = TestHost::new();
        let event = Event::builder("TICKET_CREATED")
            .payload_json(&json!({"tenantId": "globex", "ticketId": 1}))
            .build();
        host.run::<TicketNotifier>(event).unwrap();
        assert_eq!(host.kv_get_string("", "open:globex").as_deref(), Some("1"));
        assert_eq!(host.emitted()[0].tenant, "globex");
    }

    #[test]
    fn other_event_types_are_ignored() {
        let mut host = TestHost::new();
        host.run::<TicketNotifier>(ticket("TICKET_DELETED", json!({})))
            .unwrap();
        assert!(host.emitted().is_empty());
        assert!(host.logged(hookbox_sdk::log::Level::Warn, "not TICKET_*"));
    }
}

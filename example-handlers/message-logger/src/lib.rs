//! Example handler: logs each Zulip `message` event — who sent it, where it
//! went (channel and topic, or the direct-message participants) and how long
//! it is. Every other event is ignored with a debug record.

use hookbox_sdk::zulip::{Message, ZulipEvent};
use hookbox_sdk::{Event, Handler, HandlerError, debug, info};

/// Logs Zulip messages.
#[derive(Debug)]
pub struct MessageLogger;

impl Handler for MessageLogger {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let ZulipEvent::Message(message_event) = event.zulip()? else {
            debug!(event_type = event.event_type; "Ignored a non-message event");
            return Ok(());
        };
        let message = &message_event.message;
        let sender = sender(message);
        let destination = destination(message);
        let length = message.content.chars().count();
        info!(
            message_id = message.id,
            sender = sender,
            destination = destination,
            content_chars = length;
            "Message from {sender} to {destination} ({length} characters)"
        );
        Ok(())
    }
}

hookbox_sdk::export_handler!(MessageLogger);

/// The sender's email, else name, else id.
fn sender(message: &Message) -> String {
    message
        .sender_email
        .clone()
        .or_else(|| message.sender_full_name.clone())
        .or_else(|| message.sender_id.map(|id| format!("user {id}")))
        .unwrap_or_else(|| "an unknown sender".to_owned())
}

/// `#channel > topic` for channel messages; the participants for direct
/// messages.
fn destination(message: &Message) -> String {
    if message.is_direct() {
        let participants: Vec<String> = message
            .direct_recipients()
            .iter()
            .map(|u| u.email.clone().unwrap_or_else(|| format!("user {}", u.id)))
            .collect();
        return format!("a direct message with {}", participants.join(", "));
    }
    let channel = match (message.stream_name(), message.stream_id) {
        (Some(name), _) => format!("#{name}"),
        (None, Some(id)) => format!("channel {id}"),
        (None, None) => "an unknown channel".to_owned(),
    };
    format!("{channel} > {}", message.topic().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use hookbox_sdk::log::Level;
    use hookbox_sdk::testing::TestHost;
    use serde_json::Value;

    use super::*;

    fn fixtures(file: &str) -> Value {
        let path = format!(
            "{}/../../tests/fixtures/zulip/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap()
    }

    fn zulip_event(ty: &str, op: Option<&str>) -> Value {
        let events = fixtures("zulip-events.json");
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == ty && e.get("op").and_then(Value::as_str) == op)
            .cloned()
            .unwrap_or_else(|| panic!("no {ty}/{op:?} fixture"))
    }

    fn run(host: &mut TestHost, zulip: &Value) -> Result<(), HandlerError> {
        host.run::<MessageLogger>(Event::from_zulip(zulip).tenant("zulip").build())
    }

    #[test]
    fn logs_a_channel_message() {
        let mut host = TestHost::new();
        run(&mut host, &zulip_event("message", None)).unwrap();
        let record = &host.logs()[0];
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.field("message_id"), Some("31"));
        assert_eq!(record.field("sender"), Some("user10@zulip.testserver"));
        assert_eq!(record.field("destination"), Some("#Denmark > test"));
        // The fixture's rendered content is 100 characters of HTML.
        assert_eq!(record.field("content_chars"), Some("100"));
        assert!(
            record
                .message
                .starts_with("Message from user10@zulip.testserver to #Denmark"),
            "{}",
            record.message
        );
    }

    #[test]
    fn logs_a_direct_message() {
        let examples = fixtures("zulip-events-api-examples.json");
        let direct = &examples["get_events_200_response"]["events"][1];
        let mut host = TestHost::new();
        run(&mut host, direct).unwrap();
        let record = &host.logs()[0];
        assert_eq!(
            record.field("destination"),
            Some("a direct message with hamlet@example.com")
        );
        assert_eq!(record.field("sender"), Some("othello-bot@example.com"));
        assert_eq!(record.field("content_chars"), Some("46"));
    }

    #[test]
    fn ignores_other_events_quietly() {
        let mut host = TestHost::new();
        run(&mut host, &zulip_event("reaction", Some("add"))).unwrap();
        assert!(!host.logs().iter().any(|r| r.level >= Level::Info));
        assert!(host.logged(Level::Debug, "non-message"));
    }

    #[test]
    fn malformed_message_is_fatal() {
        let mut host = TestHost::new();
        let bad = serde_json::json!({"type": "message", "message": {"id": "not a number"}});
        let err = run(&mut host, &bad).unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("`message`"), "{}", err.message);
    }
}

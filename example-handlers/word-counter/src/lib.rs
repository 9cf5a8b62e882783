//! Example handler: counts the words of each Zulip message, per sender, in
//! a KV counter.
//!
//! KV layout (in the tenant's namespace): `words:<sender_id>` — words the
//! sender has written (a counter); `words:unknown` for messages without a
//! `sender_id`.
//!
//! The logic is split from the export so the benchmark suite
//! (`tests/benches/sandbox.rs`) can run [`tally`] natively, next to this
//! crate built as a component, and compare the two on the same payloads.

use hookbox_sdk::zulip::MessageEvent;
use hookbox_sdk::{Event, Handler, HandlerError, kv};

/// The Hookbox event type this handler counts.
pub const MESSAGE: &str = "message";

/// What one message adds to its sender's counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The KV counter to add to.
    pub key: String,
    /// Words in the message.
    pub words: i64,
}

/// Parses a Zulip `message` event and counts the words of its content.
pub fn tally(payload: &str) -> Result<Tally, serde_json::Error> {
    let event: MessageEvent = serde_json::from_str(payload)?;
    let message = &event.message;
    let key = match message.sender_id {
        Some(id) => format!("words:{id}"),
        None => "words:unknown".to_owned(),
    };
    let words = i64::try_from(count_words(&message.content)).unwrap_or(i64::MAX);
    Ok(Tally { key, words })
}

/// Words in rendered message content: runs of non-whitespace text outside
/// HTML tags. A tag ends a word (`a<b>c</b>` is two words).
pub fn count_words(html: &str) -> u64 {
    let mut words = 0;
    let mut in_tag = false;
    let mut in_word = false;
    for b in html.bytes() {
        match b {
            b'<' => {
                in_tag = true;
                in_word = false;
            }
            b'>' if in_tag => in_tag = false,
            _ if in_tag => {}
            b if b.is_ascii_whitespace() => in_word = false,
            _ if in_word => {}
            _ => {
                words += 1;
                in_word = true;
            }
        }
    }
    words
}

/// Counts words per sender.
#[derive(Debug)]
pub struct WordCounter;

impl Handler for WordCounter {
    fn handle(event: Event) -> Result<(), HandlerError> {
        if event.event_type != MESSAGE {
            return Ok(());
        }
        let tally = tally(&event.payload)
            .map_err(|e| HandlerError::fatal(format!("not a Zulip message event: {e}")))?;
        kv::increment(&tally.key, tally.words);
        Ok(())
    }
}

hookbox_sdk::export_handler!(WordCounter);

#[cfg(test)]
mod tests {
    use hookbox_sdk::testing::TestHost;
    use serde_json::{Value, json};

    use super::*;

    fn fixture_message() -> Value {
        let path = format!(
            "{}/../../tests/fixtures/zulip/zulip-events.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let events: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == MESSAGE)
            .cloned()
            .unwrap()
    }

    #[test]
    fn words_are_counted_outside_tags() {
        assert_eq!(count_words(""), 0);
        assert_eq!(count_words("  one\ttwo\nthree  "), 3);
        assert_eq!(count_words("<p>Hello <b>big</b> world</p>"), 3);
        assert_eq!(count_words("a<b>c</b>"), 2);
        assert_eq!(count_words(r#"<a href="x y z">link</a>"#), 1);
    }

    #[test]
    fn the_fixture_message_is_tallied_for_its_sender() {
        let tally = tally(&fixture_message().to_string()).unwrap();
        // "<p>First message ...<a href=…>zulip.txt</a></p>"
        assert_eq!(
            tally,
            Tally {
                key: "words:10".into(),
                words: 4
            }
        );
    }

    #[test]
    fn messages_add_up_per_sender_and_tenant() {
        let mut host = TestHost::new();
        let message = fixture_message();
        for _ in 0..3 {
            let event = Event::from_zulip(&message).tenant("acme").build();
            host.run::<WordCounter>(event).unwrap();
        }
        assert_eq!(
            host.kv_get_string("acme", "words:10").as_deref(),
            Some("12")
        );
        assert_eq!(host.kv_get_string("zeta", "words:10"), None);
    }

    #[test]
    fn a_message_without_sender_counts_as_unknown() {
        let mut message = fixture_message();
        message["message"]
            .as_object_mut()
            .unwrap()
            .remove("sender_id");
        let mut host = TestHost::new();
        host.run::<WordCounter>(Event::from_zulip(&message).tenant("acme").build())
            .unwrap();
        assert_eq!(
            host.kv_get_string("acme", "words:unknown").as_deref(),
            Some("4")
        );
    }

    #[test]
    fn a_malformed_message_is_a_fatal_error() {
        let mut host = TestHost::new();
        let event = Event::from_zulip(&json!({"type": "message", "message": "nope"}))
            .tenant("acme")
            .build();
        let err = host.run::<WordCounter>(event).unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("not a Zulip message event"), "{err}");
    }

    #[test]
    fn other_event_types_are_ignored() {
        let mut host = TestHost::new();
        let event = Event::from_zulip(&json!({"type": "typing", "op": "start"}))
            .tenant("acme")
            .build();
        host.run::<WordCounter>(event).unwrap();
        assert!(host.kv_keys("acme").is_empty());
    }
}

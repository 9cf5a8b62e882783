//! Example handler: when a Zulip message mentions one of the configured
//! keywords, emits a `zulip.send_message` event replying in the same
//! conversation (same channel and topic, or the same direct-message group).
//!
//! Config: `{"keywords": ["deploy", "on call"], "reply": "…",
//! "ignore_senders": ["bot@example.com"]}`. Keywords match whole words,
//! case-insensitively, in the message text (HTML tags stripped); a keyword of
//! several words matches them in sequence. `{keyword}` in the reply is
//! replaced with the keyword that matched. Messages from `ignore_senders`
//! (emails or user ids) are skipped. The bot's own messages are never
//! answered, whatever the config: Hookbox's Zulip source skips them by
//! default, and when a realm delivers them (`own_events = true`) the event
//! says whose they are (`Event::zulip_bot_user_id`, used by
//! `SendMessage::reply_to_event`), so a reply that repeats a keyword cannot
//! loop. An invalid config is a fatal error: no retry can fix it.

use hookbox_sdk::emit::{NewEvent, emit};
use hookbox_sdk::zulip::{Message, SEND_MESSAGE_EVENT, SendMessage, ZulipEvent};
use hookbox_sdk::{Event, Handler, HandlerError, debug, info, warn};
use serde::Deserialize;

/// The handler's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Words or phrases to react to.
    keywords: Vec<String>,
    /// The reply; `{keyword}` is replaced with the matched keyword.
    reply: String,
    /// Senders (email or user id) whose messages are ignored.
    #[serde(default)]
    ignore_senders: Vec<String>,
}

impl Config {
    /// Reads and checks the config.
    fn load() -> Result<Config, HandlerError> {
        let config: Config = hookbox_sdk::config()?;
        if config.keywords.is_empty() {
            return Err(HandlerError::fatal(
                "invalid handler config: `keywords` is empty",
            ));
        }
        if let Some(blank) = config.keywords.iter().find(|k| words(k).is_empty()) {
            return Err(HandlerError::fatal(format!(
                "invalid handler config: keyword {blank:?} has no words"
            )));
        }
        if config.reply.trim().is_empty() {
            return Err(HandlerError::fatal(
                "invalid handler config: `reply` is empty",
            ));
        }
        Ok(config)
    }

    fn ignores(&self, message: &Message) -> bool {
        self.ignore_senders.iter().any(|s| {
            message.sender_email.as_deref() == Some(s.as_str())
                || message.sender_id.is_some_and(|id| id.to_string() == *s)
        })
    }
}

/// Replies to messages that mention a keyword.
#[derive(Debug)]
pub struct KeywordResponder;

impl Handler for KeywordResponder {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let config = Config::load()?;
        let ZulipEvent::Message(message_event) = event.zulip()? else {
            debug!(event_type = event.event_type; "Ignored a non-message event");
            return Ok(());
        };
        let message = &message_event.message;
        if config.ignores(message) {
            debug!(message_id = message.id; "Ignored a message from an ignored sender");
            return Ok(());
        }
        let Some(keyword) = find_keyword(&message.content, &config.keywords) else {
            return Ok(());
        };
        let content = config.reply.replace("{keyword}", keyword);
        if event.is_own_zulip_event()
            || (message.sender_id.is_some() && message.sender_id == event.zulip_bot_user_id())
        {
            debug!(message_id = message.id; "Ignored the bot's own message");
            return Ok(());
        }
        let Some(reply) = SendMessage::reply_to_event(&event, message, content) else {
            warn!(message_id = message.id; "Cannot reply: the message has no recipient");
            return Ok(());
        };
        let conversation = conversation_key(&reply);
        emit(
            NewEvent::new(SEND_MESSAGE_EVENT)
                .payload(&reply)
                .metadata("in_reply_to", message.id.to_string())
                .metadata("keyword", keyword)
                .key(&conversation),
        )?;
        info!(message_id = message.id, keyword = keyword, conversation = conversation;
            "Replied to a keyword");
        Ok(())
    }
}

hookbox_sdk::export_handler!(KeywordResponder);

/// The first keyword (in config order) that `content` mentions.
fn find_keyword<'k>(content: &str, keywords: &'k [String]) -> Option<&'k str> {
    let text = words(&strip_tags(content));
    keywords
        .iter()
        .find(|k| {
            let wanted = words(k);
            text.windows(wanted.len()).any(|w| w == wanted.as_slice())
        })
        .map(String::as_str)
}

/// `content` without HTML tags (message events carry rendered HTML), so
/// words in attributes such as link targets do not count.
fn strip_tags(content: &str) -> String {
    let mut text = String::with_capacity(content.len());
    let mut in_tag = false;
    for c in content.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// The lower-cased alphanumeric words of `text`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The ordering key of a conversation, so replies in one thread stay in
/// order.
fn conversation_key(reply: &SendMessage) -> String {
    match reply {
        SendMessage::Stream {
            to,
            stream_id,
            topic,
            ..
        } => match stream_id {
            Some(id) => format!("stream:{id}/{topic}"),
            None => format!("stream:{to}/{topic}"),
        },
        SendMessage::Direct { to, .. } => {
            let ids: Vec<String> = to.iter().map(u64::to_string).collect();
            format!("direct:{}", ids.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use hookbox_sdk::testing::TestHost;
    use serde_json::{Value, json};

    use super::*;

    fn fixtures(file: &str) -> Value {
        let path = format!(
            "{}/../../tests/fixtures/zulip/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap()
    }

    /// The fixture `message` event: a channel message in #Denmark > test
    /// whose HTML is `<p>First message ...<a href="user_uploads/…">zulip.txt</a></p>`.
    fn channel_message() -> Value {
        fixtures("zulip-events.json")
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "message")
            .cloned()
            .unwrap()
    }

    fn direct_message() -> Value {
        fixtures("zulip-events-api-examples.json")["get_events_200_response"]["events"][1].clone()
    }

    fn host(config: Value) -> TestHost {
        let mut host = TestHost::new();
        host.set_config(&config);
        host
    }

    fn run(host: &mut TestHost, zulip: &Value) -> Result<(), HandlerError> {
        host.run::<KeywordResponder>(Event::from_zulip(zulip).tenant("zulip").build())
    }

    #[test]
    fn replies_in_the_same_channel_topic() {
        let mut host = host(json!({"keywords": ["deploy", "zulip"], "reply": "Saw {keyword}!"}));
        run(&mut host, &channel_message()).unwrap();
        let [sent] = host.emitted() else {
            panic!("{:?}", host.emitted())
        };
        assert_eq!(sent.event_type, "zulip.send_message");
        assert_eq!(sent.tenant, "zulip");
        assert_eq!(
            sent.payload::<SendMessage>(),
            SendMessage::Stream {
                to: "Denmark".into(),
                stream_id: Some(1),
                topic: "test".into(),
                content: "Saw zulip!".into()
            }
        );
        assert_eq!(sent.metadata("in_reply_to"), Some("31"));
        assert_eq!(sent.metadata("keyword"), Some("zulip"));
        assert_eq!(sent.key.as_deref(), Some("stream:1/test"));
    }

    #[test]
    fn replies_to_a_direct_message_group() {
        let mut host = host(json!({"keywords": ["MIRTH"], "reply": "ok"}));
        run(&mut host, &direct_message()).unwrap();
        let [sent] = host.emitted() else {
            panic!("{:?}", host.emitted())
        };
        assert_eq!(
            sent.payload_value(),
            json!({"type": "direct", "to": [31572], "content": "ok"})
        );
        assert_eq!(sent.key.as_deref(), Some("direct:31572"));
    }

    #[test]
    fn ignores_words_inside_tags_and_partial_words() {
        // "uploads" only appears in the link target, "messages" is not a word
        // of the text, and the words of a phrase must come in order.
        let mut host = host(json!({"keywords": ["uploads", "messages", "message first"],
                                   "reply": "x"}));
        run(&mut host, &channel_message()).unwrap();
        assert!(host.emitted().is_empty(), "{:?}", host.emitted());
    }

    #[test]
    fn multi_word_keywords_match_in_sequence() {
        let mut host = host(json!({"keywords": ["FIRST  message"], "reply": "x"}));
        run(&mut host, &channel_message()).unwrap();
        assert_eq!(host.emitted().len(), 1);
        assert_eq!(
            host.emitted()[0].metadata("keyword"),
            Some("FIRST  message")
        );
    }

    #[test]
    fn ignored_senders_by_email_or_id() {
        for ignored in ["user10@zulip.testserver", "10"] {
            let mut host = host(json!({"keywords": ["zulip"], "reply": "x",
                                       "ignore_senders": [ignored]}));
            run(&mut host, &channel_message()).unwrap();
            assert!(host.emitted().is_empty(), "{ignored}");
        }
    }

    #[test]
    fn the_bots_own_messages_are_never_answered() {
        // The channel message's sender is user 10: as the bot, it is ignored
        // without any `ignore_senders`.
        let mut host = host(json!({"keywords": ["zulip"], "reply": "zulip again"}));
        let own = Event::from_zulip(&channel_message())
            .tenant("zulip")
            .metadata("zulip_bot_user_id", "10")
            .build();
        host.run::<KeywordResponder>(own).unwrap();
        assert!(host.emitted().is_empty(), "{:?}", host.emitted());
        let other_bot = Event::from_zulip(&channel_message())
            .tenant("zulip")
            .metadata("zulip_bot_user_id", "11")
            .build();
        host.run::<KeywordResponder>(other_bot).unwrap();
        assert_eq!(host.emitted().len(), 1);
    }

    #[test]
    fn non_message_events_are_ignored() {
        let mut host = host(json!({"keywords": ["tada"], "reply": "x"}));
        let reaction = json!({"type": "reaction", "op": "add", "message_id": 1,
                              "emoji_name": "tada", "emoji_code": "1f389",
                              "reaction_type": "unicode_emoji", "user_id": 3});
        run(&mut host, &reaction).unwrap();
        assert!(host.emitted().is_empty());
    }

    #[test]
    fn invalid_config_is_fatal() {
        let cases = [
            (json!({"reply": "x"}), "keywords"),
            (json!({"keywords": [], "reply": "x"}), "`keywords` is empty"),
            (json!({"keywords": ["--"], "reply": "x"}), "has no words"),
            (json!({"keywords": ["a"], "reply": " "}), "`reply` is empty"),
            (
                json!({"keywords": ["a"], "reply": "x", "replies": 2}),
                "replies",
            ),
        ];
        for (config, expected) in cases {
            let mut host = host(config.clone());
            let err = run(&mut host, &channel_message()).unwrap_err();
            assert!(!err.retryable, "{config}");
            assert!(err.message.contains(expected), "{config}: {}", err.message);
            assert!(host.emitted().is_empty());
        }
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            words(&strip_tags("<p>Ship <b>it</b>&nbsp;now, Zoë!</p>")),
            ["ship", "it", "nbsp", "now", "zoë"]
        );
    }
}

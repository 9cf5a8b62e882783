//! Example handler: counts Zulip messages per channel in KV and follows the
//! channels' lives.
//!
//! KV layout (in the tenant's namespace):
//! - `stream:<id>:messages` — messages seen in the channel (a counter);
//! - `stream:<id>:name` — the channel's latest known name;
//! - `direct:messages` — direct messages seen (a counter).
//!
//! `stream` `create` records the new channels' names, `update` of the `name`
//! property renames, and `delete` removes a channel's keys.

use hookbox_sdk::zulip::{MessageEvent, StreamEvent, ZulipEvent};
use hookbox_sdk::{Event, Handler, HandlerError, debug, info, kv, warn};

/// Counts messages per channel.
#[derive(Debug)]
pub struct ChannelActivity;

impl Handler for ChannelActivity {
    fn handle(event: Event) -> Result<(), HandlerError> {
        match event.zulip()? {
            ZulipEvent::Message(message) => count_message(&message),
            ZulipEvent::Stream(stream) => follow_stream(&stream),
            _ => debug!(event_type = event.event_type; "Ignored an event"),
        }
        Ok(())
    }
}

hookbox_sdk::export_handler!(ChannelActivity);

fn messages_key(stream_id: u64) -> String {
    format!("stream:{stream_id}:messages")
}

fn name_key(stream_id: u64) -> String {
    format!("stream:{stream_id}:name")
}

fn count_message(event: &MessageEvent) {
    let message = &event.message;
    if message.is_direct() {
        let count = kv::increment("direct:messages", 1);
        debug!(count = count; "Counted a direct message");
        return;
    }
    let Some(stream_id) = message.stream_id else {
        warn!(message_id = message.id; "Channel message without a stream_id, not counted");
        return;
    };
    let count = kv::increment(&messages_key(stream_id), 1);
    if let Some(name) = message.stream_name() {
        kv::set(&name_key(stream_id), name, None);
    }
    debug!(stream_id = stream_id, count = count; "Counted a channel message");
}

fn follow_stream(event: &StreamEvent) {
    match event {
        StreamEvent::Create { streams } => {
            for stream in streams {
                kv::set(&name_key(stream.stream_id), &stream.name, None);
                info!(stream_id = stream.stream_id, name = stream.name; "Channel created");
            }
        }
        StreamEvent::Delete { .. } => {
            for stream_id in event.deleted_ids() {
                let messages = kv::get_string(&messages_key(stream_id)).unwrap_or_default();
                kv::delete(&messages_key(stream_id));
                kv::delete(&name_key(stream_id));
                info!(stream_id = stream_id, messages = messages; "Channel deleted");
            }
        }
        StreamEvent::Update {
            stream_id,
            property,
            value,
            ..
        } if property == "name" => {
            if let Some(new_name) = value.as_str() {
                kv::set(&name_key(*stream_id), new_name, None);
                info!(stream_id = stream_id, name = new_name; "Channel renamed");
            }
        }
        StreamEvent::Update { .. } => {}
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

    fn zulip_event(ty: &str, op: Option<&str>) -> Value {
        fixtures("zulip-events.json")
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == ty && e.get("op").and_then(Value::as_str) == op)
            .cloned()
            .unwrap()
    }

    fn run(host: &mut TestHost, zulip: &Value) {
        host.run::<ChannelActivity>(Event::from_zulip(zulip).tenant("zulip").build())
            .unwrap();
    }

    fn get(host: &TestHost, key: &str) -> Option<String> {
        host.kv_get_string("zulip", key)
    }

    #[test]
    fn counts_channel_messages_and_learns_names() {
        let mut host = TestHost::new();
        let message = zulip_event("message", None);
        run(&mut host, &message);
        run(&mut host, &message);
        assert_eq!(get(&host, "stream:1:messages").as_deref(), Some("2"));
        assert_eq!(get(&host, "stream:1:name").as_deref(), Some("Denmark"));
        assert_eq!(get(&host, "direct:messages"), None);
    }

    #[test]
    fn counts_direct_messages_separately() {
        let mut host = TestHost::new();
        let events = fixtures("zulip-events-api-examples.json");
        let [stream_without_id, direct] = events["get_events_200_response"]["events"]
            .as_array()
            .unwrap()
            .as_slice()
        else {
            panic!()
        };
        run(&mut host, direct);
        assert_eq!(get(&host, "direct:messages").as_deref(), Some("1"));
        // The old API example has no stream_id: logged, not counted.
        run(&mut host, stream_without_id);
        assert_eq!(host.kv_keys("zulip"), vec!["direct:messages".to_owned()]);
        assert!(host.logged(hookbox_sdk::log::Level::Warn, "without a stream_id"));
    }

    #[test]
    fn follows_create_rename_and_delete() {
        let mut host = TestHost::new();
        run(&mut host, &zulip_event("stream", Some("create")));
        assert_eq!(get(&host, "stream:12:name").as_deref(), Some("private"));

        // The fixture update changes `invite_only`, not the name.
        let update = zulip_event("stream", Some("update"));
        run(&mut host, &update);
        assert_eq!(get(&host, "stream:11:name"), None);
        let mut rename = update;
        rename["property"] = json!("name");
        rename["value"] = json!("renamed");
        run(&mut host, &rename);
        assert_eq!(get(&host, "stream:11:name").as_deref(), Some("renamed"));

        run(&mut host, &zulip_event("message", None));
        assert_eq!(get(&host, "stream:1:messages").as_deref(), Some("1"));
        run(&mut host, &zulip_event("stream", Some("delete")));
        assert_eq!(get(&host, "stream:1:messages"), None);
        assert_eq!(get(&host, "stream:1:name"), None);
        assert_eq!(
            host.kv_keys("zulip"),
            vec!["stream:11:name".to_owned(), "stream:12:name".to_owned()]
        );
    }

    #[test]
    fn tenants_count_separately() {
        let mut host = TestHost::new();
        let message = zulip_event("message", None);
        host.run::<ChannelActivity>(Event::from_zulip(&message).tenant("a").build())
            .unwrap();
        assert_eq!(
            host.kv_get_string("a", "stream:1:messages").as_deref(),
            Some("1")
        );
        assert_eq!(host.kv_get_string("b", "stream:1:messages"), None);
    }

    #[test]
    fn other_events_change_nothing() {
        let mut host = TestHost::new();
        run(&mut host, &zulip_event("reaction", Some("add")));
        run(&mut host, &zulip_event("subscription", Some("add")));
        assert!(host.kv_keys("zulip").is_empty());
    }
}

//! End-to-end tests of the daemon: the real `hookbox` binary, started as
//! `hookbox serve` on a temporary data directory (`hookbox_tests::daemon`),
//! driven over HTTP and through the `hookbox` CLI.
//!
//! One daemon per scenario, so one failure does not hide another and the
//! scenarios run in parallel; each deploys only the handlers it needs (a
//! daemon starts in well under a second; compiling components is the cost).
//! Retry backoffs are short; nothing here measures time, and every wait is
//! bounded.

mod daemon {
    mod auth;
    mod bad_input;
    mod cli;
    mod dead_letters;
    mod events;
    mod finished_events;
    mod handler_logs;
    mod handlers;
    mod kv_read;
    mod openapi_client;
    mod promises;
    mod resident;
    mod restart;

    use serde_json::Value;

    /// The array at `key` of a JSON answer.
    pub(crate) fn array<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("no array `{key}` in {v}"))
    }

    /// The string values at `field` of each item, sorted.
    pub(crate) fn sorted_field(items: &[Value], field: &str) -> Vec<String> {
        let mut out: Vec<String> = items
            .iter()
            .map(|i| {
                i[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("no string `{field}` in {i}"))
                    .to_string()
            })
            .collect();
        out.sort();
        out
    }

    /// The example handlers whose manifests subscribe to `event_type`, sorted.
    pub(crate) fn subscribers(event_type: &str) -> Vec<String> {
        let matches = |p: &str| {
            p == "*"
                || p == event_type
                || p.strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
        };
        let mut out: Vec<String> = hookbox_tests::guests::EXAMPLES
            .iter()
            .filter(|(name, _)| {
                let manifest: Value =
                    serde_json::from_str(&hookbox_tests::daemon::example(name).0).unwrap();
                array(&manifest["subscription"], "events")
                    .iter()
                    .any(|p| matches(p.as_str().unwrap()))
            })
            .map(|(name, _)| name.to_string())
            .collect();
        out.sort();
        out
    }

    /// A Zulip stream message event whose rendered content is `html`.
    pub(crate) fn zulip_message(id: u64, html: &str) -> Value {
        serde_json::json!({
            "type": "message",
            "id": id,
            "flags": [],
            "message": {
                "id": id,
                "sender_id": 10,
                "sender_email": "user10@zulip.testserver",
                "sender_full_name": "King Hamlet",
                "content": html,
                "content_type": "text/html",
                "recipient_id": 23,
                "timestamp": 1594825416,
                "subject": "release",
                "type": "stream",
                "stream_id": 1,
                "display_recipient": "Denmark",
            }
        })
    }
}

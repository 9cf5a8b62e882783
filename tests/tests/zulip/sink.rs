//! The reply sink: the keyword-responder's reply reaches the server in the
//! conversation that mentioned it, retried after a 502 and dead-lettered
//! after a refusal.

use hookbox::store::DeadLetterQuery;
use hookbox_tests::fake_zulip::{FakeZulip, fixture_examples};
use serde_json::json;

use super::node::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyword_responder_replies_in_the_thread_that_mentioned_it() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let responder = example(
        "keyword-responder",
        Some(
            json!({"keywords": ["deploy", "mirth"], "reply": "On it: {keyword}",
                    "ignore_senders": [EMAIL]}),
        ),
    );
    let node = Node::start(dir.path(), realm(&fake, None), vec![responder]).await;
    fake.wait_for("a registration", |f| f.registrations().len() == 1)
        .await;
    // The queue takes what the deployed handlers subscribe to.
    assert_eq!(fake.registrations(), [Some(vec!["message".to_string()])]);

    // The first attempt meets a 502 and is retried.
    fake.fail_sends([(
        502,
        json!({"result": "error", "msg": "Bad gateway", "code": "BAD_GATEWAY"}),
    )]);
    fake.push(channel_message(31, "<p>Please <b>deploy</b> the fix</p>"));
    fake.wait_for("the channel reply", |f| {
        f.requests_to("/api/v1/messages")
            .iter()
            .any(|r| r.status == 200)
    })
    .await;
    let sent = fake.requests_to("/api/v1/messages");
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].status, 502);
    let expected = params(&[
        ("type", "stream"),
        ("to", "1"),
        ("topic", "test"),
        ("content", "On it: deploy"),
    ]);
    assert_eq!(sent[1].params, expected);
    assert_eq!(sent[0].params, expected);

    // A direct message is answered to its participants.
    let direct = fixture_examples()["get_events_200_response"]["events"][1].clone();
    fake.push(direct);
    fake.wait_for("the direct reply", |f| {
        f.requests_to("/api/v1/messages").len() == 3
    })
    .await;
    assert_eq!(
        fake.requests_to("/api/v1/messages")[2].params,
        params(&[
            ("type", "private"),
            ("to", "[31572]"),
            ("content", "On it: mirth")
        ])
    );

    // A refusal no retry can fix is dead-lettered with Zulip's reason.
    fake.fail_sends([(
        400,
        json!({"result": "error", "msg": "Channel 'Denmark' does not exist", "code": "BAD_REQUEST"}),
    )]);
    fake.push(channel_message(32, "<p>deploy again</p>"));
    let store = node.dispatcher.store().clone();
    let query = DeadLetterQuery {
        handler: Some(format!("zulip:{REALM}")),
        ..DeadLetterQuery::default()
    };
    node.wait_for("a dead letter", |_| {
        !store.dead_letters(&query).unwrap().is_empty()
    })
    .await;
    let [dead] = store.dead_letters(&query).unwrap().try_into().unwrap();
    assert_eq!(dead.event.event_type, "zulip.send_message");
    assert_eq!(dead.event.tenant, REALM);
    assert_eq!(dead.event.source, "handler:keyword-responder");
    assert_eq!(dead.errors.len(), 1, "{dead:?}");
    assert!(
        dead.errors[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("does not exist"),
        "{dead:?}"
    );
    let sink = node.realm_status().sink;
    assert_eq!((sink.sent, sink.failures), (2, 2));
    node.stop().await;
}

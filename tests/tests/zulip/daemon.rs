//! The real daemon with a `[[zulip]]` config.

use hookbox_tests::daemon::Daemon;
use hookbox_tests::fake_zulip::FakeZulip;

use super::node::{EMAIL, KEY, REALM, channel_message};

/// The daemon's wiring: a `[[zulip]]` table starts the source and the
/// sink, the queue follows what is deployed, `GET /v1/zulip` and `/metrics`
/// report the realm, and SIGTERM stops everything cleanly.
#[test]
fn the_daemon_serves_a_configured_realm() {
    // The fake runs on its own runtime: the daemon harness blocks.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeZulip::start(EMAIL, KEY));
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("zulip.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut daemon = Daemon::start_with(&format!(
        "[[zulip]]\nname = \"{REALM}\"\nsite = \"{}\"\nemail = \"{EMAIL}\"\napi_key_file = {:?}\n",
        fake.site(),
        key_file.display().to_string()
    ));
    // Nothing is deployed yet: the queue takes no event types.
    rt.block_on(fake.wait_for("a registration", |f| !f.registrations().is_empty()));
    assert_eq!(fake.registrations()[0], Some(vec![]));

    daemon.deploy_example("keyword-responder");
    rt.block_on(fake.wait_for("a queue for messages", |f| {
        f.registrations().last() == Some(&Some(vec!["message".to_string()]))
    }));
    fake.push(channel_message(40, "<p>can someone deploy?</p>"));
    rt.block_on(fake.wait_for("the reply", |f| {
        !f.requests_to("/api/v1/messages").is_empty()
    }));
    let reply = &fake.requests_to("/api/v1/messages")[0];
    assert_eq!(reply.status, 200);
    assert_eq!(reply.params["topic"], "test");
    assert!(reply.params["content"].contains("deploy"), "{reply:?}");

    let status = daemon.wait_until("the realm's status", || {
        let r = daemon.get("/v1/zulip").expect(200);
        let realm = r.json["realms"][0].clone();
        (realm["sink"]["sent"] == 1).then_some(realm)
    });
    assert_eq!(status["name"], REALM);
    assert_eq!(status["connected"], true);
    assert_eq!(status["counters"]["events"], 1);
    assert_eq!(
        status["queue_id"].as_str(),
        fake.queue_ids().first().map(String::as_str)
    );
    assert_eq!(
        daemon.metric(&format!("hookbox_zulip_connected{{realm=\"{REALM}\"}}")),
        Some(1.0)
    );
    assert!(
        !daemon.stderr_tail().contains(KEY),
        "the API key was logged"
    );
    daemon.stop();
}

//! What handlers log reaches the operator: `log` records (keyword-responder's
//! `info!`) and stdout/stderr lines (the `stdout.wat` guest) are kept with
//! each attempt's log entry, shown by `GET /v1/logs`, `GET /v1/events/{id}`,
//! `GET /v1/stream` and `hookbox logs --verbose`, and forwarded to the
//! daemon's own log with the handler, event and tenant as fields.

use std::time::Duration;

use hookbox_tests::daemon::Daemon;
use hookbox_tests::{guests, read};
use serde_json::{Value, json};

use super::{array, zulip_message};

const TENANT: &str = "acme";

fn logs_of(delivery: &Value) -> Vec<(String, String, String)> {
    array(delivery, "logs")
        .iter()
        .map(|r| {
            (
                r["level"].as_str().unwrap().to_string(),
                r["stream"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn triple(level: &str, stream: &str, message: &str) -> (String, String, String) {
    (level.into(), stream.into(), message.into())
}

#[test]
fn handler_logs_are_kept_shown_streamed_and_forwarded() {
    let d = Daemon::start();
    d.deploy_example("keyword-responder");
    let chatty = json!({"name": "chatty", "subscription": {"events": ["job.run"]}});
    d.deploy(&chatty.to_string(), &read(guests::STDOUT))
        .expect(201);
    let mut stream = d.stream("/v1/stream?handler=chatty");

    // stdout and stderr lines of a sandboxed delivery.
    let r = d
        .publish(&json!({"type": "job.run", "tenant": TENANT}), true)
        .expect(200);
    let job_id = r.json["events"][0]["id"].as_str().unwrap().to_string();
    let delivery = &r.json["outcomes"][0]["deliveries"][0];
    let want = vec![
        triple("info", "stdout", "hello"),
        triple("warn", "stderr", "done"),
    ];
    assert_eq!(logs_of(delivery), want, "{r}");

    // The same records in the event lookup, after the event finished.
    let looked_up = d.get(&format!("/v1/events/{job_id}")).expect(200);
    assert_eq!(
        logs_of(&array(&looked_up.json, "deliveries")[0]),
        want,
        "{looked_up}"
    );

    // …and on the live stream.
    let got = stream
        .next_event(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no SSE event; daemon stderr:\n{}", d.stderr_tail()));
    let notice: Value = serde_json::from_str(&got.data).unwrap();
    assert_eq!(notice["event_id"], job_id.as_str(), "{notice}");
    assert_eq!(logs_of(&notice), want, "{notice}");

    // A `log` record with its fields, in the delivery log.
    let message = json!({"type": "message", "tenant": TENANT,
                         "payload": zulip_message(5, "<p>please deploy</p>")});
    let r = d.publish(&message, true).expect(200);
    let msg_id = r.json["events"][0]["id"].as_str().unwrap().to_string();
    let page = d
        .get("/v1/logs?handler=keyword-responder&tenant=acme")
        .expect(200);
    let entry = &array(&page.json, "entries")[0];
    assert_eq!(entry["event_id"], msg_id.as_str(), "{page}");
    let record = &array(entry, "logs")[0];
    assert_eq!(record["level"], "info", "{entry}");
    assert_eq!(record["stream"], "log", "{entry}");
    assert_eq!(record["message"], "Replied to a keyword", "{entry}");
    assert_eq!(record["fields"]["keyword"], "deploy", "{entry}");
    assert_eq!(record["fields"]["message_id"], "5", "{entry}");

    // `hookbox logs --verbose` prints them under their attempt.
    let out = d
        .cli(&["logs", "--handler", "chatty", "--verbose"])
        .expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].contains(&job_id), "{}", out.stdout);
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["info", "stdout", "hello"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["warn", "stderr", "done"]
    );

    // The daemon's own log carries them, at their level, with the handler,
    // event and tenant as fields.
    let daemon_log = d.wait_until("forwarded handler records", || {
        let tail = d.stderr_tail();
        (tail.contains("Replied to a keyword") && tail.contains("done")).then_some(tail)
    });
    let forwarded = |text: &str| {
        daemon_log
            .lines()
            .find(|l| l.contains("hookbox::handler") && l.contains(text))
            .unwrap_or_else(|| panic!("no forwarded `{text}` in the daemon log:\n{daemon_log}"))
            .to_string()
    };
    let line = forwarded("Replied to a keyword");
    assert!(line.contains("INFO"), "{line}");
    for field in [
        "handler=keyword-responder",
        &format!("event={msg_id}"),
        "tenant=acme",
        "keyword=deploy",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    let line = forwarded("stream=stderr");
    assert!(line.contains("WARN") && line.contains("done"), "{line}");
    assert!(line.contains(&format!("event={job_id}")), "{line}");
}

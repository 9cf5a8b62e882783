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

/// A daemon with `chatty` (the `stdout.wat` guest, on `job.run`) deployed.
fn with_chatty() -> Daemon {
    let d = Daemon::start();
    let chatty = json!({"name": "chatty", "subscription": {"events": ["job.run"]}});
    d.deploy(&chatty.to_string(), &read(guests::STDOUT))
        .expect(201);
    d
}

/// Publishes a `job.run` and waits for it; returns its id and the answer.
fn run_job(d: &Daemon) -> (String, Value) {
    let r = d
        .publish(&json!({"type": "job.run", "tenant": TENANT}), true)
        .expect(200);
    let id = r.json["events"][0]["id"].as_str().unwrap().to_string();
    (id, r.json)
}

/// Publishes a Zulip message keyword-responder answers; returns its id.
fn publish_keyword(d: &Daemon) -> String {
    let message = json!({"type": "message", "tenant": TENANT,
                         "payload": zulip_message(5, "<p>please deploy</p>")});
    let r = d.publish(&message, true).expect(200);
    r.json["events"][0]["id"].as_str().unwrap().to_string()
}

fn chatty_lines() -> Vec<(String, String, String)> {
    vec![
        triple("info", "stdout", "hello"),
        triple("warn", "stderr", "done"),
    ]
}

#[test]
fn stdout_and_stderr_lines_are_in_the_answer_the_event_and_the_stream() {
    let d = with_chatty();
    let mut stream = d.stream("/v1/stream?handler=chatty");
    let (job_id, r) = run_job(&d);
    let want = chatty_lines();
    assert_eq!(logs_of(&r["outcomes"][0]["deliveries"][0]), want, "{r}");

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
}

#[test]
fn a_log_record_keeps_its_fields_in_the_delivery_log() {
    let d = Daemon::start();
    d.deploy_example("keyword-responder");
    let msg_id = publish_keyword(&d);
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
}

#[test]
fn hookbox_logs_verbose_prints_the_records_under_their_attempt() {
    let d = with_chatty();
    let (job_id, _) = run_job(&d);
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
}

#[test]
fn handler_records_reach_the_daemons_own_log_at_their_level_with_fields() {
    let d = with_chatty();
    d.deploy_example("keyword-responder");
    let (job_id, _) = run_job(&d);
    let msg_id = publish_keyword(&d);
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

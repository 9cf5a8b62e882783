//! The webhook sinks: a `standard` endpoint's requests verify under the
//! Standard Webhooks algorithm (written out here, independently of the
//! daemon's code), 5xx is retried, other 4xx dead-lettered with the
//! answer; a Discord endpoint's 429 `retry_after` is waited out; a Slack
//! endpoint gets its text; secrets stay out of logs and the API.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hookbox_tests::daemon::Daemon;
use hookbox_tests::receiver::{Received, Receiver};
use serde_json::{Value, json};
use sha2::Sha256;

/// 32 random-looking bytes, base64, as a Standard Webhooks secret.
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The spec's verification: the signature is the base64 HMAC-SHA256, keyed
/// with the secret's decoded bytes, of `{id}.{timestamp}.{body}`.
fn verify(secret: &str, r: &Received) -> Result<(), String> {
    let id = r.headers.get("webhook-id").ok_or("no webhook-id")?;
    let ts = r
        .headers
        .get("webhook-timestamp")
        .ok_or("no webhook-timestamp")?;
    let sigs = r
        .headers
        .get("webhook-signature")
        .ok_or("no webhook-signature")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts_n: i64 = ts.parse().map_err(|_| "timestamp is not a number")?;
    if (now - ts_n).abs() > 300 {
        return Err(format!("timestamp {ts} is not within 5 minutes of {now}"));
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    // The header lists space-separated `v1,<sig>` entries.
    if sigs.split(' ').any(|s| s == format!("v1,{expected}")) {
        Ok(())
    } else {
        Err(format!("no signature matches: {sigs}"))
    }
}

fn send(endpoint: &str, body: Value) -> Value {
    json!({"type": "webhook.send", "tenant": "acme",
           "payload": {"endpoint": endpoint, "body": body}})
}

#[test]
fn standard_webhooks_are_signed_retried_and_dead_lettered() {
    let rx = Receiver::start();
    let keys = tempfile::tempdir().unwrap();
    let secret_file = keys.path().join("ops.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let daemon = Daemon::start_with(&format!(
        "[[webhook]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = {:?}\nheaders = {{ \"X-Team\" = \"ops\" }}\ntimeout = \"2s\"\n",
        rx.url("/hook"),
        secret_file.display().to_string()
    ));

    // The first attempt meets a 502, the retry is accepted.
    rx.script("/hook", vec![(502, vec![], "upstream down".into())]);
    let body = json!({"invoice": "I-7", "amount": 12.5, "note": "ünïcode"});
    let r = daemon
        .publish(&send("ops", body.clone()), false)
        .expect(202);
    let event_id = r.json["events"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    let got = rx.wait_for("/hook", 2);
    assert_eq!((got[0].status, got[1].status), (502, 200));
    for req in &got {
        verify(SECRET, req).unwrap_or_else(|e| panic!("{e}: {req:?}"));
        assert_eq!(req.json(), body);
        assert_eq!(
            req.headers["webhook-id"], event_id,
            "the id is the event's, on every attempt"
        );
        assert_eq!(req.headers["x-team"], "ops");
        assert_eq!(req.headers["content-type"], "application/json");
    }
    // A tampered body does not verify.
    let mut forged = got[1].clone();
    forged.body = br#"{"invoice":"I-8"}"#.to_vec();
    assert!(verify(SECRET, &forged).is_err());

    // A refusal is dead-lettered at once with the start of the answer.
    rx.script(
        "/hook",
        vec![(422, vec![], format!("bad invoice {}", "x".repeat(2000)))],
    );
    daemon
        .publish(&send("ops", json!({"invoice": "bad"})), false)
        .expect(202);
    let dead = daemon.wait_until("a dead letter", || {
        let r = daemon
            .get("/v1/dead-letters?handler=webhook:ops")
            .expect(200);
        r.json["dead_letters"]
            .as_array()
            .filter(|a| !a.is_empty())
            .cloned()
    });
    let text = dead[0].to_string();
    assert!(text.contains("HTTP 422: bad invoice xxx"), "{text}");
    assert!(text.len() < 2000, "the answer is cut: {text}");
    assert_eq!(rx.requests("/hook").len(), 3, "a 4xx is not retried");

    // An endpoint that is not configured reaches no sink.
    let r = daemon.publish(&send("nope", json!({})), false).expect(202);
    assert_eq!(r.json["events"][0]["handlers"], json!([]), "{r}");

    let status = daemon.get("/v1/webhooks").expect(200);
    let ops = &status.json["endpoints"][0];
    assert_eq!(
        (ops["sent"].as_u64(), ops["failures"].as_u64()),
        (Some(1), Some(2)),
        "{ops}"
    );
    assert_eq!(ops["origin"], rx.url(""));
    let secret_b64 = SECRET.trim_start_matches("whsec_");
    for text in [daemon.stderr_tail(), status.text, daemon.metrics()] {
        assert!(!text.contains(secret_b64), "the secret leaked");
    }
}

#[test]
fn discord_rate_limits_are_waited_out_and_slack_gets_its_text() {
    let rx = Receiver::start();
    let daemon = Daemon::start_with(&format!(
        "[[webhook]]\nname = \"chat\"\nkind = \"discord\"\nurl = \"{}\"\n\
         [[webhook]]\nname = \"team\"\nkind = \"slack\"\nurl = \"{}\"\ntenants = [\"acme\"]\n",
        rx.url("/api/webhooks/1/t0ken"),
        rx.url("/services/T0/B0/s3cret"),
    ));
    rx.script(
        "/api/webhooks/1/t0ken",
        vec![(
            429,
            vec![
                ("retry-after", "1".into()),
                ("content-type", "application/json".into()),
            ],
            r#"{"message": "You are being rate limited.", "retry_after": 0.4, "global": false}"#
                .into(),
        )],
    );
    let embed = json!({"username": "Tickets", "embeds": [{"title": "T-9: Printer on fire",
        "color": 15158332, "fields": [{"name": "Priority", "value": "urgent", "inline": true}]}]});
    daemon
        .publish(&send("chat", embed.clone()), false)
        .expect(202);
    let got = rx.wait_for("/api/webhooks/1/t0ken", 2);
    assert_eq!((got[0].status, got[1].status), (429, 200));
    assert_eq!(got[1].json(), embed);
    assert!(!got[1].headers.contains_key("webhook-signature"));
    let waited = got[1].at - got[0].at;
    assert!(
        waited.as_millis() >= 400,
        "retried after {waited:?}, before Discord's retry_after"
    );
    // The rate limit is backpressure: the delivery that went through is
    // still attempt 1.
    let logs = daemon.wait_until("the delivery's log line", || {
        let r = daemon.get("/v1/logs?handler=webhook:chat").expect(200);
        r.json["entries"]
            .as_array()
            .filter(|a| !a.is_empty())
            .cloned()
    });
    assert_eq!(
        (logs[0]["outcome"].as_str(), logs[0]["attempt"].as_u64()),
        (Some("ok"), Some(1)),
        "{logs:?}"
    );

    daemon
        .publish(&send("team", json!({"text": "Ticket T-9 opened"})), false)
        .expect(202);
    let got = rx.wait_for("/services/T0/B0/s3cret", 1);
    assert_eq!(got[0].json()["text"], "Ticket T-9 opened");
    // The endpoint is acme's only: another tenant's event does not reach it.
    let other = json!({"type": "webhook.send", "tenant": "globex",
                       "payload": {"endpoint": "team", "body": {"text": "x"}}});
    let r = daemon.publish(&other, false).expect(202);
    assert_eq!(r.json["events"][0]["handlers"], json!([]), "{r}");
    // A body Discord would refuse is dead-lettered without a call.
    daemon
        .publish(&send("chat", json!({"text": "wrong shape"})), false)
        .expect(202);
    daemon.wait_until("the refusal", || {
        let r = daemon
            .get("/v1/dead-letters?handler=webhook:chat")
            .expect(200);
        r.json["dead_letters"]
            .as_array()
            .filter(|a| !a.is_empty())
            .cloned()
    });
    assert_eq!(rx.requests("/api/webhooks/1/t0ken").len(), 2);

    let status = daemon.get("/v1/webhooks").expect(200);
    assert_eq!(status.json["endpoints"][0]["rate_limited"], 1, "{status}");
    for text in [daemon.stderr_tail(), status.text] {
        assert!(
            !text.contains("t0ken") && !text.contains("s3cret"),
            "a URL leaked"
        );
    }
}

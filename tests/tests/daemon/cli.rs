//! The `hookbox` CLI against a running daemon (`--url`, `--token`): deploy,
//! list, show, emit with `--wait`, logs, stats, tokens and the dead-letter
//! queue; exit codes (0 ok, 1 request failed, 3 a waited-for delivery
//! failed) and a key piece of each output, `--json` where structure matters.

use std::process::Command;

use hookbox_tests::daemon::Daemon;
use hookbox_tests::guests::{self, EXAMPLES};
use serde_json::json;

use super::{array, zulip_message};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A daemon with `message-logger` (from its manifest file) and `flaky` (a
/// trapping guest from a manifest file plus `--events job.*`) deployed
/// through the CLI; returns it and flaky's manifest file.
fn deployed() -> (Daemon, std::path::PathBuf) {
    let d = Daemon::start();
    let (_, logger) = EXAMPLES
        .iter()
        .find(|(n, _)| *n == "message-logger")
        .unwrap();
    let manifest = format!(
        "{}/../example-handlers/message-logger/manifest.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = d
        .cli(&["handlers", "deploy", logger, "--manifest", &manifest])
        .expect(0);
    assert!(
        out.stdout.contains("deployed message-logger version 1"),
        "{out}"
    );
    let flaky = d.scratch().join("flaky.json");
    std::fs::write(
        &flaky,
        json!({"name": "flaky", "subscription": {"events": ["never"]}, "delivery": {"max_attempts": 1}})
            .to_string(),
    )
    .unwrap();
    let out = d
        .cli(&[
            "handlers",
            "deploy",
            guests::TRAP,
            "--manifest",
            path(&flaky),
            "--events",
            "job.*",
            "--json",
        ])
        .expect(0);
    let deployed = out.json();
    assert_eq!(deployed["handler"]["name"], "flaky", "{out}");
    assert_eq!(
        deployed["version"]["manifest"]["subscription"]["events"],
        json!(["job.*"]),
        "the flag overrides the file: {out}"
    );
    (d, flaky)
}

/// `emit --payload @message.json --tenant acme --wait` of a Zulip message,
/// with `extra` arguments; the exit code must be `code`.
fn emit_message(d: &Daemon, extra: &[&str], code: i32) -> hookbox_tests::daemon::CliOutput {
    let payload = d.scratch().join("message.json");
    std::fs::write(&payload, zulip_message(5, "<p>hi</p>").to_string()).unwrap();
    let at_payload = format!("@{}", path(&payload));
    let mut args = vec![
        "emit",
        "--type",
        "message",
        "--tenant",
        "acme",
        "--payload",
        &at_payload,
        "--wait",
    ];
    args.extend_from_slice(extra);
    d.cli(&args).expect(code)
}

#[test]
fn handlers_deploy_list_and_show() {
    let (d, _) = deployed();
    let out = d.cli(&["handlers", "list", "--json"]).expect(0);
    let mut names: Vec<String> = array(&out.json(), "handlers")
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["flaky", "message-logger"], "{out}");
    let out = d.cli(&["handlers", "list"]).expect(0);
    assert!(
        out.stdout.contains("message-logger") && out.stdout.contains("job.*"),
        "{out}"
    );
    let out = d.cli(&["handlers", "show", "message-logger"]).expect(0);
    assert!(out.stdout.contains("message-logger"), "{out}");
    let out = d.cli(&["handlers", "show", "nope"]).expect(1);
    assert!(
        out.stderr.contains("error:") && out.stderr.contains("nope"),
        "{out}"
    );
}

#[test]
fn emit_wait_exits_0_when_every_delivery_is_ok_and_3_when_one_failed() {
    let (d, _) = deployed();
    let out = emit_message(&d, &[], 0);
    assert!(
        out.stdout.contains("message-logger") && out.stdout.contains(" ok "),
        "{out}"
    );
    let out = emit_message(&d, &["--json"], 0);
    let delivery = &out.json()["outcomes"][0]["deliveries"][0];
    assert_eq!(delivery["handler"], "message-logger", "{out}");
    assert_eq!(delivery["outcome"], "ok", "{out}");
    let out = d
        .cli(&["emit", "--type", "job.run", "--tenant", "acme", "--wait"])
        .expect(3);
    assert!(
        out.stderr.contains("flaky") || out.stdout.contains("trap"),
        "{out}"
    );
    let out = d.cli(&["emit", "--type", "job.run"]).expect(0);
    assert!(out.stdout.contains("accepted"), "without --wait: {out}");
}

#[test]
fn logs_stats_and_dead_letters_show_what_happened() {
    let (d, _) = deployed();
    emit_message(&d, &[], 0);
    emit_message(&d, &[], 0);
    d.cli(&["emit", "--type", "job.run", "--tenant", "acme", "--wait"])
        .expect(3);

    let out = d
        .cli(&["logs", "--handler", "message-logger", "--json"])
        .expect(0);
    let entries = out.json()["entries"].clone();
    assert_eq!(entries.as_array().map(Vec::len), Some(2), "{out}");
    let out = d.cli(&["logs", "--failed"]).expect(0);
    assert!(
        out.stdout.contains("flaky") && out.stdout.contains("trap"),
        "{out}"
    );
    let out = d.cli(&["stats", "--json"]).expect(0);
    let stats = out.json();
    let logger_stats = array(&stats, "handlers")
        .iter()
        .find(|h| h["handler"] == "message-logger")
        .cloned()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(logger_stats["ok"], 2, "{out}");
    let out = d.cli(&["stats"]).expect(0);
    assert!(out.stdout.contains("message-logger"), "{out}");

    // The one failed (and waited-for) `job.run`: exactly one dead letter.
    let out = d.cli(&["dlq", "list", "--json"]).expect(0);
    let dead = out.json();
    let dead = array(&dead, "dead_letters");
    assert_eq!(dead.len(), 1, "{out}");
    assert_eq!(dead[0]["handler"], "flaky", "{out}");
    let out = d.cli(&["dlq", "list"]).expect(0);
    assert!(out.stdout.contains("flaky"), "{out}");
}

#[test]
fn tokens_create_prints_a_secret_that_works_within_its_scope() {
    let (d, flaky) = deployed();
    let out = d
        .cli(&[
            "tokens", "create", "--name", "ci", "--scope", "read", "--json",
        ])
        .expect(0);
    let secret = out.json()["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert!(secret.starts_with("hbx_"), "{out}");
    let out = d
        .cli(&["tokens", "create", "--name", "ci2", "--scope", "publish"])
        .expect(0);
    assert!(out.stdout.contains("hbx_"), "the secret is printed: {out}");
    let out = d.cli_as(&secret, &["handlers", "list", "--json"]).expect(0);
    assert_eq!(array(&out.json(), "handlers").len(), 2, "{out}");
    let out = d
        .cli_as(
            &secret,
            &[
                "handlers",
                "deploy",
                guests::TRAP,
                "--manifest",
                path(&flaky),
            ],
        )
        .expect(1);
    assert!(
        out.stderr.contains("403") && out.stderr.contains("admin"),
        "{out}"
    );
}

#[test]
fn a_wrong_token_or_an_unreachable_daemon_exits_1_with_a_reason() {
    let d = Daemon::start();
    let out = d.cli_as("hbx_wrong", &["stats"]).expect(1);
    assert!(out.stderr.contains("401"), "{out}");
    let out = Command::new(d.bin())
        .args(["stats", "--url", "http://127.0.0.1:1", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

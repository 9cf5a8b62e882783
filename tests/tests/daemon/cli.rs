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

#[test]
fn the_cli_drives_a_daemon() {
    let d = Daemon::start();
    let scratch = d.scratch().to_path_buf();

    // handlers deploy: an example from its manifest file, and a trapping
    // guest from a manifest file plus flags.
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
    let flaky = scratch.join("flaky.json");
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

    // handlers list / show.
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

    // emit --wait: 0 when every delivery is ok, 3 when one failed.
    let payload = scratch.join("message.json");
    std::fs::write(&payload, zulip_message(5, "<p>hi</p>").to_string()).unwrap();
    let at_payload = format!("@{}", path(&payload));
    let out = d
        .cli(&[
            "emit",
            "--type",
            "message",
            "--tenant",
            "acme",
            "--payload",
            &at_payload,
            "--wait",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("message-logger") && out.stdout.contains(" ok "),
        "{out}"
    );
    let out = d
        .cli(&[
            "emit",
            "--type",
            "message",
            "--tenant",
            "acme",
            "--payload",
            &at_payload,
            "--wait",
            "--json",
        ])
        .expect(0);
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

    // logs and stats.
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

    // The dead letter of the failed emit (the second `job.run` may still
    // be running, so at least one).
    let out = d.cli(&["dlq", "list", "--json"]).expect(0);
    let dead = out.json();
    let dead = array(&dead, "dead_letters");
    assert!(!dead.is_empty(), "{out}");
    assert!(dead.iter().all(|x| x["handler"] == "flaky"), "{out}");
    let out = d.cli(&["dlq", "list"]).expect(0);
    assert!(out.stdout.contains("flaky"), "{out}");

    // tokens create: the secret works, within its scope only.
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

    // A wrong token and an unreachable daemon: exit 1 with a reason.
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

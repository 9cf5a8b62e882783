//! The web dashboard in a real browser: Debian's headless Chromium, driven
//! by Playwright for Python (`tests/browser/dashboard.py`), against the real
//! `hookbox serve`. It signs in, deploys handlers by upload, watches
//! deliveries arrive live, opens one, edits config, rolls back, disables,
//! replays a dead letter, and checks that a token restricted to a tenant
//! sees only that tenant — while listening for dialogs and console errors
//! that markup from a handler (`tests/guests/markup.wat`) would cause if the
//! page ever rendered it as HTML. Screenshots land in `target/dashboard/`.
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`) and Playwright for
//! Python (`pip install playwright==1.65.2`; Playwright's own browser
//! download is not used). `tests/run-all.sh` installs both; when either is missing
//! the test fails with that hint.
//!
//! `HOOKBOX_DASHBOARD_BENCH=1` adds the load run (1000 handlers, 2000
//! deliveries/s) whose figures go to BENCHMARKS.md; see
//! `dashboard_under_load`.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookbox_tests::daemon::{ADMIN_TOKEN, Daemon, example};
use hookbox_tests::guests;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const PLAYWRIGHT_PIN: &str = "playwright==1.65.2";

/// Fails, with the install hint, unless Chromium and Playwright are there.
fn require_browser() -> String {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "the browser tests need Chromium at {CHROMIUM}: `apt-get update && apt-get install -y chromium` \
         (tests/run-all.sh does this)"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import playwright.sync_api"])
        .output();
    match probe {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "the browser tests need Playwright for Python: `{python} -m pip install {PLAYWRIGHT_PIN}` \
             (tests/run-all.sh does this; no browser download is needed). {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("the browser tests need {python} with Playwright ({PLAYWRIGHT_PIN}): {e}"),
    }
}

/// `target/dashboard/`, beside the test executable's profile directory.
fn shots_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps")
        .join("dashboard")
}

/// A Zulip stream message that `keyword-responder` answers (it mentions
/// "deploy"), so its delivery emits a `zulip.send_message`.
fn message_event() -> Value {
    json!({"type": "message", "payload": {
        "type": "message", "id": 1, "flags": [],
        "message": {"id": 1, "sender_id": 7, "sender_email": "ada@example.com",
            "sender_full_name": "Ada", "content": "<p>can we deploy today?</p>", "type": "stream",
            "stream_id": 3, "display_recipient": "general", "subject": "release",
            "timestamp": 1594825416, "recipient_id": 23}}})
}

/// The markup handler's manifest: its description is markup too.
const MARKUP_MANIFEST: &str = r#"{
  "name": "markup",
  "description": "Logs <img src=x onerror=alert(6)> and fails",
  "subscription": {"events": ["markup"]},
  "capabilities": ["log"],
  "delivery": {"max_attempts": 1}
}"#;

/// Writes the setup file, runs the script, returns its `RESULT` line.
fn run_script(d: &Daemon, bench: Value) -> Value {
    let python = require_browser();
    let tenant = d.token("acme-reader", &["read"], &["acme"]);
    let ex_manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../example-handlers/keyword-responder/manifest.json");
    let setup = json!({
        "url": d.url(),
        "admin_token": ADMIN_TOKEN,
        "tenant_token": tenant,
        "example": {
            "name": "keyword-responder",
            "component": component_path("keyword-responder"),
            "manifest": ex_manifest,
            "event": message_event(),
        },
        "markup": {"component": guests::MARKUP, "manifest": MARKUP_MANIFEST},
        "bench": bench,
        "shots": shots_dir(),
    });
    let setup_path = d.scratch().join("browser-setup.json");
    std::fs::write(&setup_path, setup.to_string()).expect("writing the setup");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/dashboard.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&setup_path)
        .output()
        .expect("running the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        d.stderr_tail()
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    serde_json::from_str(line).expect("the RESULT line is JSON")
}

/// Where `build.rs` put an example handler's component.
fn component_path(name: &str) -> &'static str {
    guests::EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
        .unwrap_or_else(|| panic!("example handler `{name}` was not built"))
}

#[test]
fn dashboard_in_headless_chromium() {
    // A Redis bus with no server behind it (the Sources page shows it
    // disconnected, with the error) and a Slack endpoint for tenant acme.
    let d = Daemon::start_with(
        r#"
[[redis]]
name = "bus"
url = "redis://127.0.0.1:9/0"
mode = "pubsub"

[[webhook]]
name = "ops-slack"
kind = "slack"
url = "http://127.0.0.1:9/hook"
tenants = ["acme"]
"#,
    );
    // The example handler's manifest must be what the page uploads.
    assert!(example("keyword-responder").0.contains("keyword-responder"));
    let result = run_script(&d, Value::Null);
    println!("dashboard: {result}");
}

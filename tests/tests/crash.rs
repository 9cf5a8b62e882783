//! Reliability of the real daemon, end to end (issue 4): what Hookbox
//! promises about acknowledged events survives `kill -9`, and a failing
//! handler's circuit breaker parks its deliveries rather than losing them.
//!
//! - [`acknowledged_events_survive_kill_9`] (and the same with group
//!   commit, and both again on the log inbox, the default; the first two
//!   run `[store] inbox = "sled"`):
//!   a client thread publishes thousands of events in batches of 100 while the daemon is killed with SIGKILL and restarted on the same
//!   data directory, several times mid-stream and once more while retries
//!   are scheduled. Every event carries an idempotency key, so a batch whose
//!   answer was lost in a crash is simply sent again. Then: every event that
//!   got a 202 was delivered to every handler it matches at least once (an
//!   `ok` line in the delivery log), to no other handler, a transiently
//!   failing handler got each of its events on a retry, and an always
//!   failing one has exactly one dead letter per event, with every attempt;
//!   and the idempotency keys still dedupe after the crashes.
//! - [`breaker_parks_deliveries_then_auto_disables`]: a trapping handler
//!   opens its breaker, is tried after each cool-down, is disabled on the
//!   third opening; its deliveries wait (none is dead-lettered) through a
//!   crash, and run once a fixed version is deployed and enabled. The
//!   news went out as `hookbox.handler.*` events, dead-lettered by a
//!   watcher and then replayed in bulk with `hookbox dlq replay --handler`.
//!
//! - [`the_checks_see_events_lost_without_durability`] (and on the log
//!   inbox): the control. With `durability = "none"` a crash right after
//!   the answer loses acknowledged events, and the same checks name them:
//!   the tests above could fail.
//!
//! - [`a_backlog_of_a_million_events_survives_kill_9`]: a million
//!   undelivered events on the log inbox survive a restart and a `kill -9`
//!   mid-drain; the time to come back with all of them is printed.
//!
//! Deliveries are observed through the delivery log (`GET /v1/logs`): the
//! daemon writes an attempt's log line before it moves the delivery on, so a
//! delivery that is no longer pending has its line. Retry delays are short;
//! every wait is bounded; nothing here measures time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookbox::event::{Event, EventInput};
use hookbox::store::{Durability, Inbox, LogInbox, LogQuery, Store, StoreOptions};
use hookbox_tests::daemon::{ADMIN_TOKEN, Daemon, example};
use hookbox_tests::{guests, read};
use serde_json::{Value, json};

/// Events published by the crash test.
const EVENTS: usize = 3000;
/// Events per request.
const BATCH: usize = 100;
/// The daemon is killed once this many batches were acknowledged, plus a
/// few milliseconds (so the kill lands at different points of a request).
const KILLS: [(usize, u64); 3] = [(5, 0), (13, 3), (22, 7)];
/// Bound on publishing, and separately on the deliveries settling.
const PHASE: Duration = Duration::from_secs(60);
/// Attempts of the always-failing handler.
const BROKEN_ATTEMPTS: usize = 3;

/// The crash test's handlers, by name.
const NAMES: [&str; 5] = [
    "tenant-analytics",
    "orders",
    "acme-messages",
    "fail-first",
    "broken",
];

/// The crash test's handlers: name, component, subscription and delivery policy.
fn handlers() -> Vec<(&'static str, Vec<u8>, Value, Value)> {
    let no_breaker = json!({"consecutive_failures": 0, "failure_rate": 0.0});
    let (analytics_manifest, analytics) = example("tenant-analytics");
    let analytics_manifest: Value = serde_json::from_str(&analytics_manifest).unwrap();
    vec![
        (
            "tenant-analytics",
            analytics,
            analytics_manifest["subscription"].clone(),
            json!({}),
        ),
        (
            "orders",
            read(guests::COUNTER),
            json!({"events": ["order.*"]}),
            json!({}),
        ),
        (
            "acme-messages",
            read(guests::COUNTER),
            json!({"events": ["message"], "tenants": ["acme"]}),
            json!({}),
        ),
        (
            "fail-first",
            read(guests::FAIL_FIRST),
            json!({"events": ["ticket.*"]}),
            // Long enough that the last kill finds retries scheduled.
            json!({"max_attempts": 5, "initial_backoff_ms": 1500, "max_backoff_ms": 1500,
                   "jitter": 0.0, "breaker": no_breaker}),
        ),
        (
            "broken",
            read(guests::TRAP),
            json!({"events": ["alert"]}),
            json!({"max_attempts": BROKEN_ATTEMPTS, "initial_backoff_ms": 300,
                   "max_backoff_ms": 300, "jitter": 0.0, "breaker": no_breaker}),
        ),
    ]
}

/// Which of [`handlers`] an event matches, written out independently of
/// the daemon's matcher.
fn expected(event_type: &str, tenant: &str) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::from(["tenant-analytics"]);
    if event_type.starts_with("order.") {
        out.insert("orders");
    }
    if event_type == "message" && tenant == "acme" {
        out.insert("acme-messages");
    }
    if event_type.starts_with("ticket.") {
        out.insert("fail-first");
    }
    if event_type == "alert" {
        out.insert("broken");
    }
    out
}

const TYPES: [&str; 10] = [
    "order.created",
    "message",
    "ticket.updated",
    "other",
    "order.paid",
    "alert",
    "message",
    "misc.thing",
    "ticket.closed",
    "order.created",
];
const TENANTS: [&str; 3] = ["acme", "globex", ""];

fn input(i: usize) -> Value {
    json!({
        "type": TYPES[i % TYPES.len()],
        "tenant": TENANTS[i % TENANTS.len()],
        "payload": {"n": i},
        "idempotency_key": format!("crash-{i}"),
    })
}

/// An acknowledged event: its index in the stream and the daemon's answer.
#[derive(Debug)]
struct Acked {
    index: usize,
    id: String,
    duplicate: bool,
    handlers: Vec<String>,
}

/// Publishes every batch in order against the daemon at `url` (which the
/// main thread changes on restart), sending a batch again until it gets a
/// 202. Counts acknowledged batches in `acked`.
fn publish_all(url: Arc<Mutex<String>>, acked: Arc<AtomicUsize>) -> Vec<Acked> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the publisher");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client");
    let deadline = Instant::now() + PHASE;
    let mut out = Vec::with_capacity(EVENTS);
    for start in (0..EVENTS).step_by(BATCH) {
        let batch: Vec<Value> = (start..start + BATCH).map(input).collect();
        let body = loop {
            assert!(
                Instant::now() < deadline,
                "batch at {start} was not acknowledged within {PHASE:?}"
            );
            let base = url.lock().unwrap().clone();
            let sent = rt.block_on(async {
                let resp = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&batch)
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                Ok::<_, reqwest::Error>((status, resp.text().await?))
            });
            match sent {
                Ok((202, text)) => break text,
                // Busy or shutting down: the batch was not accepted; again.
                Ok((429 | 503, _)) => {}
                Ok((status, text)) => panic!("publishing answered {status}: {text}"),
                // The daemon died mid-request (or is not back yet): the batch
                // may or may not have been accepted; its keys dedupe a resend.
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let v: Value = serde_json::from_str(&body).expect("a JSON answer");
        let events = v["events"].as_array().expect("`events` in a 202");
        assert_eq!(events.len(), BATCH, "{v}");
        for (k, e) in events.iter().enumerate() {
            out.push(Acked {
                index: start + k,
                id: e["id"].as_str().expect("an id").to_string(),
                duplicate: e["duplicate"] == true,
                handlers: e["handlers"]
                    .as_array()
                    .expect("handlers")
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect(),
            });
        }
        acked.fetch_add(1, Ordering::SeqCst);
    }
    out
}

/// Every page of a paginated list at `path` (`…?limit=1000`), under `key`.
fn all_pages(d: &Daemon, path: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_string(),
        };
        let r = d.get(&url).expect(200);
        out.extend(r.json[key].as_array().expect("a page").iter().cloned());
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// What the daemon recorded, and how it compares with what was promised.
#[derive(Debug, Default)]
struct Findings {
    problems: Vec<String>,
    log_lines: usize,
    redelivered: usize,
}

fn check(d: &Daemon, acked: &[Acked]) -> Findings {
    let mut f = Findings::default();
    let by_id: BTreeMap<&str, &Acked> = acked.iter().map(|a| (a.id.as_str(), a)).collect();
    let want = |a: &Acked| {
        let i = input(a.index);
        expected(i["type"].as_str().unwrap(), i["tenant"].as_str().unwrap())
    };
    for name in NAMES {
        let entries = all_pages(d, &format!("/v1/logs?handler={name}&limit=1000"), "entries");
        f.log_lines += entries.len();
        // event id → attempts that ended ok.
        let mut ok: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for e in &entries {
            let id = e["event_id"].as_str().unwrap_or_default();
            let Some(a) = by_id.get(id) else {
                f.problems
                    .push(format!("{name} got event {id}, which nobody published"));
                continue;
            };
            if !want(a).contains(name) {
                f.problems.push(format!(
                    "{name} got event {id} ({}), which it does not match",
                    input(a.index)
                ));
            }
            if e["outcome"] == "ok" {
                ok.entry(id)
                    .or_default()
                    .push(e["attempt"].as_u64().unwrap_or(0));
            }
        }
        f.redelivered += ok.values().map(|v| v.len() - 1).sum::<usize>();
        if name == "broken" {
            check_dead_letters(d, acked, &want, &ok, &mut f);
            continue;
        }
        for a in acked.iter().filter(|a| want(a).contains(name)) {
            match ok.get(a.id.as_str()) {
                None => f
                    .problems
                    .push(format!("{name} never handled event {} #{}", a.id, a.index)),
                Some(attempts) if name == "fail-first" && attempts.iter().all(|&n| n < 2) => {
                    f.problems.push(format!(
                        "fail-first succeeded on attempt(s) {attempts:?} of event {}; it fails attempt 1",
                        a.id
                    ))
                }
                Some(_) => {}
            }
        }
    }
    f
}

/// The always-failing handler: exactly one dead letter per event it
/// matches, holding every attempt's error, and no success.
fn check_dead_letters(
    d: &Daemon,
    acked: &[Acked],
    want: &dyn Fn(&Acked) -> BTreeSet<&'static str>,
    ok: &BTreeMap<&str, Vec<u64>>,
    f: &mut Findings,
) {
    if !ok.is_empty() {
        f.problems
            .push(format!("the trapping handler succeeded {} times", ok.len()));
    }
    let dead = all_pages(
        d,
        "/v1/dead-letters?handler=broken&limit=1000",
        "dead_letters",
    );
    let mut per_event: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for dl in &dead {
        per_event
            .entry(dl["event"]["id"].as_str().unwrap_or_default())
            .or_default()
            .push(dl);
    }
    for a in acked.iter().filter(|a| want(a).contains("broken")) {
        match per_event.get(a.id.as_str()).map(Vec::as_slice) {
            None | Some([]) => f
                .problems
                .push(format!("event {} has no dead letter yet", a.id)),
            Some([dl]) => {
                let errors = dl["errors"].as_array().map_or(0, Vec::len);
                if errors != BROKEN_ATTEMPTS {
                    f.problems.push(format!(
                        "dead letter of {} holds {errors} errors, not {BROKEN_ATTEMPTS}",
                        a.id
                    ));
                }
            }
            Some(many) => {
                f.problems
                    .push(format!("event {} has {} dead letters", a.id, many.len()))
            }
        }
    }
}

#[test]
fn acknowledged_events_survive_kill_9() {
    survive_kill_9("sync, sled inbox", "[store]\ninbox = \"sled\"\n");
}

#[test]
fn acknowledged_events_survive_kill_9_with_group_commit() {
    survive_kill_9(
        "group commit, sled inbox",
        "[store]\ninbox = \"sled\"\ndurability = \"group\"\ngroup_commit = \"5ms\"\n",
    );
}

#[test]
fn acknowledged_events_survive_kill_9_on_the_log_inbox() {
    survive_kill_9("sync (the default), log inbox (the default)", "");
}

#[test]
fn acknowledged_events_survive_kill_9_on_the_log_inbox_with_group_commit() {
    survive_kill_9(
        "group commit, log inbox",
        "[store]\ninbox = \"log\"\ndurability = \"group\"\ngroup_commit = \"5ms\"\n",
    );
}

/// Deploys [`handlers`].
fn deploy_handlers(d: &Daemon) {
    let deployed: Vec<&str> = handlers().iter().map(|h| h.0).collect();
    assert_eq!(deployed, NAMES);
    for (name, component, subscription, delivery) in handlers() {
        let manifest = json!({"name": name, "subscription": subscription, "delivery": delivery});
        d.deploy(&manifest.to_string(), &component).expect(201);
    }
}

/// The control: with `durability = "none"` an acknowledged event is not on
/// disk yet, a crash right after the answer loses it, and the checks the
/// tests above pass must see that. They can fail. (With `sync` the same
/// test fails: nothing is lost.)
#[test]
fn the_checks_see_events_lost_without_durability() {
    detect_loss("[store]\ninbox = \"sled\"\ndurability = \"none\"\n", false);
}

/// The control on the log inbox. There `none` still writes the batch to
/// the segment file before answering and only skips the fsync, so the
/// page cache keeps it through `kill -9`; what a power loss would drop is
/// dropped by hand: the newest segment is cut back to where it ended before
/// the batch (nothing after that point was synced).
#[test]
fn the_checks_see_events_lost_without_durability_on_the_log_inbox() {
    detect_loss("[store]\ninbox = \"log\"\ndurability = \"none\"\n", true);
}

/// Tries at most this many crashes right after an answer.
const CONTROL_TRIES: usize = 3;

/// Publishes a batch, kills the daemon the moment it answers 202 (sled
/// writes back every 500 ms; the kill comes within milliseconds), and
/// restarts it, until an acknowledged event is gone (`GET /v1/events/{id}`
/// is 404: no pending delivery, no attempt). Then [`check`] must name
/// every lost event, and only events of that batch, once the others
/// settled. `power_loss`: also drop the log inbox's unsynced tail.
fn detect_loss(config: &str, power_loss: bool) {
    let mut d = Daemon::start_with_log(config, "info,hookbox::handler=warn");
    deploy_handlers(&d);
    // A graceful stop writes everything: the deploys are not what is lost.
    d.restart();
    let mut acked = Vec::new();
    let mut lost = BTreeSet::new();
    let mut crashed = BTreeSet::new();
    for t in 0..CONTROL_TRIES {
        let inbox = d.data_dir().join("inbox");
        let tail = power_loss.then(|| newest_segment(&inbox));
        let batch: Vec<Value> = (t * BATCH..(t + 1) * BATCH).map(input).collect();
        let r = d.publish(&Value::Array(batch), false).expect(202);
        d.kill9();
        if let Some((path, len)) = &tail {
            cut_back(&inbox, path, *len);
        }
        d.restart();
        crashed.clear();
        for (k, e) in r.json["events"].as_array().unwrap().iter().enumerate() {
            let id = e["id"].as_str().unwrap().to_string();
            crashed.insert(id.clone());
            if d.get(&format!("/v1/events/{id}")).status == 404 {
                lost.insert(id.clone());
            }
            acked.push(Acked {
                index: t * BATCH + k,
                id,
                duplicate: false,
                handlers: Vec::new(),
            });
        }
        if !lost.is_empty() {
            break;
        }
    }
    assert!(
        !lost.is_empty(),
        "no acknowledged event was lost in {CONTROL_TRIES} crashes right after the answer"
    );
    let problems = d.wait_until("the checks to settle on the lost events", || {
        let f = check(&d, &acked);
        let named = |id: &String| f.problems.iter().any(|p| p.contains(id.as_str()));
        let of_crash = |p: &String| crashed.iter().any(|id| p.contains(id.as_str()));
        (lost.iter().all(named) && f.problems.iter().all(of_crash)).then_some(f.problems)
    });
    eprintln!(
        "control ({config:?}): {} of {} events of the last batch lost; {} problems found",
        lost.len(),
        crashed.len(),
        problems.len()
    );
}

/// The newest segment file of the log inbox in `dir`, and its length.
fn newest_segment(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    let newest = segments(dir).pop().expect("a segment file");
    let len = std::fs::metadata(&newest).expect("segment metadata").len();
    (newest, len)
}

/// The segment files in `dir`, oldest first (their names are zero-padded ids).
fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("the inbox directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    out.sort();
    out
}

/// Drops what was written to the inbox log after `path` was `len` bytes
/// long: the segment is cut back, newer ones are removed.
fn cut_back(dir: &std::path::Path, path: &std::path::Path, len: u64) {
    for seg in segments(dir) {
        if seg.as_path() > path {
            std::fs::remove_file(&seg).expect("removing a newer segment");
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("cutting the segment back");
}

/// The crash scenario against a daemon started with `config` (TOML).
fn survive_kill_9(mode: &str, config: &str) {
    // The handlers' own log lines (forwarded at info) would push the
    // `Dispatcher loaded` lines counted below out of the stderr tail.
    let mut d = Daemon::start_with_log(config, "info,hookbox::handler=warn");
    deploy_handlers(&d);

    let url = Arc::new(Mutex::new(d.url().to_string()));
    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (url, acked) = (url.clone(), acked.clone());
        std::thread::spawn(move || publish_all(url, acked))
    };
    let mut kills = 0;
    for (after, pause_ms) in KILLS {
        let deadline = Instant::now() + PHASE;
        while acked.load(Ordering::SeqCst) < after && !publisher.is_finished() {
            assert!(Instant::now() < deadline, "publishing stalled at {after}");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(pause_ms));
        d.kill9();
        kills += 1;
        d.restart();
        *url.lock().unwrap() = d.url().to_string();
    }
    let acked = publisher.join().expect("the publisher finished");
    assert_eq!(acked.len(), EVENTS);
    // Right after the last batch the retries of its tickets are scheduled
    // 1.5 s ahead: a crash now must not lose them.
    d.kill9();
    kills += 1;
    d.restart();

    let ids: BTreeSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), EVENTS, "an idempotency key was accepted twice");
    // The idempotency keys survived the crashes too: the first batch again
    // is answered with the original ids, and nothing is accepted twice.
    let again: Vec<Value> = (0..BATCH).map(input).collect();
    let r = d.publish(&Value::Array(again), false).expect(202);
    for (a, e) in acked.iter().zip(r.json["events"].as_array().unwrap()) {
        assert_eq!(
            (&e["id"], &e["duplicate"]),
            (&json!(a.id), &json!(true)),
            "{r}"
        );
    }
    for a in acked.iter().filter(|a| !a.duplicate) {
        let i = input(a.index);
        let want = expected(i["type"].as_str().unwrap(), i["tenant"].as_str().unwrap());
        let got: BTreeSet<&str> = a.handlers.iter().map(String::as_str).collect();
        assert_eq!(got, want, "routing of {i}");
    }

    let deadline = Instant::now() + PHASE;
    let findings = loop {
        let f = check(&d, &acked);
        if f.problems.is_empty() || Instant::now() >= deadline {
            break f;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let resent = acked.iter().filter(|a| a.duplicate).count();
    let recovered = recovered(&d.stderr_tail());
    eprintln!(
        "crash test, durability {mode}: {EVENTS} events, {kills} kills, unfinished deliveries found at each \
         restart {recovered:?}, {resent} events answered as duplicates of a resent batch, \
         {} delivery log lines, {} deliveries repeated after a crash",
        findings.log_lines, findings.redelivered
    );
    // Every kill interrupted work: the test is not passing vacuously.
    assert_eq!(
        recovered.len(),
        kills + 1,
        "one `Dispatcher loaded` line per start"
    );
    assert!(recovered[1..].iter().all(|&n| n > 0), "{recovered:?}");
    assert!(
        findings.problems.is_empty(),
        "{} problems after {PHASE:?}, the first ones:\n{}",
        findings.problems.len(),
        findings.problems[..findings.problems.len().min(20)].join("\n")
    );
}

/// `recovered=N` of each `Dispatcher loaded` line of the daemon's log: the
/// unfinished deliveries each start found in the store.
fn recovered(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("Dispatcher loaded"))
        .filter_map(|l| {
            let rest = &l[l.find("recovered=")? + "recovered=".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// `GET /v1/handlers/{name}`: the record, active version, stats and circuit.
fn handler(d: &Daemon, name: &str) -> Value {
    d.get(&format!("/v1/handlers/{name}")).expect(200).json
}

#[test]
fn breaker_parks_deliveries_then_auto_disables() {
    let mut d = Daemon::start();
    // Subscribed to Hookbox's own events too: news about itself must not
    // reach it (no feedback loop).
    let doomed = |d: &Daemon, component: &[u8]| {
        let m = json!({
            "name": "doomed",
            "subscription": {"events": ["job", "hookbox.handler.*"]},
            // One delivery at a time, so the failures that open the
            // breaker are exactly the first three attempts.
            "delivery": {
                "concurrency": 1,
                "max_attempts": 50, "initial_backoff_ms": 20, "max_backoff_ms": 20, "jitter": 0.0,
                "breaker": {"consecutive_failures": 3, "failure_rate": 0.0, "cooldown_ms": 300,
                            "auto_disable_opens": 3, "auto_disable_window_ms": 600_000},
            },
        });
        d.deploy(&m.to_string(), component).expect(201);
    };
    doomed(&d, &read(guests::TRAP));
    // Fails on every Hookbox event once, so each one is kept, whole, as a
    // dead letter to inspect.
    let watcher = json!({
        "name": "watcher",
        "subscription": {"events": ["hookbox.handler.*"]},
        "delivery": {"max_attempts": 1, "breaker": {"consecutive_failures": 0, "failure_rate": 0.0}},
    });
    d.deploy(&watcher.to_string(), &read(guests::TRAP))
        .expect(201);

    let jobs: Vec<Value> = (0..5)
        .map(|n| json!({"type": "job", "payload": {"n": n}}))
        .collect();
    let r = d.publish(&Value::Array(jobs), false).expect(202);
    let ids: Vec<String> = r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();

    // Three failures open it; each trial after 300 ms fails and reopens it;
    // the third opening disables it.
    let h = d.wait_until("doomed to be disabled", || {
        let h = handler(&d, "doomed");
        (h["handler"]["enabled"] == false).then_some(h)
    });
    let reason = h["handler"]["disabled_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("circuit breaker opened 3 times"),
        "{reason}"
    );
    assert_eq!(h["circuit"]["opened_total"], 3, "{h}");
    assert_ne!(h["circuit"]["state"], "closed", "{h}");
    let stats = d.get("/v1/stats").expect(200).json;
    let circuits = stats["circuits"].as_array().expect("circuits in stats");
    assert!(
        circuits
            .iter()
            .any(|c| c["handler"] == "doomed" && c["opened_total"] == 3),
        "{stats}"
    );
    // The breaker series change with the breaker's state, before the
    // disable is stored: they agree with what was read above.
    let metrics = d.metrics();
    let series = |name: &str| hookbox_tests::daemon::metric(&metrics, name);
    assert_eq!(
        series("hookbox_circuit_opened_total{handler=\"doomed\"}"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        series("hookbox_circuit_open{handler=\"doomed\"}"),
        Some(1.0),
        "{metrics}"
    );
    // The disable counter moves just after the store does: wait for it.
    let disabled = d.wait_until("the auto-disable to be counted", || {
        d.metric("hookbox_handlers_auto_disabled_total{handler=\"doomed\"}")
            .filter(|&n| n > 0.0)
    });
    assert_eq!(disabled, 1.0);
    assert_eq!(
        d.metric("hookbox_circuit_open{handler=\"doomed\"}"),
        Some(1.0),
        "a disabled handler's breaker stays open"
    );
    let audit = d.get("/v1/audit").expect(200).json;
    assert!(
        audit["entries"]
            .as_array()
            .expect("audit entries")
            .iter()
            .any(|e| e["actor"] == "hookbox"
                && e["action"] == "disable"
                && e["target"] == "doomed"),
        "{audit}"
    );

    // The breaker held the deliveries: three failures, then one per trial.
    let tried = |d: &Daemon| all_pages(d, "/v1/logs?handler=doomed&limit=1000", "entries");
    let attempts = tried(&d);
    assert_eq!(attempts.len(), 5, "{attempts:?}");
    assert!(
        attempts.iter().all(|e| e["event_type"] == "job"),
        "{attempts:?}"
    );
    let dead = d.get("/v1/dead-letters?handler=doomed").expect(200).json;
    assert_eq!(
        dead["dead_letters"],
        json!([]),
        "waiting, not dead-lettered"
    );

    // The news went out as events, from `hookbox`, about `doomed`.
    let news = d.wait_until("the watcher to see four Hookbox events", || {
        let dead = all_pages(
            &d,
            "/v1/dead-letters?handler=watcher&limit=1000",
            "dead_letters",
        );
        (dead.len() >= 4).then_some(dead)
    });
    let mut types: Vec<&str> = news
        .iter()
        .map(|x| x["event"]["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "hookbox.handler.circuit_opened",
            "hookbox.handler.circuit_opened",
            "hookbox.handler.circuit_opened",
            "hookbox.handler.disabled",
        ]
    );
    for x in &news {
        let e = &x["event"];
        assert_eq!(
            (&e["source"], &e["tenant"]),
            (&json!("hookbox"), &json!("")),
            "{e}"
        );
        assert_eq!(e["payload"]["handler"], "doomed", "{e}");
        assert!(
            !e["payload"]["reason"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{e}"
        );
    }

    // A crash: the disabled handler's deliveries are still pending after it.
    d.kill9();
    d.restart();
    for id in &ids {
        let e = d.get(&format!("/v1/events/{id}")).expect(200).json;
        assert_eq!(e["complete"], false, "event {id} is still pending: {e}");
    }
    assert_eq!(handler(&d, "doomed")["handler"]["enabled"], false);

    // Fixed and re-enabled by an operator: every job runs, once, on the new code.
    doomed(&d, &read(guests::COUNTER));
    d.post("/v1/handlers/doomed/enable", &json!({})).expect(200);
    d.wait_until("the five jobs to be delivered", || {
        let ok = tried(&d).iter().filter(|e| e["outcome"] == "ok").count();
        (ok == ids.len()).then_some(())
    });
    let h = handler(&d, "doomed");
    assert_eq!(h["circuit"]["state"], "closed", "{h}");
    assert_eq!(h["handler"]["enabled"], true, "{h}");

    // The watcher's dead letters, replayed in bulk from the CLI onto a
    // version that handles them.
    d.deploy(&watcher.to_string(), &read(guests::COUNTER))
        .expect(201);
    let out = d
        .cli(&[
            "dlq",
            "replay",
            "--handler",
            "watcher",
            "--since",
            "1h",
            "--json",
        ])
        .expect(0);
    assert_eq!(out.json(), json!({"replayed": 4, "skipped": 0}), "{out}");
    d.wait_until("the replayed news to be handled", || {
        let log = all_pages(&d, "/v1/logs?handler=watcher&limit=1000", "entries");
        (log.iter().filter(|e| e["outcome"] == "ok").count() == 4).then_some(())
    });
    let dead = d.get("/v1/dead-letters?handler=watcher").expect(200).json;
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
}

/// Events in the backlog run.
const BACKLOG: usize = 1_000_000;
/// Bound on a start over the backlog (a debug build reads it back slowly;
/// the release figure is in BENCHMARKS.md).
const BACKLOG_START: Duration = Duration::from_secs(300);
/// Events per append while filling the backlog.
const BACKLOG_BATCH: usize = 10_000;

/// A backlog of [`BACKLOG`] undelivered events on the log inbox (the
/// default) survives a restart and a `kill -9` while it drains: the daemon
/// comes back each time with every event still to deliver or delivered.
/// The backlog is appended through the library (the daemon stopped), as
/// the daemon's accept appends it, because publishing a million events
/// over HTTP to a debug build would take most of CI's budget; the events
/// are small so the log stays ≈ 100 MB. Prints the time from starting the
/// process to it listening, which includes reading the log back.
#[test]
fn a_backlog_of_a_million_events_survives_kill_9() {
    let mut d = Daemon::start_with_log(
        "[dispatch]\nqueue_capacity = 2000000\n",
        "info,hookbox::handler=warn",
    );
    let manifest = json!({"name": "bulk", "subscription": {"events": ["bulk.*"]}});
    d.deploy(&manifest.to_string(), &read(guests::COUNTER))
        .expect(201);
    d.stop();

    let started = Instant::now();
    let ids = fill_backlog(&d.data_dir());
    let filled = started.elapsed();
    let size = dir_size(&d.data_dir().join("inbox"));

    let started = Instant::now();
    d.restart_within(BACKLOG_START);
    let clean = started.elapsed();
    d.wait_until("the first deliveries of the backlog", || {
        (delivered(&d, "bulk") >= 1000).then_some(())
    });
    d.kill9();
    let started = Instant::now();
    d.restart_within(BACKLOG_START);
    let crashed = started.elapsed();
    d.stop();
    eprintln!(
        "backlog of {BACKLOG} events: appended in {filled:.1?} ({:.0} MiB of inbox log); \
         start → listening with all of it queued: {clean:.2?} after a clean stop, \
         {crashed:.2?} after kill -9 mid-drain",
        size as f64 / (1 << 20) as f64
    );

    // Every event is delivered (an `ok` line) or still to be delivered.
    let store =
        Store::open(&d.data_dir().join("store"), StoreOptions::default()).expect("the store opens");
    let inbox = LogInbox::open(store.clone(), &d.data_dir().join("inbox")).expect("the log opens");
    inbox.replay().expect("the replay");
    let mut seen: std::collections::HashSet<String> = inbox
        .take_ready(usize::MAX)
        .expect("the open deliveries")
        .into_iter()
        .map(|r| r.pending.event_id)
        .collect();
    let open = seen.len();
    let mut q = LogQuery {
        handler: Some("bulk".into()),
        outcome: Some("ok".into()),
        limit: hookbox::store::MAX_PAGE,
        ..LogQuery::default()
    };
    let mut logged = 0;
    loop {
        let page = store.logs(&q).expect("a page of the delivery log");
        logged += page.entries.len();
        seen.extend(page.entries.into_iter().map(|e| e.event_id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let lost: Vec<&String> = ids
        .iter()
        .filter(|id| !seen.contains(*id))
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "events neither delivered nor open ({open} open, {logged} delivered), e.g. {lost:?}"
    );
    // The kill may take the last lines written behind; those deliveries
    // are among the open ones.
    assert!(logged > 0, "deliveries ran and were logged: {logged}");
}

/// Appends [`BACKLOG`] small `bulk.item` events routed to `bulk` to the
/// stopped daemon's log inbox; their ids.
fn fill_backlog(data: &std::path::Path) -> Vec<String> {
    let opts = StoreOptions {
        durability: Durability::None,
        ..StoreOptions::default()
    };
    let store = Store::open(&data.join("store"), opts).expect("the store opens");
    let inbox = LogInbox::open(store, &data.join("inbox")).expect("the log opens");
    let mut ids = Vec::with_capacity(BACKLOG);
    for start in (0..BACKLOG).step_by(BACKLOG_BATCH) {
        let batch: Vec<(Arc<Event>, Vec<String>)> = (start..start + BACKLOG_BATCH)
            .map(|n| {
                let event = EventInput::new("bulk.item", &json!({"n": n}))
                    .accept("backlog", 0, 1 << 10)
                    .expect("a valid event");
                (Arc::new(event), vec!["bulk".to_string()])
            })
            .collect();
        ids.extend(inbox.append(&batch).expect("the append"));
    }
    inbox.flush().expect("the flush");
    ids
}

/// Successful deliveries to `handler` so far (its live stats).
fn delivered(d: &Daemon, handler: &str) -> u64 {
    let r = d.get(&format!("/v1/handlers/{handler}")).expect(200);
    r.json["stats"]["ok"].as_u64().unwrap_or(0)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

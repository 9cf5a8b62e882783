//! The SDK's fake host against the real one: one set of scenarios, each
//! just inside or just past a limit, run by the same handler
//! (`tests/sdk-guests/limits-probe`) natively on `hookbox_sdk::testing::
//! TestHost` and as a component on the runtime, must end with the same
//! outcome, the same retry flag, and the same log records and emitted
//! events kept. And the SDK's default limits and overheads are the host's.

use hookbox::runtime::LogStream;
use hookbox_sdk::testing::{self, TestHost};
use hookbox_tests::{Delivery, event, guests, module};
use limits_probe::Probe;
use serde_json::Value;

/// The scenarios, their limits and what each must give, shared with the
/// Python and JavaScript SDKs' tests (`guest-sdk/{python,js}`), so every
/// TestHost is held to the real host's outcomes.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sdk-limits.json");

fn fixture() -> Value {
    let text = std::fs::read_to_string(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"))
}

/// The limits both hosts run the scenarios under: small, so each boundary
/// is cheap to reach.
fn sdk_limits() -> testing::Limits {
    let l = &fixture()["limits"];
    let n = |k: &str| {
        l[k].as_u64()
            .unwrap_or_else(|| panic!("limits.{k} in {FIXTURE}"))
    };
    testing::Limits {
        log_bytes: n("log_bytes"),
        emits: n("emits") as u32,
        emit_bytes: n("emit_bytes"),
        kv_value_bytes: n("kv_value_bytes"),
        kv_quota_bytes: n("kv_quota_bytes"),
        kv_quota_keys: n("kv_quota_keys"),
        result_bytes: n("result_bytes"),
    }
}

/// The scenarios: (what, the probe's payload, what both hosts must give).
fn scenarios() -> Vec<(String, Value, Seen)> {
    let f = fixture();
    f["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| {
            let seen = &s["seen"];
            (
                s["what"].as_str().expect("what").to_string(),
                s["payload"].clone(),
                Seen {
                    outcome: seen["outcome"].as_str().expect("outcome").to_string(),
                    retryable: seen["retryable"].as_bool().expect("retryable"),
                    logs: seen["logs"].as_u64().expect("logs") as usize,
                    emitted: seen["emitted"].as_u64().expect("emitted") as usize,
                },
            )
        })
        .collect()
}

/// What a delivery came to, comparable across the two hosts.
#[derive(Debug, PartialEq)]
struct Seen {
    outcome: String,
    retryable: bool,
    logs: usize,
    emitted: usize,
}

fn native(payload: &Value) -> Seen {
    let mut host = TestHost::new();
    host.set_limits(sdk_limits());
    let e = hookbox_sdk::Event::builder("probe")
        .tenant("acme")
        .payload_json(payload)
        .build();
    let outcome = host.deliver::<Probe>(e);
    Seen {
        outcome: outcome.name().to_string(),
        retryable: matches!(&outcome, testing::Outcome::HandlerError(e) if e.retryable)
            || outcome.name() == "trap",
        logs: host.logs().len(),
        emitted: host.emitted().len(),
    }
}

fn on_the_host(payload: &Value) -> Seen {
    let sdk = sdk_limits();
    let mut d = Delivery::new(1).limits(|l| {
        l.log_bytes = sdk.log_bytes;
        l.emits = sdk.emits;
        l.emit_bytes = sdk.emit_bytes;
        l.kv_value_bytes = sdk.kv_value_bytes;
        l.kv_quota_bytes = sdk.kv_quota_bytes;
        l.kv_quota_keys = sdk.kv_quota_keys;
        l.result_bytes = sdk.result_bytes;
    });
    d.event = event("probe", "acme", payload);
    let (_, path) = guests::SDK_GUESTS
        .iter()
        .find(|(name, _)| *name == "limits-probe")
        .expect("build.rs built limits-probe");
    let report = d.run(&module(path));
    Seen {
        outcome: report.outcome.to_string(),
        retryable: report.retryable,
        // `log` records; what the guest prints (a panic's message on
        // stderr) is the test's own output natively.
        logs: report
            .logs
            .iter()
            .filter(|r| r.stream == LogStream::Log)
            .count(),
        // Kept only when the delivery succeeds, as the daemon does.
        emitted: if report.outcome.to_string() == "ok" {
            report.emitted.len()
        } else {
            0
        },
    }
}

#[test]
fn test_host_and_real_host_agree_on_every_limit() {
    let mut disagree = Vec::new();
    for (what, payload, want) in scenarios() {
        let (native, host) = (native(&payload), on_the_host(&payload));
        assert_eq!(host, want, "{what}: the real host ({payload})");
        if native != host {
            disagree.push(format!(
                "{what} ({payload}): TestHost {native:?}, host {host:?}"
            ));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

#[test]
fn test_host_defaults_are_the_hosts() {
    let host = hookbox::limits::Limits::default();
    let sdk = testing::Limits::default();
    assert_eq!(
        (
            sdk.log_bytes,
            u64::from(sdk.emits),
            sdk.emit_bytes,
            sdk.kv_value_bytes,
            sdk.kv_quota_bytes,
            sdk.kv_quota_keys,
            sdk.result_bytes
        ),
        (
            host.log_bytes,
            u64::from(host.emits),
            host.emit_bytes,
            host.kv_value_bytes,
            host.kv_quota_bytes,
            host.kv_quota_keys,
            host.result_bytes
        )
    );
    assert_eq!(testing::EMIT_OVERHEAD, hookbox::limits::EMIT_OVERHEAD);
    assert_eq!(
        testing::EMIT_ENTRY_OVERHEAD,
        hookbox::limits::EMIT_ENTRY_OVERHEAD
    );
    // The log overheads are the host runtime's own: the boundary scenarios
    // above (one byte inside, one past) hold them to it.
    let d = &fixture()["defaults"];
    let n = |k: &str| {
        d[k].as_u64()
            .unwrap_or_else(|| panic!("defaults.{k} in {FIXTURE}"))
    };
    assert_eq!(
        [
            n("log_bytes"),
            n("emits"),
            n("emit_bytes"),
            n("kv_value_bytes"),
            n("kv_quota_bytes"),
            n("kv_quota_keys"),
            n("result_bytes"),
            n("record_overhead"),
            n("field_overhead"),
            n("emit_overhead"),
            n("emit_entry_overhead"),
        ],
        [
            host.log_bytes,
            u64::from(host.emits),
            host.emit_bytes,
            host.kv_value_bytes,
            host.kv_quota_bytes,
            host.kv_quota_keys,
            host.result_bytes,
            testing::RECORD_OVERHEAD,
            testing::FIELD_OVERHEAD,
            hookbox::limits::EMIT_OVERHEAD,
            hookbox::limits::EMIT_ENTRY_OVERHEAD,
        ],
        "the defaults in {FIXTURE}, which the Python and JS SDKs' tests hold theirs to"
    );
}

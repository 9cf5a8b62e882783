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
use serde_json::{Value, json};

/// The limits both hosts run the scenarios under: small, so each boundary
/// is cheap to reach.
fn sdk_limits() -> testing::Limits {
    testing::Limits {
        log_bytes: 1000,
        emits: 3,
        emit_bytes: 2000,
        kv_value_bytes: 100,
        kv_quota_bytes: 300,
        kv_quota_keys: 4,
        result_bytes: 50,
    }
}

/// The scenarios: (what, the probe's payload, the outcome both must give).
fn scenarios() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("nothing", json!({}), "ok"),
        // 10 records of 64 + 36 bytes: 1000 exactly, then one byte more.
        (
            "log at the budget",
            json!({"logs": {"count": 10, "bytes": 36}}),
            "ok",
        ),
        (
            "log past it",
            json!({"logs": {"count": 10, "bytes": 37}}),
            "log_limit",
        ),
        // 4 × (64 + 10 + 48 + "f0" + 126) = 1000, then 1004.
        (
            "log fields at the budget",
            json!({"logs": {"count": 4, "bytes": 10, "fields": 1, "field_bytes": 126}}),
            "ok",
        ),
        (
            "log fields past it",
            json!({"logs": {"count": 4, "bytes": 10, "fields": 1, "field_bytes": 127}}),
            "log_limit",
        ),
        ("emits at the count", json!({"emits": {"count": 3}}), "ok"),
        (
            "emits past it",
            json!({"emits": {"count": 4}}),
            "emit_limit",
        ),
        // 2 × ("probe.out" 9 + payload 733 + 2 + 256) = 2000, then 2002.
        (
            "emit bytes at the budget",
            json!({"emits": {"count": 2, "bytes": 733}}),
            "ok",
        ),
        (
            "emit bytes past it",
            json!({"emits": {"count": 2, "bytes": 734}}),
            "emit_bytes_limit",
        ),
        // Metadata: "m0" + "v" + 64 per entry: 2 × (267 + 667 + 67) = 2002.
        (
            "emit metadata past the budget",
            json!({"emits": {"count": 2, "bytes": 667, "metadata": 1}}),
            "emit_bytes_limit",
        ),
        (
            "emit metadata at the budget",
            json!({"emits": {"count": 2, "bytes": 666, "metadata": 1}}),
            "ok",
        ),
        (
            "kv value at the limit",
            json!({"kv_set": [["k", 99]]}),
            "ok",
        ),
        (
            "kv value past it",
            json!({"kv_set": [["k", 100]]}),
            "kv_limit",
        ),
        (
            "kv key past it",
            json!({"kv_get": ["k".repeat(101)]}),
            "kv_limit",
        ),
        // Quotas: 4 keys "a".."d" of 1 + 74 bytes = 300 bytes exactly.
        (
            "kv quotas at the limit",
            json!({"kv_set": [["a", 74], ["b", 74], ["c", 74], ["d", 74]]}),
            "ok",
        ),
        (
            "kv bytes past the quota",
            json!({"kv_set": [["a", 74], ["b", 74], ["c", 74], ["d", 75]]}),
            "kv_limit",
        ),
        (
            "kv keys past the quota",
            json!({"kv_set": [["a", 1], ["b", 1], ["c", 1], ["d", 1], ["e", 1]]}),
            "kv_limit",
        ),
        (
            "kv overwrites within the quota",
            json!({"kv_set": [["a", 74], ["b", 74], ["c", 74], ["d", 74], ["a", 74], ["a", 10]]}),
            "ok",
        ),
        (
            "error at the limit",
            json!({"error_bytes": 50}),
            "handler_error",
        ),
        (
            "retryable error",
            json!({"error_bytes": 5, "retryable": true}),
            "handler_error",
        ),
        (
            "error past the limit",
            json!({"error_bytes": 51}),
            "result_limit",
        ),
        ("panic", json!({"panic": "probe panics"}), "trap"),
        // A limit ends the delivery: nothing it emitted is kept.
        (
            "emits then a limit",
            json!({"emits": {"count": 1}, "error_bytes": 51}),
            "result_limit",
        ),
    ]
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
        assert_eq!(host.outcome, want, "{what}: the real host ({payload})");
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
}

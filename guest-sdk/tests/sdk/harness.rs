//! The native fake host through the public API: KV (TTL, saturation, CAS,
//! tenant namespaces), emit, config, logs and the clock, as handler code
//! sees them.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use hookbox_sdk::emit::{EmitError, NewEvent, emit};
use hookbox_sdk::log::Level;
use hookbox_sdk::testing::TestHost;
use hookbox_sdk::{Event, EventBuilder, Handler, HandlerError, Priority, kv};
use serde::Deserialize;

#[test]
fn kv_ttl_follows_the_fake_clock() {
    let mut host = TestHost::new();
    host.within("acme", || {
        kv::set("session", "s1", Some(Duration::from_millis(1_500)));
        kv::set("forever", "f", None);
    });
    host.advance(Duration::from_millis(1_499));
    assert_eq!(host.kv_get_string("acme", "session").as_deref(), Some("s1"));
    host.advance(Duration::from_millis(1));
    host.within("acme", || {
        assert_eq!(kv::get("session"), None);
        assert!(!kv::delete("session"), "expired counts as absent");
        assert_eq!(kv::get_string("forever").as_deref(), Some("f"));
    });
    assert_eq!(host.kv_keys("acme"), vec!["forever".to_owned()]);
}

#[test]
fn preloaded_ttl_and_set_clock() {
    let mut host = TestHost::new();
    host.set_now_ms(10_000);
    host.kv_set("acme", "k", "v", Some(Duration::from_secs(1)));
    assert_eq!(host.within("acme", hookbox_sdk::now_ms), 10_000);
    host.set_now_ms(11_000);
    assert_eq!(host.kv_get("acme", "k"), None);
}

#[test]
fn kv_increment_saturates_and_reads_as_text() {
    let mut host = TestHost::new();
    host.kv_set("acme", "big", (i64::MAX - 1).to_string(), None);
    host.kv_set("acme", "text", "hello", None);
    host.within("acme", || {
        assert_eq!(kv::increment("big", 5), i64::MAX);
        assert_eq!(kv::increment("big", -1), i64::MAX - 1);
        assert_eq!(kv::increment("small", i64::MIN), i64::MIN);
        assert_eq!(kv::increment("small", -10), i64::MIN);
        assert_eq!(kv::increment("text", 3), 3, "a non-number counts as 0");
        assert_eq!(kv::get_string("text").as_deref(), Some("3"));
    });
}

#[test]
fn kv_compare_and_swap() {
    let mut host = TestHost::new();
    host.within("acme", || {
        assert!(kv::compare_and_swap("lock", None, Some(b"a")));
        assert!(!kv::compare_and_swap("lock", None, Some(b"b")));
        assert!(!kv::compare_and_swap("lock", Some(b"b"), Some(b"c")));
        assert!(kv::compare_and_swap("lock", Some(b"a"), Some(b"c")));
        assert!(kv::compare_and_swap("lock", Some(b"c"), None));
        assert_eq!(kv::get("lock"), None);
    });
}

#[test]
fn kv_json_round_trip_and_mismatch() {
    let mut host = TestHost::new();
    host.within("acme", || {
        let value = BTreeMap::from([("a".to_owned(), 1u32)]);
        kv::set_json("map", &value, None).unwrap();
        assert_eq!(
            kv::get_json::<BTreeMap<String, u32>>("map").unwrap(),
            Some(value)
        );
        assert_eq!(kv::get_json::<u32>("missing").unwrap(), None);
        let err = kv::get_json::<Vec<u32>>("map").unwrap_err();
        assert!(!err.retryable && err.message.contains("`map`"), "{err}");
    });
}

/// Counts deliveries per tenant; fails on demand after counting.
struct Counter;

impl Handler for Counter {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let n = kv::increment("count", 1);
        emit(NewEvent::new("counted").payload(&serde_json::json!({ "n": n })))?;
        match event.metadata("fail") {
            Some("retry") => Err(HandlerError::retryable("asked to fail")),
            Some(_) => Err(HandlerError::fatal("asked to fail")),
            None => Ok(()),
        }
    }
}

#[test]
fn run_uses_the_event_tenant_namespace() {
    let mut host = TestHost::new();
    for tenant in ["a", "a", "b"] {
        host.run::<Counter>(Event::builder("x").tenant(tenant).build())
            .unwrap();
    }
    assert_eq!(host.kv_get_string("a", "count").as_deref(), Some("2"));
    assert_eq!(host.kv_get_string("b", "count").as_deref(), Some("1"));
    let tenants: Vec<&str> = host.emitted().iter().map(|e| e.tenant.as_str()).collect();
    assert_eq!(tenants, ["a", "a", "b"]);
}

#[test]
fn emits_of_failed_deliveries_are_discarded() {
    let mut host = TestHost::new();
    let failing = Event::builder("x")
        .tenant("a")
        .metadata("fail", "retry")
        .build();
    let err = host.run::<Counter>(failing).unwrap_err();
    assert!(err.retryable);
    assert!(host.emitted().is_empty());
    assert_eq!(
        host.kv_get_string("a", "count").as_deref(),
        Some("1"),
        "KV writes stay"
    );
    host.run::<Counter>(Event::builder("x").tenant("a").build())
        .unwrap();
    let emitted = host.take_emitted();
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].payload_value(), serde_json::json!({"n": 2}));
    assert!(host.emitted().is_empty());
}

#[test]
fn emit_fields_and_defaults() {
    let mut host = TestHost::new();
    host.within("acme", || {
        emit(NewEvent::new("plain")).unwrap();
        // Another tenant is refused, as on the host.
        let refused = emit(NewEvent::new("elsewhere").tenant("other")).unwrap_err();
        assert!(format!("{refused:?}").contains("only into that tenant"));
        emit(
            NewEvent::new("full")
                .tenant("acme")
                .raw_payload(r#"{"k": [1]}"#)
                .metadata("m", "1")
                .key("order-7")
                .priority(Priority::Critical),
        )
        .unwrap();
    });
    let [plain, full] = host.emitted() else {
        panic!("{:?}", host.emitted())
    };
    assert_eq!(
        (plain.tenant.as_str(), plain.priority),
        ("acme", Priority::Normal)
    );
    assert_eq!(plain.payload, "{}");
    assert_eq!(plain.key, None);
    assert_eq!(full.tenant, "acme");
    assert_eq!(full.metadata("m"), Some("1"));
    assert_eq!(full.key.as_deref(), Some("order-7"));
    assert_eq!(full.priority, Priority::Critical);
    #[derive(Deserialize)]
    struct Full {
        k: Vec<u32>,
    }
    assert_eq!(full.payload::<Full>().k, vec![1]);
}

#[test]
fn invalid_emits_are_refused() {
    let mut host = TestHost::new();
    host.within("acme", || {
        let not_json = emit(NewEvent::new("x").raw_payload("{oops"));
        assert!(
            matches!(not_json, Err(EmitError::Invalid(_))),
            "{not_json:?}"
        );
        let no_type = emit(NewEvent::new(""));
        assert!(matches!(no_type, Err(EmitError::Invalid(_))));
        // JSON object keys must be strings: this map cannot serialize.
        let unserializable = BTreeMap::from([((1u8, 2u8), 3u8)]);
        let err = emit(NewEvent::new("x").payload(&unserializable)).unwrap_err();
        let handler_error = HandlerError::from(err);
        assert!(!handler_error.retryable);
        assert!(handler_error.message.contains("payload"), "{handler_error}");
    });
    assert!(host.emitted().is_empty());
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Config {
    limit: u32,
}

#[test]
fn config_typed_default_and_invalid() {
    let mut host = TestHost::new();
    assert_eq!(host.within("t", hookbox_sdk::config_json), "{}");
    host.set_config(&serde_json::json!({"limit": 3}));
    assert_eq!(
        host.within("t", hookbox_sdk::config::<Config>).unwrap(),
        Config { limit: 3 }
    );
    host.set_config_json(r#"{"limit": 3, "limmit": 4}"#);
    let err = host.within("t", hookbox_sdk::config::<Config>).unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.contains("invalid handler config") && err.message.contains("limmit"));
}

#[test]
fn log_macros_record_level_message_and_fields() {
    let mut host = TestHost::new();
    host.within("t", || {
        let user = "ann";
        hookbox_sdk::trace!("t {}", 1);
        hookbox_sdk::debug!("d");
        hookbox_sdk::info!("hello {user}");
        hookbox_sdk::warn!(user = user, n = 2 + 3; "with {} fields", 2);
        hookbox_sdk::error!(code = 500; "failed");
    });
    let logs = host.take_logs();
    let levels: Vec<Level> = logs.iter().map(|r| r.level).collect();
    assert_eq!(
        levels,
        [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error
        ]
    );
    assert_eq!(logs[0].message, "t 1");
    assert_eq!(logs[2].message, "hello ann");
    assert!(logs[2].fields.is_empty());
    assert_eq!(logs[3].message, "with 2 fields");
    assert_eq!(
        logs[3].fields,
        [
            ("user".to_owned(), "ann".to_owned()),
            ("n".to_owned(), "5".to_owned())
        ]
    );
    assert_eq!(logs[4].field("code"), Some("500"));
    assert!(host.logs().is_empty());
}

#[test]
fn event_builder_defaults_match_the_fake_clock() {
    let host = TestHost::new();
    let event = Event::builder("x").build();
    assert_eq!(event.time_ms, host.now_ms());
    assert_eq!(event.time_ms, EventBuilder::DEFAULT_TIME_MS);
}

#[test]
#[should_panic(expected = "outside TestHost::run/within")]
fn host_calls_outside_a_run_panic_with_a_hint() {
    kv::get("x");
}

#[test]
#[should_panic(expected = "cannot be nested")]
fn runs_cannot_nest() {
    let mut outer = TestHost::new();
    let mut inner = TestHost::new();
    outer.within("a", || inner.within("b", || ()));
}

/// Writes a key, then panics.
struct Panics;

impl Handler for Panics {
    fn handle(_: Event) -> Result<(), HandlerError> {
        kv::set("before", "1", None);
        panic!("handler bug");
    }
}

#[test]
fn a_panicking_handler_leaves_the_host_usable() {
    let mut host = TestHost::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        host.run::<Panics>(Event::builder("x").tenant("a").build())
    }));
    assert!(outcome.is_err());
    assert_eq!(host.kv_get_string("a", "before").as_deref(), Some("1"));
    host.run::<Counter>(Event::builder("x").tenant("a").build())
        .unwrap();
    assert_eq!(host.emitted().len(), 1);
}

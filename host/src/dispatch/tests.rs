//! The circuit breaker inside a running dispatcher, with built-in handlers
//! standing in for components (no wasm needed): a failing handler opens it,
//! its deliveries wait through the cool-down (none starts while it is open),
//! news about it reaches a watcher but never the handler itself, and a
//! successful trial closes it and releases the parked deliveries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Builtin, BuiltinError, BuiltinHandler, CircuitState, DispatchConfig, Dispatcher};
use crate::event::{Event, EventInput, now_ms};
use crate::manifest::{BreakerSpec, DeliveryPolicy, Subscription};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{DeadLetterQuery, Durability, Store, StoreOptions};

/// Every wait of these tests ends after this.
const WAIT: Duration = Duration::from_secs(20);
const COOLDOWN_MS: u64 = 200;

/// Records each call (event type, payload, start time); fails while `broken`.
#[derive(Debug, Default)]
struct Probe {
    broken: AtomicBool,
    calls: Mutex<Vec<(String, Value, u64)>>,
}

impl Probe {
    fn calls(&self) -> Vec<(String, Value, u64)> {
        self.calls.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct ProbeHandler(Arc<Probe>);

impl BuiltinHandler for ProbeHandler {
    fn deliver(&self, event: &Event, _attempt: u32) -> Result<(), BuiltinError> {
        let payload = serde_json::from_str(event.payload.get()).unwrap_or(Value::Null);
        let call = (event.event_type.clone(), payload, now_ms());
        self.0.calls.lock().unwrap().push(call);
        if self.0.broken.load(Ordering::SeqCst) {
            Err(BuiltinError::retryable("down"))
        } else {
            Ok(())
        }
    }
}

fn builtin(name: &str, events: &[&str], delivery: DeliveryPolicy, probe: &Arc<Probe>) -> Builtin {
    builtin_with(
        name,
        events,
        delivery,
        Arc::new(ProbeHandler(probe.clone())),
    )
}

fn builtin_with(
    name: &str,
    events: &[&str],
    delivery: DeliveryPolicy,
    handler: Arc<dyn BuiltinHandler>,
) -> Builtin {
    Builtin {
        name: name.into(),
        subscription: Subscription {
            events: events.iter().map(|e| e.to_string()).collect(),
            tenants: vec![],
            filters: vec![],
        },
        delivery,
        handler,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A real store in a temp dir (keep the dir alive) and an on-demand runtime.
fn store_and_runtime() -> (tempfile::TempDir, Store, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        cache_bytes: 8 << 20,
        durability: Durability::None,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    (dir, store, runtime)
}

#[test]
fn open_breaker_parks_deliveries_until_a_trial_succeeds() {
    let (_dir, store, runtime) = store_and_runtime();
    let flaky = Arc::new(Probe::default());
    let watcher = Arc::new(Probe::default());
    flaky.broken.store(true, Ordering::SeqCst);
    let policy = DeliveryPolicy {
        max_attempts: 100,
        // One at a time: a delivery admitted before the opening cannot
        // start after it.
        concurrency: 1,
        initial_backoff_ms: 5,
        max_backoff_ms: 5,
        jitter: 0.0,
        breaker: BreakerSpec {
            consecutive_failures: Some(2),
            failure_rate: Some(0.0),
            cooldown_ms: Some(COOLDOWN_MS),
            auto_disable_opens: Some(0),
            ..BreakerSpec::default()
        },
        ..DeliveryPolicy::default()
    };
    let d = Dispatcher::start_with(
        store.clone(),
        runtime,
        DispatchConfig {
            workers: 2,
            ..DispatchConfig::default()
        },
        vec![
            // Subscribed to everything, Hookbox's news about itself included.
            builtin("t:flaky", &["*"], policy, &flaky),
            builtin(
                "t:watch",
                &["hookbox.handler.*"],
                DeliveryPolicy::default(),
                &watcher,
            ),
        ],
    )
    .unwrap();

    let jobs = (0..3)
        .map(|n| EventInput::new("job", &json!({"n": n})))
        .collect();
    let accepted = d.accept(jobs, "test").unwrap();
    wait_until("the breaker to open", || {
        watcher
            .calls()
            .iter()
            .any(|(t, ..)| t == "hookbox.handler.circuit_opened")
    });
    let status = d.circuit("t:flaky").unwrap();
    assert_ne!(status.state, CircuitState::Closed, "{status:?}");
    assert!(
        status
            .last_reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("2 failures in a row"),
        "{status:?}"
    );
    flaky.broken.store(false, Ordering::SeqCst);
    wait_until("every job to be delivered", || {
        accepted
            .iter()
            .all(|a| matches!(store.event(&a.id), Ok(None)))
    });
    wait_until("the breaker to close", || {
        watcher
            .calls()
            .iter()
            .any(|(t, ..)| t == "hookbox.handler.circuit_closed")
    });
    assert_eq!(d.circuit("t:flaky").unwrap().state, CircuitState::Closed);

    let news = watcher.calls();
    for (t, payload, _) in &news {
        assert_eq!(payload["handler"], "t:flaky", "{t}: {payload}");
        assert!(payload["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    assert_eq!(
        news.last().map(|n| n.1["reason"].clone()),
        Some(json!("a trial delivery succeeded"))
    );
    let calls = flaky.calls();
    assert!(
        calls.iter().all(|(t, ..)| t == "job"),
        "news about a handler never reaches it: {calls:?}"
    );
    // While open (from the opening to its cool-down end) nothing started.
    for (t, payload, _) in news.iter().filter(|n| n.0.ends_with("circuit_opened")) {
        let until = payload["open_until_ms"].as_u64().unwrap();
        let opened = until - COOLDOWN_MS;
        let early: Vec<_> = calls
            .iter()
            .filter(|c| c.2 > opened && c.2 < until)
            .collect();
        assert!(
            early.is_empty(),
            "{t} {payload}: started while open: {early:?}"
        );
    }
    let dead = store.dead_letters(&DeadLetterQuery::default()).unwrap();
    assert!(dead.is_empty(), "waiting is not failing: {dead:?}");
    d.shutdown(Duration::from_secs(5));
}

#[test]
fn producers_cannot_publish_reserved_hookbox_events() {
    let (_dir, store, runtime) = store_and_runtime();
    let d = Dispatcher::start(store, runtime, DispatchConfig::default()).unwrap();
    let forged = EventInput::new("hookbox.handler.disabled", &json!({"handler": "x"}));
    let ok = EventInput::new("hookboxed", &json!({}));
    for source in ["http", "handler:evil", "zulip:acme"] {
        let err = d
            .accept(vec![ok.clone(), forged.clone()], source)
            .unwrap_err();
        assert!(
            matches!(err, super::AcceptError::Invalid { index: 1, .. }),
            "{source}: {err}"
        );
        assert!(err.to_string().contains("reserved"), "{err}");
    }
    assert!(d.accept(vec![ok], "http").is_ok());
    d.shutdown(Duration::from_secs(5));
}

/// Blocks every delivery until opened; counts the deliveries started.
#[derive(Debug, Default)]
struct Gatekeeper {
    open: Mutex<bool>,
    opened: std::sync::Condvar,
    started: std::sync::atomic::AtomicUsize,
}

impl Gatekeeper {
    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Holds the deliveries that reach the gate from now on.
    fn close(&self) {
        *self.open.lock().unwrap() = false;
    }
}

#[derive(Debug)]
struct GatedHandler(Arc<Gatekeeper>);

impl BuiltinHandler for GatedHandler {
    fn deliver(&self, _event: &Event, _attempt: u32) -> Result<(), BuiltinError> {
        let g = &self.0;
        g.started.fetch_add(1, Ordering::SeqCst);
        let open = g.open.lock().unwrap();
        let (open, _) = g.opened.wait_timeout_while(open, WAIT, |o| !*o).unwrap();
        if *open {
            Ok(())
        } else {
            Err(BuiltinError::fatal("the test never opened the gate"))
        }
    }
}

/// A built-in behind `g`, with the default policy: concurrency 16, more
/// than the pool.
fn gated(name: &str, events: &[&str], g: &Arc<Gatekeeper>) -> Builtin {
    let handler = Arc::new(GatedHandler(g.clone()));
    builtin_with(name, events, DeliveryPolicy::default(), handler)
}

/// A dispatcher on a fresh store (keep the dir alive) running `builtins`.
fn dispatcher(cfg: DispatchConfig, builtins: Vec<Builtin>) -> (tempfile::TempDir, Dispatcher) {
    let (dir, store, runtime) = store_and_runtime();
    let d = Dispatcher::start_with(store, runtime, cfg, builtins).unwrap();
    (dir, d)
}

fn workers(n: usize) -> DispatchConfig {
    DispatchConfig {
        workers: n,
        ..DispatchConfig::default()
    }
}

/// A counter of the dispatcher's Prometheus text.
fn counter(d: &Dispatcher, name: &str) -> u64 {
    let text = d.metrics().render_prometheus(d.queue_depths());
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn events(event_type: &str, n: usize) -> Vec<EventInput> {
    (0..n)
        .map(|i| EventInput::new(event_type, &json!({"n": i})))
        .collect()
}

#[test]
fn a_busy_handler_leaves_a_worker_to_the_others() {
    let busy = Arc::new(Gatekeeper::default());
    let good = Arc::new(Probe::default());
    let (_dir, d) = dispatcher(
        workers(3),
        vec![
            gated("t:busy", &["busy"], &busy),
            builtin("t:good", &["good"], DeliveryPolicy::default(), &good),
        ],
    );
    d.accept(events("busy", 6), "test").unwrap();
    wait_until("the busy handler to take two workers", || {
        busy.started() == 2
    });
    // Its policy allows 16, but the third worker stays free.
    let ids: Vec<String> = d
        .accept(events("good", 5), "test")
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    wait_until("the good events to be delivered", || {
        good.calls().len() == 5
    });
    assert_eq!(busy.started(), 2, "the busy handler took the free worker");
    busy.open();
    wait_until("the busy events to be delivered", || busy.started() == 6);
    let store = d.store().clone();
    wait_until("every delivery to finish", || {
        ids.iter().all(|id| matches!(store.event(id), Ok(None)))
    });
    d.shutdown(Duration::from_secs(5));
}

#[test]
fn a_handler_alone_uses_every_worker() {
    let busy = Arc::new(Gatekeeper::default());
    let (_dir, d) = dispatcher(workers(3), vec![gated("t:busy", &["busy"], &busy)]);
    d.accept(events("busy", 6), "test").unwrap();
    wait_until("the handler to take all three workers", || {
        busy.started() == 3
    });
    busy.open();
    wait_until("every event to be delivered", || busy.started() == 6);
    d.shutdown(Duration::from_secs(5));
}

#[test]
fn a_fast_handler_is_lent_the_kept_worker_until_it_runs_slow() {
    // `gated` with the gate open delivers at once; closed, it holds each
    // delivery until it opens, which makes that delivery slow.
    let fast = Arc::new(Gatekeeper::default());
    let idle = Arc::new(Probe::default());
    let (_dir, d) = dispatcher(
        workers(2),
        vec![
            gated("t:fast", &["fast"], &fast),
            builtin("t:idle", &["idle"], DeliveryPolicy::default(), &idle),
        ],
    );
    // Another handler is enabled, so one worker is kept. 100 quick
    // deliveries prove the handler fast.
    fast.open();
    d.accept(events("fast", 100), "test").unwrap();
    wait_until("the quick deliveries", || fast.started() == 100);
    // (The last one past the gate before it closes.)
    std::thread::sleep(Duration::from_millis(50));
    // Now both workers take its deliveries while the other has nothing.
    fast.close();
    d.accept(events("fast", 3), "test").unwrap();
    // Well inside the gate's own 20 s, after which a held delivery ends.
    let until = Instant::now() + Duration::from_secs(10);
    while fast.started() < 102 {
        assert!(Instant::now() < until, "the kept worker was not lent");
        std::thread::sleep(Duration::from_millis(10));
    }
    let lent = || counter(&d, super::metric_names::DELIVERIES_LENT);
    assert!(lent() >= 1);
    // Held past the 5 ms limit, those two were slow: the lending ends
    // for a minute.
    std::thread::sleep(Duration::from_millis(20));
    fast.open();
    wait_until("the held deliveries", || fast.started() == 103);
    // Fast again, 100 times: that would earn the worker, but not within
    // the minute.
    d.accept(events("fast", 100), "test").unwrap();
    wait_until("the quick deliveries", || fast.started() == 203);
    std::thread::sleep(Duration::from_millis(50));
    fast.close();
    d.accept(events("fast", 2), "test").unwrap();
    let lent_before = lent();
    wait_until("one delivery", || fast.started() >= 204);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fast.started(), 204, "the kept worker was lent again");
    assert_eq!(lent(), lent_before);
    fast.open();
    wait_until("every delivery", || fast.started() == 205);
    assert!(idle.calls().is_empty());
    d.shutdown(Duration::from_secs(5));
}

#[test]
fn emitted_events_fill_only_their_share_of_the_queue() {
    let busy = Arc::new(Gatekeeper::default());
    let cfg = DispatchConfig {
        // Emitted events may fill 9 of the 10 places.
        queue_capacity: 10,
        ..workers(1)
    };
    let (_dir, d) = dispatcher(cfg, vec![gated("t:busy", &["tick"], &busy)]);
    // One delivery holds the only worker; the queue then fills.
    d.accept(events("tick", 1), "test").unwrap();
    wait_until("the first delivery to start", || busy.started() == 1);
    d.accept(events("tick", 7), "test").unwrap();
    let parent = EventInput::new("tick", &json!({}))
        .accept("test", 0, 1 << 20)
        .unwrap();
    let dropped = || counter(&d, super::metric_names::EMITS_DROPPED);
    let rejected = || counter(&d, super::metric_names::EVENTS_REJECTED);
    // 7 held + 2 emitted = 9: accepted whole.
    d.inner.accept_emitted("t:busy", &parent, events("tick", 2));
    assert_eq!(d.inner.sched().len(), 9);
    assert_eq!(dropped(), 0);
    // One more would pass the share: dropped whole and counted as a
    // dropped emission, not as a refused external event.
    d.inner.accept_emitted("t:busy", &parent, events("tick", 1));
    assert_eq!(d.inner.sched().len(), 9);
    assert_eq!((dropped(), rejected()), (1, 0));
    // Producers still have the last place, then get "busy".
    d.accept(events("tick", 1), "test").unwrap();
    let err = d.accept(events("tick", 1), "test").unwrap_err();
    assert!(matches!(err, super::AcceptError::Busy { .. }), "{err}");
    assert_eq!(d.inner.sched().len(), 10);
    assert_eq!((dropped(), rejected()), (1, 1));
    busy.open();
    wait_until("the queue to drain", || d.inner.sched().len() == 0);
    d.shutdown(Duration::from_secs(5));
}

/// A dispatcher with a queue of 10 (no tenant share) and one worker for
/// a `tick` handler that holds its deliveries until its gate opens, and a
/// runtime to wait for room on.
fn queue_of_ten() -> (
    tempfile::TempDir,
    Dispatcher,
    Arc<Gatekeeper>,
    tokio::runtime::Runtime,
) {
    let busy = Arc::new(Gatekeeper::default());
    let cfg = DispatchConfig {
        queue_capacity: 10,
        tenant_queue_share: 100,
        ..workers(1)
    };
    let (dir, d) = dispatcher(cfg, vec![gated("t:busy", &["tick"], &busy)]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    (dir, d, busy, rt)
}

#[test]
fn room_for_a_batch_is_held_before_it_is_built_or_waited_for() {
    let (_dir, d, busy, rt) = queue_of_ten();
    let rejected = || counter(&d, super::metric_names::EVENTS_REJECTED);
    let waits = || counter(&d, super::metric_names::QUEUE_WAITS);
    let admit = |ty: &str, n: usize, wait: Duration| {
        rt.block_on(d.admit(d.sure_room([((ty, ""), n)]), n, 100, wait))
    };
    // One delivery holds the only worker; 4 wait: under half full.
    d.accept(events("tick", 1), "test").unwrap();
    wait_until("the first delivery to start", || busy.started() == 1);
    d.accept(events("tick", 4), "test").unwrap();
    assert!(!d.under_pressure());
    d.accept(events("tick", 1), "test").unwrap();
    assert!(d.under_pressure());
    // 5 held: 6 sure deliveries do not fit, and without a wait are refused
    // at once, counted, not waited for.
    let err = admit("tick", 6, Duration::ZERO).unwrap_err();
    assert!(
        matches!(err, super::AcceptError::Busy { tenant: None, .. }),
        "{err}"
    );
    assert_eq!((rejected(), waits()), (6, 0));
    // 5 fit, and are held: nothing else fits while they are.
    let room = admit("tick", 5, Duration::ZERO).unwrap().unwrap();
    assert_eq!(d.inner.sched().held(), 10);
    admit("tick", 1, Duration::ZERO).unwrap_err();
    // Events no handler takes, whatever their number, need no room.
    assert!(admit("other", 1000, Duration::ZERO).unwrap().is_none());
    assert_eq!(rejected(), 7);
    // A request that waits is refused once its wait is over, not before.
    let started = Instant::now();
    admit("tick", 1, Duration::from_millis(30)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!((rejected(), waits()), (8, 1));
    // One that waits gets in as soon as room frees: here, the held room
    // given back by a request that failed.
    let (waited, ()) = rt.block_on(async {
        tokio::join!(
            d.admit(
                d.sure_room([(("tick", ""), 5)]),
                5,
                100,
                Duration::from_secs(30)
            ),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(room);
            }
        )
    });
    let room = waited.unwrap().unwrap();
    assert_eq!((rejected(), waits()), (8, 2));
    assert_eq!(d.inner.sched().held(), 10);
    // The accept takes the held room over: it is not counted twice.
    let accepted = rt.block_on(async {
        d.accept_spawned(events("tick", 5), "test", Some(room))
            .unwrap()
            .await
            .unwrap()
    });
    assert_eq!(accepted.unwrap().len(), 5);
    let s = d.inner.sched();
    assert_eq!((s.len(), s.held()), (10, 10));
    drop(s);
    busy.open();
    wait_until("the queue to drain", || d.inner.sched().len() == 0);
    assert_eq!(d.inner.sched().held(), 0);
    d.shutdown(Duration::from_secs(5));
}

/// Requests waiting for room get it in arrival order per tenant: a small
/// batch does not take the room a larger one that came first waits for,
/// while another tenant's batch is not held up by that line.
#[test]
fn waiting_requests_of_a_tenant_get_room_in_arrival_order() {
    let (_dir, d, busy, rt) = queue_of_ten();
    let admit = |tenant: &str, n: usize, wait: Duration| {
        d.admit(d.sure_room([(("tick", tenant), n)]), n, 100, wait)
    };
    // The whole queue held, one slot per room.
    let mut rooms: Vec<super::Room> = (0..10)
        .map(|_| {
            rt.block_on(admit("acme", 1, Duration::ZERO))
                .unwrap()
                .unwrap()
        })
        .collect();
    let order = Mutex::new(Vec::new());
    let got = |who: &'static str, room: Result<Option<super::Room>, super::AcceptError>| {
        order.lock().unwrap().push(who);
        room.unwrap().unwrap()
    };
    let wait = Duration::from_secs(30);
    let pause = || tokio::time::sleep(Duration::from_millis(50));
    let held = rt.block_on(async {
        tokio::join!(
            async { got("large", admit("acme", 5, wait).await) },
            async {
                pause().await;
                got("small", admit("acme", 1, wait).await)
            },
            async {
                pause().await;
                pause().await;
                // One slot: the small batch could take it, but waits
                // behind the large one.
                rooms.pop();
                pause().await;
                assert!(order.lock().unwrap().is_empty(), "{order:?}");
                // Nor does a batch that skips the line's quick read (its
                // body not sketched): its accept sends it to the line.
                let mut unsketched = events("tick", 1);
                unsketched[0].tenant = "acme".into();
                let refused = d.accept(unsketched, "test").unwrap_err();
                assert!(
                    matches!(refused, super::AcceptError::Busy { .. }),
                    "{refused}"
                );
                // Another tenant has nobody ahead of it.
                let other = got("other tenant", admit("beta", 1, wait).await);
                // Five: the large batch, first in `acme`'s line.
                rooms.truncate(rooms.len() - 5);
                pause().await;
                assert_eq!(*order.lock().unwrap(), ["other tenant", "large"]);
                rooms.pop();
                other
            },
        )
    });
    assert_eq!(*order.lock().unwrap(), ["other tenant", "large", "small"]);
    drop(held);
    assert_eq!(d.inner.sched().held(), rooms.len());
    drop(rooms);
    // More than the whole queue never fits: refused at once, not waited
    // for in the line, and not as busy (a retry cannot help).
    let started = Instant::now();
    let err = rt.block_on(admit("acme", 11, wait)).unwrap_err();
    assert!(
        matches!(
            err,
            super::AcceptError::TooManyDeliveries {
                deliveries: 11,
                capacity: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Those 11 and the unsketched event sent to the line above.
    assert_eq!(counter(&d, super::metric_names::EVENTS_REJECTED), 12);
    busy.open();
    d.shutdown(Duration::from_secs(5));
}

#[test]
fn waiting_for_a_handler_to_be_idle_waits_for_its_outcomes_to_be_written() {
    let (_dir, d) = dispatcher(workers(1), Vec::new());
    // A worker handed an outcome over (and freed its slot); the recorder
    // has not written it yet.
    d.inner.recorder_progress.hand_over();
    let waiting = d.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(waiting.wait_until_idle("gone")));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        rx.try_recv().is_err(),
        "returned before the outcome was written"
    );
    d.inner.recorder_progress.written(1);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
    d.shutdown(Duration::from_secs(5));
}

/// Two workers delivering `tick` events to a built-in that records them.
fn ticking(probe: &Arc<Probe>) -> (tempfile::TempDir, Dispatcher) {
    dispatcher(
        workers(2),
        vec![builtin(
            "t:probe",
            &["tick"],
            DeliveryPolicy::default(),
            probe,
        )],
    )
}

#[test]
fn an_outcome_is_announced_only_once_it_is_recorded() {
    let probe = Arc::new(Probe::default());
    let (_dir, d) = ticking(&probe);
    let mut notices = d.subscribe();
    let n = d.accept(events("tick", 200), "test").unwrap().len();
    let store = d.store().clone();
    for _ in 0..n {
        let n = notices.blocking_recv().unwrap();
        assert!(n.final_attempt);
        // Whoever hears of an outcome finds it in the store.
        assert_eq!(store.deliveries_of(&n.event_id).unwrap().len(), 1);
        assert!(store.event(&n.event_id).unwrap().is_none());
    }
    // The recorder counts its batches and the outcomes in them.
    let outcomes = counter(&d, super::metric_names::RECORDER_OUTCOMES);
    let batches = counter(&d, super::metric_names::RECORDER_BATCHES);
    assert_eq!(outcomes, n as u64);
    assert!((1..=outcomes).contains(&batches), "{batches} batches");
    d.shutdown(Duration::from_secs(5));
}

#[test]
fn shutdown_records_every_delivery_that_ran() {
    let probe = Arc::new(Probe::default());
    let (_dir, d) = ticking(&probe);
    let ids: Vec<String> = d
        .accept(events("tick", 500), "test")
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    wait_until("some deliveries to run", || probe.calls().len() >= 100);
    d.shutdown(Duration::from_secs(10));
    let ran = probe.calls().len();
    let store = d.store().clone();
    drop(d);
    // Every delivery either ran and is recorded, or is still pending for
    // the next start: none ran without a record.
    let recorded = ids
        .iter()
        .filter(|id| store.deliveries_of(id).unwrap().len() == 1)
        .count();
    assert_eq!(recorded, ran);
    assert_eq!(store.pending().unwrap().len(), ids.len() - ran);
}

/// `events` with a `max_age` filter of `max_age_ms`.
fn aged(mut b: Builtin, max_age_ms: u64) -> Builtin {
    b.subscription.filters = vec![crate::manifest::Filter::MaxAge { max_age_ms }];
    b
}

/// The outcomes logged for an event, oldest attempt first.
fn outcomes_of(store: &Store, id: &str) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = store
        .deliveries_of(id)
        .unwrap()
        .into_iter()
        .map(|e| (e.attempt, e.outcome))
        .collect();
    v.sort();
    v
}

#[test]
fn max_age_skips_an_event_that_waited_in_the_queue_past_it() {
    const MAX_AGE_MS: u64 = 300;
    let gate = Arc::new(Gatekeeper::default());
    let handler = Arc::new(GatedHandler(gate.clone()));
    let policy = DeliveryPolicy {
        concurrency: 1,
        ..DeliveryPolicy::default()
    };
    let b = aged(
        builtin_with("t:aged", &["tick"], policy, handler),
        MAX_AGE_MS,
    );
    let (_dir, d) = dispatcher(workers(2), vec![b]);
    let ids: Vec<String> = d
        .accept(events("tick", 2), "test")
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    // Both are routed: at accept they are new.
    wait_until("the first delivery to start", || gate.started() == 1);
    // The second waits behind the first (concurrency 1) past its max_age.
    std::thread::sleep(Duration::from_millis(MAX_AGE_MS + 100));
    gate.open();
    let store = d.store().clone();
    wait_until("both deliveries to finish", || {
        ids.iter().all(|id| matches!(store.event(id), Ok(None)))
    });
    assert_eq!(outcomes_of(&store, &ids[0]), [(1, "ok".to_string())]);
    assert_eq!(outcomes_of(&store, &ids[1]), [(1, "expired".to_string())]);
    assert_eq!(gate.started(), 1, "the expired event reached the handler");
    let entry = &store.deliveries_of(&ids[1]).unwrap()[0];
    let error = entry.error.clone().unwrap_or_default();
    assert!(error.contains("max_age is 300 ms"), "{error}");
    assert!(!entry.is_failure() && !entry.is_ok());
    let text = d.metrics().render_prometheus(d.queue_depths());
    assert!(
        text.contains("hookbox_deliveries_total{handler=\"t:aged\",outcome=\"expired\"} 1"),
        "{text}"
    );
    assert!(
        store
            .dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .is_empty(),
        "an expired delivery is not a dead letter"
    );
    d.shutdown(Duration::from_secs(5));
}

#[test]
fn max_age_is_checked_again_when_a_retry_is_taken() {
    const MAX_AGE_MS: u64 = 300;
    let probe = Arc::new(Probe::default());
    probe.broken.store(true, Ordering::SeqCst);
    let policy = DeliveryPolicy {
        max_attempts: 5,
        // The retry is due after the event's max_age has passed.
        initial_backoff_ms: MAX_AGE_MS + 200,
        max_backoff_ms: MAX_AGE_MS + 200,
        jitter: 0.0,
        ..DeliveryPolicy::default()
    };
    let b = aged(builtin("t:aged", &["tick"], policy, &probe), MAX_AGE_MS);
    let (_dir, d) = dispatcher(workers(2), vec![b]);
    let id = d.accept(events("tick", 1), "test").unwrap()[0].id.clone();
    let store = d.store().clone();
    wait_until("the delivery to finish", || {
        matches!(store.event(&id), Ok(None))
    });
    assert_eq!(
        outcomes_of(&store, &id),
        [(1, "handler_error".to_string()), (2, "expired".to_string())]
    );
    assert_eq!(probe.calls().len(), 1, "the retry ran past max_age");
    assert!(
        store
            .dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .is_empty()
    );
    d.shutdown(Duration::from_secs(5));
}

/// Regression: auto-disabling a built-in handler (not in the handler
/// table) failed with "not found" each time its breaker opened. A built-in
/// is never disabled; its breaker keeps holding it between trials, and its
/// deliveries go through once it works again.
#[test]
fn a_failing_builtin_is_not_disabled_and_recovers() {
    let (_dir, store, runtime) = store_and_runtime();
    let sink = Arc::new(Probe::default());
    let watcher = Arc::new(Probe::default());
    sink.broken.store(true, Ordering::SeqCst);
    let policy = DeliveryPolicy {
        max_attempts: 100,
        concurrency: 1,
        initial_backoff_ms: 1,
        max_backoff_ms: 1,
        jitter: 0.0,
        breaker: BreakerSpec {
            consecutive_failures: Some(1),
            failure_rate: Some(0.0),
            cooldown_ms: Some(20),
            auto_disable_opens: Some(2),
            ..BreakerSpec::default()
        },
        ..DeliveryPolicy::default()
    };
    let d = Dispatcher::start_with(
        store.clone(),
        runtime,
        workers(2),
        vec![
            builtin("t:sink", &["job"], policy, &sink),
            builtin(
                "t:watch",
                &["hookbox.handler.*"],
                DeliveryPolicy::default(),
                &watcher,
            ),
        ],
    )
    .unwrap();
    let accepted = d.accept(events("job", 1), "test").unwrap();
    wait_until("the breaker to open three times", || {
        d.circuit("t:sink").is_some_and(|c| c.opened_total >= 3)
    });
    sink.broken.store(false, Ordering::SeqCst);
    wait_until("the delivery", || {
        matches!(store.event(&accepted[0].id), Ok(None))
    });
    let news: Vec<String> = watcher.calls().into_iter().map(|c| c.0).collect();
    assert!(
        !news.iter().any(|t| t == "hookbox.handler.disabled"),
        "{news:?}"
    );
    assert_eq!(
        counter(
            &d,
            "hookbox_handlers_auto_disabled_total{handler=\"t:sink\"}"
        ),
        0
    );
    d.shutdown(Duration::from_secs(5));
}

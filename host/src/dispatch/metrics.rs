//! Process metrics and their Prometheus text rendering. Metric names are
//! constants here, in one place. Counters are atomics or a short-held lock
//! per delivery: a delivery costs microseconds of wasm, so a lock here is
//! not the bottleneck (see BENCHMARKS.md once measured).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::series::{Series, SeriesWindow};
use crate::event::{Priority, now_ms};

/// Metric names.
pub mod names {
    /// This node's name in cluster mode (gauge, always 1, label `node`):
    /// every series of the scrape is this node's, so a join on it labels
    /// them.
    pub const CLUSTER_NODE: &str = "hookbox_cluster_node";
    /// Events accepted (counter, label `source_kind`).
    pub const EVENTS_ACCEPTED: &str = "hookbox_events_accepted_total";
    /// Events answered with an earlier event's id (idempotency key).
    pub const EVENTS_DUPLICATE: &str = "hookbox_events_duplicate_total";
    /// Events refused at accept (invalid or queue full).
    pub const EVENTS_REJECTED: &str = "hookbox_events_rejected_total";
    /// Publish requests (and sources' batches) that waited for room in a
    /// full queue (`[api] queue_wait`), admitted in the end or not.
    pub const QUEUE_WAITS: &str = "hookbox_queue_waits_total";
    /// Publish requests (and sources' batches) waiting for room now
    /// (gauge).
    pub const QUEUE_WAITING: &str = "hookbox_queue_waiting";
    /// Emitted events dropped: past the emit depth limit, past the share of
    /// the queue emitted events may fill, or invalid.
    pub const EMITS_DROPPED: &str = "hookbox_emitted_events_dropped_total";
    /// Delivery attempts by handler and outcome.
    pub const DELIVERIES: &str = "hookbox_deliveries_total";
    /// Deliveries started on the worker kept for other handlers, lent to
    /// a proven-fast handler while the others had nothing to run.
    pub const DELIVERIES_LENT: &str = "hookbox_deliveries_lent_total";
    /// Batches of outcomes the recorder wrote (its mean batch is
    /// `RECORDER_OUTCOMES / RECORDER_BATCHES`).
    pub const RECORDER_BATCHES: &str = "hookbox_recorder_batches_total";
    /// Successful outcomes the recorder wrote, in those batches.
    pub const RECORDER_OUTCOMES: &str = "hookbox_recorder_outcomes_total";
    /// Deliveries sent to the dead-letter queue.
    pub const DEAD_LETTERS: &str = "hookbox_dead_letters_total";
    /// Retries scheduled.
    pub const RETRIES: &str = "hookbox_retries_scheduled_total";
    /// Fuel consumed by deliveries.
    pub const FUEL: &str = "hookbox_fuel_consumed_total";
    /// Delivery latency histogram (instantiate + call).
    pub const DURATION: &str = "hookbox_delivery_duration_seconds";
    /// Components compiled (deploys of new code, cache misses).
    pub const COMPILED: &str = "hookbox_components_compiled_total";
    /// Components loaded from the compiled-code cache instead.
    pub const CACHE_LOADS: &str = "hookbox_components_cache_loads_total";
    /// Time to load a module on first use: cache load (or compile) and link.
    pub const MODULE_LOAD: &str = "hookbox_module_load_seconds";
    /// Modules evicted from the resident set (least recently used).
    pub const EVICTIONS: &str = "hookbox_module_evictions_total";
    /// Compiled modules resident (gauge).
    pub const RESIDENT_MODULES: &str = "hookbox_resident_modules";
    /// Bytes of compiled code resident (gauge).
    pub const RESIDENT_BYTES: &str = "hookbox_resident_code_bytes";
    /// Ready deliveries by priority (gauge).
    pub const QUEUE_DEPTH: &str = "hookbox_queue_depth";
    /// 1 while a Zulip realm's last register or poll succeeded (gauge, label `realm`).
    pub const ZULIP_CONNECTED: &str = "hookbox_zulip_connected";
    /// The last Zulip event id acknowledged, by realm (gauge).
    pub const ZULIP_LAST_EVENT_ID: &str = "hookbox_zulip_last_event_id";
    /// Zulip events accepted, by realm.
    pub const ZULIP_EVENTS: &str = "hookbox_zulip_events_total";
    /// Zulip heartbeats acknowledged, by realm.
    pub const ZULIP_HEARTBEATS: &str = "hookbox_zulip_heartbeats_total";
    /// Zulip events skipped as invalid, by realm.
    pub const ZULIP_SKIPPED: &str = "hookbox_zulip_events_skipped_total";
    /// Zulip event queues registered, by realm.
    pub const ZULIP_REGISTRATIONS: &str = "hookbox_zulip_registrations_total";
    /// Zulip event queues lost (`BAD_EVENT_QUEUE_ID`), by realm.
    pub const ZULIP_QUEUE_LOSSES: &str = "hookbox_zulip_queue_losses_total";
    /// Zulip 429 answers to the event source, by realm.
    pub const ZULIP_RATE_LIMITED: &str = "hookbox_zulip_rate_limited_total";
    /// Failed Zulip requests of the event source, by realm.
    pub const ZULIP_ERRORS: &str = "hookbox_zulip_errors_total";
    /// Zulip REST calls made by the reply sink, by realm.
    pub const ZULIP_SINK_SENT: &str = "hookbox_zulip_sink_sent_total";
    /// Failed Zulip REST calls of the reply sink, by realm.
    pub const ZULIP_SINK_FAILURES: &str = "hookbox_zulip_sink_failures_total";
    /// 1 while a Redis bus's source is connected (gauge, label `bus`).
    pub const REDIS_CONNECTED: &str = "hookbox_redis_connected";
    /// Redis messages read by a bus's source.
    pub const REDIS_RECEIVED: &str = "hookbox_redis_messages_total";
    /// Redis messages accepted as events (duplicates included).
    pub const REDIS_ACCEPTED: &str = "hookbox_redis_events_total";
    /// Redis messages skipped: malformed, or refused at accept (schema).
    pub const REDIS_SKIPPED: &str = "hookbox_redis_messages_skipped_total";
    /// Failed Redis connections and commands of a bus's source.
    pub const REDIS_ERRORS: &str = "hookbox_redis_errors_total";
    /// Envelopes the Redis sink published.
    pub const REDIS_SINK_PUBLISHED: &str = "hookbox_redis_sink_published_total";
    /// Failed publishes of the Redis sink.
    pub const REDIS_SINK_FAILURES: &str = "hookbox_redis_sink_failures_total";
    /// Webhook requests answered 2xx (label `endpoint`).
    pub const WEBHOOK_SENT: &str = "hookbox_webhook_sent_total";
    /// Failed webhook attempts.
    pub const WEBHOOK_FAILURES: &str = "hookbox_webhook_failures_total";
    /// Webhook answers asking to slow down (429).
    pub const WEBHOOK_RATE_LIMITED: &str = "hookbox_webhook_rate_limited_total";
    /// 1 while a handler's circuit breaker is open or half-open (gauge, label `handler`).
    pub const CIRCUIT_OPEN: &str = "hookbox_circuit_open";
    /// Circuit breaker openings by handler.
    pub const CIRCUIT_OPENED: &str = "hookbox_circuit_opened_total";
    /// A handler's tenant breakers open or half-open now (gauge, label `handler`).
    pub const CIRCUIT_TENANTS_OPEN: &str = "hookbox_circuit_tenants_open";
    /// Openings of a handler's tenant breakers (label `handler`).
    pub const CIRCUIT_TENANT_OPENED: &str = "hookbox_circuit_tenant_opened_total";
    /// Handlers disabled automatically, by handler.
    pub const AUTO_DISABLED: &str = "hookbox_handlers_auto_disabled_total";
    /// Deliveries put back because a built-in sink was rate limited, by handler.
    pub const THROTTLED: &str = "hookbox_deliveries_throttled_total";
}

/// One per-handler breaker series: name, Prometheus type, help, value.
type CircuitSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Circuit) -> u64,
);

/// Breaker counters of one handler.
#[derive(Debug, Default, Clone, Copy)]
struct Circuit {
    open: bool,
    opened: u64,
    tenants_open: u64,
    tenant_opened: u64,
    disabled: u64,
    throttled: u64,
}

/// Appends gauge `name` with its `help` and value `v`, in the Prometheus
/// text format.
pub(crate) fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Histogram bucket bounds in seconds: 10 µs to 10 s, roughly ×3 apart.
const BUCKETS: [f64; 13] = [
    0.000_01, 0.000_03, 0.000_1, 0.000_3, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0,
];

/// Counters kept by the dispatcher.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    duplicate: AtomicU64,
    rejected: AtomicU64,
    queue_waits: AtomicU64,
    emits_dropped: AtomicU64,
    lent: AtomicU64,
    recorder_batches: AtomicU64,
    recorder_outcomes: AtomicU64,
    dead_letters: AtomicU64,
    retries: AtomicU64,
    fuel: AtomicU64,
    compiled: AtomicU64,
    cache_loads: AtomicU64,
    /// Attempts by handler, then outcome: nested so that counting one
    /// looks the handler up by `&str`, allocating its name only the first
    /// time.
    deliveries: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    circuits: Mutex<BTreeMap<String, Circuit>>,
    durations: Histogram,
    loads: Histogram,
    evictions: AtomicU64,
    resident_modules: AtomicU64,
    resident_bytes: AtomicU64,
    /// The last hour per second, for the dashboard (`GET /v1/series`).
    series: Series,
}

/// A latency histogram over [`BUCKETS`].
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

impl Metrics {
    pub(crate) fn accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn duplicate(&self, n: u64) {
        self.duplicate.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn queue_wait(&self) {
        self.queue_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn emits_dropped(&self, n: u64) {
        self.emits_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn lent(&self) {
        self.lent.fetch_add(1, Ordering::Relaxed);
    }

    /// The recorder wrote a batch of `outcomes`.
    pub(crate) fn recorded(&self, outcomes: usize) {
        self.recorder_batches.fetch_add(1, Ordering::Relaxed);
        self.recorder_outcomes
            .fetch_add(outcomes as u64, Ordering::Relaxed);
    }

    pub(crate) fn dead_lettered(&self) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry_scheduled(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn module_loaded(&self, from_cache: bool) {
        let c = if from_cache {
            &self.cache_loads
        } else {
            &self.compiled
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delivery(&self, handler: &str, outcome: &'static str, took: Duration, fuel: u64) {
        self.fuel.fetch_add(fuel, Ordering::Relaxed);
        self.durations.observe(took);
        self.series
            .record(now_ms() / 1000, outcome, took.as_micros() as u64);
        self.count(handler, outcome);
    }

    /// One more attempt of `handler` ended in `outcome`.
    fn count(&self, handler: &str, outcome: &'static str) {
        let mut map = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        let by_outcome = match map.get_mut(handler) {
            Some(m) => m,
            None => map.entry(handler.to_string()).or_default(),
        };
        *by_outcome.entry(outcome).or_insert(0) += 1;
    }

    /// A delivery not run because its event outlived the handler's
    /// `max_age`: counted by outcome, kept out of the duration histogram.
    pub(crate) fn expired(&self, handler: &str) {
        self.count(handler, crate::store::OUTCOME_EXPIRED);
    }

    pub(crate) fn module_load_took(&self, took: Duration) {
        self.loads.observe(took);
    }

    pub(crate) fn modules_evicted(&self, n: usize) {
        self.evictions.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn resident(&self, modules: usize, bytes: u64) {
        self.resident_modules
            .store(modules as u64, Ordering::Relaxed);
        self.resident_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The mean of the module load times observed so far, in microseconds.
    pub fn module_load_mean_us(&self) -> Option<u64> {
        let count = self.loads.count.load(Ordering::Relaxed);
        (count > 0).then(|| self.loads.sum_us.load(Ordering::Relaxed) / count)
    }

    /// Module loads (from the cache or compiled) and evictions so far.
    pub fn module_loads_and_evictions(&self) -> (u64, u64) {
        let loads =
            self.cache_loads.load(Ordering::Relaxed) + self.compiled.load(Ordering::Relaxed);
        (loads, self.evictions.load(Ordering::Relaxed))
    }

    /// The last `seconds` of deliveries in points of `step_s` seconds.
    pub fn series(&self, seconds: u64, step_s: u64) -> SeriesWindow {
        self.series.window(now_ms() / 1000, seconds, step_s)
    }

    fn circuit(&self, handler: &str, f: impl FnOnce(&mut Circuit)) {
        let mut map = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(handler.to_string()).or_default());
    }

    pub(crate) fn circuit_opened(&self, handler: &str) {
        self.circuit(handler, |c| {
            c.open = true;
            c.opened += 1;
        });
    }

    pub(crate) fn circuit_closed(&self, handler: &str) {
        self.circuit(handler, |c| c.open = false);
    }

    /// One of the handler's tenant breakers opened (`opened`) or closed;
    /// `open_now` of them are open or half-open after it.
    pub(crate) fn tenant_circuits(&self, handler: &str, open_now: u64, opened: bool) {
        self.circuit(handler, |c| {
            c.tenants_open = open_now;
            c.tenant_opened += u64::from(opened);
        });
    }

    pub(crate) fn auto_disabled(&self, handler: &str) {
        self.circuit(handler, |c| c.disabled += 1);
    }

    pub(crate) fn throttled(&self, handler: &str) {
        self.circuit(handler, |c| c.throttled += 1);
    }

    /// Drops a deleted handler's breaker series.
    pub(crate) fn circuit_forget(&self, handler: &str) {
        let mut map = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(handler);
    }

    /// Events accepted so far.
    pub fn events_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render_prometheus(&self, queue_depths: [usize; 4]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            names::EVENTS_ACCEPTED,
            "Events accepted.",
            self.accepted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::EVENTS_DUPLICATE,
            "Events answered with an earlier id (idempotency key).",
            self.duplicate.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::EVENTS_REJECTED,
            "Events refused at accept.",
            self.rejected.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::QUEUE_WAITS,
            "Publish requests (and sources' batches) that waited for room in a full queue, admitted in the end or not.",
            self.queue_waits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::EMITS_DROPPED,
            "Emitted events dropped (emit depth limit, queue share, or invalid).",
            self.emits_dropped.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::DELIVERIES_LENT,
            "Deliveries started on the worker kept for other handlers, lent to a proven-fast handler while the others had nothing to run.",
            self.lent.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::RECORDER_BATCHES,
            "Batches of successful outcomes the recorder wrote.",
            self.recorder_batches.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::RECORDER_OUTCOMES,
            "Successful outcomes the recorder wrote (in its batches).",
            self.recorder_outcomes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::DEAD_LETTERS,
            "Deliveries dead-lettered.",
            self.dead_letters.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::RETRIES,
            "Retries scheduled.",
            self.retries.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::FUEL,
            "Fuel consumed by deliveries.",
            self.fuel.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::COMPILED,
            "Components compiled.",
            self.compiled.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            names::CACHE_LOADS,
            "Components loaded from the compiled-code cache.",
            self.cache_loads.load(Ordering::Relaxed),
        );

        let _ = writeln!(
            out,
            "# HELP {0} Delivery attempts by handler and outcome.\n# TYPE {0} counter",
            names::DELIVERIES
        );
        let map = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        let lines = map
            .iter()
            .flat_map(|(h, by)| by.iter().map(move |(outcome, n)| (h, outcome, n)));
        for (handler, outcome, n) in lines {
            let _ = writeln!(
                out,
                "{}{{handler=\"{}\",outcome=\"{outcome}\"}} {n}",
                names::DELIVERIES,
                escape_label(handler)
            );
        }
        drop(map);

        self.durations.render(
            &mut out,
            names::DURATION,
            "Delivery duration (instantiate and call).",
        );
        self.loads.render(
            &mut out,
            names::MODULE_LOAD,
            "Module load on first use (cache load or compile, and link).",
        );
        counter(
            &mut out,
            names::EVICTIONS,
            "Modules evicted from the resident set.",
            self.evictions.load(Ordering::Relaxed),
        );
        for (name, help, v) in [
            (
                names::RESIDENT_MODULES,
                "Compiled modules resident.",
                &self.resident_modules,
            ),
            (
                names::RESIDENT_BYTES,
                "Bytes of compiled code resident.",
                &self.resident_bytes,
            ),
        ] {
            gauge(&mut out, name, help, v.load(Ordering::Relaxed));
        }

        let _ = writeln!(
            out,
            "# HELP {0} Ready deliveries by priority.\n# TYPE {0} gauge",
            names::QUEUE_DEPTH
        );
        for p in Priority::ALL {
            let _ = writeln!(
                out,
                "{}{{priority=\"{p}\"}} {}",
                names::QUEUE_DEPTH,
                queue_depths[p.index()]
            );
        }

        let circuits = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
        let series: [CircuitSeries; 6] = [
            (
                names::CIRCUIT_OPEN,
                "gauge",
                "1 while the handler's circuit breaker is open or half-open.",
                |c| u64::from(c.open),
            ),
            (
                names::CIRCUIT_OPENED,
                "counter",
                "Circuit breaker openings.",
                |c| c.opened,
            ),
            (
                names::CIRCUIT_TENANTS_OPEN,
                "gauge",
                "The handler's tenant breakers open or half-open (one tenant's failures park only its own deliveries).",
                |c| c.tenants_open,
            ),
            (
                names::CIRCUIT_TENANT_OPENED,
                "counter",
                "Openings of the handler's tenant breakers.",
                |c| c.tenant_opened,
            ),
            (
                names::AUTO_DISABLED,
                "counter",
                "Times the handler was disabled automatically.",
                |c| c.disabled,
            ),
            (
                names::THROTTLED,
                "counter",
                "Deliveries put back, not failed, because the sink was rate limited.",
                |c| c.throttled,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (handler, c) in circuits.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{handler=\"{}\"}} {}",
                    escape_label(handler),
                    value(c)
                );
            }
        }
        out
    }
}

/// Escapes a Prometheus label value (`\`, `"` and newlines).
/// The [`names::CLUSTER_NODE`] series of node `node`.
pub fn render_node(node: &str) -> String {
    format!(
        "# HELP {n} This node's name in the cluster.\n# TYPE {n} gauge\n{n}{{node=\"{}\"}} 1\n",
        escape_label(node),
        n = names::CLUSTER_NODE
    )
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.accepted(3);
        m.module_loaded(true);
        m.module_loaded(true);
        m.module_loaded(false);
        m.delivery("logger", "ok", Duration::from_micros(20), 100);
        m.delivery("logger", "ok", Duration::from_millis(2), 50);
        m.delivery("bad\"name", "trap", Duration::from_secs(20), 1);
        let text = m.render_prometheus([0, 1, 2, 3]);
        assert!(text.contains("hookbox_events_accepted_total 3"), "{text}");
        assert!(text.contains("hookbox_deliveries_total{handler=\"logger\",outcome=\"ok\"} 2"));
        assert!(text.contains("handler=\"bad\\\"name\",outcome=\"trap\"} 1"));
        assert!(text.contains("hookbox_delivery_duration_seconds_bucket{le=\"0.00003\"} 1"));
        assert!(text.contains("hookbox_delivery_duration_seconds_bucket{le=\"0.003\"} 2"));
        assert!(text.contains("hookbox_delivery_duration_seconds_bucket{le=\"10\"} 2"));
        assert!(text.contains("hookbox_delivery_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("hookbox_fuel_consumed_total 151"));
        assert!(text.contains("hookbox_components_compiled_total 1"));
        assert!(text.contains("hookbox_components_cache_loads_total 2"));
        assert!(text.contains("hookbox_queue_depth{priority=\"low\"} 3"));
    }

    #[test]
    fn renders_module_loads_evictions_and_residency() {
        let m = Metrics::default();
        assert_eq!(m.module_load_mean_us(), None);
        m.module_load_took(Duration::from_micros(400));
        m.module_load_took(Duration::from_micros(200));
        assert_eq!(m.module_load_mean_us(), Some(300));
        m.modules_evicted(2);
        m.modules_evicted(1);
        m.resident(5, 4096);
        let text = m.render_prometheus([0; 4]);
        assert!(
            text.contains("# TYPE hookbox_module_load_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("hookbox_module_load_seconds_bucket{le=\"0.0003\"} 1"));
        assert!(text.contains("hookbox_module_load_seconds_bucket{le=\"0.001\"} 2"));
        assert!(text.contains("hookbox_module_load_seconds_count 2"));
        assert!(text.contains("hookbox_module_evictions_total 3"));
        assert!(text.contains("# TYPE hookbox_resident_modules gauge\nhookbox_resident_modules 5"));
        assert!(text.contains("hookbox_resident_code_bytes 4096"));
        // The delivery histogram is unaffected.
        assert!(text.contains("hookbox_delivery_duration_seconds_count 0"));
    }

    #[test]
    fn renders_circuit_series_per_handler() {
        let m = Metrics::default();
        m.circuit_opened("a");
        m.circuit_closed("a");
        m.circuit_opened("a");
        m.auto_disabled("a");
        m.circuit_opened("b");
        m.circuit_closed("b");
        m.circuit_opened("gone");
        m.circuit_forget("gone");
        let text = m.render_prometheus([0; 4]);
        assert!(text.contains("# TYPE hookbox_circuit_open gauge"), "{text}");
        assert!(text.contains("hookbox_circuit_open{handler=\"a\"} 1"));
        assert!(text.contains("hookbox_circuit_open{handler=\"b\"} 0"));
        assert!(text.contains("hookbox_circuit_opened_total{handler=\"a\"} 2"));
        assert!(text.contains("hookbox_handlers_auto_disabled_total{handler=\"a\"} 1"));
        assert!(text.contains("hookbox_handlers_auto_disabled_total{handler=\"b\"} 0"));
        assert!(!text.contains("gone"));
    }
}

//! Running a handler component locally, without a daemon: the library half
//! of `hookbox run`, the handler author's test loop. Compiles the component
//! with the granted capabilities (every one unless the run narrows them, as
//! a manifest does), builds events from files, delivers each one in
//! order with one in-memory KV (so counters accumulate across the events of
//! a run), and reports what happened in text or JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::event::{self, Event, EventInput};
use crate::kv::MemoryKv;
use crate::limits::Limits;
use crate::manifest::Capability;
use crate::runtime::{
    CompileLimits, DeliveryReport, DeliveryRequest, LogRecord, LogStream, Outcome, Runtime,
    RuntimeConfig,
};

/// The `source` of events built by `hookbox run`.
pub const SOURCE: &str = "cli";

/// Where the events of a run come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunInput {
    /// A file holding a Hookbox event object (`EventInput`: `type`,
    /// `tenant`, `payload`, `metadata`, `key`, `priority`) or an array of them.
    Events(PathBuf),
    /// A file holding a bare payload, wrapped into one event of this type.
    Payload {
        /// The event type.
        event_type: String,
        /// The tenant.
        tenant: String,
        /// The payload file; `None` for `{}`.
        file: Option<PathBuf>,
    },
    /// A file holding a Zulip event or an array of them: one event each,
    /// typed `type` or `type.op` as Hookbox's Zulip source does.
    Zulip {
        /// The tenant (the Zulip realm).
        tenant: String,
        /// The file.
        file: PathBuf,
    },
}

/// Everything a local run needs. `-` as a path reads standard input.
#[derive(Clone, Debug)]
pub struct LocalRun {
    /// The component (`.wasm`).
    pub component: PathBuf,
    /// The events.
    pub input: RunInput,
    /// The handler's configuration as JSON text.
    pub config: String,
    /// The handler name (the KV namespace); defaults to the file stem.
    pub handler: Option<String>,
    /// Per-delivery limits.
    pub limits: Limits,
    /// The Hookbox interfaces granted; an ungranted one the component calls
    /// ends the delivery `capability_denied`, as in the daemon.
    pub capabilities: BTreeSet<Capability>,
    /// The `hookbox` executable to compile in: a child process under the
    /// daemon's default compile caps, as an upload is (`None`: in this
    /// process, uncapped).
    pub compiler: Option<PathBuf>,
}

/// One delivered event and its report.
#[derive(Debug)]
pub struct RunDelivery {
    /// The event as the handler saw it.
    pub event: Event,
    /// What happened.
    pub report: DeliveryReport,
}

/// The result of a local run.
#[derive(Debug)]
pub struct RunSummary {
    /// The handler name used for KV.
    pub handler: String,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Time spent compiling the component.
    pub compile_time: Duration,
    /// One entry per event, in order.
    pub deliveries: Vec<RunDelivery>,
}

fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).context("reading standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A JSON value from a file, or its elements when it is an array, kept as
/// text so payloads reach the handler byte for byte (Zulip timestamps have
/// more digits than an `f64`).
fn read_values(path: &Path) -> Result<Vec<Box<RawValue>>> {
    let text = read_input(path)?;
    let not_json = || format!("{} is not valid JSON", path.display());
    if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).with_context(not_json)
    } else {
        Ok(vec![serde_json::from_str(&text).with_context(not_json)?])
    }
}

fn accept(input: EventInput, what: &str) -> Result<Event> {
    input
        .accept(SOURCE, 0, event::bounds::DEFAULT_PAYLOAD_BYTES)
        .with_context(|| format!("{what} is not a valid event"))
}

/// The events of a run, validated as the daemon would.
pub fn load_events(input: &RunInput) -> Result<Vec<Event>> {
    let events = match input {
        RunInput::Events(path) => read_values(path)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let what = format!("event #{i} of {}", path.display());
                let input: EventInput = serde_json::from_str(v.get())
                    .with_context(|| format!("{what} is not a Hookbox event"))?;
                accept(input, &what)
            })
            .collect::<Result<Vec<_>>>()?,
        RunInput::Payload {
            event_type,
            tenant,
            file,
        } => {
            let payload = match file {
                Some(path) => {
                    let text = read_input(path)?;
                    event::parse_payload(&text)
                        .with_context(|| format!("payload file {}", path.display()))?
                }
                None => event::empty_payload(),
            };
            let mut input = EventInput::new(event_type.clone(), &json!({}));
            input.tenant = tenant.clone();
            input.payload = Some(payload);
            vec![accept(input, "the event")?]
        }
        RunInput::Zulip { tenant, file } => read_values(file)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let what = format!("Zulip event #{i} of {}", file.display());
                let parsed: Value = serde_json::from_str(v.get())?;
                let Some(event_type) = event::zulip_event_type(&parsed) else {
                    bail!("{what} has no string `type`");
                };
                let mut input = EventInput::new(event_type, &json!({}));
                input.tenant = tenant.clone();
                input.payload = Some(v);
                accept(input, &what)
            })
            .collect::<Result<Vec<_>>>()?,
    };
    if events.is_empty() {
        bail!("no events to deliver");
    }
    Ok(events)
}

/// `--config` text: JSON, or `@FILE` holding JSON. Returned as compact JSON.
pub fn load_config(arg: &str) -> Result<String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => read_input(Path::new(path))?,
        None => arg.to_string(),
    };
    let value: Value =
        serde_json::from_str(&text).context("the handler config is not valid JSON")?;
    Ok(value.to_string())
}

/// Compiles the component and delivers every event to it.
pub fn run_local(run: &LocalRun) -> Result<RunSummary> {
    let wasm = std::fs::read(&run.component)
        .with_context(|| format!("reading {}", run.component.display()))?;
    let handler = match &run.handler {
        Some(h) => h.clone(),
        None => run
            .component
            .file_stem()
            .map_or_else(|| "handler".into(), |s| s.to_string_lossy().into_owned()),
    };
    let config = load_config(&run.config)?;
    let events = load_events(&run.input)?;

    // One process, one component: on-demand allocation avoids reserving a
    // pool, and the memory ceiling is whatever the run asks for.
    let runtime = Runtime::new(RuntimeConfig {
        pooling: false,
        pool_memory_bytes: run.limits.memory_bytes.clamp(1, 4 << 30),
        compile: CompileLimits {
            isolate: run.compiler.clone(),
            ..CompileLimits::default()
        },
        ..RuntimeConfig::default()
    })?;
    let started = Instant::now();
    let capabilities = &run.capabilities;
    let compiled = runtime
        .compile(&wasm, capabilities)
        .with_context(|| format!("{} was refused", run.component.display()))?;
    let compile_time = started.elapsed();

    let kv = MemoryKv::new();
    let deliveries = events
        .into_iter()
        .map(|event| {
            let report = runtime.deliver(
                &compiled.module,
                DeliveryRequest {
                    handler: &handler,
                    event: &event,
                    attempt: 1,
                    limits: &run.limits,
                    config: &config,
                    kv: &kv,
                    kv_incarnation: "",
                    capabilities,
                    reuse: 0,
                },
            );
            RunDelivery { event, report }
        })
        .collect();
    Ok(RunSummary {
        handler,
        imports: compiled.imports,
        compile_time,
        deliveries,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl RunSummary {
    /// Whether every delivery ended `ok`.
    pub fn all_ok(&self) -> bool {
        self.deliveries
            .iter()
            .all(|d| d.report.outcome.is_success())
    }

    /// Human-readable report: one block per event.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // `write!` into a String cannot fail.
        let _ = writeln!(
            out,
            "compiled {} in {:.1?}; imports: {}",
            self.handler,
            self.compile_time,
            self.imports.join(", ")
        );
        for d in &self.deliveries {
            let (e, r) = (&d.event, &d.report);
            let _ = writeln!(
                out,
                "\nevent {} type={} tenant={:?}",
                e.id, e.event_type, e.tenant
            );
            let _ = writeln!(
                out,
                "  outcome {}  fuel {}  duration {:.1?}  peak memory {}",
                r.outcome,
                r.fuel_used,
                r.duration,
                mib(r.peak_memory_bytes)
            );
            if let Some(err) = &r.error {
                let _ = writeln!(
                    out,
                    "  error{}: {}",
                    if r.retryable { " (retryable)" } else { "" },
                    err.replace('\n', "\n    ")
                );
            }
            for log in &r.logs {
                let source = match log.stream {
                    LogStream::Log => log.level.as_str(),
                    LogStream::Stdout => "stdout",
                    LogStream::Stderr => "stderr",
                };
                let _ = write!(out, "  [{source}] {}", log.message);
                for (k, v) in &log.fields {
                    let _ = write!(out, " {k}={v:?}");
                }
                out.push('\n');
            }
            for em in &r.emitted {
                let payload = em.payload.as_ref().map_or("{}", |p| p.get());
                let _ = writeln!(
                    out,
                    "  emitted {} tenant={:?} priority={} {payload}",
                    em.event_type, em.tenant, em.priority
                );
            }
        }
        let ok = self
            .deliveries
            .iter()
            .filter(|d| d.report.outcome.is_success())
            .count();
        let _ = writeln!(out, "\n{ok}/{} deliveries ok", self.deliveries.len());
        out
    }

    /// The report as JSON: `{handler, imports, compile_us, deliveries: [...]}`.
    /// Payloads are written as the text they are (never parsed into a
    /// tree), so no payload can make printing the report fail.
    pub fn to_json(&self) -> impl Serialize + '_ {
        #[derive(Serialize)]
        struct Report<'a> {
            handler: &'a str,
            imports: &'a [String],
            compile_us: u64,
            deliveries: Vec<Delivery<'a>>,
        }
        #[derive(Serialize)]
        struct Delivery<'a> {
            event: &'a Event,
            outcome: Outcome,
            error: Option<&'a str>,
            retryable: bool,
            fuel_used: u64,
            duration_us: u64,
            peak_memory_bytes: u64,
            logs: &'a [LogRecord],
            emitted: &'a [EventInput],
        }
        Report {
            handler: &self.handler,
            imports: &self.imports,
            compile_us: self.compile_time.as_micros() as u64,
            deliveries: self
                .deliveries
                .iter()
                .map(|d| {
                    let r = &d.report;
                    Delivery {
                        event: &d.event,
                        outcome: r.outcome,
                        error: r.error.as_deref(),
                        retryable: r.retryable,
                        fuel_used: r.fuel_used,
                        duration_us: r.duration.as_micros() as u64,
                        peak_memory_bytes: r.peak_memory_bytes,
                        logs: &r.logs,
                        emitted: &r.emitted,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hookbox-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn event_files_hold_one_event_or_an_array() {
        let one = temp_file(
            "one.json",
            r#"{"type": "ping", "tenant": "acme", "payload": {"a": 1}}"#,
        );
        let events = load_events(&RunInput::Events(one)).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].tenant, "acme");
        assert_eq!(events[0].payload.get(), r#"{"a": 1}"#);
        assert_eq!(events[0].source, SOURCE);

        let many = temp_file(
            "many.json",
            r#"[{"type": "a"}, {"type": "b", "priority": "high"}]"#,
        );
        let events = load_events(&RunInput::Events(many)).unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );

        let typo = temp_file("typo.json", r#"[{"type": "a"}, {"typ": "b"}]"#);
        let err = format!("{:#}", load_events(&RunInput::Events(typo)).unwrap_err());
        assert!(err.contains("event #1") && err.contains("typ"), "{err}");
    }

    #[test]
    fn payload_and_zulip_inputs() {
        let payload = temp_file("payload.json", r#"{"text": "hi"}"#);
        let events = load_events(&RunInput::Payload {
            event_type: "message".into(),
            tenant: "t".into(),
            file: Some(payload),
        })
        .unwrap();
        assert_eq!(
            (events[0].event_type.as_str(), events[0].tenant.as_str()),
            ("message", "t")
        );
        assert_eq!(events[0].payload.get(), r#"{"text": "hi"}"#);

        let zulip = temp_file(
            "zulip.json",
            r#"[{"type": "message", "t": 1594825445.320078373}, {"type": "reaction", "op": "add"}]"#,
        );
        let events = load_events(&RunInput::Zulip {
            tenant: "chat.example.com".into(),
            file: zulip,
        })
        .unwrap();
        let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["message", "reaction.add"]);
        assert_eq!(
            events[0].payload.get(),
            r#"{"type": "message", "t": 1594825445.320078373}"#
        );

        let untyped = temp_file("untyped.json", r#"[{"id": 1}]"#);
        let err = load_events(&RunInput::Zulip {
            tenant: String::new(),
            file: untyped,
        })
        .unwrap_err();
        assert!(err.to_string().contains("no string `type`"), "{err}");
        let empty = temp_file("empty.json", "[]");
        assert!(load_events(&RunInput::Events(empty)).is_err());
    }

    #[test]
    fn config_is_json_text_or_a_file() {
        assert_eq!(load_config(r#"{ "every": 2 }"#).unwrap(), r#"{"every":2}"#);
        let file = temp_file("config.json", r#"{"k": [1, 2]}"#);
        assert_eq!(
            load_config(&format!("@{}", file.display())).unwrap(),
            r#"{"k":[1,2]}"#
        );
        assert!(load_config("{nope").is_err());
    }
}

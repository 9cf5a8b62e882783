//! The daemon's configuration: an optional TOML file (unknown keys are
//! errors), then command-line and environment overrides, validated once
//! into [`Config`] and handed to the constructors. Nothing reads the
//! environment after this.
//!
//! Every key is optional; see `Config::default` for the defaults and the
//! README's "Configuration" section for an annotated example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::connectors::resolve_all;
use crate::dispatch::{BreakerPolicy, DispatchConfig};
use crate::limits::{Limits, LimitsSpec};
use crate::runtime::RuntimeConfig;
use crate::store::{Durability, InboxKind, StoreOptions};

/// The smallest `[runtime] compile_memory_bytes`: a compile child's own
/// start and engine take about 10 MiB of it.
const MIN_COMPILE_MEMORY: u64 = 32 << 20;

/// A configuration problem, naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

/// The file's shape. All sections and keys are optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the store lives.
    pub data_dir: Option<PathBuf>,
    /// The admin API's listen address.
    pub listen: Option<SocketAddr>,
    /// `trace`, `debug`, `info`, `warn`, `error`, or a tracing filter.
    pub log_level: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Storage settings.
    #[serde(default)]
    pub store: StoreSection,
    /// Queue and worker settings.
    #[serde(default)]
    pub dispatch: DispatchSection,
    /// Default per-delivery limits for handlers that set none.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// The most any handler may ask for.
    #[serde(default)]
    pub ceilings: LimitsSpec,
    /// Sandbox engine settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// HTTP request limits.
    #[serde(default)]
    pub api: ApiSection,
    /// Circuit-breaker and auto-disable defaults for handlers.
    #[serde(default)]
    pub breaker: BreakerSection,
    /// Zulip realms to connect to, one `[[zulip]]` table each.
    #[serde(default)]
    pub zulip: Vec<crate::connectors::zulip::RealmSection>,
    /// Redis event buses, one `[[redis]]` table each.
    #[serde(default)]
    pub redis: Vec<crate::connectors::redis::RedisSection>,
    /// Webhook endpoints handlers may call, one `[[webhook]]` table each.
    #[serde(default)]
    pub webhook: Vec<crate::connectors::webhook::WebhookSection>,
    /// Cluster mode on NATS JetStream (off unless `nats` lists servers).
    #[serde(default)]
    pub cluster: crate::cluster::ClusterSection,
}

/// `[breaker]`: defaults for every handler's `delivery.breaker` (see
/// `BreakerPolicy` for what each does and the defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    /// Failures in a row that open a breaker; 0: off (default 10).
    pub consecutive_failures: Option<u32>,
    /// Failed share of the window that opens it, 0.0–1.0; 0: off (default 0.5).
    pub failure_rate: Option<f64>,
    /// Attempts the window needs before the rate applies (default 20).
    pub min_attempts: Option<u32>,
    /// The failure-rate window (default `60s`).
    #[serde(default, with = "opt_duration")]
    pub window: Option<Duration>,
    /// How long a breaker stays open (default `30s`).
    #[serde(default, with = "opt_duration")]
    pub cooldown: Option<Duration>,
    /// Openings within `auto_disable_window` that disable a handler; 0: never (default 5).
    pub auto_disable_opens: Option<u32>,
    /// The auto-disable period (default `1h`).
    #[serde(default, with = "opt_duration")]
    pub auto_disable_window: Option<Duration>,
}

impl BreakerSection {
    /// The daemon-wide breaker defaults, checked like a manifest's.
    fn resolve(&self) -> Result<BreakerPolicy, ConfigError> {
        let ms = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let spec = crate::manifest::BreakerSpec {
            consecutive_failures: self.consecutive_failures,
            failure_rate: self.failure_rate,
            min_attempts: self.min_attempts,
            window_ms: ms(self.window),
            cooldown_ms: ms(self.cooldown),
            auto_disable_opens: self.auto_disable_opens,
            auto_disable_window_ms: ms(self.auto_disable_window),
        };
        spec.validate().map_err(|e| {
            ConfigError::Invalid(format!(
                "[breaker]: {}",
                e.0.replace("delivery.breaker.", "")
            ))
        })?;
        Ok(BreakerPolicy::default().with_overrides(&spec))
    }
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// sled page cache in MiB (default 64).
    pub cache_mb: Option<u64>,
    /// `sync` (default: flush before acknowledging), `group`, or `none`.
    pub durability: Option<DurabilityName>,
    /// `log` (default) or `sled`: where accepted events wait.
    pub inbox: Option<InboxName>,
    /// Group-commit interval for `durability = "group"` (default `5ms`).
    #[serde(default, with = "opt_duration")]
    pub group_commit: Option<Duration>,
    /// Delivery log entries kept (default 1 000 000).
    pub log_max_entries: Option<u64>,
    /// Delivery log age kept (default `7days`).
    #[serde(default, with = "opt_duration")]
    pub log_max_age: Option<Duration>,
}

/// Inbox names.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InboxName {
    /// sled trees, one transaction per accept.
    Sled,
    /// The segment log with group commit.
    Log,
}

/// Durability mode names.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityName {
    /// Flush before acknowledging.
    Sync,
    /// Flush every `group_commit`; acknowledge after the flush.
    Group,
    /// Never flush explicitly (tests and benchmarks only).
    None,
}

/// `[dispatch]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSection {
    /// Worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Queued deliveries before ingest answers 429 (default 100 000).
    pub queue_capacity: Option<usize>,
    /// Percent of the queue one tenant may hold while others want room
    /// (1–100, default 50; 100: no share).
    pub tenant_queue_share: Option<u64>,
    /// Largest payload in bytes (default 1 MiB).
    pub max_payload_bytes: Option<usize>,
    /// Events per request (default 10 000).
    pub max_batch: Option<usize>,
    /// Emission chain depth (default 8).
    pub max_emit_depth: Option<u32>,
    /// How long idempotency keys are remembered (default `24h`).
    #[serde(default, with = "opt_duration")]
    pub idempotency_window: Option<Duration>,
}

/// `[runtime]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// wasm stack per delivery in bytes (engine-wide; default 512 KiB).
    pub max_wasm_stack: Option<usize>,
    /// Use the pooling allocator (default true; falls back when it cannot reserve).
    pub pooling: Option<bool>,
    /// Instances in the pool (default 256).
    pub pool_instances: Option<u32>,
    /// Handlers that may hold an instance prepared ahead of their next
    /// event (default 16; 0: off). Only handlers costly to instantiate
    /// (Python, JavaScript) get one.
    pub prepare_ahead: Option<usize>,
    /// Epoch tick: the timeout granularity (default `10ms`).
    #[serde(default, with = "opt_duration")]
    pub epoch_tick: Option<Duration>,
    /// Compiled handler modules kept loaded; past it, or past
    /// `resident_mb`, the least recently used is evicted (default 1000).
    pub resident_handlers: Option<usize>,
    /// MiB of compiled code kept loaded (default 1024).
    pub resident_mb: Option<u64>,
    /// Cap of the memory one upload's validation and compilation may use,
    /// in bytes (default 1 GiB); past it the deploy is refused (422).
    pub compile_memory_bytes: Option<u64>,
    /// Longest one upload's compilation may take (default `60s`).
    #[serde(default, with = "opt_duration")]
    pub compile_timeout: Option<Duration>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Largest JSON request body (default 16 MiB).
    pub max_body_bytes: Option<usize>,
    /// Largest component upload (default 50 MiB).
    pub max_component_bytes: Option<usize>,
    /// Longest `?wait=true` (default `60s`).
    #[serde(default, with = "opt_duration")]
    pub max_wait: Option<Duration>,
    /// Longest a publish waits for room in a full queue before its 429
    /// (default `250ms`; `0s`: refuse at once; at most `10s`).
    #[serde(default, with = "opt_duration")]
    pub queue_wait: Option<Duration>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// The admin API's listen address.
    pub listen: SocketAddr,
    /// Tracing filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Store options.
    pub store: StoreOptions,
    /// Dispatcher settings.
    pub dispatch: DispatchConfig,
    /// Engine settings.
    pub runtime: RuntimeConfig,
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Longest synchronous wait.
    pub max_wait: Duration,
    /// Longest a publish waits for room in a full queue.
    pub queue_wait: Duration,
    /// Zulip realms, keys already read.
    pub zulip: Vec<crate::connectors::zulip::RealmConfig>,
    /// Redis buses, passwords already read.
    pub redis: Vec<crate::connectors::redis::RedisConfig>,
    /// Webhook endpoints, secrets already read.
    pub webhooks: Vec<crate::connectors::webhook::WebhookConfig>,
    /// Cluster mode, when `[cluster] nats` lists servers.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// Overrides from the command line and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data` / `HOOKBOX_DATA`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `HOOKBOX_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl ConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

impl Config {
    /// Combines file and overrides with the defaults, checking ranges.
    pub fn resolve(file: ConfigFile, over: Overrides) -> Result<Config, ConfigError> {
        let defaults = DispatchConfig::default();
        let hard_defaults = Limits::default();
        let hard_ceilings = Limits::default_ceilings();
        // Ceilings may be raised or lowered; defaults must sit under them.
        let ceilings = overlay(&hard_ceilings, &file.ceilings);
        let default_limits = hard_defaults
            .with_overrides(&file.limits, &ceilings)
            .map_err(|e| ConfigError::Invalid(format!("[limits]: {e}")))?;

        let durability = match file.store.durability.unwrap_or(DurabilityName::Sync) {
            DurabilityName::Sync => Durability::Sync,
            DurabilityName::Group => Durability::Group {
                interval: file.store.group_commit.unwrap_or(Duration::from_millis(5)),
            },
            DurabilityName::None => Durability::None,
        };
        let mut store = StoreOptions {
            durability,
            inbox: match file.store.inbox.unwrap_or(InboxName::Log) {
                InboxName::Sled => InboxKind::Sled,
                InboxName::Log => InboxKind::Log,
            },
            ..StoreOptions::default()
        };
        if let Some(mb) = file.store.cache_mb {
            store.cache_bytes = mb.saturating_mul(1 << 20);
        }
        if let Some(n) = file.store.log_max_entries {
            store.log_max_entries = n;
        }
        if let Some(age) = file.store.log_max_age {
            store.log_max_age = age;
        }

        let d = file.dispatch;
        let mut dispatch = DispatchConfig {
            workers: positive("dispatch.workers", d.workers)?.unwrap_or(defaults.workers),
            queue_capacity: positive("dispatch.queue_capacity", d.queue_capacity)?
                .unwrap_or(defaults.queue_capacity),
            tenant_queue_share: match d.tenant_queue_share {
                None => defaults.tenant_queue_share,
                Some(p @ 1..=100) => p as u8,
                Some(p) => {
                    return Err(ConfigError::Invalid(format!(
                        "dispatch.tenant_queue_share must be a percentage from 1 to 100 (100: no share), not {p}"
                    )));
                }
            },
            max_payload_bytes: positive("dispatch.max_payload_bytes", d.max_payload_bytes)?
                .unwrap_or(defaults.max_payload_bytes),
            max_batch: positive("dispatch.max_batch", d.max_batch)?.unwrap_or(defaults.max_batch),
            max_component_bytes: positive("api.max_component_bytes", file.api.max_component_bytes)?
                .unwrap_or(defaults.max_component_bytes),
            max_emit_depth: d.max_emit_depth.unwrap_or(defaults.max_emit_depth),
            idempotency_window: d.idempotency_window.unwrap_or(defaults.idempotency_window),
            default_limits,
            ceilings: ceilings.clone(),
            breaker: file.breaker.resolve()?,
            resident: defaults.resident,
        };
        if let Some(n) = positive("runtime.resident_handlers", file.runtime.resident_handlers)? {
            dispatch.resident.modules = n;
        }
        match file.runtime.resident_mb {
            Some(0) => {
                return Err(ConfigError::Invalid(
                    "runtime.resident_mb must be greater than 0".into(),
                ));
            }
            Some(mb) => dispatch.resident.bytes = mb.saturating_mul(1 << 20),
            None => {}
        }
        if dispatch.workers > 1024 {
            return Err(ConfigError::Invalid(
                "dispatch.workers must be at most 1024".into(),
            ));
        }

        let mut runtime = RuntimeConfig::default();
        if let Some(s) = file.runtime.max_wasm_stack {
            runtime.max_wasm_stack = s;
        }
        if let Some(p) = file.runtime.pooling {
            runtime.pooling = p;
        }
        if let Some(n) = file.runtime.pool_instances {
            runtime.pool_instances = n;
        }
        if let Some(n) = file.runtime.prepare_ahead {
            runtime.prepare_ahead = n;
        }
        if let Some(t) = file.runtime.epoch_tick {
            if t.is_zero() {
                return Err(ConfigError::Invalid(
                    "runtime.epoch_tick must be > 0".into(),
                ));
            }
            runtime.epoch_tick = t;
        }
        if let Some(b) = file.runtime.compile_memory_bytes {
            // Below this the child cannot even start its engine.
            if b < MIN_COMPILE_MEMORY {
                return Err(ConfigError::Invalid(format!(
                    "runtime.compile_memory_bytes must be at least {MIN_COMPILE_MEMORY}"
                )));
            }
            runtime.compile.memory_bytes = b;
        }
        if let Some(t) = file.runtime.compile_timeout {
            if t < Duration::from_secs(1) {
                return Err(ConfigError::Invalid(
                    "runtime.compile_timeout must be at least 1s".into(),
                ));
            }
            runtime.compile.timeout = t;
        }
        runtime.pool_memory_bytes = ceilings.memory_bytes;
        runtime.max_component_bytes = dispatch.max_component_bytes;

        // Connector secrets (Zulip API keys, Redis passwords, webhook
        // secrets) are read here, once, from the file or environment
        // variable each section names.
        let env = |var: &str| std::env::var(var).ok();
        let zulip = resolve_all(&file.zulip, &env).map_err(ConfigError::Invalid)?;
        let redis = resolve_all(&file.redis, &env).map_err(ConfigError::Invalid)?;
        let webhooks = resolve_all(&file.webhook, &env).map_err(ConfigError::Invalid)?;
        let cluster = file.cluster.resolve().map_err(ConfigError::Invalid)?;

        Ok(Config {
            data_dir: over
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./hookbox-data")),
            listen: over
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            log_level: over
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            log_format: over.log_format.or(file.log_format).unwrap_or_default(),
            store,
            dispatch,
            runtime,
            max_body_bytes: positive("api.max_body_bytes", file.api.max_body_bytes)?
                .unwrap_or(16 << 20),
            max_wait: file.api.max_wait.unwrap_or(Duration::from_secs(60)),
            queue_wait: match file.api.queue_wait {
                None => crate::api::DEFAULT_QUEUE_WAIT,
                Some(w) if w <= crate::api::MAX_QUEUE_WAIT => w,
                Some(w) => {
                    return Err(ConfigError::Invalid(format!(
                        "api.queue_wait must be at most {}, not {}",
                        humantime::format_duration(crate::api::MAX_QUEUE_WAIT),
                        humantime::format_duration(w)
                    )));
                }
            },
            zulip,
            redis,
            webhooks,
            cluster,
        })
    }
}

fn positive(key: &str, v: Option<usize>) -> Result<Option<usize>, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::Invalid(format!(
            "{key} must be greater than 0"
        ))),
        v => Ok(v),
    }
}

/// `base` with every field `spec` sets replaced (no ceiling check: this is
/// how the operator sets the ceilings themselves).
fn overlay(base: &Limits, spec: &LimitsSpec) -> Limits {
    Limits {
        fuel: spec.fuel.unwrap_or(base.fuel),
        timeout_ms: spec.timeout_ms.unwrap_or(base.timeout_ms),
        memory_bytes: spec.memory_bytes.unwrap_or(base.memory_bytes),
        table_elements: spec.table_elements.unwrap_or(base.table_elements),
        instances: spec.instances.unwrap_or(base.instances),
        log_bytes: spec.log_bytes.unwrap_or(base.log_bytes),
        emits: spec.emits.unwrap_or(base.emits),
        emit_bytes: spec.emit_bytes.unwrap_or(base.emit_bytes),
        kv_value_bytes: spec.kv_value_bytes.unwrap_or(base.kv_value_bytes),
        kv_quota_bytes: spec.kv_quota_bytes.unwrap_or(base.kv_quota_bytes),
        kv_quota_keys: spec.kv_quota_keys.unwrap_or(base.kv_quota_keys),
        result_bytes: spec.result_bytes.unwrap_or(base.result_bytes),
    }
}

/// Durations as humantime strings (`"5ms"`, `"24h"`, `"7days"`).
pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::resolve(ConfigFile::parse("").unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./hookbox-data"));
        assert!(matches!(c.store.durability, Durability::Sync));
        assert_eq!(c.store.inbox, InboxKind::Log);
        assert_eq!(c.dispatch.default_limits, Limits::default());
    }

    #[test]
    fn full_file_and_overrides() {
        let text = r#"
            data_dir = "/var/lib/hookbox"
            listen = "0.0.0.0:9000"
            log_format = "json"
            [store]
            durability = "group"
            group_commit = "2ms"
            cache_mb = 32
            inbox = "sled"
            [dispatch]
            workers = 4
            idempotency_window = "1h"
            [limits]
            fuel = 1000
            [ceilings]
            fuel = 5000
            [runtime]
            epoch_tick = "5ms"
            resident_handlers = 50
            resident_mb = 64
            [api]
            max_wait = "10s"
            queue_wait = "1s"
        "#;
        let over = Overrides {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::resolve(ConfigFile::parse(text).unwrap(), over).unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/hookbox"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(
            matches!(c.store.durability, Durability::Group { interval } if interval == Duration::from_millis(2))
        );
        assert_eq!(c.store.inbox, InboxKind::Sled);
        assert_eq!(c.store.cache_bytes, 32 << 20);
        assert_eq!(c.dispatch.workers, 4);
        assert_eq!(c.dispatch.default_limits.fuel, 1000);
        assert_eq!(c.dispatch.ceilings.fuel, 5000);
        assert_eq!(c.runtime.epoch_tick, Duration::from_millis(5));
        assert_eq!(c.dispatch.resident.modules, 50);
        assert_eq!(c.dispatch.resident.bytes, 64 << 20);
        assert_eq!(c.max_wait, Duration::from_secs(10));
        assert_eq!(c.queue_wait, Duration::from_secs(1));
        let resolve =
            |text: &str| Config::resolve(ConfigFile::parse(text).unwrap(), Overrides::default());
        assert_eq!(resolve("").unwrap().queue_wait, Duration::from_millis(250));
        assert_eq!(
            resolve("[api]\nqueue_wait = \"0s\"").unwrap().queue_wait,
            Duration::ZERO
        );
        let e = resolve("[api]\nqueue_wait = \"1m\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("api.queue_wait must be at most 10s, not 1m"),
            "{e}"
        );
        for bad in ["resident_handlers = 0", "resident_mb = 0"] {
            let file = ConfigFile::parse(&format!("[runtime]\n{bad}")).unwrap();
            let e = Config::resolve(file, Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("must be greater than 0"), "{e}");
        }
    }

    #[test]
    fn compile_caps_are_configurable_and_checked() {
        let c = Config::resolve(ConfigFile::parse("").unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.runtime.compile.memory_bytes, 1 << 30);
        assert_eq!(c.runtime.compile.timeout, Duration::from_secs(60));
        let text = "[runtime]\ncompile_memory_bytes = 67108864\ncompile_timeout = \"5s\"";
        let c = Config::resolve(ConfigFile::parse(text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.runtime.compile.memory_bytes, 64 << 20);
        assert_eq!(c.runtime.compile.timeout, Duration::from_secs(5));
        for (bad, says) in [
            ("compile_memory_bytes = 1000", "at least"),
            ("compile_timeout = \"10ms\"", "at least 1s"),
        ] {
            let file = ConfigFile::parse(&format!("[runtime]\n{bad}")).unwrap();
            let e = Config::resolve(file, Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_tenant_queue_share_is_a_percentage() {
        let c = Config::resolve(ConfigFile::parse("").unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.dispatch.tenant_queue_share, 50);
        let text = "[dispatch]\ntenant_queue_share = 100";
        let c = Config::resolve(ConfigFile::parse(text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.dispatch.tenant_queue_share, 100);
        for bad in ["0", "101", "100000000000"] {
            let file = ConfigFile::parse(&format!("[dispatch]\ntenant_queue_share = {bad}"));
            let e = Config::resolve(file.unwrap(), Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("from 1 to 100"), "{bad}: {e}");
        }
        // A negative number is not a u64: the parser refuses it.
        assert!(ConfigFile::parse("[dispatch]\ntenant_queue_share = -5").is_err());
    }

    #[test]
    fn breaker_defaults_are_configurable_and_checked() {
        let text = "[breaker]\ncooldown = \"250ms\"\nauto_disable_opens = 0";
        let c = Config::resolve(ConfigFile::parse(text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.dispatch.breaker.cooldown_ms, 250);
        assert_eq!(c.dispatch.breaker.auto_disable_opens, 0);
        assert_eq!(c.dispatch.breaker.consecutive_failures, 10);
        let file = ConfigFile::parse("[breaker]\nfailure_rate = 2.0").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("[breaker]: `failure_rate`"),
            "{err}"
        );
    }

    #[test]
    fn kv_quotas_have_defaults_and_ceilings() {
        let text = "[limits]\nkv_quota_bytes = 1048576\nkv_quota_keys = 500\n\
                    [ceilings]\nkv_quota_keys = 500";
        let c = Config::resolve(ConfigFile::parse(text).unwrap(), Overrides::default()).unwrap();
        assert_eq!(c.dispatch.default_limits.kv_quota_bytes, 1 << 20);
        assert_eq!(c.dispatch.default_limits.kv_quota_keys, 500);
        assert_eq!(c.dispatch.ceilings.kv_quota_keys, 500);
        // A ceiling under the built-in default needs a default under it too.
        let file = ConfigFile::parse("[ceilings]\nkv_quota_keys = 500").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("kv_quota_keys"), "{err}");
    }

    /// The annotated example in the README's "Configuration" section is a
    /// valid config (the docs cannot drift from the schema).
    #[test]
    fn readme_example_is_valid() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## Configuration").expect("section")..];
        let start = section.find("```toml\n").expect("toml block") + "```toml\n".len();
        let block = &section[start..];
        let block = &block[..block.find("```").expect("block end")];
        let file = ConfigFile::parse(block).unwrap_or_else(|e| panic!("{e}"));
        Config::resolve(file, Overrides::default()).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let err = ConfigFile::parse("[dispatch]\nworkrs = 2").unwrap_err();
        assert!(err.contains("workrs"), "{err}");
        let err = ConfigFile::parse("[store]\ngroup_commit = \"soon\"").unwrap_err();
        assert!(
            err.contains("group_commit") || err.contains("soon"),
            "{err}"
        );
        let file = ConfigFile::parse("[limits]\nfuel = 10\n[ceilings]\nfuel = 5").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
        let file = ConfigFile::parse("[dispatch]\nworkers = 0").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("dispatch.workers"), "{err}");
    }
}

//! The records the store keeps and hands out. They are plain serde types —
//! the admin API returns them as JSON as they are — and carry no sled type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::event::{Event, EventInput};
use crate::manifest::Manifest;

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything, including token and handler administration.
    Admin,
    /// Ingest events.
    Publish,
    /// Read handlers, logs, stats and dead letters.
    Read,
}

/// An API token, without its secret (only a sha256 of it is stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenRecord {
    /// Stable id (ULID), used to revoke.
    pub id: String,
    /// Operator-chosen label.
    pub name: String,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// Tenants it may publish to or read; empty means all.
    pub tenants: Vec<String>,
    /// Event-type patterns it may publish; empty means all.
    pub event_types: Vec<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Expiry time, ms since the epoch; `None` never expires.
    pub expires_ms: Option<u64>,
}

/// A handler: which version runs, whether it runs, with which config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HandlerRecord {
    /// Unique name.
    pub name: String,
    /// The version deliveries use (unless a replay pins another).
    pub active_version: u32,
    /// Disabled handlers receive no new deliveries.
    pub enabled: bool,
    /// Why the handler was disabled, by an operator or automatically.
    pub disabled_reason: Option<String>,
    /// Config the guest reads; starts as the manifest's, changed by `set_config`.
    pub config: serde_json::Value,
    /// First deploy, ms since the epoch.
    pub created_ms: u64,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// Which life of the name this is: a ULID made when the name is first
    /// deployed, kept by every later version and change, and made anew
    /// when the name is deployed again after a delete. In cluster mode the
    /// handler's KV keys carry it, so a delivery of a deleted handler still
    /// running on another node never writes into the KV of a handler
    /// deployed again under the name. Empty for handlers deployed before
    /// incarnations existed (their keys stay as they were).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incarnation: String,
}

/// One deployed version of a handler; immutable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionRecord {
    /// The handler name.
    pub name: String,
    /// 1, 2, … in deploy order; never reused.
    pub version: u32,
    /// The manifest it was deployed with.
    pub manifest: Manifest,
    /// sha256 hex of the component (key into the module store).
    pub module_hash: String,
    /// Component size in bytes.
    pub module_bytes: u64,
    /// Deploy time, ms since the epoch.
    pub created_ms: u64,
    /// The actor (token name) that deployed it.
    pub deployed_by: String,
}

/// An unfinished delivery: one event for one handler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pending {
    /// The event (in the `events` tree until its last delivery finishes).
    pub event_id: String,
    /// The handler it is for.
    pub handler: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it may run, ms since the epoch.
    pub due_ms: u64,
    /// A version pinned by a replay; `None` runs the active version.
    pub version: Option<u32>,
    /// Errors of the earlier attempts.
    pub errors: Vec<AttemptError>,
}

/// One failed attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptError {
    /// Which attempt.
    pub attempt: u32,
    /// The outcome name (`trap`, `out_of_fuel`, `timeout`, …).
    pub outcome: String,
    /// Detail, when there is some.
    pub error: Option<String>,
    /// When it ended, ms since the epoch.
    pub time_ms: u64,
}

/// One delivery attempt in the delivery log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// ULID; assigned by the store when empty.
    pub id: String,
    /// The handler.
    pub handler: String,
    /// The version that ran.
    pub version: u32,
    /// The event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's tenant.
    pub tenant: String,
    /// snake_case outcome name; `ok` is success, `expired` a delivery not
    /// run because the event was older than the handler's `max_age`,
    /// anything else a failure.
    pub outcome: String,
    /// Error detail.
    pub error: Option<String>,
    /// Wall-clock duration of the attempt, µs.
    pub duration_us: u64,
    /// Fuel consumed.
    pub fuel: u64,
    /// Peak linear memory, bytes.
    pub memory_bytes: u64,
    /// Which attempt.
    pub attempt: u32,
    /// When it ended, ms since the epoch.
    pub time_ms: u64,
    /// What the handler logged during the attempt (`log` records and its
    /// stdout/stderr lines), in order; bounded by its `log_bytes` limit.
    #[serde(default)]
    pub logs: Vec<HandlerLog>,
    /// The first [`EMITTED_KEPT`] events the attempt emitted, in order, each
    /// with its payload cut to [`EMITTED_PREVIEW_BYTES`]. A successful
    /// attempt's emissions are then accepted as one batch, unless dropped
    /// (emit depth, queue share: logged, and counted in
    /// `hookbox_emitted_events_dropped_total`); a failed attempt's are
    /// discarded.
    #[serde(default)]
    pub emitted: Vec<EmittedEvent>,
    /// How many events the attempt emitted (`emitted` keeps the first few).
    #[serde(default)]
    pub emitted_total: u32,
}

/// Emitted events kept per logged attempt.
pub const EMITTED_KEPT: usize = 20;
/// Payload bytes kept per emitted event in the log.
pub const EMITTED_PREVIEW_BYTES: usize = 512;

/// An event a delivery emitted, as the delivery log keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EmittedEvent {
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its tenant.
    pub tenant: String,
    /// Its ordering key, if any.
    #[serde(default)]
    pub key: Option<String>,
    /// The payload's JSON text, cut at [`EMITTED_PREVIEW_BYTES`] (on a
    /// character boundary; then `payload_truncated` is true).
    pub payload: String,
    /// Whether `payload` was cut.
    #[serde(default)]
    pub payload_truncated: bool,
}

impl EmittedEvent {
    /// What the log keeps of the emitted events `inputs`: the first
    /// [`EMITTED_KEPT`], payloads cut, and how many there were.
    pub fn summary(inputs: &[EventInput]) -> (Vec<EmittedEvent>, u32) {
        let kept = inputs
            .iter()
            .take(EMITTED_KEPT)
            .map(|i| {
                let text = i.payload.as_ref().map_or("{}", |p| p.get());
                let mut cut = text.len().min(EMITTED_PREVIEW_BYTES);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                EmittedEvent {
                    event_type: i.event_type.clone(),
                    tenant: i.tenant.clone(),
                    key: i.key.clone(),
                    payload: text[..cut].to_string(),
                    payload_truncated: cut < text.len(),
                }
            })
            .collect();
        (kept, u32::try_from(inputs.len()).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod emitted_tests {
    use super::*;

    #[test]
    fn emitted_events_are_summarised_and_cut_on_a_character_boundary() {
        let mut long = EventInput::new("reply", &serde_json::json!({"text": "é".repeat(400)}));
        long.key = Some("k".into());
        let short = EventInput::new("ping", &serde_json::json!({"n": 1}));
        let many: Vec<EventInput> = std::iter::once(long)
            .chain(std::iter::repeat_n(short, 30))
            .collect();
        let (kept, total) = EmittedEvent::summary(&many);
        assert_eq!((kept.len(), total), (EMITTED_KEPT, 31));
        assert_eq!(kept[0].event_type, "reply");
        assert_eq!(kept[0].key.as_deref(), Some("k"));
        assert!(kept[0].payload_truncated);
        assert!(kept[0].payload.len() <= EMITTED_PREVIEW_BYTES);
        assert!(
            kept[0].payload.starts_with(r#"{"text":"éé"#),
            "{}",
            kept[0].payload
        );
        assert_eq!(kept[1].payload, r#"{"n":1}"#);
        assert!(!kept[1].payload_truncated);
        assert_eq!(EmittedEvent::summary(&[]), (vec![], 0));
    }
}

/// One record a delivery logged: a `log` call, or one line the handler
/// wrote to stdout or stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandlerLog {
    /// `trace`, `debug`, `info`, `warn` or `error` (stdout lines are
    /// `info`, stderr lines `warn`).
    pub level: String,
    /// `log`, `stdout` or `stderr`.
    pub stream: String,
    /// The message (for stdout/stderr: one line, without its newline).
    pub message: String,
    /// Structured fields of a `log` record (a key given twice keeps its
    /// last value).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl LogEntry {
    /// Whether the outcome counts as a success.
    pub fn is_ok(&self) -> bool {
        self.outcome == OUTCOME_OK
    }

    /// Whether the outcome is a failure: neither `ok` nor `expired`.
    pub fn is_failure(&self) -> bool {
        !self.is_ok() && self.outcome != OUTCOME_EXPIRED
    }
}

/// The outcome name of a successful delivery.
pub const OUTCOME_OK: &str = "ok";
/// The outcome name of a delivery skipped, not run, because the event was
/// older than the handler's `max_age` filter allows when it was taken.
pub const OUTCOME_EXPIRED: &str = "expired";

/// A delivery that exhausted its policy, kept with its event and errors.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// ULID; sorts by time.
    pub id: String,
    /// The event, kept here so a replay works after the inbox forgot it.
    pub event: Event,
    /// The handler.
    pub handler: String,
    /// The version of the last attempt.
    pub version: u32,
    /// Every attempt's error, oldest first.
    pub errors: Vec<AttemptError>,
    /// When it was dead-lettered, ms since the epoch.
    pub time_ms: u64,
}

/// One administrative action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// ULID; sorts by time.
    pub id: String,
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// Who (token name).
    pub actor: String,
    /// What (`deploy`, `rollback`, `disable`, …).
    pub action: String,
    /// On what (a handler name, a token id, …).
    pub target: String,
    /// Anything else worth keeping.
    pub detail: serde_json::Value,
}

/// Counters of one handler, kept as deliveries finish (not computed from the log).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandlerStats {
    /// The handler.
    pub handler: String,
    /// Attempts logged.
    pub processed: u64,
    /// Attempts with outcome `ok`.
    pub ok: u64,
    /// Attempts with any other outcome but `expired`.
    pub failed: u64,
    /// Deliveries not run because the event was older than the handler's
    /// `max_age` when they were taken (outcome `expired`).
    #[serde(default)]
    pub expired: u64,
    /// Attempts per outcome name.
    pub by_outcome: BTreeMap<String, u64>,
    /// Attempts that were scheduled to run again.
    pub retries: u64,
    /// Deliveries moved to the dead letters.
    pub dead_lettered: u64,
    /// Fuel consumed by all attempts.
    pub fuel_total: u64,
    /// Median attempt duration, µs (log-scale histogram, ≤ 19% high).
    pub latency_p50_us: u64,
    /// 90th percentile attempt duration, µs.
    pub latency_p90_us: u64,
    /// 99th percentile attempt duration, µs.
    pub latency_p99_us: u64,
    /// Time of the latest logged attempt, ms since the epoch.
    pub last_outcome_ms: Option<u64>,
}

/// Events seen by `accept`, including those no handler subscribed to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventTotals {
    /// Every event passed to `accept`.
    pub accepted: u64,
    /// Accepted events that matched no handler (not stored).
    pub unrouted: u64,
}

/// Filters for [`Store::logs`](super::Store::logs); every set field must match.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct LogQuery {
    /// Only this handler.
    pub handler: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only failures: outcomes other than `ok` and `expired`.
    pub failed_only: bool,
    /// Entries at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Entries at or before this time (ms).
    pub until_ms: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size; 0 means [`DEFAULT_PAGE`], capped at [`MAX_PAGE`].
    pub limit: usize,
}

/// One page of the delivery log, newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// The entries.
    pub entries: Vec<LogEntry>,
    /// Pass as `cursor` for the next (older) page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Filters for [`Store::dead_letters`](super::Store::dead_letters).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DeadLetterQuery {
    /// Only this handler.
    pub handler: Option<String>,
    /// Dead-lettered at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Dead-lettered at or before this time (ms).
    pub until_ms: Option<u64>,
    /// The id of the last dead letter of the previous page.
    pub cursor: Option<String>,
    /// Page size; 0 means [`DEFAULT_PAGE`], capped at [`MAX_PAGE`].
    pub limit: usize,
}

/// One key of a handler's KV namespace, as operators read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KvItem {
    /// The key.
    pub key: String,
    /// The value: UTF-8 text when it is, else hex (see `encoding`).
    pub value: String,
    /// `utf8` or `hex`.
    pub encoding: String,
    /// When it expires, ms since the epoch; `null`: never.
    pub expires_ms: Option<u64>,
}

/// A page of a KV namespace, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KvPage {
    /// The entries (expired ones left out).
    pub entries: Vec<KvItem>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Page size when a query gives none.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page a query may ask for.
pub const MAX_PAGE: usize = 1000;

/// The effective page size for a requested `limit`.
pub fn page_size(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

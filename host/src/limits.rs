//! Per-delivery resource limits: the resolved [`Limits`] a sandbox runs
//! with, the optional per-handler overrides in a manifest ([`LimitsSpec`]),
//! and how overrides combine with the daemon's defaults and ceilings.
//!
//! Two limits are not per delivery but per KV namespace (a handler's keys
//! for one tenant, across all its deliveries): `kv_quota_bytes` and
//! `kv_quota_keys`. A delivery runs under its handler's, and a write that
//! would take the namespace past either ends it with `kv_limit`.
//!
//! The wasm stack size is not here: wasmtime sets it per engine, so it is a
//! daemon-wide setting (`RuntimeConfig::max_wasm_stack`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The limits one delivery runs under. Exceeding any of them ends the
/// delivery with its own named outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Instruction budget (wasmtime fuel). Outcome `out_of_fuel`.
    pub fuel: u64,
    /// Wall-clock deadline in milliseconds (epoch interruption). Outcome `timeout`.
    pub timeout_ms: u64,
    /// Linear memory, summed over the component's memories. Outcome `memory_limit`.
    pub memory_bytes: u64,
    /// Elements per table. Outcome `table_limit`.
    pub table_elements: u64,
    /// Core instances a component may create. Outcome `trap`.
    pub instances: u32,
    /// Log bytes per delivery: log records plus stdout/stderr. Outcome `log_limit`.
    pub log_bytes: u64,
    /// Events emitted per delivery. Outcome `emit_limit`.
    pub emits: u32,
    /// Bytes emitted per delivery: every emitted event's type, tenant, key,
    /// payload and metadata, plus [`EMIT_OVERHEAD`] per event and
    /// [`EMIT_ENTRY_OVERHEAD`] per metadata entry, counted as the guest
    /// hands them over (refused events included). Outcome `emit_bytes_limit`.
    #[serde(default = "default_emit_bytes")]
    pub emit_bytes: u64,
    /// Largest KV key plus value. Outcome `kv_limit`.
    pub kv_value_bytes: u64,
    /// Most bytes (keys plus values, summed) the handler's KV namespace of
    /// one tenant may hold, across deliveries. Outcome `kv_limit`.
    pub kv_quota_bytes: u64,
    /// Most keys the handler's KV namespace of one tenant may hold, across
    /// deliveries. Outcome `kv_limit`.
    pub kv_quota_keys: u64,
    /// Largest result, i.e. a handler error's message. Outcome `result_limit`.
    pub result_bytes: u64,
}

/// What an emitted event costs besides its text (the event's fixed fields
/// and the framing it is stored with).
pub const EMIT_OVERHEAD: u64 = 256;
/// What one metadata entry of an emitted event costs besides its text (two
/// `String`s in the host, 48 bytes, and a map node).
pub const EMIT_ENTRY_OVERHEAD: u64 = 64;

/// The default `emit_bytes`: 2 MiB, room for a handler to pass on one
/// event of the largest default payload (1 MiB) and its replies; 100
/// emitted events of 1 MiB each would be 100 MiB of store per delivery.
fn default_emit_bytes() -> u64 {
    2 << 20
}

impl Default for Limits {
    /// Defaults sized for a chat-bot handler: generous for parsing a large
    /// message event, small enough that a runaway guest is stopped quickly.
    fn default() -> Self {
        Limits {
            fuel: 500_000_000,
            timeout_ms: 5_000,
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 32,
            log_bytes: 64 << 10,
            emits: 100,
            emit_bytes: default_emit_bytes(),
            kv_value_bytes: 64 << 10,
            kv_quota_bytes: 16 << 20,
            kv_quota_keys: 100_000,
            result_bytes: 16 << 10,
        }
    }
}

impl Limits {
    /// The ceilings a handler may not exceed unless the operator raises them.
    pub fn default_ceilings() -> Self {
        Limits {
            fuel: 50_000_000_000,
            timeout_ms: 300_000,
            memory_bytes: 1 << 30,
            table_elements: 1_000_000,
            instances: 100,
            log_bytes: 16 << 20,
            emits: 10_000,
            emit_bytes: 64 << 20,
            kv_value_bytes: 16 << 20,
            kv_quota_bytes: 1 << 30,
            kv_quota_keys: 10_000_000,
            result_bytes: 1 << 20,
        }
    }

    /// Applies a handler's overrides to these defaults, refusing any value
    /// above `ceilings` or of zero (a zero limit would make every delivery fail).
    pub fn with_overrides(&self, spec: &LimitsSpec, ceilings: &Limits) -> Result<Limits, String> {
        fn pick<T: Copy + PartialOrd + std::fmt::Display + Default>(
            name: &str,
            default: T,
            over: Option<T>,
            ceiling: T,
        ) -> Result<T, String> {
            let v = over.unwrap_or(default);
            if v == T::default() {
                return Err(format!("limit `{name}` must be greater than 0"));
            }
            if v > ceiling {
                return Err(format!(
                    "limit `{name}` = {v} is above the daemon's ceiling of {ceiling}"
                ));
            }
            Ok(v)
        }
        Ok(Limits {
            fuel: pick("fuel", self.fuel, spec.fuel, ceilings.fuel)?,
            timeout_ms: pick(
                "timeout_ms",
                self.timeout_ms,
                spec.timeout_ms,
                ceilings.timeout_ms,
            )?,
            memory_bytes: pick(
                "memory_bytes",
                self.memory_bytes,
                spec.memory_bytes,
                ceilings.memory_bytes,
            )?,
            table_elements: pick(
                "table_elements",
                self.table_elements,
                spec.table_elements,
                ceilings.table_elements,
            )?,
            instances: pick(
                "instances",
                self.instances,
                spec.instances,
                ceilings.instances,
            )?,
            log_bytes: pick(
                "log_bytes",
                self.log_bytes,
                spec.log_bytes,
                ceilings.log_bytes,
            )?,
            emits: pick("emits", self.emits, spec.emits, ceilings.emits)?,
            emit_bytes: pick(
                "emit_bytes",
                self.emit_bytes,
                spec.emit_bytes,
                ceilings.emit_bytes,
            )?,
            kv_value_bytes: pick(
                "kv_value_bytes",
                self.kv_value_bytes,
                spec.kv_value_bytes,
                ceilings.kv_value_bytes,
            )?,
            kv_quota_bytes: pick(
                "kv_quota_bytes",
                self.kv_quota_bytes,
                spec.kv_quota_bytes,
                ceilings.kv_quota_bytes,
            )?,
            kv_quota_keys: pick(
                "kv_quota_keys",
                self.kv_quota_keys,
                spec.kv_quota_keys,
                ceilings.kv_quota_keys,
            )?,
            result_bytes: pick(
                "result_bytes",
                self.result_bytes,
                spec.result_bytes,
                ceilings.result_bytes,
            )?,
        })
    }
}

/// Per-handler overrides; `None` takes the daemon default. Each must be
/// above 0 and at most the daemon's ceiling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Instruction budget (fuel); outcome `out_of_fuel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock deadline in milliseconds; outcome `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Linear memory in bytes; outcome `memory_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Elements per table; outcome `table_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_elements: Option<u64>,
    /// Core instances a component may create; outcome `trap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Log bytes per delivery (records plus stdout/stderr); outcome `log_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    /// Events emitted per delivery; outcome `emit_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emits: Option<u32>,
    /// Bytes of the events emitted per delivery (types, tenants, keys,
    /// metadata and payloads); outcome `emit_bytes_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit_bytes: Option<u64>,
    /// Largest KV key plus value; outcome `kv_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_value_bytes: Option<u64>,
    /// Bytes the KV namespace of one tenant may hold; outcome `kv_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_quota_bytes: Option<u64>,
    /// Keys the KV namespace of one tenant may hold; outcome `kv_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_quota_keys: Option<u64>,
    /// Largest handler error message; outcome `result_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_within_ceilings() {
        let spec = LimitsSpec {
            fuel: Some(1000),
            memory_bytes: Some(1 << 20),
            ..Default::default()
        };
        let l = Limits::default()
            .with_overrides(&spec, &Limits::default_ceilings())
            .unwrap();
        assert_eq!(l.fuel, 1000);
        assert_eq!(l.memory_bytes, 1 << 20);
        assert_eq!(l.timeout_ms, Limits::default().timeout_ms);
    }

    #[test]
    fn over_ceiling_and_zero_are_refused() {
        let ceil = Limits::default_ceilings();
        let spec = LimitsSpec {
            fuel: Some(ceil.fuel + 1),
            ..Default::default()
        };
        let err = Limits::default().with_overrides(&spec, &ceil).unwrap_err();
        assert!(err.contains("fuel") && err.contains("ceiling"), "{err}");
        let spec = LimitsSpec {
            emits: Some(0),
            ..Default::default()
        };
        let err = Limits::default().with_overrides(&spec, &ceil).unwrap_err();
        assert!(err.contains("emits"), "{err}");
        let at = LimitsSpec {
            fuel: Some(ceil.fuel),
            ..Default::default()
        };
        assert!(Limits::default().with_overrides(&at, &ceil).is_ok());
    }

    #[test]
    fn kv_quotas_are_limits_like_the_others() {
        let ceil = Limits::default_ceilings();
        let defaults = Limits::default();
        assert!(defaults.kv_quota_bytes <= ceil.kv_quota_bytes);
        assert!(defaults.kv_quota_keys <= ceil.kv_quota_keys);
        // A namespace holds at least one largest entry by default.
        assert!(defaults.kv_quota_bytes >= defaults.kv_value_bytes);
        let spec: LimitsSpec =
            serde_json::from_str(r#"{"kv_quota_bytes": 1024, "kv_quota_keys": 10}"#).unwrap();
        let l = defaults.with_overrides(&spec, &ceil).unwrap();
        assert_eq!((l.kv_quota_bytes, l.kv_quota_keys), (1024, 10));
        let over = LimitsSpec {
            kv_quota_bytes: Some(ceil.kv_quota_bytes + 1),
            ..Default::default()
        };
        let err = defaults.with_overrides(&over, &ceil).unwrap_err();
        assert!(
            err.contains("kv_quota_bytes") && err.contains("ceiling"),
            "{err}"
        );
        let zero = LimitsSpec {
            kv_quota_keys: Some(0),
            ..Default::default()
        };
        let err = defaults.with_overrides(&zero, &ceil).unwrap_err();
        assert!(err.contains("kv_quota_keys"), "{err}");
    }
}

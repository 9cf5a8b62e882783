//! Per-delivery resource limits: the resolved [`Limits`] a sandbox runs
//! with, the optional per-handler overrides in a manifest ([`LimitsSpec`]),
//! and how overrides combine with the daemon's defaults and ceilings.
//!
//! The wasm stack size is not here: wasmtime sets it per engine, so it is a
//! daemon-wide setting (`RuntimeConfig::max_wasm_stack`).

use serde::{Deserialize, Serialize};

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
    /// Largest KV key plus value. Outcome `kv_limit`.
    pub kv_value_bytes: u64,
    /// Largest result, i.e. a handler error's message. Outcome `result_limit`.
    pub result_bytes: u64,
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
            kv_value_bytes: 64 << 10,
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
            kv_value_bytes: 16 << 20,
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
            kv_value_bytes: pick(
                "kv_value_bytes",
                self.kv_value_bytes,
                spec.kv_value_bytes,
                ceilings.kv_value_bytes,
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

/// Per-handler overrides; `None` takes the daemon default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// See [`Limits::fuel`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// See [`Limits::timeout_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// See [`Limits::memory_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// See [`Limits::table_elements`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_elements: Option<u64>,
    /// See [`Limits::instances`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// See [`Limits::log_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    /// See [`Limits::emits`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emits: Option<u32>,
    /// See [`Limits::kv_value_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_value_bytes: Option<u64>,
    /// See [`Limits::result_bytes`].
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
}

//! The per-delivery limits the fake host enforces, with the real host's
//! defaults and accounting, and the outcome a delivery ends with, named as
//! the real host names it. `tests/tests/runtime/sdk_parity.rs` runs one set
//! of scenarios through both hosts and checks the outcomes, the defaults
//! and the overheads below agree with the host's.

use crate::HandlerError;

/// What a log record costs besides its text (as on the host).
pub const RECORD_OVERHEAD: u64 = 64;
/// What a log record's field costs besides its key and value.
pub const FIELD_OVERHEAD: u64 = 48;
/// What an emitted event costs against `emit_bytes` besides its text.
pub const EMIT_OVERHEAD: u64 = 256;
/// What an emitted event's metadata entry costs besides its text.
pub const EMIT_ENTRY_OVERHEAD: u64 = 64;

/// The limits of one delivery that depend on what the handler does with
/// the SDK, as a manifest's `limits` sets them; the default is the host's
/// default. (Fuel, time, memory, tables and the stack depend on the
/// compiled wasm and are not modelled natively.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Log bytes per delivery: each record's message and fields, plus
    /// [`RECORD_OVERHEAD`] per record and [`FIELD_OVERHEAD`] per field.
    /// Outcome `log_limit`.
    pub log_bytes: u64,
    /// Events emitted per delivery (every call counts, valid or not).
    /// Outcome `emit_limit`.
    pub emits: u32,
    /// Bytes emitted per delivery: each event's type, tenant, key, payload
    /// and metadata, plus [`EMIT_OVERHEAD`] per event and
    /// [`EMIT_ENTRY_OVERHEAD`] per metadata entry. Outcome `emit_bytes_limit`.
    pub emit_bytes: u64,
    /// Largest KV key plus value (for reads and deletes: the key).
    /// Outcome `kv_limit`.
    pub kv_value_bytes: u64,
    /// Most bytes (keys plus values) the handler's namespace of one tenant
    /// may hold, across deliveries. Outcome `kv_limit`.
    pub kv_quota_bytes: u64,
    /// Most keys that namespace may hold. Outcome `kv_limit`.
    pub kv_quota_keys: u64,
    /// Largest handler error message. Outcome `result_limit`.
    pub result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            log_bytes: 64 << 10,
            emits: 100,
            emit_bytes: 2 << 20,
            kv_value_bytes: 64 << 10,
            kv_quota_bytes: 16 << 20,
            kv_quota_keys: 100_000,
            result_bytes: 16 << 10,
        }
    }
}

/// How a delivery ended, as the real host would log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned `Ok`; what it emitted is kept.
    Ok,
    /// The handler returned this error.
    HandlerError(HandlerError),
    /// A log call went past `log_bytes`; the message says by how much.
    LogLimit(String),
    /// An emit call went past `emits`.
    EmitLimit(String),
    /// An emit call went past `emit_bytes`.
    EmitBytesLimit(String),
    /// A KV call went past `kv_value_bytes`.
    KvLimit(String),
    /// The handler's error message was longer than `result_bytes`.
    ResultLimit(String),
    /// The handler panicked (on the real host, a trap); the panic message.
    Trap(String),
}

impl Outcome {
    /// The outcome's name in the delivery log (`ok`, `kv_limit`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HandlerError(_) => "handler_error",
            Outcome::LogLimit(_) => "log_limit",
            Outcome::EmitLimit(_) => "emit_limit",
            Outcome::EmitBytesLimit(_) => "emit_bytes_limit",
            Outcome::KvLimit(_) => "kv_limit",
            Outcome::ResultLimit(_) => "result_limit",
            Outcome::Trap(_) => "trap",
        }
    }

    /// The error text, if the delivery failed.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Ok => None,
            Outcome::HandlerError(e) => Some(&e.message),
            Outcome::LogLimit(m)
            | Outcome::EmitLimit(m)
            | Outcome::EmitBytesLimit(m)
            | Outcome::KvLimit(m)
            | Outcome::ResultLimit(m)
            | Outcome::Trap(m) => Some(m),
        }
    }
}

/// What the current delivery has used so far.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    log_bytes: u64,
    emits: u32,
    emit_bytes: u64,
}

/// The panic payload that ends a delivery at a limit, as the real host
/// ends the call: the handler cannot catch it and go on.
#[derive(Debug)]
pub(crate) struct Abort(pub(crate) Outcome);

impl Usage {
    /// Charges one log record.
    pub(crate) fn log(
        &mut self,
        limits: &Limits,
        message: &str,
        fields: &[(String, String)],
    ) -> Result<(), Outcome> {
        let text = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let cost = (text as u64)
            .saturating_add(RECORD_OVERHEAD)
            .saturating_add(FIELD_OVERHEAD.saturating_mul(fields.len() as u64));
        let next = self.log_bytes.saturating_add(cost);
        if next > limits.log_bytes {
            return Err(Outcome::LogLimit(format!(
                "log output exceeded the limit of {} bytes (each record counts \
                 {RECORD_OVERHEAD} bytes and each field {FIELD_OVERHEAD} besides its text)",
                limits.log_bytes
            )));
        }
        self.log_bytes = next;
        Ok(())
    }

    /// Charges one emit call of `text` bytes with `entries` metadata entries.
    pub(crate) fn emit(
        &mut self,
        limits: &Limits,
        text: usize,
        entries: usize,
    ) -> Result<(), Outcome> {
        self.emits = self.emits.saturating_add(1);
        if self.emits > limits.emits {
            return Err(Outcome::EmitLimit(format!(
                "the handler emitted more than {} events",
                limits.emits
            )));
        }
        self.emit_bytes = self.emit_bytes.saturating_add(
            (text as u64)
                .saturating_add(EMIT_OVERHEAD)
                .saturating_add(EMIT_ENTRY_OVERHEAD.saturating_mul(entries as u64)),
        );
        if self.emit_bytes > limits.emit_bytes {
            return Err(Outcome::EmitBytesLimit(format!(
                "the handler's emitted events came to more than {} bytes (each event counts \
                 {EMIT_OVERHEAD} bytes and each metadata entry {EMIT_ENTRY_OVERHEAD} besides \
                 their text)",
                limits.emit_bytes
            )));
        }
        Ok(())
    }
}

/// Checks a KV call's key plus its largest value against `kv_value_bytes`.
pub(crate) fn kv_size(limits: &Limits, key: &str, value_len: usize) -> Result<(), Outcome> {
    let size = (key.len() + value_len) as u64;
    if size > limits.kv_value_bytes {
        return Err(Outcome::KvLimit(format!(
            "kv key plus value is {size} bytes; the limit is {}",
            limits.kv_value_bytes
        )));
    }
    Ok(())
}

/// A namespace's keys and bytes (keys plus values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KvUsage {
    pub(crate) keys: u64,
    pub(crate) bytes: u64,
}

/// Refuses a write that takes a namespace from `now` to `next` past a
/// quota; one that does not grow it passes even over the quota (as on the
/// host, so a handler over a lowered quota can still clean up).
pub(crate) fn kv_quota(limits: &Limits, now: KvUsage, next: KvUsage) -> Result<(), Outcome> {
    if next.keys > limits.kv_quota_keys && next.keys > now.keys {
        return Err(Outcome::KvLimit(format!(
            "the kv namespace would hold {} keys; the quota `kv_quota_keys` is {}",
            next.keys, limits.kv_quota_keys
        )));
    }
    if next.bytes > limits.kv_quota_bytes && next.bytes > now.bytes {
        return Err(Outcome::KvLimit(format!(
            "the kv namespace would hold {} bytes of keys plus values; the quota \
             `kv_quota_bytes` is {}",
            next.bytes, limits.kv_quota_bytes
        )));
    }
    Ok(())
}

/// The outcome of a handler that returned `result`.
pub(crate) fn returned(limits: &Limits, result: Result<(), HandlerError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(e) if e.message.len() as u64 > limits.result_bytes => Outcome::ResultLimit(format!(
            "handler error message is {} bytes; the limit is {}",
            e.message.len(),
            limits.result_bytes
        )),
        Err(e) => Outcome::HandlerError(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            log_bytes: 200,
            emits: 2,
            emit_bytes: 600,
            kv_value_bytes: 10,
            kv_quota_bytes: 20,
            kv_quota_keys: 2,
            result_bytes: 5,
        }
    }

    #[test]
    fn a_log_record_counts_its_text_and_overheads() {
        let l = small();
        let mut u = Usage::default();
        // 64 + 6 + 48 + 2 = 120, then 64 + 16 = 80: 200 exactly.
        u.log(&l, "hello!", &[("k".into(), "v".into())]).unwrap();
        u.log(&l, &"x".repeat(16), &[]).unwrap();
        assert_eq!(u.log(&l, "", &[]).unwrap_err().name(), "log_limit");
    }

    #[test]
    fn emits_count_calls_then_bytes() {
        let l = small();
        let mut u = Usage::default();
        u.emit(&l, 10, 0).unwrap();
        assert_eq!(u.emit(&l, 100, 1).unwrap_err().name(), "emit_bytes_limit");
        let mut u = Usage::default();
        u.emit(&l, 0, 0).unwrap();
        u.emit(&l, 0, 0).unwrap();
        assert_eq!(u.emit(&l, 0, 0).unwrap_err().name(), "emit_limit");
    }

    #[test]
    fn kv_and_result_sizes() {
        let l = small();
        kv_size(&l, "key", 7).unwrap();
        assert_eq!(kv_size(&l, "key", 8).unwrap_err().name(), "kv_limit");
        assert_eq!(
            returned(&l, Err(HandlerError::fatal("12345"))).name(),
            "handler_error"
        );
        assert_eq!(
            returned(&l, Err(HandlerError::fatal("123456"))).name(),
            "result_limit"
        );
    }

    #[test]
    fn kv_quotas_refuse_only_growth_past_them() {
        let l = small();
        let u = |keys, bytes| KvUsage { keys, bytes };
        kv_quota(&l, u(1, 10), u(2, 20)).unwrap();
        assert_eq!(
            kv_quota(&l, u(2, 10), u(3, 15)).unwrap_err().name(),
            "kv_limit"
        );
        assert_eq!(
            kv_quota(&l, u(1, 10), u(1, 21)).unwrap_err().name(),
            "kv_limit"
        );
        // Over a lowered quota, a write that does not grow still passes.
        kv_quota(&l, u(5, 50), u(5, 40)).unwrap();
    }
}

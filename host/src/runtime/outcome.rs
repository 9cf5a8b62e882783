//! What a delivery can end in ([`Outcome`]), what a guest left in its log
//! ([`LogRecord`]), and the pure rule that turns a failed call into an
//! outcome ([`classify`]). Kept free of wasmtime types so it can be
//! unit-tested table-style; `deliver` feeds it the facts it gathered.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How one delivery ended. Every budget a guest can exhaust has its own name
/// so that stats and dead letters say *why*, not just "failed".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `handle` returned `ok`.
    Ok,
    /// `handle` returned a `handler-error`.
    HandlerError,
    /// The instruction budget (fuel) ran out.
    OutOfFuel,
    /// The wall-clock deadline passed (epoch interruption).
    Timeout,
    /// Linear memory growth past `memory_bytes` was refused.
    MemoryLimit,
    /// Table growth past `table_elements` was refused.
    TableLimit,
    /// The wasm stack (`max_wasm_stack`) was exhausted.
    StackOverflow,
    /// Any other trap: `unreachable`, a guest panic, out-of-bounds access…
    Trap,
    /// The guest logged (log records + stdout/stderr) more than `log_bytes`.
    LogLimit,
    /// The guest emitted more than `emits` events.
    EmitLimit,
    /// The guest's emitted events came to more than `emit_bytes`.
    EmitBytesLimit,
    /// A KV key plus value was larger than `kv_value_bytes`, or a write would
    /// take the namespace past `kv_quota_bytes` or `kv_quota_keys`.
    KvLimit,
    /// The handler error's message was larger than `result_bytes`.
    ResultLimit,
    /// Hookbox itself failed (KV storage error, sandbox pool exhausted…).
    HostError,
    /// The guest called an import its manifest does not grant (a Hookbox
    /// capability left out of `capabilities`, or `wasi:http`, which Hookbox
    /// does not provide). The error names the interface and the function.
    CapabilityDenied,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 15] = [
        Outcome::Ok,
        Outcome::HandlerError,
        Outcome::OutOfFuel,
        Outcome::Timeout,
        Outcome::MemoryLimit,
        Outcome::TableLimit,
        Outcome::StackOverflow,
        Outcome::Trap,
        Outcome::LogLimit,
        Outcome::EmitLimit,
        Outcome::EmitBytesLimit,
        Outcome::KvLimit,
        Outcome::ResultLimit,
        Outcome::HostError,
        Outcome::CapabilityDenied,
    ];

    /// The snake_case name used in JSON, logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HandlerError => "handler_error",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::TableLimit => "table_limit",
            Outcome::StackOverflow => "stack_overflow",
            Outcome::Trap => "trap",
            Outcome::LogLimit => "log_limit",
            Outcome::EmitLimit => "emit_limit",
            Outcome::EmitBytesLimit => "emit_bytes_limit",
            Outcome::KvLimit => "kv_limit",
            Outcome::ResultLimit => "result_limit",
            Outcome::HostError => "host_error",
            Outcome::CapabilityDenied => "capability_denied",
        }
    }

    /// Whether the delivery is done (only [`Outcome::Ok`]).
    pub const fn is_success(self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// Whether delivering the same event again may succeed, for every outcome
    /// but [`Outcome::HandlerError`] (where the guest decides). Budget
    /// outcomes are deterministic: the same event exhausts the same budget.
    pub const fn default_retryable(self) -> bool {
        matches!(self, Outcome::Timeout | Outcome::Trap | Outcome::HostError)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity of a log record (the WIT `log.level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed tracing output.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the handler recovered from.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Where a log record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// `hookbox:handler/log`.
    Log,
    /// A line the guest wrote to WASI stdout (level `info`).
    Stdout,
    /// A line the guest wrote to WASI stderr (level `warn`).
    Stderr,
}

/// One record of a delivery's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// The message (for stdout/stderr: one line, without its newline).
    pub message: String,
    /// Structured fields, in the order the guest gave them.
    pub fields: Vec<(String, String)>,
    /// Where it came from.
    pub stream: LogStream,
}

/// The trap kinds [`classify`] distinguishes; `deliver` maps wasmtime's
/// `Trap` onto these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TrapKind {
    OutOfFuel,
    Interrupt,
    StackOverflow,
    /// Any other trap code (unreachable, out of bounds…).
    Other,
    /// The error carries no trap code (a host or instantiation error).
    None,
}

/// A limit the resource limiter refused, remembered so that the guest's
/// subsequent trap (a Rust guest aborts when `memory.grow` fails) is
/// reported as the limit rather than as a plain trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    Memory,
    Table,
}

/// Everything known about a failed call, gathered by `deliver`.
#[derive(Debug)]
pub(crate) struct Failure {
    /// An outcome a Hookbox host function ended the call with (log, emit and
    /// KV limits, storage errors), with its message.
    pub host_abort: Option<(Outcome, String)>,
    /// The trap code, if the error is a trap.
    pub trap: TrapKind,
    /// The first limit the limiter refused during this delivery.
    pub denied: Option<Denied>,
    /// Whether instantiation failed because the sandbox pool is exhausted.
    pub pool_exhausted: bool,
    /// The error as text (the full chain).
    pub message: String,
}

/// Maps a failed call onto its outcome and the error text to report. The
/// order matters: a host function's own verdict is the most specific; an
/// explicit fuel/epoch/stack trap beats a limiter flag (the guest may have
/// survived a refused `memory.grow` and then looped until out of fuel); a
/// limiter flag beats a generic trap (that trap is the guest aborting on the
/// refusal).
pub(crate) fn classify(f: &Failure) -> (Outcome, String) {
    if let Some((outcome, msg)) = &f.host_abort {
        return (*outcome, msg.clone());
    }
    let fixed = |o: Outcome, what: &str| (o, what.to_string());
    match f.trap {
        TrapKind::OutOfFuel => return fixed(Outcome::OutOfFuel, "fuel budget exhausted"),
        TrapKind::Interrupt => return fixed(Outcome::Timeout, "wall-clock deadline exceeded"),
        TrapKind::StackOverflow => return fixed(Outcome::StackOverflow, "wasm stack exhausted"),
        TrapKind::Other | TrapKind::None => {}
    }
    match f.denied {
        Some(Denied::Memory) => {
            return (
                Outcome::MemoryLimit,
                format!("memory limit reached: {}", f.message),
            );
        }
        Some(Denied::Table) => {
            return (
                Outcome::TableLimit,
                format!("table limit reached: {}", f.message),
            );
        }
        None => {}
    }
    if f.pool_exhausted {
        return (
            Outcome::HostError,
            format!("sandbox pool exhausted: {}", f.message),
        );
    }
    (Outcome::Trap, f.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(trap: TrapKind) -> Failure {
        Failure {
            host_abort: None,
            trap,
            denied: None,
            pool_exhausted: false,
            message: "wasm trap".into(),
        }
    }

    #[test]
    fn names_are_unique_snake_case_and_serde_agrees() {
        let mut seen = std::collections::HashSet::new();
        for o in Outcome::ALL {
            assert!(seen.insert(o.as_str()), "{o:?}");
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
            assert!(
                o.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
        assert!(Outcome::Ok.is_success());
        assert!(Outcome::ALL[1..].iter().all(|o| !o.is_success()));
    }

    #[test]
    fn retryable_defaults() {
        let retryable: Vec<_> = Outcome::ALL
            .into_iter()
            .filter(|o| o.default_retryable())
            .collect();
        assert_eq!(
            retryable,
            [Outcome::Timeout, Outcome::Trap, Outcome::HostError]
        );
    }

    #[test]
    fn trap_mapping_table() {
        let table = [
            (TrapKind::OutOfFuel, None, Outcome::OutOfFuel),
            (TrapKind::Interrupt, None, Outcome::Timeout),
            (TrapKind::StackOverflow, None, Outcome::StackOverflow),
            (TrapKind::Other, None, Outcome::Trap),
            (TrapKind::None, None, Outcome::Trap),
            (TrapKind::Other, Some(Denied::Memory), Outcome::MemoryLimit),
            (TrapKind::None, Some(Denied::Memory), Outcome::MemoryLimit),
            (TrapKind::Other, Some(Denied::Table), Outcome::TableLimit),
            // An explicit budget trap wins over an earlier refused grow.
            (
                TrapKind::OutOfFuel,
                Some(Denied::Memory),
                Outcome::OutOfFuel,
            ),
            (TrapKind::Interrupt, Some(Denied::Table), Outcome::Timeout),
        ];
        for (trap, denied, want) in table {
            let mut f = failure(trap);
            f.denied = denied;
            assert_eq!(classify(&f).0, want, "{trap:?} {denied:?}");
        }
    }

    #[test]
    fn host_abort_wins_and_keeps_its_message() {
        let mut f = failure(TrapKind::Other);
        f.denied = Some(Denied::Memory);
        f.host_abort = Some((Outcome::LogLimit, "log over 10 bytes".into()));
        assert_eq!(
            classify(&f),
            (Outcome::LogLimit, "log over 10 bytes".to_string())
        );
    }

    #[test]
    fn pool_exhaustion_is_a_host_error() {
        let mut f = failure(TrapKind::None);
        f.pool_exhausted = true;
        let (o, msg) = classify(&f);
        assert_eq!(o, Outcome::HostError);
        assert!(msg.contains("pool"), "{msg}");
    }

    #[test]
    fn log_names_serialize_lowercase() {
        assert_eq!(serde_json::to_string(&LogLevel::Warn).unwrap(), "\"warn\"");
        assert_eq!(
            serde_json::to_string(&LogStream::Stderr).unwrap(),
            "\"stderr\""
        );
    }
}

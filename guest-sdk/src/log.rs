//! Structured logging into the delivery's log: [`Level`], [`log()`] and the
//! [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn) and [`error!`](macro@crate::error) macros.
//!
//! Each macro takes `format!` arguments, optionally preceded by `key = value`
//! fields and a semicolon (values are formatted with `Display`):
//!
//! ```
//! # let mut host = hookbox_sdk::testing::TestHost::new();
//! # host.within("acme", || {
//! let ticket = 42;
//! hookbox_sdk::info!("Ticket {ticket} created");
//! hookbox_sdk::warn!(ticket = ticket, status = "open"; "Ticket reopened");
//! # });
//! # assert_eq!(host.logs()[1].field("status"), Some("open"));
//! ```
//!
//! The host caps the total size of a delivery's log (the handler's
//! `log-bytes` limit); a record that would pass the cap ends the delivery.

use std::fmt;

use crate::sys;

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
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

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Appends one record to the delivery's log. The macros call this.
pub fn log(level: Level, message: &str, fields: &[(String, String)]) {
    sys::log(level, message, fields);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __hookbox_log {
    ($level:expr, $($key:ident = $value:expr),+ ; $($arg:tt)+) => {
        $crate::log::log(
            $level,
            &::std::format!($($arg)+),
            &[$((
                ::std::string::String::from(::std::stringify!($key)),
                ::std::string::ToString::to_string(&$value),
            )),+],
        )
    };
    ($level:expr, $($arg:tt)+) => {
        $crate::log::log($level, &::std::format!($($arg)+), &[])
    };
}

/// Logs at [`Level::Trace`]: `trace!("fmt", args…)` or
/// `trace!(key = value, …; "fmt", args…)`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__hookbox_log!($crate::log::Level::Trace, $($arg)+) };
}

/// Logs at [`Level::Debug`]: `debug!("fmt", args…)` or
/// `debug!(key = value, …; "fmt", args…)`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__hookbox_log!($crate::log::Level::Debug, $($arg)+) };
}

/// Logs at [`Level::Info`]: `info!("fmt", args…)` or
/// `info!(key = value, …; "fmt", args…)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__hookbox_log!($crate::log::Level::Info, $($arg)+) };
}

/// Logs at [`Level::Warn`]: `warn!("fmt", args…)` or
/// `warn!(key = value, …; "fmt", args…)`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__hookbox_log!($crate::log::Level::Warn, $($arg)+) };
}

/// Logs at [`Level::Error`]: `error!("fmt", args…)` or
/// `error!(key = value, …; "fmt", args…)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__hookbox_log!($crate::log::Level::Error, $($arg)+) };
}

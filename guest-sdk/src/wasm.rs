//! The `wasm32` side of the SDK: the one `wit_bindgen::generate!` for the
//! `hookbox:handler@0.1.0` world, the conversions between its types and the
//! SDK's, and the host calls the public modules make.
//!
//! Everything here is an implementation detail of [`export_handler!`](crate::export_handler!) and
//! the public API; handler crates never name it.

#![allow(unsafe_code)] // wit-bindgen's generated glue is `unsafe` by nature.

use crate::emit::{EmitError, NewEvent};
use crate::log::Level;
use crate::{Event, Handler, Priority};

/// The generated bindings. Public only so that [`export_handler!`](crate::export_handler!) can
/// reach them from the handler crate.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "handler",
        pub_export_macro: true,
        export_macro_name: "__export_handler_world",
        default_bindings_module: "hookbox_sdk::wasm::bindings",
        runtime_path: "hookbox_sdk::wasm::rt",
    });
}

/// The runtime support the generated code refers to, re-exported so handler
/// crates need not depend on `wit-bindgen` themselves.
pub use wit_bindgen::rt;

use bindings::hookbox::handler::{clock, config, emit, kv, log, types};

/// Runs `H` on an event received from the host and converts the outcome back.
pub fn dispatch<H: Handler>(event: types::Event) -> Result<(), types::HandlerError> {
    H::handle(Event::from(event)).map_err(|e| types::HandlerError {
        message: e.message,
        retryable: e.retryable,
    })
}

impl From<types::Event> for Event {
    fn from(e: types::Event) -> Self {
        Event {
            id: e.id,
            event_type: e.type_,
            tenant: e.tenant,
            source: e.source,
            time_ms: e.time,
            priority: e.priority.into(),
            payload: e.payload,
            metadata: e.metadata,
            key: e.key,
            attempt: e.attempt,
        }
    }
}

impl From<types::Priority> for Priority {
    fn from(p: types::Priority) -> Self {
        match p {
            types::Priority::Critical => Priority::Critical,
            types::Priority::High => Priority::High,
            types::Priority::Normal => Priority::Normal,
            types::Priority::Low => Priority::Low,
        }
    }
}

impl From<Priority> for types::Priority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Critical => types::Priority::Critical,
            Priority::High => types::Priority::High,
            Priority::Normal => types::Priority::Normal,
            Priority::Low => types::Priority::Low,
        }
    }
}

pub(crate) fn log(level: Level, message: &str, fields: &[(String, String)]) {
    let level = match level {
        Level::Trace => log::Level::Trace,
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warn => log::Level::Warn,
        Level::Error => log::Level::Error,
    };
    log::log(level, message, fields);
}

pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
    kv::get(key)
}

pub(crate) fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
    kv::set(key, value, ttl_ms);
}

pub(crate) fn kv_delete(key: &str) -> bool {
    kv::delete(key)
}

pub(crate) fn kv_increment(key: &str, delta: i64) -> i64 {
    kv::increment(key, delta)
}

pub(crate) fn kv_compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> bool {
    kv::compare_and_swap(key, expected, new)
}

pub(crate) fn config_get() -> String {
    config::get()
}

pub(crate) fn now_ms() -> u64 {
    clock::now_ms()
}

pub(crate) fn emit(event: NewEvent, payload: String) -> Result<(), EmitError> {
    let event = emit::NewEvent {
        type_: event.event_type,
        tenant: event.tenant,
        payload,
        metadata: event.metadata,
        key: event.key,
        priority: event.priority.map(Into::into),
    };
    emit::emit(&event).map_err(|e| match e {
        emit::EmitError::Invalid(reason) => EmitError::Invalid(reason),
    })
}

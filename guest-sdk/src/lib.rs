//! Write Hookbox event handlers in Rust.
//!
//! A handler is a type implementing [`Handler`], exported with
//! [`export_handler!`] from a `cdylib` crate built for `wasm32-wasip2`. The
//! crate talks to the host only through this SDK: the typed [`Event`] it is
//! given, [`kv`] (its own per-tenant key-value namespace), [`emit`] (new
//! events), [`config()`], [`now_ms`] and the log macros ([`info!`] and
//! friends). Zulip events get typed views in [`zulip`]; [`redis`] publishes on
//! a Redis event bus, [`webhook`] calls a configured endpoint, with typed
//! bodies for [`discord`] and [`slack`].
//!
//! On `wasm32` the SDK calls the host through the `hookbox:handler@0.1.0`
//! WIT world. On every other target the same functions run against the fake
//! host in `hookbox_sdk::testing`, so a handler's logic is unit-tested with a plain
//! `cargo test`.
//!
//! # Example
//!
//! A handler that counts messages per Zulip channel and announces every
//! hundredth one:
//!
//! ```
//! use hookbox_sdk::zulip::ZulipEvent;
//! use hookbox_sdk::{Event, Handler, HandlerError, emit, info, kv};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Config {
//!     every: i64,
//! }
//!
//! struct Milestones;
//!
//! impl Handler for Milestones {
//!     fn handle(event: Event) -> Result<(), HandlerError> {
//!         let config: Config = hookbox_sdk::config()?;
//!         let ZulipEvent::Message(message) = event.zulip()? else {
//!             return Ok(());
//!         };
//!         let Some(stream_id) = message.message.stream_id else {
//!             return Ok(()); // a direct message
//!         };
//!         let count = kv::increment(&format!("messages:{stream_id}"), 1);
//!         info!(stream_id = stream_id, count = count; "Counted a message");
//!         if config.every > 0 && count % config.every == 0 {
//!             let payload = serde_json::json!({ "stream_id": stream_id, "count": count });
//!             emit::emit(emit::NewEvent::new("milestone").payload(&payload))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! hookbox_sdk::export_handler!(Milestones);
//!
//! // The same handler, run natively against the fake host:
//! # fn main() {
//! use hookbox_sdk::testing::TestHost;
//!
//! let mut host = TestHost::new();
//! host.set_config_json(r#"{"every": 2}"#);
//! let zulip = serde_json::json!({
//!     "type": "message",
//!     "message": {"id": 7, "sender_id": 10, "content": "hi", "type": "stream",
//!                 "stream_id": 3, "display_recipient": "general", "subject": "lunch"},
//!     "flags": [],
//! });
//! for _ in 0..2 {
//!     let event = Event::from_zulip(&zulip).tenant("acme").build();
//!     host.run::<Milestones>(event).unwrap();
//! }
//! assert_eq!(host.kv_get_string("acme", "messages:3").as_deref(), Some("2"));
//! assert_eq!(host.emitted().len(), 1);
//! assert_eq!(host.emitted()[0].event_type, "milestone");
//! # }
//! ```
//!
//! Build it as a component with
//! `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is what Hookbox deploys.

// The generated bindings refer to this crate as `hookbox_sdk`, also from
// inside it.
#[cfg(target_arch = "wasm32")]
extern crate self as hookbox_sdk;

mod config;
pub mod discord;
pub mod emit;
mod error;
mod event;
pub mod kv;
pub mod log;
pub mod redis;
pub mod slack;
pub mod webhook;
pub mod zulip;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
#[cfg(not(target_arch = "wasm32"))]
use testing::sys;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;
#[cfg(target_arch = "wasm32")]
use wasm as sys;

pub use config::{config, config_json};
pub use error::HandlerError;
pub use event::{Event, EventBuilder, Priority};

/// An event handler: the one function Hookbox calls for every delivery.
///
/// `Ok(())` marks the delivery done. An error is logged and, according to
/// [`HandlerError::retryable`] and the handler's delivery policy, retried
/// later or sent to the dead-letter queue. Events emitted during a delivery
/// that fails are discarded with it.
pub trait Handler {
    /// Handles one event.
    fn handle(event: Event) -> Result<(), HandlerError>;
}

/// Milliseconds since the Unix epoch, as the host's clock sees it.
///
/// Under `testing::TestHost` (native targets) this is the fake clock.
pub fn now_ms() -> u64 {
    sys::now_ms()
}

/// Exports a [`Handler`] as the component's `handle` function.
///
/// Use it once per handler crate, at the crate root or in any module:
///
/// ```
/// struct Noop;
/// impl hookbox_sdk::Handler for Noop {
///     fn handle(_: hookbox_sdk::Event) -> Result<(), hookbox_sdk::HandlerError> {
///         Ok(())
///     }
/// }
/// hookbox_sdk::export_handler!(Noop);
/// ```
///
/// On targets other than `wasm32` it exports nothing; it only checks that the
/// type implements [`Handler`].
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: () = {
            struct __HookboxHandlerExport;
            impl $crate::wasm::bindings::Guest for __HookboxHandlerExport {
                fn handle(
                    event: $crate::wasm::bindings::Event,
                ) -> ::core::result::Result<(), $crate::wasm::bindings::HandlerError> {
                    $crate::wasm::dispatch::<$handler>(event)
                }
            }
            $crate::wasm::bindings::__export_handler_world!(
                __HookboxHandlerExport with_types_in $crate::wasm::bindings
            );
        };
    };
}

/// Exports a [`Handler`] as the component's `handle` function.
///
/// Use it once per handler crate, at the crate root or in any module:
///
/// ```
/// struct Noop;
/// impl hookbox_sdk::Handler for Noop {
///     fn handle(_: hookbox_sdk::Event) -> Result<(), hookbox_sdk::HandlerError> {
///         Ok(())
///     }
/// }
/// hookbox_sdk::export_handler!(Noop);
/// ```
///
/// On targets other than `wasm32` it exports nothing; it only checks that the
/// type implements [`Handler`].
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: () = {
            fn __hookbox_assert_handler<H: $crate::Handler>() {}
            let _ = __hookbox_assert_handler::<$handler>;
        };
    };
}

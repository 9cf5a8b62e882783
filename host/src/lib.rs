//! Hookbox: a daemon that runs untrusted event handlers as sandboxed
//! WebAssembly components.
//!
//! The crate is organised by owner of each foreign dependency: only
//! [`runtime`] touches wasmtime, only [`store`] touches sled, only [`api`]
//! touches axum. Everything else speaks the types in [`event`],
//! [`manifest`], [`limits`] and [`kv`]. [`dispatch`] joins runtime and
//! store; [`daemon`] and [`cli`] are the shells around them.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod daemon;
pub mod dispatch;
pub mod event;
pub mod kv;
pub mod limits;
pub mod manifest;
pub mod run;
pub mod runtime;
pub mod scaffold;
pub mod store;

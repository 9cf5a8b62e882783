//! Hookbox: a daemon that runs untrusted event handlers as sandboxed
//! WebAssembly components.
//!
//! The crate is organised by owner of each foreign dependency: only
//! [`runtime`] touches wasmtime, only [`store`] touches sled, only [`api`]
//! touches axum. Everything else speaks the types in [`event`],
//! [`manifest`], [`limits`] and [`kv`]. [`dispatch`] joins runtime and
//! store; [`daemon`] and [`cli`] are the shells around them.
//!
//! The library is the daemon's own, not published: its documentation is
//! read with private items (`cargo doc --document-private-items`, as CI
//! builds it), where links to them resolve.
#![allow(rustdoc::private_intra_doc_links)]

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

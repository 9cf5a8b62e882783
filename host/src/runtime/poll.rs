//! `wasi:io/poll` bounded by the delivery's wall-clock deadline.
//!
//! Epoch interruption stops a guest only while wasm runs; a guest waiting
//! inside a host call — `pollable.block` on a monotonic-clock subscription,
//! which is what `std::thread::sleep` compiles to — would otherwise hold its
//! worker for as long as it asked (years). These definitions shadow
//! wasmtime-wasi's synchronous ones: the same waits, given up at the
//! deadline [`HostState::begin`] set, ending the delivery with `timeout`.
//! Nothing else in WASI 0.2 waits: stdin is closed, stdout and stderr are
//! always ready (`capture.rs`), and the network is denied.

use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::runtime::in_tokio;

use super::host::HostState;
use super::outcome::Outcome;

/// Replaces the `wasi:io/poll` functions `add_to_linker_sync` defined.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = sync_poll::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s);
    linker.allow_shadowing(false);
    linked
}

impl HostState {
    /// Runs one wait of a WASI pollable on wasmtime-wasi's runtime, until
    /// it completes or the delivery's deadline passes.
    fn wait<T>(
        &mut self,
        wait: impl AsyncFnOnce(&mut wasmtime::component::ResourceTable) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        let deadline = self.call.deadline;
        let table = &mut self.table;
        let started = std::time::Instant::now();
        let waited = in_tokio(async move {
            match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), wait(table)).await.ok(),
                None => Some(wait(table).await),
            }
        });
        // The guest's own wait: it counts as keeping the worker busy.
        self.call.waited += started.elapsed();
        waited.unwrap_or_else(|| {
            Err(self.abort(
                Outcome::Timeout,
                "wall-clock deadline exceeded while the handler waited in wasi:io/poll".into(),
            ))
        })
    }
}

impl sync_poll::Host for HostState {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.wait(async move |table| async_poll::Host::poll(table, pollables).await)
    }
}

impl sync_poll::HostPollable for HostState {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Checks without waiting.
        self.wait(async move |table| async_poll::HostPollable::ready(table, pollable).await)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.wait(async move |table| async_poll::HostPollable::block(table, pollable).await)
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(&mut self.table, pollable)
    }
}

//! Fixtures shared by the store's unit tests: a real sled store in a temp
//! directory, sample manifests, events and log entries.

use std::path::Path;

use serde_json::json;

use super::{Durability, LogEntry, Store, StoreOptions};
use crate::event::{Event, EventInput};
use crate::manifest::Manifest;

/// Options for tests: small cache, no fsync per accept (reopen still sees
/// everything, since dropping the store flushes), and a long lock wait: a
/// test that reopens its store waits for sled's background threads to let
/// go of the directory, which on a loaded 2-core CI machine took over 3 s.
pub(super) fn opts() -> StoreOptions {
    StoreOptions {
        cache_bytes: 8 * 1024 * 1024,
        durability: Durability::None,
        lock_wait: std::time::Duration::from_secs(60),
        ..StoreOptions::default()
    }
}

pub(super) fn open(dir: &Path) -> Store {
    Store::open(dir, opts()).expect("open store")
}

/// A store in a fresh temp dir; keep the dir alive as long as the store.
pub(super) fn temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    (dir, s)
}

pub(super) fn manifest(name: &str) -> Manifest {
    Manifest::from_json(
        &json!({"name": name, "subscription": {"events": ["*"]}, "config": {"v": 1}}).to_string(),
    )
    .expect("valid manifest")
}

pub(super) fn event(event_type: &str, tenant: &str) -> Event {
    let mut input = EventInput::new(event_type, &json!({"n": 1}));
    input.tenant = tenant.into();
    input.accept("test", 0, 1 << 20).expect("valid event")
}

/// A log entry for `handler` about `event` with the given outcome.
pub(super) fn entry(handler: &str, event: &Event, outcome: &str, time_ms: u64) -> LogEntry {
    LogEntry {
        handler: handler.into(),
        version: 1,
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        tenant: event.tenant.clone(),
        outcome: outcome.into(),
        error: (outcome != "ok").then(|| format!("{outcome} happened")),
        duration_us: 100,
        fuel: 10,
        memory_bytes: 65536,
        attempt: 1,
        time_ms,
        ..LogEntry::default()
    }
}

/// Deploys a handler named `name` with a tiny module; returns the version.
pub(super) fn deploy(s: &Store, name: &str) -> u32 {
    let hash = s.put_module(b"\0asm fixture").expect("put module");
    s.deploy(&manifest(name), &hash, 13, "test")
        .expect("deploy")
        .1
        .version
}

/// Cuts the last `n` bytes off the newest segment of the segment log in
/// `dir`: a crash that tore (or lost) its tail.
pub(super) fn cut_newest_segment(dir: &Path, n: u64) {
    let ids = super::segment::segment_ids(dir).expect("segment ids");
    let path = super::segment::segment_path(dir, *ids.last().expect("a segment"));
    let len = std::fs::metadata(&path).expect("a segment file").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len - n))
        .expect("cutting the segment");
}

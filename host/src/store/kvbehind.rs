//! Handler KV writes, written behind: a write lands in memory, and a
//! thread of its own (`hookbox-kv-write`) moves what was written into the
//! `kv` tree every [`WRITE_BEHIND`], as one sled batch.
//!
//! A handler that bumps one counter per event made a sled insert per
//! delivery, the largest store cost left on a worker (BENCHMARKS.md, issue
//! 14's fourteenth round); now a hot key is written once per interval, and
//! many keys once each, in one batch, off the workers.
//!
//! Reads see every write at once: a key is looked up here first (the
//! writes not moved yet, then those being moved), then in sled. Whatever
//! reads the tree directly (scans, the operator API, sweeps, handler
//! deletion) moves the writes first ([`KvBehind::write_out`]).
//!
//! Durability is what it was: KV writes were never fsynced on their own
//! (sled flushes every 500 ms), and a crash can undo the last ~0.5 s of
//! them. [`Store::flush`](super::Store::flush) and closing the store move
//! every write first. More than [`MAX_BYTES`] unmoved makes the writer
//! that passes it move them itself, so memory stays bounded whatever the
//! rate.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Result, SledExt};

/// How often the writes are moved into sled.
pub(super) const WRITE_BEHIND: Duration = Duration::from_millis(50);
/// Unmoved bytes (keys and entries) past which the writer moves them.
pub(super) const MAX_BYTES: usize = 4 << 20;

/// Full `kv` tree key → its entry; `None`: removed.
type Writes = HashMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Default)]
struct State {
    /// Written, not moved yet.
    pending: Writes,
    /// Bytes of keys and entries in `pending`.
    bytes: usize,
    /// Being moved into sled now: read from here until they are there.
    moving: Option<Arc<Writes>>,
}

/// The writes not in sled yet.
#[derive(Default)]
pub(super) struct KvBehind {
    state: Mutex<State>,
    /// Held by whoever moves writes, so two moves never interleave (a
    /// later move could otherwise land before an earlier one).
    moving: Mutex<()>,
}

impl KvBehind {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is one statement or a swap; a panic
        // elsewhere cannot leave it half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry at `key` if a write not yet in sled holds it: `Some(None)`
    /// when it was removed, `None` when sled has the answer.
    pub(super) fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let st = self.lock();
        if let Some(e) = st.pending.get(key) {
            return Some(e.clone());
        }
        st.moving.as_ref()?.get(key).cloned()
    }

    /// Records a write (`None`: a removal). Whether the writes now pass
    /// [`MAX_BYTES`], so the caller should move them.
    pub(super) fn put(&self, key: Vec<u8>, entry: Option<Vec<u8>>) -> bool {
        let size = |e: &Option<Vec<u8>>| key.len() + e.as_ref().map_or(0, Vec::len);
        let added = size(&entry);
        let mut st = self.lock();
        // A key written again replaces its bytes rather than adding them.
        let replaced = st.pending.get(&key).map_or(0, size);
        st.bytes = (st.bytes + added).saturating_sub(replaced);
        st.pending.insert(key, entry);
        st.bytes > MAX_BYTES
    }

    /// Moves every write recorded so far into `tree`, as one batch. On an
    /// error they stay here (but for keys written again meanwhile).
    pub(super) fn write_out(&self, tree: &sled::Tree) -> Result<()> {
        let _one = self.moving.lock().unwrap_or_else(|p| p.into_inner());
        let writes = {
            let mut st = self.lock();
            if st.pending.is_empty() {
                return Ok(());
            }
            st.bytes = 0;
            let writes = Arc::new(std::mem::take(&mut st.pending));
            st.moving = Some(Arc::clone(&writes));
            writes
        };
        let mut batch = sled::Batch::default();
        for (k, e) in writes.iter() {
            match e {
                Some(e) => batch.insert(k.as_slice(), e.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        let res = tree.apply_batch(batch).sled();
        let mut st = self.lock();
        st.moving = None;
        if res.is_err() {
            for (k, e) in writes.iter() {
                if !st.pending.contains_key(k) {
                    st.bytes += k.len() + e.as_ref().map_or(0, Vec::len);
                    st.pending.insert(k.clone(), e.clone());
                }
            }
        }
        res
    }
}

/// The thread that moves the writes every [`WRITE_BEHIND`]; dropping it
/// stops and joins the thread (which holds a tree handle, so sled's lock
/// goes with the store), after one last move.
pub(super) struct KvWriter {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KvWriter {
    pub(super) fn start(behind: Arc<KvBehind>, tree: sled::Tree) -> KvWriter {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hookbox-kv-write".into())
            .spawn(move || writer(&behind, &tree, &stopped))
            .map_err(|e| tracing::error!(error = %e, "Could not start the KV writer; KV writes go to sled when the store flushes or closes"))
            .ok();
        KvWriter {
            stop: Some(stop),
            thread,
        }
    }
}

fn writer(behind: &KvBehind, tree: &sled::Tree, stopped: &Receiver<()>) {
    loop {
        let last = match stopped.recv_timeout(WRITE_BEHIND) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        if let Err(e) = behind.write_out(tree) {
            tracing::error!(error = %e, "Writing handler KV entries to the store failed; will try again");
        }
        if last {
            return;
        }
    }
}

impl Drop for KvWriter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // A panicked writer has nothing left to clean up.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Db, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let t = db.open_tree("kv").unwrap();
        (dir, db, t)
    }

    #[test]
    fn a_write_is_read_back_before_and_after_it_reaches_sled() {
        let (_dir, _db, t) = tree();
        let b = KvBehind::default();
        assert_eq!(b.get(b"k"), None, "nothing written: sled answers");
        b.put(b"k".to_vec(), Some(b"1".to_vec()));
        b.put(b"k".to_vec(), Some(b"2".to_vec()));
        b.put(b"gone".to_vec(), None);
        assert_eq!(b.get(b"k"), Some(Some(b"2".to_vec())));
        assert_eq!(b.get(b"gone"), Some(None));
        assert!(t.get(b"k").unwrap().is_none(), "not in sled yet");
        t.insert(b"gone", b"old").unwrap();
        b.write_out(&t).unwrap();
        assert_eq!(b.get(b"k"), None, "moved: sled answers now");
        assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(
            t.get(b"gone").unwrap().is_none(),
            "the removal reached sled"
        );
    }

    #[test]
    fn writes_past_the_budget_ask_to_be_moved() {
        let b = KvBehind::default();
        let big = vec![0u8; MAX_BYTES / 2];
        assert!(!b.put(b"a".to_vec(), Some(big.clone())));
        // Rewriting a key replaces its bytes rather than adding them.
        assert!(!b.put(b"a".to_vec(), Some(big.clone())));
        assert!(b.put(b"b".to_vec(), Some(big)));
    }

    #[test]
    fn the_writer_moves_writes_within_its_interval_and_at_the_end() {
        let (_dir, _db, t) = tree();
        let b = Arc::new(KvBehind::default());
        let w = KvWriter::start(Arc::clone(&b), t.clone());
        b.put(b"k".to_vec(), Some(b"v".to_vec()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while t.get(b"k").unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "never moved");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A write just before the writer stops still reaches sled.
        b.put(b"last".to_vec(), Some(b"v".to_vec()));
        drop(w);
        assert!(t.get(b"last").unwrap().is_some());
    }
}

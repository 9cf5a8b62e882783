//! Group commit for [`Durability::Group`](super::Durability::Group): one
//! background thread flushes sled every interval, and each `accept` waits
//! for the first flush that *started* after its write committed, so many
//! accepts share one fsync while none is acknowledged before it is on disk.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Result, StoreError};

#[derive(Default)]
struct State {
    /// Tickets handed to committed writes.
    requested: u64,
    /// Every ticket up to this one is covered by a finished flush.
    flushed: u64,
    /// The last failed flush: tickets up to `.0` must report `.1`.
    failed: Option<(u64, String)>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when `flushed` advances or `stop` is set.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // State is a few integers updated in single statements; a panic
        // elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    pub(super) fn start(db: sled::Db, interval: Duration) -> GroupCommit {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("hookbox-store-flush".into())
            .spawn(move || flusher(&s, &db, interval))
            .ok();
        GroupCommit { shared, thread }
    }

    /// Blocks until a flush covering every write committed before this call
    /// has finished.
    pub(super) fn wait(&self) -> Result<()> {
        let mut st = self.shared.lock();
        if self.thread.is_none() {
            return Err(StoreError::Sled("group-commit thread did not start".into()));
        }
        st.requested += 1;
        let ticket = st.requested;
        while st.flushed < ticket && !st.stop {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
        match &st.failed {
            Some((upto, msg)) if *upto >= ticket => Err(StoreError::Sled(msg.clone())),
            _ if st.flushed < ticket => Err(StoreError::Sled("store is closing".into())),
            _ => Ok(()),
        }
    }
}

fn flusher(shared: &Shared, db: &sled::Db, interval: Duration) {
    loop {
        let target = {
            let mut st = shared.lock();
            while st.requested == st.flushed && !st.stop {
                st = shared
                    .changed
                    .wait_timeout(st, interval)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if st.stop && st.requested == st.flushed {
                return;
            }
            st.requested
        };
        // Outside the lock, so new writers can take tickets meanwhile; they
        // are covered by the next round.
        let res = db.flush();
        let mut st = shared.lock();
        if let Err(e) = res {
            st.failed = Some((target, e.to_string()));
        }
        st.flushed = target;
        shared.changed.notify_all();
        drop(st);
        std::thread::sleep(interval);
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            // A panicked flusher has nothing left to clean up.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::event;
    use super::super::{Durability, Store, StoreOptions};
    use super::*;

    /// Set in the child process of the test below: the store's directory.
    const CHILD_DIR: &str = "HOOKBOX_TEST_GROUP_COMMIT_DIR";
    /// What the child prints once every accept was acknowledged.
    const ACKED: &str = "group-commit-child: acknowledged";

    fn opts() -> StoreOptions {
        StoreOptions {
            durability: Durability::Group {
                interval: Duration::from_millis(2),
            },
            lock_wait: Duration::from_secs(60),
            ..StoreOptions::default()
        }
    }

    /// Checked the way a crash sees it: a child process (this test binary
    /// again, running only this test) accepts from four threads, says so
    /// once every accept returned, and is killed with SIGKILL before it can
    /// drop (and so flush) the store. Without the group flush the accepts
    /// are still in sled's buffers when the kill comes, and are lost.
    #[test]
    fn group_commit_acknowledges_after_a_flush() {
        use std::io::BufRead;
        if let Some(dir) = std::env::var_os(CHILD_DIR) {
            let s = Store::open(std::path::Path::new(&dir), opts()).unwrap();
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || s.accept(&[(event("t", ""), vec!["h".into()])]))
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
            println!("{ACKED}");
            // Killed long before this ends; bounded in case the parent died.
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let name = concat!(module_path!(), "::group_commit_acknowledges_after_a_flush");
        let name = name.split_once("::").map_or(name, |(_, rest)| rest);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        for line in out.lines() {
            let line = line.unwrap();
            if line.contains(ACKED) {
                break;
            }
            seen.push(line);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            seen.iter().all(|l| !l.contains("panicked")),
            "the child failed: {seen:?}"
        );
        let s = Store::open(dir.path(), opts()).unwrap();
        assert_eq!(s.pending().unwrap().len(), 4, "child output: {seen:?}");
    }
}

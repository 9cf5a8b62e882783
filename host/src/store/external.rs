//! What an inbox kept outside the store (cluster mode's JetStream inbox,
//! `crate::cluster`) writes into it: the delivery log lines and stats of
//! the attempts it moved on, the accepted-event counters, and its dead
//! letters. The sled and segment-log inboxes do the same from inside
//! `store/`; these are the public doors for an implementation outside it.

use super::handlers::version_key;
use super::queue::{META_ACCEPTED, META_UNROUTED, attempt_error};
use super::stats::StatKind;
use super::{
    DeadLetter, HandlerRecord, LogEntry, Pending, Result, SledExt, Store, StoreError,
    VersionRecord, encode, tx_err,
};
use crate::event::Event;

/// The newest dead letter an external inbox stored (`meta` tree).
const META_EXTERNAL_DEAD: &[u8] = b"external_dead_letter";
/// Where positions in logs kept outside the store are recorded (`meta`
/// tree, suffixed with the position's name).
const META_POSITION: &str = "external_position.";

/// What an attempt led to, for its stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptKind {
    /// A final outcome (success, expired, or a failure that is not retried).
    Final,
    /// A failure that will be retried.
    Retry,
    /// A failure that exhausted the policy.
    DeadLetter,
}

impl Store {
    /// Writes the delivery log lines of `entries` and counts them.
    pub fn record_attempts(&self, entries: &[&LogEntry], kind: AttemptKind) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.append_logs(entries)?;
        let kind = match kind {
            AttemptKind::Final => StatKind::Attempt,
            AttemptKind::Retry => StatKind::Retry,
            AttemptKind::DeadLetter => StatKind::DeadLetter,
        };
        self.record_stats_of(entries, kind)
    }

    /// Counts accepted events, `unrouted` of them routed to no handler.
    pub fn count_accepted(&self, accepted: u64, unrouted: u64) -> Result<()> {
        self.bump(META_ACCEPTED, i64::try_from(accepted).unwrap_or(i64::MAX))?;
        if unrouted > 0 {
            self.bump(META_UNROUTED, i64::try_from(unrouted).unwrap_or(i64::MAX))?;
        }
        Ok(())
    }

    /// Counts attempts whose log lines are written elsewhere (cluster
    /// mode: [`Store::apply_shared_logs`]).
    pub fn count_attempts(&self, entries: &[&LogEntry], kind: AttemptKind) -> Result<()> {
        let kind = match kind {
            AttemptKind::Final => StatKind::Attempt,
            AttemptKind::Retry => StatKind::Retry,
            AttemptKind::DeadLetter => StatKind::DeadLetter,
        };
        self.record_stats_of(entries, kind)
    }

    /// A new log-line or dead-letter id (a ULID, monotonic in this process).
    pub fn new_record_id(&self) -> String {
        self.new_id()
    }

    /// Stores a dead letter for delivery `p` of `event`, whose last attempt
    /// is `entry` (already recorded): every error of `p` plus that one.
    pub fn add_dead_letter(
        &self,
        event: &Event,
        p: &Pending,
        entry: &LogEntry,
    ) -> Result<DeadLetter> {
        let dl = self.new_dead_letter(event, p, entry);
        self.put_dead_letter(&dl, META_EXTERNAL_DEAD, dl.id.as_bytes())?;
        Ok(dl)
    }

    /// The dead letter [`Store::add_dead_letter`] would store, not stored.
    pub fn new_dead_letter(&self, event: &Event, p: &Pending, entry: &LogEntry) -> DeadLetter {
        let id = self.new_ulid();
        let mut errors = p.errors.clone();
        errors.push(attempt_error(p.attempt, entry));
        DeadLetter {
            id: id.to_string(),
            event: event.clone(),
            handler: p.handler.clone(),
            version: entry.version,
            errors,
            time_ms: id.timestamp_ms(),
        }
    }

    /// Stores a dead letter made elsewhere (cluster mode: by any node);
    /// storing it again is harmless.
    pub fn put_shared_dead_letter(&self, dl: &DeadLetter) -> Result<()> {
        self.put_dead_letter(dl, META_EXTERNAL_DEAD, dl.id.as_bytes())
    }

    /// Removes dead letter `id` if it is here (cluster mode: another node
    /// replayed or purged it); whether it was.
    pub fn remove_shared_dead_letter(&self, id: &str) -> Result<bool> {
        match self.dead_letter_get(id)? {
            Some(dl) => self.remove_dead_letter(&dl).map(|()| true),
            None => Ok(false),
        }
    }

    /// How far a log kept outside the store was applied here (0: not yet).
    pub fn external_position(&self, name: &str) -> Result<u64> {
        let key = format!("{META_POSITION}{name}");
        match self.t().meta.get(key.as_bytes()).sled()? {
            None => Ok(0),
            Some(v) => super::keys::read_u64(&v)
                .ok_or_else(|| super::corrupt("meta", key.as_bytes(), "not a u64")),
        }
    }

    /// Records [`Store::external_position`] (written behind, like the log
    /// lines it follows).
    pub fn set_external_position(&self, name: &str, position: u64) -> Result<()> {
        let key = format!("{META_POSITION}{name}");
        self.t()
            .meta
            .insert(key.as_bytes(), &position.to_be_bytes()[..])
            .sled()
            .map(drop)
    }

    /// The delivery log's retention: (most lines, oldest line).
    pub fn log_retention(&self) -> (u64, std::time::Duration) {
        let o = &self.inner.opts;
        (o.log_max_entries, o.log_max_age)
    }

    /// The dead letter `id`, checked for a revive pinned to `version`: its
    /// handler (unless built in: a name with `:`) and that version exist.
    /// Nothing is removed yet ([`Store::drop_dead_letter`] does).
    pub fn dead_letter_to_revive(&self, id: &str, version: Option<u32>) -> Result<DeadLetter> {
        let Some(dl) = self.dead_letter_get(id)? else {
            return Err(StoreError::NotFound(format!("dead letter {id}")));
        };
        let h = dl.handler.as_str();
        if !h.contains(':') && self.handler(h)?.is_none() {
            return Err(StoreError::NotFound(format!("handler {h}")));
        }
        if let Some(v) = version
            && self.version(h, v)?.is_none()
        {
            return Err(StoreError::NotFound(format!("version {v} of handler {h}")));
        }
        Ok(dl)
    }

    /// Makes a handler and its versions what a registry kept outside the
    /// store (cluster mode's KV bucket) says, in one transaction: the
    /// handler record replaced, every version written (versions are
    /// immutable, so one already here is the same). `audit` (actor,
    /// action, detail) records a change made through this node. The
    /// modules must be stored already.
    pub fn apply_handler(
        &self,
        handler: &HandlerRecord,
        versions: &[VersionRecord],
        audit: Option<(&str, &str, serde_json::Value)>,
    ) -> Result<()> {
        use sled::Transactional;
        for v in versions {
            if v.name != handler.name {
                return Err(StoreError::BadInput(format!(
                    "version {} belongs to {}, not {}",
                    v.version, v.name, handler.name
                )));
            }
            if !self.has_module(&v.module_hash)? {
                return Err(StoreError::NotFound(format!("module {}", v.module_hash)));
            }
        }
        let _admin = self.admin_lock();
        let hbytes = encode(handler)?;
        let vbytes: Vec<(Vec<u8>, Vec<u8>)> = versions
            .iter()
            .map(|v| Ok((version_key(&v.name, v.version), encode(v)?)))
            .collect::<Result<_>>()?;
        let audit = match audit {
            Some((actor, action, detail)) => {
                Some(self.audit_record(actor, action, &handler.name, detail)?)
            }
            None => None,
        };
        let t = self.t();
        let name = handler.name.as_str();
        (&t.handlers, &t.versions, &t.audit)
            .transaction(|(handlers, vtree, audit_tree)| {
                handlers.insert(name, hbytes.as_slice())?;
                for (k, v) in &vbytes {
                    vtree.insert(k.as_slice(), v.as_slice())?;
                }
                if let Some((k, v)) = &audit {
                    audit_tree.insert(k.as_slice(), v.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_err)?;
        self.admin_flush()
    }

    /// Removes a dead letter that was put back in the inbox.
    pub fn drop_dead_letter(&self, dl: &DeadLetter) -> Result<()> {
        self.remove_dead_letter(dl)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn an_applied_handler_replaces_the_local_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        deploy(&s, "a");
        let mut h = s.handler("a").unwrap().unwrap();
        let mut v2 = s.version("a", 1).unwrap().unwrap();
        v2.version = 2;
        h.active_version = 2;
        h.enabled = false;
        s.apply_handler(&h, &[v2.clone()], None).unwrap();
        assert_eq!(s.handler("a").unwrap().unwrap(), h);
        assert_eq!(s.versions("a").unwrap().len(), 2);
        v2.module_hash = "0".repeat(64);
        let err = s.apply_handler(&h, &[v2], None).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    #[test]
    fn an_external_dead_letter_is_listed_revivable_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        deploy(&s, "a");
        let e = event("tick", "acme");
        let p = Pending {
            event_id: e.id.clone(),
            handler: "a".into(),
            attempt: 3,
            due_ms: 0,
            version: None,
            errors: Vec::new(),
        };
        let last = LogEntry {
            attempt: 3,
            ..entry("a", &e, "trap", 1)
        };
        s.record_attempts(&[&last], AttemptKind::DeadLetter)
            .unwrap();
        let dl = s.add_dead_letter(&e, &p, &last).unwrap();
        assert_eq!(dl.errors.len(), 1);
        assert_eq!(s.deliveries_of(&e.id).unwrap().len(), 1);
        let err = s.dead_letter_to_revive(&dl.id, Some(9)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let got = s.dead_letter_to_revive(&dl.id, None).unwrap();
        s.drop_dead_letter(&got).unwrap();
        assert!(s.dead_letter_get(&dl.id).unwrap().is_none());
    }
}

//! The fake host's state: per-tenant KV with TTLs against a fake clock, the
//! log and the emitted events. Pure data and rules, no thread-locals.

use std::collections::BTreeMap;

use crate::Priority;
use crate::emit::{EmitError, NewEvent};
use crate::event::EventBuilder;
use crate::log::Level;

use super::{EmittedEvent, LogRecord};

/// One stored KV value.
#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    /// The fake-clock time from which the key counts as absent.
    expires_at_ms: Option<u64>,
}

impl Entry {
    fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| now_ms < at)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) config: String,
    pub(crate) now_ms: u64,
    /// tenant → key → entry: the handler's namespace per tenant.
    kv: BTreeMap<String, BTreeMap<String, Entry>>,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) emitted: Vec<EmittedEvent>,
}

impl Default for State {
    fn default() -> Self {
        State {
            config: "{}".to_owned(),
            now_ms: EventBuilder::DEFAULT_TIME_MS,
            kv: BTreeMap::new(),
            logs: Vec::new(),
            emitted: Vec::new(),
        }
    }
}

impl State {
    fn live(&self, tenant: &str, key: &str) -> Option<&Entry> {
        self.kv
            .get(tenant)?
            .get(key)
            .filter(|e| e.is_live(self.now_ms))
    }

    pub(crate) fn kv_get(&self, tenant: &str, key: &str) -> Option<Vec<u8>> {
        self.live(tenant, key).map(|e| e.value.clone())
    }

    pub(crate) fn kv_set(&mut self, tenant: &str, key: &str, value: &[u8], ttl_ms: Option<u64>) {
        let entry = Entry {
            value: value.to_vec(),
            expires_at_ms: ttl_ms.map(|ttl| self.now_ms.saturating_add(ttl)),
        };
        self.namespace(tenant).insert(key.to_owned(), entry);
    }

    pub(crate) fn kv_delete(&mut self, tenant: &str, key: &str) -> bool {
        let now = self.now_ms;
        self.namespace(tenant)
            .remove(key)
            .is_some_and(|e| e.is_live(now))
    }

    /// Adds `delta` to the decimal counter at `key`, saturating. The result
    /// has no expiry, as on the real host.
    pub(crate) fn kv_increment(&mut self, tenant: &str, key: &str, delta: i64) -> i64 {
        let new = self.kv_incremented(tenant, key, delta);
        self.kv_set(tenant, key, new.to_string().as_bytes(), None);
        new
    }

    /// Swaps `key` from `expected` to `new` (`None` = absent); a value set
    /// by a swap has no expiry.
    pub(crate) fn kv_compare_and_swap(
        &mut self,
        tenant: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> bool {
        let current = self.live(tenant, key).map(|e| e.value.as_slice());
        if current != expected {
            return false;
        }
        match new {
            Some(value) => self.kv_set(tenant, key, value, None),
            None => {
                self.namespace(tenant).remove(key);
            }
        }
        true
    }

    /// The live keys of `tenant`, sorted.
    pub(crate) fn kv_keys(&self, tenant: &str) -> Vec<String> {
        self.kv
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.is_live(self.now_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The live keys and bytes (key plus value) of `tenant`'s namespace,
    /// and what they would be with `key` holding a value of `value_len`
    /// bytes (`None`: removed). Expired entries do not count: the host
    /// purges them before it refuses a write.
    pub(crate) fn kv_usage(
        &self,
        tenant: &str,
        key: &str,
        value_len: Option<usize>,
    ) -> (super::limits::KvUsage, super::limits::KvUsage) {
        let mut now = super::limits::KvUsage::default();
        for (k, e) in self.kv.get(tenant).into_iter().flatten() {
            if e.is_live(self.now_ms) {
                now.keys += 1;
                now.bytes += (k.len() + e.value.len()) as u64;
            }
        }
        let mut next = now;
        if let Some(old) = self.live(tenant, key) {
            next.keys -= 1;
            next.bytes -= (key.len() + old.value.len()) as u64;
        }
        if let Some(len) = value_len {
            next.keys += 1;
            next.bytes += (key.len() + len) as u64;
        }
        (now, next)
    }

    /// The value [`Self::kv_increment`] would store.
    pub(crate) fn kv_incremented(&self, tenant: &str, key: &str, delta: i64) -> i64 {
        self.live(tenant, key)
            .and_then(|e| std::str::from_utf8(&e.value).ok())
            .and_then(|text| text.parse::<i64>().ok())
            .unwrap_or(0)
            .saturating_add(delta)
    }

    fn namespace(&mut self, tenant: &str) -> &mut BTreeMap<String, Entry> {
        self.kv.entry(tenant.to_owned()).or_default()
    }

    pub(crate) fn log(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        // Echoed so a failing test shows what the handler logged (the test
        // harness captures this output and prints it only on failure).
        eprintln!("[{level}] {message} {fields:?}");
        self.logs.push(LogRecord {
            level,
            message: message.to_owned(),
            fields: fields.to_vec(),
        });
    }
}

/// Checks an emitted event the way the host does and resolves its defaults
/// (`tenant` from the current event, priority normal).
pub(crate) fn accept_emit(
    current_tenant: &str,
    event: NewEvent,
    payload: String,
) -> Result<EmittedEvent, EmitError> {
    if event.event_type.trim().is_empty() {
        return Err(EmitError::Invalid("event type is empty".to_owned()));
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&payload) {
        return Err(EmitError::Invalid(format!("payload is not JSON: {e}")));
    }
    let tenant = match event.tenant {
        None => current_tenant.to_owned(),
        // As on the host: a delivery of an event with a tenant stays in it.
        Some(t) if !current_tenant.is_empty() && t != current_tenant => {
            return Err(EmitError::Invalid(format!(
                "a delivery of tenant {current_tenant:?} may emit only into that tenant, not {t:?}"
            )));
        }
        Some(t) => t,
    };
    Ok(EmittedEvent {
        event_type: event.event_type,
        tenant,
        payload,
        metadata: event.metadata,
        key: event.key,
        priority: event.priority.unwrap_or(Priority::Normal),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            now_ms: 1_000,
            ..State::default()
        }
    }

    #[test]
    fn ttl_expires_at_deadline_not_before() {
        let mut s = state();
        s.kv_set("t", "k", b"v", Some(100));
        s.now_ms = 1_099;
        assert_eq!(s.kv_get("t", "k").as_deref(), Some(&b"v"[..]));
        s.now_ms = 1_100;
        assert_eq!(s.kv_get("t", "k"), None);
        assert!(s.kv_keys("t").is_empty());
        assert!(!s.kv_delete("t", "k"), "an expired key did not exist");
    }

    #[test]
    fn zero_ttl_expires_at_once_and_huge_ttl_saturates() {
        let mut s = state();
        s.kv_set("t", "gone", b"v", Some(0));
        assert_eq!(s.kv_get("t", "gone"), None);
        s.kv_set("t", "forever", b"v", Some(u64::MAX));
        s.now_ms = u64::MAX - 1;
        assert!(s.kv_get("t", "forever").is_some());
    }

    #[test]
    fn tenants_are_separate_namespaces() {
        let mut s = state();
        s.kv_set("a", "k", b"1", None);
        assert_eq!(s.kv_get("b", "k"), None);
        assert_eq!(s.kv_increment("b", "k", 5), 5);
        assert_eq!(s.kv_get("a", "k").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn increment_counts_garbage_and_expired_as_zero_and_drops_ttl() {
        let mut s = state();
        s.kv_set("t", "junk", b"12abc", None);
        assert_eq!(s.kv_increment("t", "junk", 2), 2);
        s.kv_set("t", "gone", b"7", Some(10));
        s.now_ms += 10;
        assert_eq!(s.kv_increment("t", "gone", 1), 1, "expired counts as 0");
        s.kv_set("t", "n", b"40", Some(50));
        assert_eq!(s.kv_increment("t", "n", 2), 42);
        s.now_ms += 50;
        assert_eq!(s.kv_get("t", "n").as_deref(), Some(&b"42"[..]), "no expiry");
    }

    #[test]
    fn increment_saturates_both_ways() {
        let mut s = state();
        s.kv_set("t", "n", i64::MAX.to_string().as_bytes(), None);
        assert_eq!(s.kv_increment("t", "n", 1), i64::MAX);
        assert_eq!(s.kv_increment("t", "m", i64::MIN), i64::MIN);
        assert_eq!(s.kv_increment("t", "m", -1), i64::MIN);
        assert_eq!(s.kv_get("t", "m").unwrap(), i64::MIN.to_string().as_bytes());
    }

    #[test]
    fn compare_and_swap_rules() {
        let mut s = state();
        assert!(!s.kv_compare_and_swap("t", "k", Some(b"x"), Some(b"y")));
        assert!(s.kv_compare_and_swap("t", "k", None, Some(b"x")));
        assert!(!s.kv_compare_and_swap("t", "k", None, Some(b"z")));
        assert!(s.kv_compare_and_swap("t", "k", Some(b"x"), Some(b"y")));
        assert!(s.kv_compare_and_swap("t", "k", Some(b"y"), None));
        assert_eq!(s.kv_get("t", "k"), None);
        s.kv_set("t", "e", b"old", Some(10));
        s.now_ms += 10;
        assert!(
            s.kv_compare_and_swap("t", "e", None, Some(b"new")),
            "an expired key is absent"
        );
    }

    #[test]
    fn emit_is_validated_and_defaults_resolved() {
        let ok = accept_emit("acme", NewEvent::new("n"), "[1]".to_owned()).unwrap();
        assert_eq!(ok.tenant, "acme");
        assert_eq!(ok.priority, Priority::Normal);
        assert!(matches!(
            accept_emit("acme", NewEvent::new("n").tenant("b"), "1".to_owned()),
            Err(EmitError::Invalid(m)) if m.contains("only into that tenant")
        ));
        let fan_out = accept_emit("", NewEvent::new("n").tenant("b"), "1".to_owned()).unwrap();
        assert_eq!(fan_out.tenant, "b");
        assert!(matches!(
            accept_emit("acme", NewEvent::new(" "), "{}".to_owned()),
            Err(EmitError::Invalid(_))
        ));
        assert!(matches!(
            accept_emit("acme", NewEvent::new("n"), "{nope".to_owned()),
            Err(EmitError::Invalid(_))
        ));
    }
}

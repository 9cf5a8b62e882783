//! The host calls of the public API on native targets: they act on the
//! state a [`TestHost`](super::TestHost) installed in this thread for the
//! duration of [`run`](super::TestHost::run) or
//! [`within`](super::TestHost::within).

use std::cell::RefCell;

use crate::emit::{EmitError, NewEvent};
use crate::log::Level;

use super::EmittedEvent;
use super::limits::{self, Abort, Limits, Outcome, Usage};
use super::state::{self, State};

/// The state of the delivery being run in this thread.
pub(super) struct Active {
    pub(super) state: State,
    pub(super) tenant: String,
    pub(super) pending: Vec<EmittedEvent>,
    pub(super) limits: Limits,
    pub(super) usage: Usage,
}

thread_local! {
    static CURRENT: RefCell<Option<Active>> = const { RefCell::new(None) };
}

impl Active {
    /// Checks the namespace's quotas for `key` about to hold a value of
    /// `value_len` bytes (`None`: removed).
    fn quota(&self, key: &str, value_len: Option<usize>) -> Result<(), Outcome> {
        let (now, next) = self.state.kv_usage(&self.tenant, key, value_len);
        limits::kv_quota(&self.limits, now, next)
    }
}

/// Whether a fake host is installed in this thread.
pub(super) fn is_installed() -> bool {
    CURRENT.with_borrow(Option::is_some)
}

/// Installs `active` for this thread, replacing nothing: callers check
/// [`is_installed`] first.
pub(super) fn install(active: Active) {
    CURRENT.with_borrow_mut(|current| {
        debug_assert!(current.is_none());
        *current = Some(active);
    });
}

/// Removes the installed state, if any.
pub(super) fn uninstall() -> Option<Active> {
    CURRENT.with_borrow_mut(Option::take)
}

fn with<R>(f: impl FnOnce(&mut Active) -> R) -> R {
    CURRENT.with_borrow_mut(|current| {
        let active = current.as_mut().expect(
            "hookbox-sdk host function called outside TestHost::run/within \
             (on native targets the SDK talks to the fake host in hookbox_sdk::testing)",
        );
        f(active)
    })
}

/// Ends the delivery with `outcome`, as the real host ends the call at a
/// limit (outside [`with`], so no borrow is held while unwinding).
fn end(outcome: Outcome) -> ! {
    std::panic::panic_any(Abort(outcome))
}

/// [`with`] for a call that a limit may refuse.
fn checked<R>(f: impl FnOnce(&mut Active) -> Result<R, Outcome>) -> R {
    with(f).unwrap_or_else(|outcome| end(outcome))
}

pub(crate) fn log(level: Level, message: &str, fields: &[(String, String)]) {
    checked(|a| {
        a.usage.log(&a.limits, message, fields)?;
        a.state.log(level, message, fields);
        Ok(())
    });
}

pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
    checked(|a| {
        limits::kv_size(&a.limits, key, 0)?;
        Ok(a.state.kv_get(&a.tenant, key))
    })
}

pub(crate) fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
    checked(|a| {
        limits::kv_size(&a.limits, key, value.len())?;
        a.quota(key, Some(value.len()))?;
        a.state.kv_set(&a.tenant, key, value, ttl_ms);
        Ok(())
    });
}

pub(crate) fn kv_delete(key: &str) -> bool {
    checked(|a| {
        limits::kv_size(&a.limits, key, 0)?;
        Ok(a.state.kv_delete(&a.tenant, key))
    })
}

pub(crate) fn kv_increment(key: &str, delta: i64) -> i64 {
    checked(|a| {
        limits::kv_size(&a.limits, key, 0)?;
        let new = a.state.kv_incremented(&a.tenant, key, delta);
        a.quota(key, Some(new.to_string().len()))?;
        Ok(a.state.kv_increment(&a.tenant, key, delta))
    })
}

pub(crate) fn kv_compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> bool {
    checked(|a| {
        let largest = expected
            .map_or(0, <[u8]>::len)
            .max(new.map_or(0, <[u8]>::len));
        limits::kv_size(&a.limits, key, largest)?;
        let current = a.state.kv_get(&a.tenant, key);
        if current.as_deref() == expected {
            a.quota(key, new.map(<[u8]>::len))?;
        }
        Ok(a.state.kv_compare_and_swap(&a.tenant, key, expected, new))
    })
}

pub(crate) fn config_get() -> String {
    with(|a| a.state.config.clone())
}

pub(crate) fn now_ms() -> u64 {
    with(|a| a.state.now_ms)
}

pub(crate) fn emit(event: NewEvent, payload: String) -> Result<(), EmitError> {
    checked(|a| {
        // Counted before it is checked, valid or not, as on the host.
        let text = event.event_type.len()
            + event.tenant.as_ref().map_or(0, String::len)
            + payload.len()
            + event.key.as_ref().map_or(0, String::len)
            + event
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        a.usage.emit(&a.limits, text, event.metadata.len())?;
        Ok(state::accept_emit(&a.tenant, event, payload).map(|accepted| a.pending.push(accepted)))
    })
}

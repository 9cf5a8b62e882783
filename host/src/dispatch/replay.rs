//! Dead-letter replays: one by id, or every dead letter of a handler in a
//! time range. A replayed delivery starts again at attempt 1, on the active
//! version or a named one; the dead letter is removed (failing again makes
//! a new one). A replay is flushed before it is acknowledged, like any
//! administrative change (unless durability is `none`). Dead letters of
//! built-in handlers (the Zulip sink) replay the same way, to their only
//! version.

use serde::Serialize;
use utoipa::ToSchema;

use super::{DispatchError, Dispatcher, Inner};
use crate::store::{DeadLetterQuery, MAX_PAGE, StoreError};

/// What a bulk replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct BulkReplay {
    /// Dead letters put back into the queue.
    pub replayed: u64,
    /// Matching dead letters left alone: the same delivery was already
    /// pending again, or a concurrent purge or replay took it first.
    pub skipped: u64,
}

/// A replay pinned to `version` needs that version; a built-in handler
/// has none to pin.
fn check_version(
    inner: &Inner,
    handler: &str,
    builtin: bool,
    version: Option<u32>,
) -> Result<(), DispatchError> {
    match version {
        None => Ok(()),
        Some(_) if builtin => Err(DispatchError::Invalid(format!(
            "{handler} is a built-in handler: it has no versions to replay to"
        ))),
        Some(v) => inner
            .store
            .version(handler, v)?
            .map(|_| ())
            .ok_or_else(|| DispatchError::NotFound(format!("version {v} of handler {handler}"))),
    }
}

impl Dispatcher {
    /// Puts a dead letter back into the queue (for `version`, or the active
    /// version). Blocking.
    pub fn replay_dead_letter(&self, id: &str, version: Option<u32>) -> Result<(), DispatchError> {
        let inner = &self.inner;
        let dl = inner
            .store
            .dead_letter_get(id)?
            .ok_or_else(|| DispatchError::NotFound(format!("dead letter {id}")))?;
        let builtin = inner.registry.is_builtin(&dl.handler);
        check_version(inner, &dl.handler, builtin, version)?;
        inner.inbox.revive(&dl.id, version)?;
        inner.store.sync_admin()?;
        inner.feed(super::Reservation::default())?;
        Ok(())
    }

    /// Removes dead letters of `handler` (all when `None`) older than
    /// `before_ms` (all when `None`), from every node in cluster mode;
    /// how many. Blocking.
    pub fn purge_dead_letters(
        &self,
        handler: Option<&str>,
        before_ms: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.inner.inbox.purge_dead_letters(handler, before_ms)
    }

    /// Replays every dead letter of `handler` dead-lettered within
    /// `[since_ms, until_ms]` (either bound optional), newest first, for
    /// `version` or the active version. Blocking; one flush at the end.
    pub fn replay_dead_letters(
        &self,
        handler: &str,
        since_ms: Option<u64>,
        until_ms: Option<u64>,
        version: Option<u32>,
    ) -> Result<BulkReplay, DispatchError> {
        let inner = &self.inner;
        let builtin = inner.registry.is_builtin(handler);
        if !builtin && inner.store.handler(handler)?.is_none() {
            return Err(DispatchError::NotFound(format!("handler {handler}")));
        }
        check_version(inner, handler, builtin, version)?;
        let mut done = BulkReplay::default();
        let mut query = DeadLetterQuery {
            handler: Some(handler.to_string()),
            since_ms,
            until_ms,
            cursor: None,
            limit: MAX_PAGE,
        };
        // Pages go newest to oldest below the previous page's last id, so
        // dead letters made meanwhile (newer) are not replayed twice.
        let result = 'pages: loop {
            let page = match inner.store.dead_letters(&query) {
                Ok(p) => p,
                Err(e) => break 'pages Err(e),
            };
            let full = page.len() == MAX_PAGE;
            query.cursor = page.last().map(|d| d.id.clone());
            for dl in page {
                match inner.inbox.revive(&dl.id, version) {
                    Ok(()) => done.replayed += 1,
                    Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => done.skipped += 1,
                    Err(e) => break 'pages Err(e),
                }
            }
            if !full {
                break Ok(());
            }
        };
        // Queue and flush what was replayed even when a later page failed.
        inner.feed(super::Reservation::default())?;
        inner.store.sync_admin()?;
        result?;
        tracing::info!(
            %handler,
            replayed = done.replayed,
            skipped = done.skipped,
            "Dead letters replayed"
        );
        Ok(done)
    }
}

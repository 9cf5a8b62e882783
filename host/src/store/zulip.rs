//! Where each Zulip realm's event source stands: the server's event queue it
//! polls and the id of the last event it has handed to the dispatcher, so a
//! restart resumes the same queue without re-delivering acknowledged events.
//!
//! Keys: `zulip` = the realm's configured name → [`ZulipCursor`] (JSON).
//! The cursor is written only after the events up to `last_event_id` were
//! accepted, and made as durable as an accept ([`Durability`](super::Durability)).

use serde::{Deserialize, Serialize};

use super::{Result, SledExt, Store, decode, encode};

/// A realm's position in its Zulip event queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZulipCursor {
    /// The server the queue lives on (a queue id means nothing elsewhere).
    pub site: String,
    /// The bot the queue was registered for.
    pub email: String,
    /// The queue id `POST /register` returned.
    pub queue_id: String,
    /// The last event id accepted (or skipped, for heartbeats); `-1` before
    /// the first event.
    pub last_event_id: i64,
    /// The Zulip event types the queue was registered for; `None` is all.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// When the cursor was written, ms since the Unix epoch.
    pub updated_ms: u64,
}

impl Store {
    /// The saved cursor of a realm.
    pub fn zulip_cursor(&self, realm: &str) -> Result<Option<ZulipCursor>> {
        match self.t().zulip.get(realm.as_bytes()).sled()? {
            None => Ok(None),
            Some(v) => decode("zulip", realm.as_bytes(), &v).map(Some),
        }
    }

    /// Saves a realm's cursor, durably (as durable as an accept).
    pub fn put_zulip_cursor(&self, realm: &str, cursor: &ZulipCursor) -> Result<()> {
        self.t()
            .zulip
            .insert(realm.as_bytes(), encode(cursor)?)
            .sled()?;
        self.commit_wait()
    }

    /// Forgets a realm's cursor (its queue is gone).
    pub fn delete_zulip_cursor(&self, realm: &str) -> Result<()> {
        self.t().zulip.remove(realm.as_bytes()).sled()?;
        self.commit_wait()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn cursor(last: i64) -> ZulipCursor {
        ZulipCursor {
            site: "https://chat.example.com".into(),
            email: "bot@example.com".into(),
            queue_id: "q1".into(),
            last_event_id: last,
            event_types: Some(vec!["message".into()]),
            updated_ms: 5,
        }
    }

    #[test]
    fn cursor_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            assert_eq!(s.zulip_cursor("acme").unwrap(), None);
            s.put_zulip_cursor("acme", &cursor(-1)).unwrap();
            s.put_zulip_cursor("acme", &cursor(41)).unwrap();
            s.put_zulip_cursor("other", &cursor(3)).unwrap();
            s.delete_zulip_cursor("other").unwrap();
        }
        let s = open(dir.path());
        assert_eq!(s.zulip_cursor("acme").unwrap(), Some(cursor(41)));
        assert_eq!(s.zulip_cursor("other").unwrap(), None);
    }

    #[test]
    fn corrupt_cursor_is_an_error_naming_the_tree() {
        let (_dir, s) = temp();
        s.t().zulip.insert("acme", &b"not json"[..]).unwrap();
        let err = s.zulip_cursor("acme").unwrap_err();
        assert!(err.to_string().contains("zulip"), "{err}");
    }
}

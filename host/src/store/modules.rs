//! Module blobs (content-addressed by sha256 hex), the compiled-code cache
//! (module hash × engine fingerprint) and the audit log.
//!
//! Keys: `modules` = sha256 hex; `compiled` = `lp(hash) lp(fingerprint)`;
//! `audit` = the entry's ULID (text, sorts by time).

use sha2::{Digest, Sha256};

use super::records::page_size;
use super::{AuditEntry, Result, SledExt, Store, StoreError, decode, encode, keys};
use crate::event::now_ms;

impl Store {
    /// Stores a component, returning its sha256 hex. Storing the same bytes
    /// twice is a no-op.
    pub fn put_module(&self, wasm: &[u8]) -> Result<String> {
        let hash = hex::encode(Sha256::digest(wasm));
        let t = &self.t().modules;
        if !t.contains_key(hash.as_bytes()).sled()? {
            t.insert(hash.as_bytes(), wasm).sled()?;
        }
        Ok(hash)
    }

    /// The component with this hash.
    pub fn module(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .t()
            .modules
            .get(hash.as_bytes())
            .sled()?
            .map(|v| v.to_vec()))
    }

    /// Caches compiled code for a module under an engine fingerprint
    /// (`Engine::precompile_compatibility_hash`).
    pub fn put_compiled(&self, hash: &str, fingerprint: &str, bytes: &[u8]) -> Result<()> {
        let key = keys::parts(&[hash.as_bytes(), fingerprint.as_bytes()]);
        self.t().compiled.insert(key, bytes).sled().map(drop)
    }

    /// Cached compiled code, if this module was compiled by a compatible engine.
    pub fn compiled(&self, hash: &str, fingerprint: &str) -> Result<Option<Vec<u8>>> {
        let key = keys::parts(&[hash.as_bytes(), fingerprint.as_bytes()]);
        Ok(self.t().compiled.get(key).sled()?.map(|v| v.to_vec()))
    }

    /// Records an administrative action.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let (key, value) = self.audit_record(actor, action, target, detail)?;
        self.t().audit.insert(key, value).sled().map(drop)
    }

    /// Key and value of a new audit entry, for callers that write it inside
    /// their own transaction.
    pub(super) fn audit_record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let entry = AuditEntry {
            id: self.new_id(),
            time_ms: now_ms(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail,
        };
        Ok((entry.id.clone().into_bytes(), encode(&entry)?))
    }

    /// Audit entries, newest first; `cursor` is the previous page's second
    /// value. `limit` 0 means the default page, capped at 1000.
    pub fn audit_log(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<AuditEntry>, Option<String>)> {
        let limit = page_size(limit);
        let iter = match cursor {
            Some(c) => {
                ulid::Ulid::from_string(c)
                    .map_err(|_| StoreError::BadInput(format!("malformed cursor {c:?}")))?;
                self.t().audit.range(..c.as_bytes().to_vec())
            }
            None => self.t().audit.iter(),
        };
        let mut out = Vec::with_capacity(limit);
        for item in iter.rev() {
            let (k, v) = item.sled()?;
            if out.len() == limit {
                let next = out.last().map(|e: &AuditEntry| e.id.clone());
                return Ok((out, next));
            }
            out.push(decode("audit", &k, &v)?);
        }
        Ok((out, None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn modules_are_content_addressed() {
        let (_d, s) = temp();
        let h = s.put_module(b"\0asm").unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(s.put_module(b"\0asm").unwrap(), h);
        assert_eq!(s.module(&h).unwrap().as_deref(), Some(&b"\0asm"[..]));
        assert_eq!(s.module("nope").unwrap(), None);
        s.put_compiled(&h, "fp1", b"code").unwrap();
        assert_eq!(
            s.compiled(&h, "fp1").unwrap().as_deref(),
            Some(&b"code"[..])
        );
        assert_eq!(s.compiled(&h, "fp2").unwrap(), None);
    }

    #[test]
    fn audit_pages_newest_first() {
        let (_d, s) = temp();
        for i in 0..5 {
            s.audit("alice", "test", &i.to_string(), json!({"i": i}))
                .unwrap();
        }
        let (page, next) = s.audit_log(2, None).unwrap();
        assert_eq!(
            page.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
            ["4", "3"]
        );
        let (page, next) = s.audit_log(2, next.as_deref()).unwrap();
        assert_eq!(page[0].target, "2");
        let (page, next) = s.audit_log(2, next.as_deref()).unwrap();
        assert_eq!((page.len(), next), (1, None));
        assert!(matches!(
            s.audit_log(2, Some("garbage")),
            Err(StoreError::BadInput(_))
        ));
    }
}

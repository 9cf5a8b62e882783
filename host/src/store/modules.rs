//! Module blobs (content-addressed by sha256 hex), the compiled-code cache
//! (module hash × engine fingerprint) and the audit log.
//!
//! Keys: `modules` = sha256 hex; `compiled` = `lp(hash) lp(fingerprint)`;
//! `audit` = the entry's ULID (text, sorts by time).
//!
//! The `compiled` tree is the durable cache. [`Store::compiled_file`] also
//! writes an entry out as a file, `code/<hash>-<fingerprint>.cwasm` in the
//! store's directory, so the runtime can map the code from disk instead of
//! copying it into anonymous memory: mapped pages are file-backed, only the
//! touched ones are resident, and the kernel may drop them under pressure.

use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::records::page_size;

/// The compiled-code files' directory, inside the store's directory.
pub(super) const CODE_DIR: &str = "code";
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

    /// A file holding the cached compiled code of this module for this
    /// fingerprint, written from the `compiled` tree if it is not there
    /// yet; `None` when nothing is cached. The file is written to a
    /// temporary name, fsynced and renamed, so a crash never leaves a
    /// partial file under the final name.
    pub fn compiled_file(&self, hash: &str, fingerprint: &str) -> Result<Option<PathBuf>> {
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(hash) || !hex(fingerprint) {
            return Err(StoreError::BadInput(format!(
                "compiled code key {hash:?}/{fingerprint:?} is not hex"
            )));
        }
        let dir = &self.inner.code_dir;
        let path = dir.join(format!("{hash}-{fingerprint}.cwasm"));
        if path.is_file() {
            return Ok(Some(path));
        }
        let Some(bytes) = self.compiled(hash, fingerprint)? else {
            return Ok(None);
        };
        let io = |what: &str, e: std::io::Error| {
            StoreError::Sled(format!("{what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
        let tmp = dir.join(format!(".{hash}.{:016x}.tmp", rand::random::<u64>()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("writing compiled code in", e));
        }
        Ok(Some(path))
    }

    /// Removes the file [`Store::compiled_file`] wrote, e.g. when the
    /// runtime refused it; the `compiled` tree keeps its entry.
    pub fn discard_compiled_file(&self, hash: &str, fingerprint: &str) {
        let path = self
            .inner
            .code_dir
            .join(format!("{hash}-{fingerprint}.cwasm"));
        let _ = std::fs::remove_file(path);
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
    fn compiled_code_is_written_out_as_a_file_once() {
        let (_d, s) = temp();
        let h = s.put_module(b"\0asm").unwrap();
        assert_eq!(s.compiled_file(&h, "f1").unwrap(), None);
        s.put_compiled(&h, "f1", b"code").unwrap();
        let path = s.compiled_file(&h, "f1").unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"code");
        // An existing file is used as it is.
        std::fs::write(&path, b"kept").unwrap();
        assert_eq!(s.compiled_file(&h, "f1").unwrap(), Some(path.clone()));
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        // Discarded, it is written again from the tree.
        s.discard_compiled_file(&h, "f1");
        let again = s.compiled_file(&h, "f1").unwrap().unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), b"code");
        // Only the temporary-free final file is left.
        let files = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(files, 1);
        assert!(matches!(
            s.compiled_file("../x", "f1"),
            Err(StoreError::BadInput(_))
        ));
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

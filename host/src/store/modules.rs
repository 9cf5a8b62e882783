//! Module blobs (content-addressed by sha256 hex), the compiled-code cache
//! (module hash × engine fingerprint) and the audit log.
//!
//! Blobs are files, not sled entries: `modules/<hash>.wasm` and
//! `code/<hash>-<fingerprint>.cwasm` in the store's directory. A component
//! is ~0.2–20 MB and its compiled code as much again; kept in sled, ten
//! thousand of them made a multi-gigabyte database that sled reads through
//! on every open (1 000 handlers: 16 s to listen). As files they cost
//! nothing until used, and the runtime maps compiled code straight from its
//! file: mapped pages are file-backed, only the touched ones are resident,
//! and the kernel may drop them under pressure.
//!
//! Every blob is written to a temporary name, fsynced, renamed into place
//! and its directory fsynced, so a crash leaves either the whole file under
//! its final name or none (stray temporaries are removed at open). A module
//! is on disk before the deploy record that names it. Stores written before
//! blobs moved out of sled (the `modules` and `compiled` trees) are
//! migrated at open, once.
//!
//! Keys: `audit` = the entry's ULID (text, sorts by time).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::records::page_size;

/// The compiled-code files' directory, inside the store's directory.
pub(super) const CODE_DIR: &str = "code";
/// The component files' directory, inside the store's directory.
pub(super) const MODULE_DIR: &str = "modules";
use super::{AuditEntry, Result, SledExt, Store, StoreError, corrupt, decode, encode, keys};
use crate::event::now_ms;

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Sled(format!("{what} {}: {e}", path.display()))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `bytes` as `path` atomically and durably: a temporary file in the
/// same directory, fsynced, renamed over `path`, then the directory fsynced
/// so the rename survives a crash.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("blob paths have a directory");
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, &e))?;
    let tmp = dir.join(format!(".{:016x}.tmp", rand::random::<u64>()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::File::open(dir)?.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("writing", path, &e));
    }
    Ok(())
}

/// Reads a blob; `None` when it does not exist.
fn read_blob(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", path, &e)),
    }
}

/// Removes the temporaries a crash left in a blob directory.
fn remove_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Store {
    fn module_path(&self, hash: &str) -> Result<PathBuf> {
        if !is_hex(hash) {
            return Err(StoreError::BadInput(format!(
                "module hash {hash:?} is not hex"
            )));
        }
        Ok(self.inner.module_dir.join(format!("{hash}.wasm")))
    }

    fn code_path(&self, hash: &str, fingerprint: &str) -> Result<PathBuf> {
        if !is_hex(hash) || !is_hex(fingerprint) {
            return Err(StoreError::BadInput(format!(
                "compiled code key {hash:?}/{fingerprint:?} is not hex"
            )));
        }
        Ok(self
            .inner
            .code_dir
            .join(format!("{hash}-{fingerprint}.cwasm")))
    }

    /// At open: removes stray temporaries and moves blobs that older
    /// versions kept in the `modules` and `compiled` trees out into files.
    pub(super) fn migrate_blobs(&self) -> Result<()> {
        remove_temporaries(&self.inner.module_dir);
        remove_temporaries(&self.inner.code_dir);
        let t = self.t();
        let mut moved = 0usize;
        for item in t.modules.iter() {
            let (k, v) = item.sled()?;
            let hash = String::from_utf8_lossy(&k).into_owned();
            let path = self.module_path(&hash)?;
            if !path.is_file() {
                write_atomically(&path, &v)?;
            }
            t.modules.remove(&k).sled()?;
            moved += 1;
        }
        for item in t.compiled.iter() {
            let (k, v) = item.sled()?;
            let (hash, rest) =
                keys::split_part(&k).ok_or_else(|| corrupt("compiled", &k, "no module hash"))?;
            let (fingerprint, _) = keys::split_part(rest)
                .ok_or_else(|| corrupt("compiled", &k, "no engine fingerprint"))?;
            let (hash, fingerprint) = (
                String::from_utf8_lossy(hash).into_owned(),
                String::from_utf8_lossy(fingerprint).into_owned(),
            );
            let path = self.code_path(&hash, &fingerprint)?;
            if !path.is_file() {
                write_atomically(&path, &v)?;
            }
            t.compiled.remove(&k).sled()?;
            moved += 1;
        }
        if moved > 0 {
            self.inner.db.flush().sled()?;
            tracing::info!(
                blobs = moved,
                "Moved module and compiled-code blobs out of sled into files"
            );
        }
        Ok(())
    }

    /// Stores a component, returning its sha256 hex; the file is durable
    /// when this returns. Storing the same bytes twice is a no-op.
    pub fn put_module(&self, wasm: &[u8]) -> Result<String> {
        let hash = hex::encode(Sha256::digest(wasm));
        let path = self.module_path(&hash)?;
        if !path.is_file() {
            write_atomically(&path, wasm)?;
        }
        Ok(hash)
    }

    /// Whether a component with this hash is stored.
    pub fn has_module(&self, hash: &str) -> Result<bool> {
        Ok(self.module_path(hash)?.is_file())
    }

    /// The component with this hash.
    pub fn module(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        read_blob(&self.module_path(hash)?)
    }

    /// Caches compiled code for a module under an engine fingerprint
    /// (`Engine::precompile_compatibility_hash`), as the file
    /// [`Store::compiled_file`] names.
    pub fn put_compiled(&self, hash: &str, fingerprint: &str, bytes: &[u8]) -> Result<()> {
        write_atomically(&self.code_path(hash, fingerprint)?, bytes)
    }

    /// The file holding the cached compiled code of this module for this
    /// fingerprint, for the runtime to map; `None` when nothing is cached.
    pub fn compiled_file(&self, hash: &str, fingerprint: &str) -> Result<Option<PathBuf>> {
        let path = self.code_path(hash, fingerprint)?;
        Ok(path.is_file().then_some(path))
    }

    /// Drops cached compiled code, e.g. when the runtime refused it: the
    /// module is compiled again on its next load.
    pub fn discard_compiled_file(&self, hash: &str, fingerprint: &str) {
        if let Ok(path) = self.code_path(hash, fingerprint) {
            let _ = std::fs::remove_file(path);
        }
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

    /// The cached compiled code's bytes, read from its file.
    fn compiled(s: &Store, hash: &str, fingerprint: &str) -> Option<Vec<u8>> {
        let path = s.compiled_file(hash, fingerprint).unwrap()?;
        Some(std::fs::read(path).unwrap())
    }

    #[test]
    fn modules_are_content_addressed() {
        let (_d, s) = temp();
        let h = s.put_module(b"\0asm").unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(s.put_module(b"\0asm").unwrap(), h);
        assert_eq!(s.module(&h).unwrap().as_deref(), Some(&b"\0asm"[..]));
        assert_eq!(s.module("abcd").unwrap(), None);
        s.put_compiled(&h, "f1", b"code").unwrap();
        assert_eq!(compiled(&s, &h, "f1").as_deref(), Some(&b"code"[..]));
        assert_eq!(compiled(&s, &h, "f2"), None);
    }

    #[test]
    fn blobs_are_files_and_a_discarded_one_is_gone() {
        let (d, s) = temp();
        let h = s.put_module(b"\0asm").unwrap();
        assert!(s.has_module(&h).unwrap());
        let module = d.path().join(MODULE_DIR).join(format!("{h}.wasm"));
        assert_eq!(std::fs::read(&module).unwrap(), b"\0asm");
        assert_eq!(s.compiled_file(&h, "f1").unwrap(), None);
        s.put_compiled(&h, "f1", b"code").unwrap();
        let path = s.compiled_file(&h, "f1").unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"code");
        s.discard_compiled_file(&h, "f1");
        assert_eq!(s.compiled_file(&h, "f1").unwrap(), None);
        assert_eq!(compiled(&s, &h, "f1"), None);
        // No temporaries are left behind.
        for dir in [MODULE_DIR, CODE_DIR] {
            for entry in std::fs::read_dir(d.path().join(dir)).unwrap() {
                let name = entry.unwrap().file_name();
                assert!(!name.to_string_lossy().ends_with(".tmp"), "{name:?}");
            }
        }
        for bad in ["../x", "", "a/b"] {
            assert!(matches!(
                s.compiled_file(bad, "f1"),
                Err(StoreError::BadInput(_))
            ));
            assert!(matches!(s.module(bad), Err(StoreError::BadInput(_))));
        }
    }

    #[test]
    fn blobs_kept_in_sled_by_older_versions_move_to_files_at_open() {
        let (d, s) = temp();
        let wasm = b"\0asm legacy".as_slice();
        let h = hex::encode(Sha256::digest(wasm));
        s.t().modules.insert(h.as_bytes(), wasm).unwrap();
        let key = keys::parts(&[h.as_bytes(), b"f1"]);
        s.t().compiled.insert(key, &b"legacy code"[..]).unwrap();
        std::fs::create_dir_all(d.path().join(CODE_DIR)).unwrap();
        let stray = d.path().join(CODE_DIR).join(".0123.tmp");
        std::fs::write(&stray, b"half").unwrap();
        drop(s);
        let s = open(d.path());
        assert_eq!(s.module(&h).unwrap().as_deref(), Some(wasm));
        assert_eq!(compiled(&s, &h, "f1").as_deref(), Some(&b"legacy code"[..]));
        assert!(s.t().modules.is_empty() && s.t().compiled.is_empty());
        assert!(!stray.exists());
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

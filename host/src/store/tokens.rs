//! API tokens. Only a sha256 of each secret is stored; the secret is shown
//! once, on creation. Lookup is by hash, then the stored hash is compared
//! again in constant time.
//!
//! Keys: `tokens` = token id (ULID) → record + hash hex; `token_hash` =
//! sha256 of the secret (32 raw bytes) → token id. Both are written and
//! removed together in one transaction.
//!
//! Tokens that authenticated are remembered in memory by the hash of their
//! secret ([`TokenCache`]), so the check every API request makes is a map
//! lookup on the calling thread ([`Store::cached_token`]) rather than two
//! sled reads and a decode on the blocking pool. A revocation empties the
//! cache once it is committed, so a revoked token fails from the next
//! request on, as it did without the cache.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use subtle::ConstantTimeEq;

use super::{
    AbortExt, Result, Scope, SledExt, Store, StoreError, TokenRecord, decode, encode, tx_err,
};
use crate::event::now_ms;

/// Prefix of generated secrets, so leaked tokens are recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "hbx_";
/// Random bytes in a generated secret.
const SECRET_BYTES: usize = 32;

#[derive(Serialize, Deserialize)]
struct StoredToken {
    #[serde(flatten)]
    record: TokenRecord,
    /// sha256 of the secret, hex.
    hash: String,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The most tokens remembered; past it the cache starts again empty. Only
/// secrets that authenticated get in, so its size follows the tokens an
/// operator made, never what a client sends.
const CACHED_TOKENS: usize = 1024;

/// Tokens that authenticated, by the sha256 of their secret (see the
/// module docs).
#[derive(Default)]
pub(super) struct TokenCache(Mutex<CacheState>);

#[derive(Default)]
struct CacheState {
    /// Moves at every revocation, so a lookup that read sled before the
    /// revocation committed does not put the token back afterwards.
    generation: u64,
    by_hash: HashMap<[u8; 32], TokenRecord>,
}

impl TokenCache {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // A map and a counter, each changed in one statement: a panic
        // elsewhere cannot leave them half-written.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store {
    /// Creates a token and returns it with its secret (`hbx_` + 64 hex
    /// digits), which is not stored and cannot be shown again.
    pub fn create_token(
        &self,
        name: &str,
        scopes: &[Scope],
        tenants: Vec<String>,
        event_types: Vec<String>,
        expires_ms: Option<u64>,
    ) -> Result<(TokenRecord, String)> {
        let (record, secret, _) = self.new_token(name, scopes, tenants, event_types, expires_ms)?;
        self.insert_token(&record, &secret)?;
        Ok((record, secret))
    }

    /// A new token as [`Store::create_token`] makes it, not stored yet:
    /// its record, its secret and what stores it
    /// ([`Store::insert_shared_token`]: the record and the secret's hash).
    pub fn new_token(
        &self,
        name: &str,
        scopes: &[Scope],
        tenants: Vec<String>,
        event_types: Vec<String>,
        expires_ms: Option<u64>,
    ) -> Result<(TokenRecord, String, Vec<u8>)> {
        if name.is_empty() || scopes.is_empty() {
            return Err(StoreError::BadInput(
                "a token needs a name and at least one scope".into(),
            ));
        }
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
        let record = TokenRecord {
            id: self.new_id(),
            name: name.into(),
            scopes: scopes.to_vec(),
            tenants,
            event_types,
            created_ms: now_ms(),
            expires_ms,
        };
        let stored = encode(&StoredToken {
            record: record.clone(),
            hash: hex::encode(hash(&secret)),
        })?;
        Ok((record, secret, stored))
    }

    /// Stores a token made elsewhere (cluster mode: on any node) from
    /// [`Store::new_token`]'s bytes; storing it again is harmless.
    pub fn insert_shared_token(&self, stored: &[u8]) -> Result<()> {
        let token: StoredToken = decode("tokens", b"shared", stored)?;
        let h = hex::decode(&token.hash)
            .ok()
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| super::corrupt("tokens", b"shared", "hash is not 32 hex bytes"))?;
        let id = token.record.id.as_str();
        let t = self.t();
        let inserted = (&t.tokens, &t.token_hash)
            .transaction(|(tokens, by_hash)| {
                if by_hash.get(&h[..])?.is_some() {
                    return Ok(false);
                }
                tokens.insert(id, stored)?;
                by_hash.insert(&h[..], id)?;
                Ok(true)
            })
            .map_err(tx_err)?;
        // Every start replays the cluster's tokens: only a new one is
        // worth a flush.
        if inserted {
            self.admin_flush()?;
        }
        Ok(())
    }

    /// Inserts a token unless one with the same secret exists; whether it did.
    fn insert_token(&self, record: &TokenRecord, secret: &str) -> Result<bool> {
        let h = hash(secret);
        let stored = encode(&StoredToken {
            record: record.clone(),
            hash: hex::encode(h),
        })?;
        let t = self.t();
        let inserted = (&t.tokens, &t.token_hash)
            .transaction(|(tokens, by_hash)| {
                if by_hash.get(&h[..])?.is_some() {
                    return Ok(false);
                }
                tokens.insert(record.id.as_str(), stored.as_slice())?;
                by_hash.insert(&h[..], record.id.as_str())?;
                Ok(true)
            })
            .map_err(tx_err)?;
        self.admin_flush()?;
        Ok(inserted)
    }

    /// The live token with this secret if it is in the cache of tokens
    /// that authenticated (module docs): no store read, so callers on an
    /// async thread may use it. `None` says nothing; ask
    /// [`Store::authenticate`] then.
    pub fn cached_token(&self, secret: &str) -> Option<TokenRecord> {
        let h = hash(secret);
        let cache = self.inner.tokens.lock();
        let record = cache.by_hash.get(&h)?;
        record
            .expires_ms
            .is_none_or(|e| e > now_ms())
            .then(|| record.clone())
    }

    /// The live token with this secret; `None` for an unknown, revoked or
    /// expired one.
    pub fn authenticate(&self, secret: &str) -> Result<Option<TokenRecord>> {
        let h = hash(secret);
        let generation = self.inner.tokens.lock().generation;
        let found = self.authenticate_stored(&h)?;
        if let Some(record) = &found {
            self.remember_token(generation, h, record);
        }
        Ok(found)
    }

    /// Caches a token read from sled at cache `generation`, unless a
    /// revocation has committed since.
    fn remember_token(&self, generation: u64, h: [u8; 32], record: &TokenRecord) {
        let mut cache = self.inner.tokens.lock();
        if cache.generation != generation {
            return;
        }
        if cache.by_hash.len() >= CACHED_TOKENS {
            cache.by_hash.clear();
        }
        cache.by_hash.insert(h, record.clone());
    }

    /// [`Store::authenticate`] from sled.
    fn authenticate_stored(&self, h: &[u8; 32]) -> Result<Option<TokenRecord>> {
        let t = self.t();
        let Some(id) = t.token_hash.get(&h[..]).sled()? else {
            return Ok(None);
        };
        let Some(b) = t.tokens.get(&id).sled()? else {
            return Ok(None);
        };
        let stored: StoredToken = decode("tokens", &id, &b)?;
        let Ok(stored_hash) = hex::decode(&stored.hash) else {
            return Err(super::corrupt("tokens", &id, "hash is not hex"));
        };
        if !bool::from(stored_hash.as_slice().ct_eq(&h[..])) {
            return Ok(None);
        }
        let expired = stored.record.expires_ms.is_some_and(|e| e <= now_ms());
        Ok((!expired).then_some(stored.record))
    }

    /// Whether the token with this id still exists (was not revoked).
    pub fn token_exists(&self, id: &str) -> Result<bool> {
        self.t().tokens.contains_key(id).sled()
    }

    /// Every token (without secrets), oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.t()
            .tokens
            .iter()
            .map(|item| {
                let (k, v) = item.sled()?;
                decode::<StoredToken>("tokens", &k, &v).map(|s| s.record)
            })
            .collect()
    }

    /// Revokes a token; whether it existed.
    pub fn revoke_token(&self, id: &str) -> Result<bool> {
        let t = self.t();
        let existed = (&t.tokens, &t.token_hash)
            .transaction(|(tokens, by_hash)| {
                let Some(b) = tokens.remove(id)? else {
                    return Ok(false);
                };
                let stored: StoredToken = decode("tokens", id.as_bytes(), &b).abort()?;
                let h = hex::decode(&stored.hash)
                    .map_err(|_| super::corrupt("tokens", id.as_bytes(), "hash is not hex"))
                    .abort()?;
                by_hash.remove(h)?;
                Ok(true)
            })
            .map_err(tx_err)?;
        // Only now that the token is gone from sled: a lookup that read it
        // before sees the generation move and keeps it out of the cache.
        if existed {
            let mut cache = self.inner.tokens.lock();
            cache.generation += 1;
            cache.by_hash.clear();
        }
        self.admin_flush()?;
        Ok(existed)
    }

    /// Registers `secret` (from `HOOKBOX_ADMIN_TOKEN` or the data-dir token
    /// file) as an admin token named `admin`, unless a token with that
    /// secret already exists.
    pub fn ensure_admin_token(&self, secret: &str) -> Result<()> {
        if secret.trim().is_empty() {
            return Err(StoreError::BadInput("the admin token is empty".into()));
        }
        let record = TokenRecord {
            id: self.new_id(),
            name: "admin".into(),
            scopes: vec![Scope::Admin],
            tenants: Vec::new(),
            event_types: Vec::new(),
            created_ms: now_ms(),
            expires_ms: None,
        };
        self.insert_token(&record, secret).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn a_token_made_in_one_store_authenticates_in_another() {
        let (_a, a) = temp();
        let (_b, b) = temp();
        let (rec, secret, stored) = a
            .new_token("ci", &[Scope::Publish], vec![], vec![], None)
            .unwrap();
        assert_eq!(a.authenticate(&secret).unwrap(), None, "not stored yet");
        b.insert_shared_token(&stored).unwrap();
        b.insert_shared_token(&stored).unwrap();
        assert_eq!(b.tokens().unwrap().len(), 1);
        assert_eq!(b.authenticate(&secret).unwrap(), Some(rec.clone()));
        assert!(b.revoke_token(&rec.id).unwrap());
        assert_eq!(b.authenticate(&secret).unwrap(), None);
        assert!(b.insert_shared_token(b"{}").is_err());
    }

    #[test]
    fn token_lifecycle() {
        let (_d, s) = temp();
        let (rec, secret) = s
            .create_token("ci", &[Scope::Publish], vec!["acme".into()], vec![], None)
            .unwrap();
        assert!(secret.starts_with("hbx_") && secret.len() == 4 + 64);
        assert_eq!(s.authenticate(&secret).unwrap(), Some(rec.clone()));
        assert_eq!(s.authenticate("hbx_wrong").unwrap(), None);
        let mut near = secret.clone();
        near.pop();
        assert_eq!(s.authenticate(&near).unwrap(), None);
        assert_eq!(s.tokens().unwrap(), vec![rec.clone()]);
        assert!(s.revoke_token(&rec.id).unwrap());
        assert!(!s.revoke_token(&rec.id).unwrap());
        assert_eq!(s.authenticate(&secret).unwrap(), None);
        assert!(s.tokens().unwrap().is_empty());
    }

    #[test]
    fn a_cached_token_is_forgotten_when_revoked_or_expired() {
        let (_d, s) = temp();
        let (rec, secret) = s
            .create_token("ci", &[Scope::Publish], vec![], vec![], None)
            .unwrap();
        let (other, other_secret) = s
            .create_token("other", &[Scope::Read], vec![], vec![], None)
            .unwrap();
        assert_eq!(s.cached_token(&secret), None, "not looked up yet");
        assert_eq!(s.authenticate(&secret).unwrap(), Some(rec.clone()));
        assert_eq!(s.cached_token(&secret), Some(rec.clone()));
        assert_eq!(s.authenticate(&other_secret).unwrap(), Some(other.clone()));
        assert_eq!(s.cached_token("hbx_wrong"), None);
        assert_eq!(s.authenticate("hbx_wrong").unwrap(), None);
        assert!(s.revoke_token(&rec.id).unwrap());
        assert_eq!(s.cached_token(&secret), None);
        assert_eq!(s.authenticate(&secret).unwrap(), None);
        // A revocation empties the cache; the other token is read again.
        assert_eq!(s.cached_token(&other_secret), None);
        assert_eq!(s.authenticate(&other_secret).unwrap(), Some(other.clone()));
        assert_eq!(s.cached_token(&other_secret), Some(other.clone()));

        // A lookup that read sled before a revocation committed does not
        // put what it read into the cache after it.
        let generation = s.inner.tokens.lock().generation;
        assert!(s.revoke_token(&other.id).unwrap());
        s.remember_token(generation, hash(&other_secret), &other);
        assert_eq!(s.cached_token(&other_secret), None);

        // Expiry is checked on every use of a cached token.
        let (_, brief) = s
            .create_token(
                "brief",
                &[Scope::Read],
                vec![],
                vec![],
                Some(now_ms() + 100),
            )
            .unwrap();
        assert!(s.authenticate(&brief).unwrap().is_some());
        assert!(s.cached_token(&brief).is_some());
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert_eq!(s.cached_token(&brief), None);
        assert_eq!(s.authenticate(&brief).unwrap(), None);
    }

    #[test]
    fn expired_tokens_do_not_authenticate() {
        let (_d, s) = temp();
        let (_, old) = s
            .create_token("old", &[Scope::Read], vec![], vec![], Some(now_ms() - 1))
            .unwrap();
        let (_, fresh) = s
            .create_token(
                "new",
                &[Scope::Read],
                vec![],
                vec![],
                Some(now_ms() + 60_000),
            )
            .unwrap();
        assert_eq!(s.authenticate(&old).unwrap(), None);
        assert!(s.authenticate(&fresh).unwrap().is_some());
        assert!(
            s.create_token("", &[Scope::Read], vec![], vec![], None)
                .is_err()
        );
        assert!(s.create_token("x", &[], vec![], vec![], None).is_err());
    }

    #[test]
    fn admin_token_is_registered_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.ensure_admin_token("operator-secret").unwrap();
            s.ensure_admin_token("operator-secret").unwrap();
            assert_eq!(s.tokens().unwrap().len(), 1);
        }
        let s = open(dir.path());
        let t = s.authenticate("operator-secret").unwrap().unwrap();
        assert_eq!(
            (t.name.as_str(), t.scopes.as_slice()),
            ("admin", &[Scope::Admin][..])
        );
        assert!(s.ensure_admin_token(" ").is_err());
    }
}

//! Encoding helpers shared by the store's files: JSON records with
//! corruption errors that name the tree and key, and the conversions from
//! sled's error types (kept private so none leaks into the public API).

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Result, StoreError, keys};

/// Decodes a JSON record, naming tree and key when the bytes are bad.
pub(super) fn decode<T: DeserializeOwned>(tree: &str, key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, key, e))
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// [`encode`] into a buffer made `capacity` bytes up front.
pub(super) fn encode_sized<T: Serialize>(value: &T, capacity: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(out)
}

pub(super) fn corrupt(tree: &str, key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("tree `{tree}`, key {}: {why}", keys::show(key)))
}

/// `?`-conversion of sled results without a public `From<sled::Error>`.
pub(super) trait SledExt<T> {
    fn sled(self) -> Result<T>;
}

impl<T> SledExt<T> for sled::Result<T> {
    fn sled(self) -> Result<T> {
        self.map_err(|e| StoreError::Sled(e.to_string()))
    }
}

/// Aborts a transaction with a store error.
pub(super) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

pub(super) trait AbortExt<T> {
    fn abort(self) -> TxResult<T>;
}

impl<T> AbortExt<T> for Result<T> {
    fn abort(self) -> TxResult<T> {
        self.map_err(ConflictableTransactionError::Abort)
    }
}

pub(super) fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e.to_string()),
    }
}

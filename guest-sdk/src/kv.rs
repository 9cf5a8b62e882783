//! The handler's own key-value store.
//!
//! Every handler has one namespace per tenant: keys written while handling
//! an event of tenant `acme` are invisible to events of any other tenant and
//! to every other handler. Values are bytes; [`get_string`] and
//! [`get_json`]/[`set_json`] are conveniences over them. Counters made by
//! [`increment`] are stored as decimal ASCII text.
//!
//! The host caps key and value sizes (the handler's `kv-value-bytes`
//! limit) and what the namespace holds across deliveries (`kv_quota_bytes`
//! of keys plus values, `kv_quota_keys` keys); a write past either ends the
//! delivery with `kv_limit`. Deleting keys, or setting a TTL, makes room.
//!
//! ```
//! use std::time::Duration;
//! use hookbox_sdk::kv;
//!
//! # let mut host = hookbox_sdk::testing::TestHost::new();
//! # host.within("acme", || {
//! kv::set("greeting", "hello", Some(Duration::from_secs(60)));
//! assert_eq!(kv::get_string("greeting").as_deref(), Some("hello"));
//! assert_eq!(kv::increment("visits", 1), 1);
//! assert!(kv::compare_and_swap("lock", None, Some(b"me")));
//! assert!(kv::delete("lock"));
//! # });
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{HandlerError, sys};

/// Gets a value, or `None` when the key is absent or expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    sys::kv_get(key)
}

/// Gets a value as text; bytes that are not UTF-8 are replaced with U+FFFD.
pub fn get_string(key: &str) -> Option<String> {
    get(key).map(|bytes| match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Gets a value stored as JSON (by [`set_json`]). A value that does not
/// deserialize as `T` is a fatal error.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, HandlerError> {
    get(key)
        .map(|bytes| serde_json::from_slice(&bytes))
        .transpose()
        .map_err(|e| HandlerError::fatal(format!("KV value `{key}` is not the expected JSON: {e}")))
}

/// Sets a value, optionally expiring `ttl` from now (rounded down to whole
/// milliseconds; a zero TTL makes the key expire at once).
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl: Option<Duration>) {
    sys::kv_set(key, value.as_ref(), ttl.map(duration_ms));
}

/// Sets a value to `value` serialized as JSON.
pub fn set_json<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), HandlerError> {
    let bytes = serde_json::to_vec(value)?;
    set(key, bytes, ttl);
    Ok(())
}

/// Deletes a key. Returns whether it existed (and had not expired).
pub fn delete(key: &str) -> bool {
    sys::kv_delete(key)
}

/// Atomically adds `delta` to a counter and returns the new value.
///
/// A missing key, or one whose value is not a decimal number, counts as 0.
/// The sum saturates at `i64::MIN`/`i64::MAX`. The counter has no expiry
/// afterwards, even if the key had a TTL.
pub fn increment(key: &str, delta: i64) -> i64 {
    sys::kv_increment(key, delta)
}

/// Atomically replaces the value of `key` with `new` if its current value
/// equals `expected` (`None` meaning absent; a `new` of `None` deletes).
/// Returns whether the swap happened.
pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> bool {
    sys::kv_compare_and_swap(key, expected, new)
}

/// A TTL in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn duration_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

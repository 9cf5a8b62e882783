//! Key encoding shared by the store's trees: length-prefixed parts (a u32
//! big-endian length, then the bytes) so that no part can run into the next,
//! and big-endian numbers so that sled's byte order is numeric order.

/// Appends one length-prefixed part.
pub(super) fn push_part(buf: &mut Vec<u8>, part: &[u8]) {
    // Parts are names, ids and guest keys, all far below 4 GiB (the KV value
    // limit and event bounds cap them); saturating keeps this total anyway.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(part);
}

/// The concatenation of length-prefixed parts.
pub(super) fn parts(parts: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        push_part(&mut buf, p);
    }
    buf
}

/// Splits the first length-prefixed part off `key`: (the part, the rest),
/// if `key` starts with a whole one.
pub(super) fn split_part(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, tail) = key.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    tail.split_at_checked(len)
}

/// A big-endian u64 that must be the whole slice.
pub(super) fn read_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// A big-endian u32 that must be the whole slice.
pub(super) fn read_u32(bytes: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_be_bytes)
}

/// `time_ms` then `seq`, both big-endian: the delivery-log key.
pub(super) fn time_seq(time_ms: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&time_ms.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// A key for error messages: text when it is printable ASCII, hex otherwise.
pub(super) fn show(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(|b| b.is_ascii_graphic()) {
        format!("{:?}", String::from_utf8_lossy(key))
    } else {
        format!("0x{}", hex::encode(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cannot_collide() {
        // The separator-style collision: ("a/b", "c") vs ("a", "b/c").
        assert_ne!(parts(&[b"a/b", b"c"]), parts(&[b"a", b"b/c"]));
        assert_ne!(parts(&[b"a\0", b""]), parts(&[b"a", b"\0"]));
        assert_eq!(parts(&[b"ab", b""]), b"\0\0\0\x02ab\0\0\0\0");
    }

    #[test]
    fn numbers_sort_as_bytes() {
        assert!(time_seq(1, u64::MAX) < time_seq(2, 0));
        assert!(time_seq(256, 0) > time_seq(255, 9));
        assert_eq!(read_u64(&7u64.to_be_bytes()), Some(7));
        assert_eq!(read_u64(b"short"), None);
        assert_eq!(read_u32(&7u32.to_be_bytes()), Some(7));
    }

    #[test]
    fn show_is_readable() {
        assert_eq!(show(b"abc"), "\"abc\"");
        assert_eq!(show(&[0, 1]), "0x0001");
    }
}

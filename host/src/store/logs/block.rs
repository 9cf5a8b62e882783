//! The delivery log's binary encoding: one sled value holds a *block* of
//! log lines, the lines one write carried (a recorder batch), oldest
//! first.
//!
//! A block costs one sled insert however many lines it holds, where a JSON
//! value per line cost an insert (and a copy of the tree node it lands in)
//! each, and it is about half the bytes. Numbers are LEB128 varints,
//! strings and byte strings a varint length and the bytes:
//!
//! ```text
//! block = 0x01 base count line*           (count lines, numbered base..)
//! line  = id handler version event_id event_type tenant outcome
//!         error? duration_us fuel memory_bytes attempt time_ms
//!         emitted_total logs emitted
//! error? = 0x00 | 0x01 string
//! logs, emitted = the JSON array, or an empty byte string when empty
//! ```
//!
//! A line keeps its number for as long as it is stored: retention drops
//! the oldest lines of a block by raising `base`, so the event index
//! (which names lines by number) stays valid. Values written before blocks
//! existed are one JSON line each; they start with `{` and read as a block
//! of one line numbered 0.

use std::ops::Range;

use super::super::{LogEntry, Result, codec};

/// The first byte of a block (and the encoding's version).
const BLOCK_V1: u8 = 0x01;

/// A decoded block: its lines with their numbers, oldest first.
pub(super) struct Block {
    /// The first line's number.
    pub base: u16,
    pub lines: Vec<LogEntry>,
    /// Each line's bytes within the value (none for a legacy JSON line,
    /// which is never trimmed: it goes whole).
    raw: Vec<Range<usize>>,
    /// A JSON line written before blocks.
    pub legacy: bool,
}

impl Block {
    /// Decodes the value stored under `key` in the `log` tree.
    pub fn parse(key: &[u8], value: &[u8]) -> Result<Block> {
        if value.first() == Some(&b'{') {
            return Ok(Block {
                base: 0,
                lines: vec![codec::decode("log", key, value)?],
                raw: Vec::new(),
                legacy: true,
            });
        }
        let bad = |why: &str| codec::corrupt("log", key, why);
        let mut r = Reader {
            bytes: value,
            at: 0,
        };
        if r.byte().map_err(|_| bad("empty value"))? != BLOCK_V1 {
            return Err(bad("unknown log block version"));
        }
        let base = r.varint().map_err(|_| bad("truncated block header"))?;
        let count = r.varint().map_err(|_| bad("truncated block header"))?;
        let (Ok(base), Ok(count)) = (u16::try_from(base), usize::try_from(count)) else {
            return Err(bad("block header out of range"));
        };
        // Each line takes well over one byte: a count past the value's
        // length is corruption, not an allocation to attempt.
        if count > value.len() {
            return Err(bad("block line count past its length"));
        }
        let mut lines = Vec::with_capacity(count);
        let mut raw = Vec::with_capacity(count);
        for _ in 0..count {
            let start = r.at;
            lines.push(r.line().map_err(|why| bad(&why))?);
            raw.push(start..r.at);
        }
        if r.at != value.len() {
            return Err(bad("trailing bytes after the last line"));
        }
        Ok(Block {
            base,
            lines,
            raw,
            legacy: false,
        })
    }

    /// Line number `i`'s entry, if the block still holds it.
    pub fn get(&self, number: u16) -> Option<&LogEntry> {
        let i = number.checked_sub(self.base)?;
        self.lines.get(usize::from(i))
    }

    /// The number of the line at position `i`.
    pub fn number(&self, i: usize) -> u16 {
        // Blocks hold at most `BLOCK_LINES` lines: the sum stays in range.
        self.base
            .saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
    }

    /// The value without its first `drop` lines (the others keep their
    /// numbers). `value` is the bytes this block was parsed from.
    pub fn trimmed(&self, value: &[u8], drop: usize) -> Vec<u8> {
        let rest = &self.raw[drop..];
        let mut out = Vec::with_capacity(value.len());
        out.push(BLOCK_V1);
        put_varint(&mut out, u64::from(self.number(drop)));
        put_varint(&mut out, rest.len() as u64);
        if let (Some(first), Some(last)) = (rest.first(), rest.last()) {
            out.extend_from_slice(&value[first.start..last.end]);
        }
        out
    }
}

/// Encodes `lines` as one block numbered from 0; `id` names a line whose
/// id is empty.
pub(super) fn encode(lines: &[&LogEntry], mut id: impl FnMut() -> String) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + lines.len() * 160);
    out.push(BLOCK_V1);
    put_varint(&mut out, 0);
    put_varint(&mut out, lines.len() as u64);
    for e in lines {
        if e.id.is_empty() {
            put_str(&mut out, &id());
        } else {
            put_str(&mut out, &e.id);
        }
        put_str(&mut out, &e.handler);
        put_varint(&mut out, u64::from(e.version));
        put_str(&mut out, &e.event_id);
        put_str(&mut out, &e.event_type);
        put_str(&mut out, &e.tenant);
        put_str(&mut out, &e.outcome);
        match &e.error {
            None => out.push(0),
            Some(error) => {
                out.push(1);
                put_str(&mut out, error);
            }
        }
        put_varint(&mut out, e.duration_us);
        put_varint(&mut out, e.fuel);
        put_varint(&mut out, e.memory_bytes);
        put_varint(&mut out, u64::from(e.attempt));
        put_varint(&mut out, e.time_ms);
        put_varint(&mut out, u64::from(e.emitted_total));
        put_json_list(&mut out, &e.logs)?;
        put_json_list(&mut out, &e.emitted)?;
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A list kept as JSON (rare, nested, and shown as JSON anyway); an empty
/// list is an empty byte string.
fn put_json_list<T: serde::Serialize>(out: &mut Vec<u8>, list: &[T]) -> Result<()> {
    if list.is_empty() {
        put_varint(out, 0);
        return Ok(());
    }
    let json = codec::encode(&list)?;
    put_varint(out, json.len() as u64);
    out.extend_from_slice(&json);
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Read<T> = std::result::Result<T, String>;

impl Reader<'_> {
    fn byte(&mut self) -> Read<u8> {
        let b = *self.bytes.get(self.at).ok_or("truncated line")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Read<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 64 bits".into())
    }

    fn u32(&mut self) -> Read<u32> {
        u32::try_from(self.varint()?).map_err(|_| "number out of range".to_string())
    }

    fn bytes(&mut self) -> Read<&[u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("truncated line")?;
        let b = &self.bytes[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn string(&mut self) -> Read<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a string is not UTF-8".into())
    }

    fn json_list<T: serde::de::DeserializeOwned>(&mut self) -> Read<Vec<T>> {
        match self.bytes()? {
            [] => Ok(Vec::new()),
            json => serde_json::from_slice(json).map_err(|e| e.to_string()),
        }
    }

    fn line(&mut self) -> Read<LogEntry> {
        Ok(LogEntry {
            id: self.string()?,
            handler: self.string()?,
            version: self.u32()?,
            event_id: self.string()?,
            event_type: self.string()?,
            tenant: self.string()?,
            outcome: self.string()?,
            error: match self.byte()? {
                0 => None,
                1 => Some(self.string()?),
                _ => return Err("bad error flag".into()),
            },
            duration_us: self.varint()?,
            fuel: self.varint()?,
            memory_bytes: self.varint()?,
            attempt: self.u32()?,
            time_ms: self.varint()?,
            emitted_total: self.u32()?,
            logs: self.json_list()?,
            emitted: self.json_list()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::{EmittedEvent, HandlerLog, StoreError};

    fn line(n: u64) -> LogEntry {
        LogEntry {
            id: format!("id-{n}"),
            handler: "h".into(),
            version: 3,
            event_id: format!("ev-{n}"),
            event_type: "message".into(),
            tenant: "acme".into(),
            outcome: if n.is_multiple_of(2) { "ok" } else { "trap" }.into(),
            error: (n % 2 == 1).then(|| "boom ü".to_string()),
            duration_us: 300 + n,
            fuel: u64::MAX - n,
            memory_bytes: 1 << 20,
            attempt: 2,
            time_ms: 1_700_000_000_000 + n,
            logs: if n == 1 {
                vec![HandlerLog {
                    level: "info".into(),
                    stream: "log".into(),
                    message: "hi".into(),
                    fields: BTreeMap::from([("k".into(), "v".into())]),
                }]
            } else {
                vec![]
            },
            emitted: if n == 2 {
                vec![EmittedEvent {
                    event_type: "reply".into(),
                    payload: "{}".into(),
                    ..EmittedEvent::default()
                }]
            } else {
                vec![]
            },
            emitted_total: u32::from(n == 2),
        }
    }

    #[test]
    fn lines_round_trip_and_keep_their_numbers_when_trimmed() {
        let lines: Vec<LogEntry> = (0..4).map(line).collect();
        let refs: Vec<&LogEntry> = lines.iter().collect();
        let value = encode(&refs, || unreachable!("every line has an id")).unwrap();
        let b = Block::parse(b"k", &value).unwrap();
        assert_eq!(b.lines, lines);
        assert!(!b.legacy);
        let trimmed = b.trimmed(&value, 3);
        let t = Block::parse(b"k", &trimmed).unwrap();
        assert_eq!((t.base, t.lines.len()), (3, 1));
        assert_eq!(t.get(3), Some(&lines[3]));
        assert_eq!(t.get(2), None);
        let again = Block::parse(b"k", &t.trimmed(&trimmed, 0)).unwrap();
        assert_eq!((again.base, again.lines.len()), (3, 1));
    }

    #[test]
    fn empty_ids_are_assigned() {
        let mut e = line(0);
        e.id.clear();
        let value = encode(&[&e], || "fresh".into()).unwrap();
        assert_eq!(Block::parse(b"k", &value).unwrap().lines[0].id, "fresh");
    }

    #[test]
    fn a_legacy_json_line_reads_as_a_block_of_one() {
        let e = line(1);
        let b = Block::parse(b"k", &serde_json::to_vec(&e).unwrap()).unwrap();
        assert!(b.legacy);
        assert_eq!(b.get(0), Some(&e));
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let lines: Vec<LogEntry> = (0..3).map(line).collect();
        let refs: Vec<&LogEntry> = lines.iter().collect();
        let value = encode(&refs, String::new).unwrap();
        for cut in 0..value.len() {
            let err = Block::parse(b"k", &value[..cut]).err();
            assert!(matches!(err, Some(StoreError::Corrupt(_))), "cut at {cut}");
        }
        let mut versioned = value.clone();
        versioned[0] = 9;
        assert!(Block::parse(b"k", &versioned).is_err());
        let mut trailing = value;
        trailing.push(0);
        assert!(Block::parse(b"k", &trailing).is_err());
        assert!(Block::parse(b"k", &[1, 0, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}

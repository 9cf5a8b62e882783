//! Finished events kept beside the delivery log's blocks, so that
//! `GET /v1/events/{id}` still shows an event's payload once the inbox has
//! dropped it (issue 13, item 6).
//!
//! The recorder writes a batch of final deliveries as one block of log
//! lines; the events those deliveries finished are written with it, as
//! one value in the `log_events` tree under the block's own key. The event
//! index says which of its entries point at a block that keeps the event
//! (its line numbers end with [`KEPT`]), so a lookup reads one value, and
//! retention drops the events with their block: no insert per event, and
//! no sweep of its own. (Each event used to be a JSON value of its own in
//! `finished_events`, one insert per delivery: the recorder's largest
//! write. That tree is still read, and still written by the cluster
//! mirror and for dead letters.)
//!
//! ```text
//! events = 0x01 count event*
//! event  = id type tenant source time priority payload
//!          metadata-count (name value)* key? idempotency_key? depth
//! key?, idempotency_key? = 0x00 | 0x01 string
//! ```
//! Numbers are LEB128 varints, strings a varint length and the bytes (as
//! in `block.rs`); `priority` is one byte (0 critical … 3 low); `payload`
//! is the event's JSON text as accepted.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::super::{Result, codec};
use super::block::{Read, Reader, put_str, put_varint};
use crate::event::{Event, Priority};

/// The first byte of an events value (and the encoding's version).
const EVENTS_V1: u8 = 0x01;

/// Appended to an event index entry's line numbers (which are below
/// 1024): the block it names keeps the event in `log_events`.
pub(super) const KEPT: [u8; 2] = [0xff, 0xff];

/// Whether an index value (u16 line numbers) ends with [`KEPT`].
pub(super) fn keeps_event(index_value: &[u8]) -> bool {
    index_value.len().is_multiple_of(2) && index_value.ends_with(&KEPT)
}

/// One value holding `events`.
pub(super) fn encode(events: &[&Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        8 + events
            .iter()
            .map(|e| 96 + e.payload.get().len())
            .sum::<usize>(),
    );
    out.push(EVENTS_V1);
    put_varint(&mut out, events.len() as u64);
    for e in events {
        put_str(&mut out, &e.id);
        put_str(&mut out, &e.event_type);
        put_str(&mut out, &e.tenant);
        put_str(&mut out, &e.source);
        put_varint(&mut out, e.time);
        // `index` is 0..=3.
        out.push(e.priority.index() as u8);
        put_str(&mut out, e.payload.get());
        put_varint(&mut out, e.metadata.len() as u64);
        for (name, value) in &e.metadata {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        put_opt(&mut out, e.key.as_deref());
        put_opt(&mut out, e.idempotency_key.as_deref());
        put_varint(&mut out, u64::from(e.depth));
    }
    out
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// Event `id` among the events in `value` (stored under `key`), if there.
/// Only that event is decoded in full; the others are skipped over.
pub(super) fn find(key: &[u8], value: &[u8], id: &str) -> Result<Option<Event>> {
    let bad = |why: &str| codec::corrupt("log_events", key, why);
    let mut r = Reader {
        bytes: value,
        at: 0,
    };
    if r.byte().map_err(|_| bad("empty value"))? != EVENTS_V1 {
        return Err(bad("unknown events version"));
    }
    let count = r.varint().map_err(|why| bad(&why))?;
    for _ in 0..count {
        let this = r.bytes().map_err(|why| bad(&why))?;
        if this == id.as_bytes() {
            return read_rest(&mut r, id.to_string())
                .map(Some)
                .map_err(|why| bad(&why));
        }
        skip_rest(&mut r).map_err(|why| bad(&why))?;
    }
    Ok(None)
}

fn read_rest(r: &mut Reader<'_>, id: String) -> Read<Event> {
    let event_type = r.string()?;
    let tenant = r.string()?;
    let source = r.string()?;
    let time = r.varint()?;
    let priority = *Priority::ALL
        .get(usize::from(r.byte()?))
        .ok_or("unknown priority")?;
    let payload = RawValue::from_string(r.string()?).map_err(|e| e.to_string())?;
    let mut metadata = BTreeMap::new();
    for _ in 0..r.varint()? {
        let name = r.string()?;
        metadata.insert(name, r.string()?);
    }
    let key = read_opt(r)?;
    let idempotency_key = read_opt(r)?;
    let depth = r.u32()?;
    Ok(Event {
        id,
        event_type,
        tenant,
        source,
        time,
        priority,
        payload,
        metadata,
        key,
        idempotency_key,
        depth,
    })
}

fn read_opt(r: &mut Reader<'_>) -> Read<Option<String>> {
    match r.byte()? {
        0 => Ok(None),
        1 => Ok(Some(r.string()?)),
        _ => Err("bad option flag".into()),
    }
}

fn skip_rest(r: &mut Reader<'_>) -> Read<()> {
    for _ in 0..3 {
        r.bytes()?;
    }
    r.varint()?;
    r.byte()?;
    r.bytes()?;
    for _ in 0..r.varint()? {
        r.bytes()?;
        r.bytes()?;
    }
    for _ in 0..2 {
        if r.byte()? == 1 {
            r.bytes()?;
        }
    }
    r.varint()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn event(n: u32) -> Event {
        Event {
            id: format!("01EV{n}"),
            event_type: "message".into(),
            tenant: "acme".into(),
            source: "http".into(),
            time: 1_700_000_000_000 + u64::from(n),
            priority: Priority::ALL[n as usize % 4],
            payload: RawValue::from_string(format!(r#"{{"n": {n}, "s": "é\"x"}}"#)).unwrap(),
            metadata: if n == 1 {
                BTreeMap::from([("a".into(), "1".into()), ("b".into(), String::new())])
            } else {
                BTreeMap::new()
            },
            key: (n == 2).then(|| "k".to_string()),
            idempotency_key: (n == 1).then(|| "idem".to_string()),
            depth: n,
        }
    }

    #[test]
    fn each_event_is_found_byte_for_byte_and_others_are_not() {
        let events: Vec<Event> = (0..4).map(event).collect();
        let refs: Vec<&Event> = events.iter().collect();
        let value = encode(&refs);
        for e in &events {
            let found = find(b"k", &value, &e.id).unwrap().unwrap();
            assert_eq!(
                serde_json::to_string(&found).unwrap(),
                serde_json::to_string(e).unwrap()
            );
            // The payload is the accepted text, not a re-encoding.
            assert_eq!(found.payload.get(), e.payload.get());
        }
        assert!(find(b"k", &value, "01EV9").unwrap().is_none());
        assert!(find(b"k", &encode(&[]), "01EV0").unwrap().is_none());
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let events: Vec<Event> = (0..3).map(event).collect();
        let refs: Vec<&Event> = events.iter().collect();
        let value = encode(&refs);
        for cut in 0..value.len() {
            // The last event is read to its end (every earlier one is
            // skipped over), so every cut is seen.
            let got = find(b"k", &value[..cut], "01EV2");
            assert!(matches!(got, Err(StoreError::Corrupt(_))), "cut at {cut}");
        }
        let mut versioned = value;
        versioned[0] = 9;
        assert!(find(b"k", &versioned, "01EV0").is_err());
    }

    #[test]
    fn the_kept_mark_is_told_apart_from_line_numbers() {
        assert!(keeps_event(&[0, 1, 0xff, 0xff]));
        assert!(keeps_event(&KEPT));
        assert!(!keeps_event(&[0, 1]));
        assert!(!keeps_event(&[]));
        assert!(!keeps_event(&[0xff, 0xff, 0xff]));
    }
}

//! Tests of the segment log: round trips, torn-tail repair, corruption,
//! segment rolling and deletion, concurrent group commit.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn opts(durability: Durability) -> SegmentOptions {
    SegmentOptions {
        max_segment_bytes: 64 << 20,
        durability,
    }
}

fn all(log: &SegmentLog) -> Vec<(Position, Vec<u8>)> {
    let mut out = Vec::new();
    let start = Position {
        segment: 0,
        offset: 0,
    };
    log.read_from(start, |at, r| {
        out.push((at, r.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

fn newest_file(dir: &Path) -> PathBuf {
    let ids = segment_ids(dir).unwrap();
    segment_path(dir, *ids.last().unwrap())
}

#[test]
fn records_come_back_in_order_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let (log, rec) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
        assert_eq!(rec.records, 0);
        first = log.append(&[b"one".as_slice(), b"two"]).unwrap();
        log.append(&[b"three"]).unwrap();
    }
    let (log, rec) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!((rec.records, rec.torn_bytes), (3, 0));
    let got = all(&log);
    let payloads: Vec<&[u8]> = got.iter().map(|(_, r)| r.as_slice()).collect();
    assert_eq!(payloads, [b"one".as_slice(), b"two", b"three"]);
    assert_eq!(got[0].0, first[0]);
    assert_eq!(got[1].0, first[1]);
    // Appends continue after what was there.
    let next = log.append(&[b"four"]).unwrap();
    assert!(next[0] > got[2].0);
    assert_eq!(all(&log).len(), 4);
}

#[test]
fn a_torn_tail_is_cut_off_and_appends_continue_after_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
        log.append(&[b"kept-1".as_slice(), b"kept-2"]).unwrap();
        log.append(&[vec![7u8; 1000]]).unwrap();
    }
    // A crash mid-write: the last record's payload is only partly there.
    let path = newest_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 500).unwrap();
    drop(f);
    let (log, rec) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!(rec.records, 2);
    assert_eq!(rec.torn_bytes, HEADER + 500);
    log.append(&[b"after"]).unwrap();
    drop(log);
    let (log, rec) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!(
        (rec.records, rec.torn_bytes),
        (3, 0),
        "the repair was durable"
    );
    let payloads: Vec<Vec<u8>> = all(&log).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        payloads,
        [b"kept-1".to_vec(), b"kept-2".to_vec(), b"after".to_vec()]
    );
}

#[test]
fn a_garbled_record_in_the_newest_segment_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let at;
    {
        let (log, _) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
        at = log
            .append(&[b"good".as_slice(), b"flipped", b"after"])
            .unwrap();
    }
    let path = newest_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(at[1].offset + HEADER) as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (log, rec) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!(rec.records, 1, "nothing after a bad checksum is trusted");
    assert_eq!(all(&log).len(), 1);
}

#[test]
fn garbage_length_or_a_torn_header_is_a_torn_tail() {
    for tail in [vec![0xffu8; 8], vec![1, 0, 0]] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
            log.append(&[b"x"]).unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(newest_file(dir.path()))
            .unwrap();
        f.write_all(&tail).unwrap();
        drop(f);
        let (_, rec) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
        assert_eq!((rec.records, rec.torn_bytes), (1, tail.len() as u64));
    }
}

#[test]
fn segments_roll_and_old_ones_are_removed_but_never_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let small = SegmentOptions {
        max_segment_bytes: 100,
        durability: Durability::Sync,
    };
    let (log, _) = SegmentLog::open(dir.path(), small.clone()).unwrap();
    let mut at = Vec::new();
    for i in 0..10u8 {
        at.extend(log.append(&[vec![i; 40]]).unwrap());
    }
    let segments: Vec<u64> = at.iter().map(|p| p.segment).collect();
    assert!(segments.windows(2).all(|w| w[0] <= w[1]));
    let newest = *segments.last().unwrap();
    assert!(
        newest >= 4,
        "two 48-byte records per 100-byte segment: {segments:?}"
    );
    assert_eq!(all(&log).len(), 10);
    // Everything before the segment of record 6 goes.
    let removed = log.remove_before(at[6].segment).unwrap();
    assert_eq!(removed as u64, at[6].segment - 1);
    let left: Vec<u8> = all(&log).iter().map(|(_, r)| r[0]).collect();
    assert_eq!(left.first(), Some(&6));
    // Asking to remove everything keeps the newest.
    log.remove_before(u64::MAX).unwrap();
    assert_eq!(segment_ids(dir.path()).unwrap(), [newest]);
    drop(log);
    let (log, rec) = SegmentLog::open(dir.path(), small).unwrap();
    assert_eq!(rec.segments, [newest]);
    assert!(!all(&log).is_empty());
}

#[test]
fn a_bad_record_in_an_older_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let small = SegmentOptions {
        max_segment_bytes: 100,
        durability: Durability::Sync,
    };
    let at = {
        let (log, _) = SegmentLog::open(dir.path(), small.clone()).unwrap();
        let mut at = Vec::new();
        for i in 0..4u8 {
            at.extend(log.append(&[vec![i; 40]]).unwrap());
        }
        at
    };
    let path = segment_path(dir.path(), at[0].segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = SegmentLog::open(dir.path(), small).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("not the newest")),
        "{err}"
    );
}

#[test]
fn a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment_path(dir.path(), 1), b"not a segment at all").unwrap();
    let err = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn an_oversized_record_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
    let big = vec![0u8; MAX_RECORD + 1];
    let err = log.append(&[b"small".to_vec(), big]).unwrap_err();
    assert!(matches!(err, StoreError::BadInput(_)), "{err}");
    assert!(all(&log).is_empty());
}

#[test]
fn concurrent_appenders_share_group_rounds_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let group = Durability::Group {
        interval: Duration::from_millis(2),
    };
    let (log, _) = SegmentLog::open(dir.path(), opts(group)).unwrap();
    let log = Arc::new(log);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50u8)
                    .flat_map(|i| log.append(&[[t, i]]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut positions: Vec<Position> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    positions.sort();
    positions.dedup();
    assert_eq!(positions.len(), 200);
    drop(log);
    let (log, rec) = SegmentLog::open(dir.path(), opts(group)).unwrap();
    assert_eq!(rec.records, 200);
    let mut seen: Vec<(u8, u8)> = all(&log).iter().map(|(_, r)| (r[0], r[1])).collect();
    // Each appender's records are in its own order.
    for t in 0..4u8 {
        let mine: Vec<u8> = seen.iter().filter(|r| r.0 == t).map(|r| r.1).collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200);
}

#[test]
fn queued_appends_are_answered_by_the_round_that_makes_them_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
    // No committer yet: a queued append waits for a round...
    let (at, mut rx) = log.append_queued(&[b"queued"]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(rx.try_recv().is_err(), "answered before any round");
    // ... and a blocking appender's round covers it.
    log.append(&[b"blocking"]).unwrap();
    assert_eq!(rx.try_recv().unwrap(), Ok(()));
    assert_eq!(log.read_at(at[0]).unwrap().as_deref(), Some(&b"queued"[..]));

    // With a committer, queued and blocking appenders share rounds.
    let log = Arc::new(log);
    let committer = {
        let log = log.clone();
        std::thread::spawn(move || log.commit_queued())
    };
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50u8)
                    .map(|i| {
                        if t % 2 == 0 {
                            log.append(&[[t, i]]).unwrap()[0]
                        } else {
                            let (at, rx) = log.append_queued(&[[t, i]]).unwrap();
                            rx.blocking_recv().unwrap().unwrap();
                            at[0]
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let positions: Vec<Position> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    log.stop_committing();
    committer.join().unwrap();
    for at in &positions {
        assert!(log.read_at(*at).unwrap().is_some(), "{at:?} not written");
    }
    drop(log);
    let (_, rec) = SegmentLog::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!(rec.records, 202);
}

#[test]
fn read_at_gives_a_record_by_its_position_and_none_for_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SegmentLog::open(dir.path(), opts(Durability::None)).unwrap();
    let at = log.append(&[b"first".as_slice(), b"second"]).unwrap();
    log.sync().unwrap();
    assert_eq!(log.read_at(at[1]).unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(log.read_at(at[0]).unwrap().as_deref(), Some(&b"first"[..]));
    // Inside a record, before the first, past the end, in no segment.
    let inside = Position {
        offset: at[0].offset + 3,
        ..at[0]
    };
    let before = Position { offset: 0, ..at[0] };
    let past = Position {
        offset: at[1].offset + 100,
        ..at[1]
    };
    let gone = Position {
        segment: at[0].segment + 7,
        ..at[0]
    };
    for p in [inside, before, past, gone] {
        assert_eq!(log.read_at(p).unwrap(), None, "{p:?}");
    }
    // A header claiming more bytes than the file has.
    let mut f = OpenOptions::new()
        .append(true)
        .open(newest_file(dir.path()))
        .unwrap();
    f.write_all(&(MAX_RECORD as u32).to_le_bytes()).unwrap();
    f.write_all(&[0; 4]).unwrap();
    drop(f);
    let end = Position {
        offset: at[1].offset + HEADER + 6,
        ..at[1]
    };
    assert_eq!(log.read_at(end).unwrap(), None);
}

//! The series cache: a restart sends what it covers and renders the rest; damage, another
//! build's file and a failed write never make a scrape wrong.

use std::path::Path;
use std::time::Duration;

use super::super::store::{Freshness, GROUP};
use super::super::tests::{backup, delete, scrape, upsert};
use super::super::{Inventory, Options};
use super::*;
use crate::clock::Clock;
use crate::model::{BackupStatus, Origin, SourceId};

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Five groups of backups, the last one short.
const BACKUPS: usize = 4 * GROUP + 10;

fn open(dir: &Path) -> Inventory {
    Inventory::open(Clock::System, Options::with_backfill(DAY), dir)
        .unwrap()
        .0
}

fn uid(i: usize) -> String {
    format!("b-{i:04}")
}

/// A fleet of `BACKUPS`, every third one deleted (tombstones among live backups in every
/// group), rendered and the cache written; returns its text.
fn fleet(dir: &Path) -> String {
    let inv = open(dir);
    let origin = Origin::source(SourceId::Ingest);
    let events = (0..BACKUPS)
        .map(|i| upsert(backup(&uid(i), BackupStatus::Success)))
        .collect();
    inv.apply(&origin, events).unwrap();
    let deletions = (0..BACKUPS)
        .step_by(3)
        .map(|i| delete(&uid(i), None))
        .collect();
    inv.apply(&origin, deletions).unwrap();
    let text = scrape(&inv);
    assert_eq!(inv.save_series_cache().unwrap(), BACKUPS.div_ceil(GROUP));
    text
}

/// The backup groups the next snapshot has to make: rendered, not served from the cache.
fn made_by_first_snapshot(inv: &Inventory) -> usize {
    inv.warm_up();
    let before = inv.series_cache.as_ref().unwrap().made_since_save();
    drop(inv.snapshot_with(Freshness::Exact));
    inv.series_cache.as_ref().unwrap().made_since_save() - before
}

/// The same series, in whatever order: a store laid out again after a restart (a replay's
/// order, or a damaged file's groups rendered after the others) sends them in another.
fn same_series(a: &str, b: &str) {
    fn sorted(t: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = t.lines().collect();
        lines.sort_unstable();
        lines
    }
    assert!(sorted(a) == sorted(b), "not the same series");
}

fn cache_file(dir: &Path) -> std::path::PathBuf {
    dir.join(FILE_NAME)
}

#[test]
fn a_restart_sends_the_cached_series_and_renders_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = fleet(dir.path());
    let inv = open(dir.path());
    assert_eq!(made_by_first_snapshot(&inv), 0);
    assert!(
        scrape(&inv) == text,
        "the text is not what was served before"
    );
    // Gzip, as Prometheus asks: the same text.
    let snapshot = inv.snapshot();
    let body =
        crate::exposition::Scrape::new(&snapshot, crate::exposition::Format::Text, Vec::new())
            .gzip()
            .concat();
    let mut back = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut back).unwrap();
    assert!(back == text, "the gzip body is not the text");
}

#[test]
fn groups_changed_since_the_write_are_rendered_again_and_the_rest_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let expected = {
        let inv = open(dir.path());
        let origin = Origin::source(SourceId::Ingest);
        // One change in place in the first group, one deletion in the third: journaled after
        // the cache was written, as a kill -9 leaves them.
        inv.apply(&origin, vec![upsert(backup(&uid(1), BackupStatus::Failed))])
            .unwrap();
        inv.apply(&origin, vec![delete(&uid(2 * GROUP + 2), None)])
            .unwrap();
        scrape(&inv)
    };
    let inv = open(dir.path());
    assert_eq!(made_by_first_snapshot(&inv), 2);
    assert!(
        scrape(&inv) == expected,
        "the text is not what was served before"
    );
}

#[test]
fn a_flipped_byte_costs_the_group_it_is_in_and_a_torn_file_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let text = fleet(dir.path());
    let path = cache_file(dir.path());
    let good = std::fs::read(&path).unwrap();
    let groups = BACKUPS.div_ceil(GROUP);

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    let inv = open(dir.path());
    // The damaged group's backups are rendered after the others, with the short last group.
    assert_eq!(made_by_first_snapshot(&inv), 2);
    same_series(&scrape(&inv), &text);
    drop(inv);

    std::fs::write(&path, &good[..good.len() * 3 / 4]).unwrap();
    let inv = open(dir.path());
    let made = made_by_first_snapshot(&inv);
    assert!((1..groups).contains(&made), "made {made} of {groups}");
    same_series(&scrape(&inv), &text);
    drop(inv);

    // A damaged length: nothing after it can be found, and nothing is wrong either.
    let mut bad_length = good.clone();
    bad_length[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &bad_length).unwrap();
    let inv = open(dir.path());
    assert_eq!(made_by_first_snapshot(&inv), groups);
    same_series(&scrape(&inv), &text);
}

#[test]
fn a_file_from_other_source_is_not_used_and_is_replaced_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let text = fleet(dir.path());
    let path = cache_file(dir.path());
    let mut other = std::fs::read(&path).unwrap();
    other[8] ^= 0xff; // the source id
    std::fs::write(&path, &other).unwrap();
    let inv = open(dir.path());
    assert!(!inv.series_cache.as_ref().unwrap().is_warming());
    assert_eq!(made_by_first_snapshot(&inv), BACKUPS.div_ceil(GROUP));
    same_series(&scrape(&inv), &text);
    inv.save_series_cache().unwrap();
    drop(inv);
    let inv = open(dir.path());
    assert_eq!(made_by_first_snapshot(&inv), 0);
    same_series(&scrape(&inv), &text);
}

#[test]
fn a_failed_write_names_the_file_keeps_the_old_one_and_counts_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    fleet(&state);
    let inv = open(&state);
    let before = std::fs::read(cache_file(&state)).unwrap();
    drop(inv.snapshot_with(Freshness::Exact));
    let made = inv.series_cache.as_ref().unwrap().made_since_save();
    assert!(made > 0);
    // The state directory is gone from where the sidecar has it (moved away: the old file
    // is kept there): no temp file can be made beside the cache.
    let moved = dir.path().join("moved");
    std::fs::rename(&state, &moved).unwrap();
    let err = inv.save_series_cache().unwrap_err();
    assert!(
        err.to_string()
            .contains(&*cache_file(&state).to_string_lossy()),
        "{err}"
    );
    assert_eq!(std::fs::read(cache_file(&moved)).unwrap(), before);
    // What was made is still to be written, and is once the directory is back.
    assert_eq!(inv.series_cache.as_ref().unwrap().made_since_save(), made);
    std::fs::rename(&moved, &state).unwrap();
    assert_eq!(inv.save_series_cache().unwrap(), BACKUPS.div_ceil(GROUP));
    assert_eq!(inv.series_cache.as_ref().unwrap().made_since_save(), 0);
    let leftovers = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".series.cache.")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn a_full_disk_half_way_is_an_error_not_a_short_file() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let inv = open(dir.path());
    drop(inv.snapshot_with(Freshness::Exact));
    let groups = inv.lock().backups.made_groups();
    let header = inv.series_cache.as_ref().unwrap().header();
    let err = write_records(&mut FailAfter(1000), header, &groups, None).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28));
    let mut everything = Vec::new();
    assert_eq!(
        write_records(&mut everything, header, &groups, None).unwrap(),
        groups.len()
    );
}

/// A disk that fills up after `.0` bytes.
struct FailAfter(usize);

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0 < buf.len() {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_file_is_written_again_after_many_changes_or_a_long_while() {
    let minute = Duration::from_secs(60);
    assert!(!wants_save(0, 1000, 60 * minute), "nothing made");
    assert!(!wants_save(14, 1000, 2 * minute), "a few groups, soon");
    assert!(wants_save(16, 1000, minute), "a sixty-fourth of the groups");
    assert!(!wants_save(16, 1000, minute / 2), "but not twice a minute");
    assert!(
        wants_save(1, 1000, 15 * minute),
        "anything, after a long while"
    );
}

#[test]
fn the_header_and_a_record_read_back_as_written() {
    let header = Header {
        source: source_id(),
        seed: 7,
        families: 2,
    };
    assert_eq!(Header::decode(&header.encode()), Some(header));
    let mut c = super::super::segment::Compressor::default();
    let group = c.compress_group(&[b"a 1\n".to_vec(), Vec::new()]);
    let mut record = Vec::new();
    let uids: Vec<Arc<str>> = vec![Arc::from("b-1")];
    encode_group(42, &uids, &group, &mut record);
    let mut loaded = Loaded::default();
    let mut got = Vec::new();
    read_records(&Bytes::from(record.clone()), 2, &mut loaded, |g| {
        got.push(g)
    });
    assert_eq!(loaded, Loaded::default());
    assert_eq!(got[0].fingerprint, 42);
    assert_eq!(got[0].uids().collect::<Vec<_>>(), ["b-1"]);
    let back = &got[0].segments;
    assert_eq!(back.families[0].deflate, group.families[0].deflate);
    assert_eq!(back.families[0].crc, group.families[0].crc);
    assert!(back.families[1].is_empty());
    // The same record read for three families does not decode: counted, not kept.
    let mut wrong = Vec::new();
    read_records(&Bytes::from(record), 3, &mut loaded, |g| wrong.push(g));
    assert!(wrong.is_empty());
    assert_eq!(loaded.damaged_records, 1);
}

#[tokio::test(start_paused = true)]
async fn the_refresher_writes_the_file_once_it_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let inv = Arc::new(open(dir.path()));
    let origin = Origin::source(SourceId::Ingest);
    let events = (0..BACKUPS)
        .map(|i| upsert(backup(&uid(i), BackupStatus::Success)))
        .collect();
    inv.apply(&origin, events).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let refresher = tokio::spawn(Arc::clone(&inv).run_refresher(async move {
        let _ = stopped.await;
    }));
    let started = tokio::time::Instant::now();
    let real = std::time::Instant::now();
    while !cache_file(dir.path()).exists() {
        assert!(real.elapsed() < Duration::from_secs(20), "never written");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Not at once: a minute after the refresher started, the groups it made were due.
    assert!(started.elapsed() >= Duration::from_secs(60));
    assert_eq!(inv.series_cache.as_ref().unwrap().made_since_save(), 0);
    let _ = stop.send(());
    refresher.await.unwrap();
    drop(inv);
    let inv = open(dir.path());
    assert_eq!(made_by_first_snapshot(&inv), 0);
}

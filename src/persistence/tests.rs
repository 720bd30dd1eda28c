//! The journal against the faults it must survive: damage, torn tails, records from a later
//! build, a full disk, `kill -9` mid-compaction and mid-upgrade, and the format 1 fixture.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::frame::{HEADER_LEN, SYNC};
use super::*;
use crate::model::{Backup, BackupStatus, Origin, Owner, SourceId, Timestamp, Volume};
use crate::sources::demo::uuid;
use std::fs::OpenOptions;

const CHILD_ENV: &str = "PXB_JOURNAL_KILL_CHILD";

/// A backup shaped like a real fleet's (UUIDs, two volumes): 300-400 bytes encoded.
fn realistic(rng: &mut fastrand::Rng, i: usize) -> Backup {
    let cluster = format!("prod-cluster-{:02}", i % 20);
    let schedule = format!("daily-{cluster}-{}", i % 50);
    let ns = format!("app-{}", i % 30);
    let volume = |rng: &mut fastrand::Rng, n: usize| Volume {
        volume: format!("pvc-{}", uuid(rng)),
        pvc: format!("data-{n}"),
        pvc_namespace: ns.clone(),
        storage_class: "px-csi-db".into(),
        driver: "pxd".into(),
        status: Some(BackupStatus::Success),
    };
    Backup {
        uid: uuid(rng),
        name: format!("{schedule}-2026-11-23-{i:06}"),
        owner: Owner {
            org_id: "default".into(),
            cluster,
            cluster_uid: "8ac0adc1-5d67-4c29-b4b0-aa52525d790d".into(),
        },
        schedule_name: schedule,
        namespaces: vec![ns.clone()],
        backup_location: format!("s3-backups-{}", i % 4),
        backup_object_type: "All".into(),
        status: BackupStatus::Success,
        size_bytes: Some(rng.u64(1 << 20..1 << 40)),
        resource_count: Some(rng.u64(1..500)),
        volumes: vec![volume(rng, 0), volume(rng, 1)],
        created_at: Some(Timestamp(1_795_395_600_000 - i as i64 * 60_000)),
        completed_at: Some(Timestamp(1_795_395_900_000 - i as i64 * 60_000)),
        ..Backup::default()
    }
}

fn tombstone(b: &Backup) -> OwnedRecordRef {
    OwnedRecordRef::Tombstone {
        uid: b.uid.as_str().into(),
        origin: Origin::scoped(SourceId::Kube, "team-a"),
        previous: BackupStatus::Success,
        deleted_at: Timestamp(1_795_603_614_960),
        object: encode_backup(b).into(),
    }
}

fn tombstones(n: usize, seed: u64) -> Vec<OwnedRecordRef> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|i| tombstone(&realistic(&mut rng, i))).collect()
}

fn uid_of(r: &Record) -> &str {
    match r {
        Record::Backup { uid, .. } | Record::Tombstone { uid, .. } | Record::Forget { uid } => uid,
        Record::LastSuccess { key, .. } | Record::ForgetLastSuccess { key } => &key.schedule_name,
    }
}

/// The payload `r`'s frame carries.
fn payload_of(r: &OwnedRecordRef) -> Vec<u8> {
    let mut frame = Vec::new();
    record::encode_frame(&mut frame, &r.as_record_ref()).unwrap();
    frame.split_off(HEADER_LEN)
}

fn open(dir: &Path) -> (Journal, ReplayReport, Vec<Record>) {
    let mut records = Vec::new();
    let (j, report) = Journal::open(dir, |r| records.push(r)).unwrap();
    (j, report, records)
}

fn reopen(dir: &Path) -> (ReplayReport, Vec<Record>) {
    let (j, report, records) = open(dir);
    j.close().unwrap();
    (report, records)
}

/// Appends `records` in batches of 100 and closes.
fn write_journal(dir: &Path, records: &[OwnedRecordRef]) {
    let (j, _, _) = open(dir);
    let tickets: Vec<Ticket> = records
        .chunks(100)
        .map(|c| {
            let refs: Vec<RecordRef<'_>> = c.iter().map(OwnedRecordRef::as_record_ref).collect();
            j.append(&refs).unwrap()
        })
        .collect();
    for t in tickets {
        t.wait().unwrap();
    }
    j.close().unwrap();
}

/// Entries of the state dir other than its lock file.
fn files_beside_the_lock(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != files::LOCK_FILE)
        .count()
}

fn journal_path(dir: &Path) -> std::path::PathBuf {
    dir.join(FILE_NAME)
}

/// Offsets of every frame header in a format 2 file without damage.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 8;
    let mut out = Vec::new();
    while at < bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += HEADER_LEN + len;
    }
    out
}

fn owned(r: &Record) -> OwnedRecordRef {
    match r.clone() {
        Record::Backup {
            uid,
            origin,
            previous,
            object,
        } => OwnedRecordRef::Backup {
            uid: uid.into(),
            origin,
            previous,
            object,
        },
        Record::Tombstone {
            uid,
            origin,
            previous,
            deleted_at,
            object,
        } => OwnedRecordRef::Tombstone {
            uid: uid.into(),
            origin,
            previous,
            deleted_at,
            object,
        },
        Record::Forget { uid } => OwnedRecordRef::Forget { uid: uid.into() },
        Record::LastSuccess { key, completed_at } => {
            OwnedRecordRef::LastSuccess { key, completed_at }
        }
        Record::ForgetLastSuccess { key } => OwnedRecordRef::ForgetLastSuccess { key },
    }
}

#[test]
fn journal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Journal>();
}

#[test]
fn records_come_back_in_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(1);
    let (b1, b2) = (realistic(&mut rng, 1), realistic(&mut rng, 2));
    let (o1, o2) = (encode_backup(&b1), encode_backup(&b2));
    let origin = Origin::scoped(SourceId::Pxb, "org-1");
    let key = record::tests::key();
    {
        let (j, report, records) = open(dir.path());
        assert_eq!((report.records, records.len()), (0, 0));
        j.append(&[
            RecordRef::Backup {
                uid: &b1.uid,
                origin: &origin,
                previous: None,
                object: &o1,
            },
            RecordRef::LastSuccess {
                key: &key,
                completed_at: Timestamp(7),
            },
        ])
        .unwrap()
        .wait()
        .unwrap();
        j.append(&[
            RecordRef::Tombstone {
                uid: &b2.uid,
                origin: &origin,
                previous: BackupStatus::Failed,
                deleted_at: Timestamp(9),
                object: &o2,
            },
            RecordRef::Forget { uid: &b1.uid },
        ])
        .unwrap()
        .wait()
        .unwrap();
        assert_eq!(j.stats().records_in_file.load(Relaxed), 4);
        j.close().unwrap();
    }
    let (report, records) = reopen(dir.path());
    assert_eq!(report.records, 4);
    assert_eq!(report.skipped_records, 0);
    // b1's backup record is folded into its later Forget: only a uid's last record counts.
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0],
        Record::LastSuccess {
            key: key.clone(),
            completed_at: Timestamp(7)
        }
    );
    let Record::Tombstone {
        object, previous, ..
    } = &records[1]
    else {
        panic!("{:?}", records[1]);
    };
    assert_eq!(*previous, BackupStatus::Failed);
    assert_eq!(decode_backup(object).unwrap(), b2);
    assert_eq!(
        records[2],
        Record::Forget {
            uid: b1.uid.clone()
        }
    );
}

#[test]
fn replay_folds_a_uids_records_into_its_last_and_adds_up_the_same() {
    // Each backup: upserted, updated, deleted, some re-created; spread so that a uid's
    // records fall in one replay batch, or straddle two (100,000 records: several batches).
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    let backups: Vec<Backup> = (0..20_000).map(|i| realistic(&mut rng, i)).collect();
    let objects: Vec<Arc<[u8]>> = backups.iter().map(|b| encode_backup(b).into()).collect();
    let origin = Origin::source(SourceId::Ingest);
    let mut written: Vec<OwnedRecordRef> = Vec::new();
    for round in 0..5u64 {
        for (i, b) in backups.iter().enumerate() {
            let uid: Arc<str> = Arc::from(b.uid.as_str());
            let object = Arc::clone(&objects[i]);
            written.push(match (round + i as u64) % 5 {
                3 => OwnedRecordRef::Tombstone {
                    uid,
                    origin: origin.clone(),
                    previous: BackupStatus::Success,
                    deleted_at: Timestamp(round as i64),
                    object,
                },
                4 if i % 7 == 0 => OwnedRecordRef::Forget { uid },
                _ => OwnedRecordRef::Backup {
                    uid,
                    origin: origin.clone(),
                    previous: Some(BackupStatus::Success),
                    object,
                },
            });
        }
    }
    write_journal(dir.path(), &written);
    let unfolded: Vec<Record> = written
        .iter()
        .map(|r| record::decode(&payload_of(r), &mut Default::default()).unwrap())
        .collect();
    let (report, back) = reopen(dir.path());
    assert_eq!(report.records, 100_000);
    assert!(back.len() < 100_000, "nothing folded");
    assert!(back.len() >= 20_000, "{}", back.len());
    assert_eq!(fold(&back), fold(&unfolded));
}

#[test]
fn a_flipped_byte_in_the_middle_of_20000_tombstones_costs_one() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(20_000, 2);
    write_journal(dir.path(), &records);
    let path = journal_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let (report, back) = reopen(dir.path());
    println!(
        "flipped byte at {middle}: {} of 20000 back, skipped {:?}",
        back.len(),
        report.damaged_ranges
    );
    assert!(back.len() >= 19_800, "{} back", back.len());
    assert_eq!(back.len(), 19_999, "one frame is damaged, no more");
    assert_eq!(report.skipped_records, 1);
    assert_eq!(report.damaged_ranges.len(), 1);
    let (offset, len) = report.damaged_ranges[0];
    assert!(offset as usize <= middle && middle < (offset + len) as usize);
    // The damage stays in the file until a compaction: the journal asks for one.
    let (j, again, _) = open(dir.path());
    assert_eq!(again.damaged_range_count, 1);
    assert!(j.wants_compaction(19_999));
    let live: Vec<OwnedRecordRef> = back.iter().map(owned).collect();
    j.compact(live).wait().unwrap();
    assert!(!j.wants_compaction(19_999));
    j.close().unwrap();
    let (clean, after) = reopen(dir.path());
    assert_eq!((clean.skipped_records, after.len()), (0, 19_999));
}

#[test]
fn a_flipped_byte_in_a_length_field_costs_one() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), &tombstones(2_000, 3));
    let path = journal_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let frames = frame_offsets(&bytes);
    let victim = frames[frames.len() / 2];
    // The length's high byte: the frame now claims megabytes, past many frames after it.
    bytes[victim + 6] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (report, back) = reopen(dir.path());
    assert_eq!(back.len(), 1_999);
    assert_eq!(
        report.damaged_ranges,
        vec![(
            victim as u64,
            (frames[frames.len() / 2 + 1] - victim) as u64
        )]
    );
}

#[test]
fn garbage_inserted_mid_file_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(2_000, 4);
    write_journal(dir.path(), &records);
    let path = journal_path(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let frames = frame_offsets(&bytes);
    let mut rng = fastrand::Rng::with_seed(5);
    let mut garbage: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    // Including things that look like the start of a frame.
    garbage[100..104].copy_from_slice(&SYNC);
    garbage[2000..2004].copy_from_slice(&SYNC);
    // Between two frames, and inside a frame.
    let between = frames[500];
    let inside = frames[1500] + 40;
    let mut damaged = bytes[..between].to_vec();
    damaged.extend_from_slice(&garbage);
    damaged.extend_from_slice(&bytes[between..inside]);
    damaged.extend_from_slice(&garbage);
    damaged.extend_from_slice(&bytes[inside..]);
    std::fs::write(&path, &damaged).unwrap();
    let (report, back) = reopen(dir.path());
    assert_eq!(back.len(), 1_999, "only the frame cut in two is lost");
    assert_eq!(report.damaged_range_count, 2);
    assert_eq!(report.damaged_ranges[0], (between as u64, 4096));
    let uids: Vec<&str> = back.iter().map(uid_of).collect();
    let expected: Vec<&str> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1500)
        .map(|(_, r)| match r {
            OwnedRecordRef::Tombstone { uid, .. } => &**uid,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(uids, expected);
}

#[test]
fn a_torn_tail_is_cut_off_counted_and_gone_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), &tombstones(10, 6));
    let path = journal_path(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 20).unwrap();
    drop(f);
    let (j, report, back) = open(dir.path());
    assert_eq!(back.len(), 9);
    assert_eq!(report.skipped_records, 1);
    assert!(report.truncated_tail_bytes > 0);
    assert_eq!(report.damaged_range_count, 0);
    // Appends continue after the cut.
    j.append(&[RecordRef::Forget { uid: "x" }])
        .unwrap()
        .wait()
        .unwrap();
    j.close().unwrap();
    let (again, back) = reopen(dir.path());
    assert_eq!((again.skipped_records, back.len()), (0, 10));
}

/// A frame as a later build might write it: intact, but of a record version (or type) this
/// build does not know.
fn future_frame(version: u8, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::push_frame::<RecordError>(&mut buf, |p| {
        p.push(version);
        p.push(kind);
        p.extend_from_slice(body);
        Ok(())
    })
    .unwrap();
    buf
}

#[test]
fn records_of_a_later_build_are_skipped_kept_and_survive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(10, 7);
    write_journal(dir.path(), &records);
    let path = journal_path(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let frames = frame_offsets(&bytes);
    let newer_version = future_frame(2, 2, b"a tombstone of record version 2");
    let newer_type = future_frame(1, 99, b"a record type from the future");
    let mut edited = bytes[..frames[5]].to_vec();
    edited.extend_from_slice(&newer_version);
    edited.extend_from_slice(&bytes[frames[5]..]);
    // Last in the file: intact, so it is no torn tail and must not be cut off.
    edited.extend_from_slice(&newer_type);
    std::fs::write(&path, &edited).unwrap();

    let (j, report, back) = open(dir.path());
    assert_eq!(back.len(), 10);
    assert_eq!((report.skipped_records, report.unreadable_records), (2, 2));
    assert_eq!(report.truncated_tail_bytes, 0);
    assert_eq!(std::fs::read(&path).unwrap(), edited, "nothing cut off");
    assert_eq!(j.stats().unreadable_records.load(Relaxed), 2);
    // Kept records are not dead: they never make a compaction pay on their own.
    assert!(!j.wants_compaction(0));
    // Compact down to 3 records: the unknown frames are kept, verbatim, first.
    j.compact(records[..3].to_vec()).wait().unwrap();
    j.compact(records[..3].to_vec()).wait().unwrap();
    j.close().unwrap();
    let compacted = std::fs::read(&path).unwrap();
    let start = 8;
    assert_eq!(
        &compacted[start..start + newer_version.len()],
        &newer_version[..]
    );
    let next = start + newer_version.len();
    assert_eq!(&compacted[next..next + newer_type.len()], &newer_type[..]);
    let (report, back) = reopen(dir.path());
    assert_eq!((back.len(), report.unreadable_records), (3, 2));
}

#[test]
fn a_record_over_the_limit_is_refused_at_append() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = open(dir.path());
    let huge = vec![1u8; MAX_PAYLOAD + 1];
    let origin = Origin::source(SourceId::Ingest);
    let err = j
        .append(&[
            RecordRef::Forget { uid: "small" },
            RecordRef::Backup {
                uid: "big",
                origin: &origin,
                previous: None,
                object: &huge,
            },
        ])
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("backup big"), "{msg}");
    let JournalError::Refused {
        source: RecordError::TooLarge { size, limit },
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(*size > MAX_PAYLOAD && *limit == MAX_PAYLOAD);
    assert!(msg.contains(&format!("{size} bytes")), "{msg}");
    assert!(
        j.needs_rewrite(),
        "the rest of the batch is written by a compaction"
    );
    assert_eq!(j.stats().refused_records.load(Relaxed), 1);
    // Nothing of the batch was queued; a compaction with it leaves out only the huge one.
    let with_huge = vec![
        OwnedRecordRef::Forget {
            uid: "small".into(),
        },
        OwnedRecordRef::Backup {
            uid: "big".into(),
            origin,
            previous: None,
            object: huge.into(),
        },
    ];
    j.compact(with_huge).wait().unwrap();
    assert!(!j.needs_rewrite());
    j.close().unwrap();
    let (_, back) = reopen(dir.path());
    assert_eq!(
        back,
        vec![Record::Forget {
            uid: "small".into()
        }]
    );
}

#[test]
fn queued_batches_are_committed_with_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = open(dir.path());
    let j = Arc::new(j);
    j.shared_for_test().hold(true);
    let uids: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let tickets: Vec<Ticket> = std::thread::scope(|s| {
        let handles: Vec<_> = uids
            .chunks(10)
            .map(|chunk| {
                let j = Arc::clone(&j);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|u| j.append(&[RecordRef::Forget { uid: u }]).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(tickets.iter().all(|t| !t.is_done()));
    let fsyncs = j.stats().fsyncs.load(Relaxed);
    j.shared_for_test().hold(false);
    for t in tickets {
        t.wait().unwrap();
    }
    assert_eq!(
        j.stats().fsyncs.load(Relaxed) - fsyncs,
        1,
        "one group commit"
    );
    assert_eq!(j.stats().batches.load(Relaxed), 40);
    Arc::into_inner(j).unwrap().close().unwrap();
    let (_, back) = reopen(dir.path());
    assert_eq!(back.len(), 40);
}

#[test]
fn a_full_disk_fails_the_batch_and_a_compaction_heals_it() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(3, 8);
    let (j, _, _) = open(dir.path());
    j.append(&[records[0].as_record_ref()])
        .unwrap()
        .wait()
        .unwrap();
    j.redirect_writes_for_test(OpenOptions::new().write(true).open("/dev/full").unwrap());
    let err = j
        .append(&[records[1].as_record_ref()])
        .unwrap()
        .wait()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("No space left"), "{msg}");
    assert!(msg.contains(FILE_NAME) && msg.contains("offset"), "{msg}");
    assert!(j.needs_rewrite());
    assert_eq!(j.stats().write_errors.load(Relaxed), 1);
    // What was durable before is still there (read a copy: the journal stays open).
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(journal_path(dir.path()), journal_path(copy.path())).unwrap();
    assert_eq!(reopen(copy.path()).1.len(), 1);
    // Space is back: the rewrite holds everything, including the batch that failed.
    let ticket = j.compact(records[..2].to_vec());
    assert!(!j.needs_rewrite(), "a healing compaction is pending");
    ticket.wait().unwrap();
    assert!(!j.needs_rewrite());
    j.append(&[records[2].as_record_ref()])
        .unwrap()
        .wait()
        .unwrap();
    j.close().unwrap();
    let (report, back) = reopen(dir.path());
    assert_eq!((report.skipped_records, back.len()), (0, 3));
}

#[test]
fn appends_commit_while_a_compaction_runs_and_follow_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(6, 9);
    write_journal(dir.path(), &records[..4]);
    let (j, _, _) = open(dir.path());
    j.shared_for_test().hold_compaction(true);
    let compaction = j.compact(records[..2].to_vec());
    let during = j.append(&[records[4].as_record_ref()]).unwrap();
    // Committed to the old journal while the snapshot is still being written.
    during.wait().unwrap();
    assert!(!compaction.is_done());
    assert!(!j.wants_compaction(0), "one is pending");
    j.shared_for_test().hold_compaction(false);
    compaction.wait().unwrap();
    j.append(&[records[5].as_record_ref()])
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(j.stats().records_in_file.load(Relaxed), 4);
    assert_eq!(j.stats().compactions.load(Relaxed), 1);
    j.close().unwrap();
    let (_, back) = reopen(dir.path());
    let uids: Vec<&str> = back.iter().map(uid_of).collect();
    let expected: Vec<&str> = [0, 1, 4, 5]
        .iter()
        .map(|&i| match &records[i] {
            OwnedRecordRef::Tombstone { uid, .. } => &**uid,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(uids, expected);
    assert!(!writer::tmp_path(&journal_path(dir.path())).exists());
}

#[test]
fn appends_between_a_queued_compaction_and_its_start_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(5, 16);
    let (j, _, _) = open(dir.path());
    j.shared_for_test().hold_compaction(true);
    let first = j.compact(records[..1].to_vec());
    // Queued behind the running one; the append after it is in neither snapshot.
    let second = j.compact(records[..2].to_vec());
    j.append(&[records[2].as_record_ref()])
        .unwrap()
        .wait()
        .unwrap();
    j.shared_for_test().hold_compaction(false);
    first.wait().unwrap();
    second.wait().unwrap();
    assert_eq!(j.stats().compactions.load(Relaxed), 2);
    j.close().unwrap();
    let (_, back) = reopen(dir.path());
    assert_eq!(
        back.len(),
        3,
        "the append after the queued compaction is kept"
    );
}

#[test]
fn a_failed_compaction_leaves_the_journal_whole() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(5, 10);
    write_journal(dir.path(), &records);
    let (j, _, _) = open(dir.path());
    // The temp file cannot be created: a directory is in its way.
    let tmp = writer::tmp_path(&journal_path(dir.path()));
    std::fs::create_dir(&tmp).unwrap();
    let err = j.compact(records[..1].to_vec()).wait().unwrap_err();
    assert!(err.to_string().contains(".tmp"), "{err}");
    assert!(!j.needs_rewrite(), "the old journal is complete");
    std::fs::remove_dir(&tmp).unwrap();
    j.append(&[RecordRef::Forget { uid: "after" }])
        .unwrap()
        .wait()
        .unwrap();
    j.close().unwrap();
    assert_eq!(reopen(dir.path()).1.len(), 6);
}

/// A caller woken by a failed healing compaction finds the journal still needing a rewrite
/// (a race once let the next batch be appended and acknowledged in that window).
#[test]
fn a_failed_healing_compaction_still_needs_a_rewrite_when_its_caller_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(2, 11);
    let (j, _, _) = open(dir.path());
    j.redirect_writes_for_test(OpenOptions::new().write(true).open("/dev/full").unwrap());
    j.append(&[records[0].as_record_ref()])
        .unwrap()
        .wait()
        .unwrap_err();
    let tmp = writer::tmp_path(&journal_path(dir.path()));
    std::fs::create_dir(&tmp).unwrap();
    for round in 0..300 {
        j.compact(records.clone()).wait().unwrap_err();
        assert!(
            j.needs_rewrite(),
            "round {round}: a failed rewrite looked pending"
        );
    }
    std::fs::remove_dir(&tmp).unwrap();
    j.compact(records.clone()).wait().unwrap();
    assert!(!j.needs_rewrite());
    j.close().unwrap();
}

#[test]
fn a_stale_temp_file_is_removed_and_the_journal_used() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), &tombstones(5, 11));
    let tmp = writer::tmp_path(&journal_path(dir.path()));
    std::fs::write(&tmp, b"PXBJRNL2 half a compaction").unwrap();
    let (report, back) = reopen(dir.path());
    assert_eq!((back.len(), report.skipped_records), (5, 0));
    assert!(!tmp.exists());
}

#[test]
fn close_commits_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(50, 12);
    let (j, _, _) = open(dir.path());
    j.shared_for_test().hold(true);
    for r in &records {
        let _ = j.append(&[r.as_record_ref()]).unwrap();
    }
    let compaction = j.compact(records[..10].to_vec());
    j.shared_for_test().hold(false);
    j.close().unwrap();
    compaction.wait().unwrap();
    assert_eq!(reopen(dir.path()).1.len(), 10);
}

#[test]
fn compaction_is_wanted_when_most_records_are_dead() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = open(dir.path());
    let uids: Vec<String> = (0..1100).map(|i| format!("u{i}")).collect();
    let refs: Vec<RecordRef<'_>> = uids.iter().map(|u| RecordRef::Forget { uid: u }).collect();
    j.append(&refs).unwrap().wait().unwrap();
    assert!(j.wants_compaction(10));
    assert!(!j.wants_compaction(100));
    assert!(!j.needs_rewrite());
    j.close().unwrap();
}

#[test]
fn foreign_and_newer_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    for content in [
        &b"hello world, not a journal"[..],
        b"PXBJRNL9 from the future",
        b"PXX",
    ] {
        std::fs::write(&path, content).unwrap();
        let err = Journal::open(dir.path(), |_| {}).unwrap_err();
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        assert!(err.to_string().contains("left untouched"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
    // A creation cut short before the magic was whole is a new journal.
    std::fs::write(&path, b"PXBJ").unwrap();
    let (report, back) = reopen(dir.path());
    assert_eq!((report.records, back.len()), (0, 0));
    assert_eq!(std::fs::read(&path).unwrap(), b"PXBJRNL2");
}

#[test]
fn a_state_dir_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Journal::open(&file.join("state"), |_| {}).unwrap_err();
    assert!(err.to_string().contains("plain-file"), "{err}");
}

// ---- Format 1 ----

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/journal/v1.journal"
    ))
    .unwrap()
}

/// The previous release's reader: frames up to the first incomplete or corrupt one.
fn count_v1_frames(bytes: &[u8]) -> usize {
    assert_eq!(&bytes[..8], b"PXBJRNL1");
    let (mut at, mut n) = (8, 0);
    while let Some(h) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(h[4..].try_into().unwrap());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        n += 1;
        at += 8 + len;
    }
    n
}

/// `key="value"` pairs of an exposition line.
fn labels(line: &str) -> BTreeMap<&str, &str> {
    let inner = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
    let mut out = BTreeMap::new();
    let mut rest = inner;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',');
        let value_end = eq + 2 + rest[eq + 2..].find('"').unwrap();
        out.insert(key, &rest[eq + 2..value_end]);
        rest = &rest[value_end + 1..];
    }
    out
}

#[derive(Debug, PartialEq)]
enum Live {
    Backup(Backup, Option<BackupStatus>),
    Tombstone(Backup, BackupStatus, Timestamp),
}

/// What the records add up to, as the inventory folds them.
fn fold(records: &[Record]) -> (BTreeMap<String, Live>, BTreeMap<String, Timestamp>) {
    let mut backups = BTreeMap::new();
    let mut last = BTreeMap::new();
    for r in records {
        match r {
            Record::Backup {
                uid,
                origin,
                previous,
                object,
            } => {
                assert_eq!(*origin, Origin::source(SourceId::Ingest));
                let b = decode_backup(object).unwrap();
                backups.insert(uid.clone(), Live::Backup(b, *previous));
            }
            Record::Tombstone {
                uid,
                previous,
                deleted_at,
                object,
                ..
            } => {
                let b = decode_backup(object).unwrap();
                backups.insert(uid.clone(), Live::Tombstone(b, *previous, *deleted_at));
            }
            Record::Forget { uid } => {
                backups.remove(uid);
            }
            Record::LastSuccess { key, completed_at } => {
                last.insert(key.schedule_name.clone(), *completed_at);
            }
            Record::ForgetLastSuccess { key } => {
                last.remove(&key.schedule_name);
            }
        }
    }
    (backups, last)
}

#[test]
fn a_format_1_journal_is_upgraded_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = fixture();
    std::fs::write(journal_path(dir.path()), &v1).unwrap();
    let (report, records) = reopen(dir.path());

    // Every frame of the fixture, superseded ones included, comes back in order.
    let frames = count_v1_frames(&v1);
    assert!(
        frames > 14,
        "the fixture holds superseded records: {frames}"
    );
    assert_eq!(report.records as usize, frames);
    assert_eq!(records.len(), frames);
    assert_eq!(report.upgraded_from, Some(1));
    assert_eq!(report.skipped_records, 0);

    // ... and adds up to what the previous release exported from it.
    let (backups, last) = fold(&records);
    let expected = include_str!("../../tests/fixtures/journal/v1.expected.txt");
    let mut seen = 0;
    for line in expected.lines() {
        let l = labels(line);
        let value = line.rsplit(' ').next().unwrap();
        if line.starts_with("pxbackup_backup_object_info{") {
            seen += 1;
            let (b, previous) = match &backups[l["uid"]] {
                Live::Backup(b, p) => {
                    assert_eq!(l["status"], b.status.as_str());
                    // Exported only while the backup is no longer in a terminal state.
                    let shown = p.filter(|_| !b.status.is_terminal());
                    (b, shown.map_or("", BackupStatus::as_str))
                }
                Live::Tombstone(b, p, _) => {
                    assert_eq!(l["status"], "Deleted");
                    (b, p.as_str())
                }
            };
            assert_eq!(l["previous_status"], previous, "{line}");
            assert_eq!(l["name"], b.name);
            assert_eq!(l["backup_namespace"], b.namespaces.join(","));
            assert_eq!(l["schedule_name"], b.schedule_name);
            assert_eq!(l["cluster_uid"], b.owner.cluster_uid);
            assert_eq!(l["backup_location"], b.backup_location);
        } else if line.starts_with("pxbackup_backup_deleted_timestamp_seconds{") {
            let Live::Tombstone(_, _, deleted_at) = &backups[l["uid"]] else {
                panic!("not a tombstone: {line}");
            };
            let secs: f64 = value.parse().unwrap();
            assert_eq!(deleted_at.0, (secs * 1000.0).round() as i64);
        } else if line.starts_with("pxbackup_backup_volume_info{") {
            let b = match &backups[l["uid"]] {
                Live::Backup(b, _) | Live::Tombstone(b, _, _) => b,
            };
            assert!(
                b.volumes.iter().any(|v| v.volume == l["volume"]
                    && v.pvc == l["pvc"]
                    && v.storage_class == l["storage_class"]),
                "{line}"
            );
        } else if line.starts_with("pxbackup_schedule_last_success_timestamp_seconds{") {
            let secs: i64 = value.parse().unwrap();
            assert_eq!(last[l["schedule_name"]], Timestamp::from_secs(secs));
        }
    }
    assert_eq!(seen, 8);
    assert_eq!(backups.len(), 8);
    let tombstones = backups
        .values()
        .filter(|b| matches!(b, Live::Tombstone(..)))
        .count();
    assert_eq!(tombstones, 5);
    assert_eq!(last.len(), 1);
    // Format 1 knew none of the later fields.
    assert!(backups.values().all(|b| match b {
        Live::Backup(b, _) | Live::Tombstone(b, _, _) =>
            b.virtual_machines.is_empty() && b.namespace_resources.is_empty(),
    }));

    // The file is format 2 now, and reads back the same.
    let path = journal_path(dir.path());
    assert_eq!(&std::fs::read(&path).unwrap()[..8], b"PXBJRNL2");
    assert!(!writer::tmp_path(&path).exists());
    let (again, records_again) = reopen(dir.path());
    assert_eq!(again.upgraded_from, None);
    assert_eq!(again.records as usize, frames);
    // Replay folds a uid's records into its last: fewer reach the sink, adding up the same.
    assert!(records_again.len() < records.len());
    assert_eq!(fold(&records_again), fold(&records));
    assert_eq!(files_beside_the_lock(dir.path()), 1, "no copy kept");
}

#[test]
fn a_format_1_torn_tail_is_dropped_and_damage_keeps_the_original() {
    let v1 = fixture();
    let frames = count_v1_frames(&v1);
    // Torn: the last frame cut short.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(journal_path(dir.path()), &v1[..v1.len() - 5]).unwrap();
    let (report, records) = reopen(dir.path());
    assert_eq!(records.len(), frames - 1);
    assert!(report.truncated_tail_bytes > 0);
    assert_eq!(files_beside_the_lock(dir.path()), 1);
    // Damaged in the middle: format 1 cannot resync, so the original is kept next to it.
    let dir = tempfile::tempdir().unwrap();
    let mut damaged = v1.clone();
    damaged[v1.len() / 2] ^= 0x20;
    std::fs::write(journal_path(dir.path()), &damaged).unwrap();
    let (report, records) = reopen(dir.path());
    assert!(records.len() < frames);
    assert_eq!(report.damaged_range_count, 1);
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("v1-damaged"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), damaged);
}

// ---- kill -9 ----

/// Run as a child process by the kill tests: opens the journal (upgrading it, if format 1)
/// and compacts it over and over until killed.
#[test]
#[ignore = "a child process of the kill -9 tests"]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    println!("opening");
    let (j, _, records) = open(Path::new(&dir));
    let live: Vec<OwnedRecordRef> = records.iter().map(owned).collect();
    println!("compacting");
    loop {
        j.compact(live.clone()).wait().unwrap();
    }
}

/// Starts `kill_child` on `dir`, waits for it to print `stage`, lets it run for a random
/// while and kills it with SIGKILL.
fn kill_child_at_random(dir: &Path, stage: &str, rng: &mut fastrand::Rng) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "persistence::tests::kill_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The harness prints "test ... " before the first line of a test's output.
    while out.read_line(&mut line).unwrap() > 0 && !line.trim_end().ends_with(stage) {
        line.clear();
    }
    assert!(line.trim_end().ends_with(stage), "the child got to {stage}");
    std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn kill_9_mid_compaction_leaves_one_whole_journal() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(5_000, 13);
    write_journal(dir.path(), &records);
    let mut rng = fastrand::Rng::with_seed(14);
    let tmp = writer::tmp_path(&journal_path(dir.path()));
    let mut mid_compaction = 0;
    for round in 0..4 {
        kill_child_at_random(dir.path(), "compacting", &mut rng);
        mid_compaction += usize::from(tmp.exists());
        let (report, back) = reopen(dir.path());
        assert_eq!(back.len(), 5_000, "round {round}");
        assert_eq!(report.skipped_records, 0, "round {round}: {report:?}");
        assert!(back.iter().zip(&records).all(|(b, r)| uid_of(b)
            == &*match r {
                OwnedRecordRef::Tombstone { uid, .. } => uid.clone(),
                _ => unreachable!(),
            }));
    }
    println!("killed mid-compaction (temp file left) in {mid_compaction} of 4 rounds");
    assert!(mid_compaction > 0, "no kill landed mid-compaction");
}

#[test]
fn kill_9_mid_upgrade_leaves_a_journal_that_upgrades_whole() {
    let v1 = fixture();
    let per_copy = count_v1_frames(&v1);
    // The fixture's frames many times over: an upgrade that takes a while.
    let copies = 2_000;
    let mut big = v1.clone();
    for _ in 1..copies {
        big.extend_from_slice(&v1[8..]);
    }
    let mut rng = fastrand::Rng::with_seed(15);
    let mut mid_upgrade = 0;
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path());
        std::fs::write(&path, &big).unwrap();
        kill_child_at_random(dir.path(), "opening", &mut rng);
        let still_v1 = std::fs::read(&path).unwrap().starts_with(b"PXBJRNL1");
        mid_upgrade += usize::from(still_v1);
        println!(
            "round {round}: format 1 still in place: {still_v1}, temp file: {}",
            writer::tmp_path(&path).exists()
        );
        let (report, back) = reopen(dir.path());
        assert_eq!(back.len(), per_copy * copies, "round {round}: {report:?}");
        assert_eq!(report.skipped_records, 0, "round {round}: {report:?}");
    }
    assert!(mid_upgrade > 0, "no kill landed mid-upgrade");
}

#[test]
fn replay_tells_the_sink_about_how_many_records_are_coming() {
    struct Counting<'a> {
        expected: &'a mut Vec<u64>,
        records: &'a mut u64,
    }
    impl ReplaySink for Counting<'_> {
        fn expect(&mut self, records: u64) {
            self.expected.push(records);
        }
        fn record(&mut self, _: Record) {
            *self.records += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), &tombstones(50_000, 4));
    let (mut expected, mut records) = (Vec::new(), 0);
    let sink = Counting {
        expected: &mut expected,
        records: &mut records,
    };
    let (j, _) = Journal::open(dir.path(), sink).unwrap();
    j.close().unwrap();
    assert_eq!(records, 50_000);
    let [expected] = expected[..] else {
        panic!("{expected:?}");
    };
    assert!((40_000..=60_000).contains(&expected), "{expected}");
}

#[test]
fn a_sink_that_panics_stops_the_replay_thread_and_leaves_the_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), &tombstones(100_000, 5));
    let before = std::fs::read(journal_path(dir.path())).unwrap();
    let mut seen = 0u64;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Journal::open(dir.path(), |_| {
            seen += 1;
            assert!(seen < 40_000, "the sink gives up");
        })
    }));
    // The panic reaches the caller (no hang on a full hand-over queue), and nothing was cut.
    assert!(outcome.is_err());
    assert_eq!(seen, 40_000);
    assert_eq!(std::fs::read(journal_path(dir.path())).unwrap(), before);
    let (report, back) = reopen(dir.path());
    assert_eq!((report.skipped_records, back.len()), (0, 100_000));
}

/// A compaction pauses between runs of records (the inventory waits there while a scrape is
/// in flight): a pause that does not return holds the compaction, and once it returns the
/// compaction completes with everything.
#[test]
fn a_compaction_pauses_between_runs_of_records() {
    let dir = tempfile::tempdir().unwrap();
    let records = tombstones(10_000, 1);
    let (j, _, _) = open(dir.path());
    let (calls_tx, calls) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::sync_channel::<()>(0);
    let released = std::sync::Mutex::new(released);
    let released = std::sync::Arc::new(released);
    j.give_way_with(move || {
        let (calls_tx, released) = (calls_tx.clone(), std::sync::Arc::clone(&released));
        Box::new(move || {
            calls_tx.send(()).unwrap();
            // The first pause of each compaction holds it until released.
            released.lock().unwrap().recv().ok();
        })
    });
    let ticket = j.compact(records.clone());
    calls
        .recv_timeout(Duration::from_secs(10))
        .expect("the compaction paused");
    std::thread::sleep(Duration::from_millis(50));
    assert!(!ticket.is_done(), "it went on without waiting");
    // 10,000 records: three runs, three pauses.
    for _ in 0..3 {
        release.send(()).unwrap();
    }
    ticket.wait().unwrap();
    assert_eq!(calls.try_iter().count() + 1, 3);
    j.close().unwrap();
    assert_eq!(reopen(dir.path()).1.len(), 10_000);
}

// ---- The state dir is the sidecar's own ----

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Links planted in the state dir, where the sidecar creates, probes, appends and rewrites,
/// are never followed: their targets stay as they were.
#[test]
fn links_planted_in_the_state_dir_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    let link = |state: &Path, name: &str| {
        std::fs::create_dir_all(state).unwrap();
        std::os::unix::fs::symlink(&victim, state.join(name)).unwrap();
    };

    // The probe proving the dir writable.
    std::fs::write(&victim, b"precious").unwrap();
    let state = dir.path().join("probe");
    link(&state, ".write-probe");
    if let Ok((j, _)) = Journal::open(&state, |_| {}) {
        j.close().unwrap();
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // The journal itself, pointing at an empty file (which would pass for a new journal).
    std::fs::write(&victim, b"").unwrap();
    let state = dir.path().join("journal");
    link(&state, FILE_NAME);
    let err = Journal::open(&state, |_| {}).unwrap_err();
    assert!(err.to_string().contains("link"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"");

    // The compaction's temp file, planted while the journal is open.
    std::fs::write(&victim, b"precious").unwrap();
    let state = dir.path().join("compaction");
    let records = tombstones(10, 21);
    write_journal(&state, &records);
    let (j, _, _) = open(&state);
    link(&state, &format!("{FILE_NAME}.tmp"));
    let _ = j.compact(records.clone()).wait();
    j.close().unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(reopen(&state).1.len(), 10);
}

/// The state dir is made 0700 and the journal 0600: acknowledged data is the sidecar's alone.
#[test]
fn the_state_dir_is_private_and_the_journal_0600() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("new").join("state");
    write_journal(&state, &tombstones(3, 22));
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&journal_path(&state)), 0o600);
    // Compacted (a temp file renamed over it): still 0600.
    let (j, _, records) = open(&state);
    j.compact(records.iter().map(owned).collect())
        .wait()
        .unwrap();
    j.close().unwrap();
    assert_eq!(mode(&journal_path(&state)), 0o600);
    // A journal of an earlier release, made 0644, is made 0600 when opened.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(journal_path(&state), std::fs::Permissions::from_mode(0o644)).unwrap();
    reopen(&state);
    assert_eq!(mode(&journal_path(&state)), 0o600);
}

/// A state dir owned by another user (not root, which owns a volume's mount point) is
/// refused before anything is written into it.
#[test]
fn a_state_dir_owned_by_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var_os("PXB_SKIP_ROOT_TESTS").is_some(),
            "needs root to give a directory to another user (PXB_SKIP_ROOT_TESTS=1 skips it)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("theirs");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(4242), Some(4242)).unwrap();
    let err = Journal::open(&state, |_| {}).unwrap_err();
    assert!(err.to_string().contains("4242"), "{err}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
}

/// One journal per state dir: a second open while the first is held fails naming the
/// holder's pid; once the first is closed, the dir can be opened again.
#[test]
fn a_second_open_of_a_held_state_dir_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = open(dir.path());
    let err = Journal::open(dir.path(), |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    j.close().unwrap();
    reopen(dir.path());
}

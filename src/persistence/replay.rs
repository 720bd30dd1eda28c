//! Streaming replay of a format 2 journal, and the upgrade of a format 1 journal.
//!
//! Replay holds one window of the file at a time (see `frame`), hands every record to the
//! caller's sink as it is decoded and keeps only offsets of what it skipped.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::frame::{Item, Scanner, MAGIC_LEN};
use super::record::{self, Record, Scopes};
use super::writer::{create_temp, finish_temp, fsync_dir, tmp_path, FileState};
use super::ReplaySink;
use super::{io_error, v1, JournalError, ReplayReport, MAX_LOGGED_DAMAGE, MAX_REPORTED_RANGES};

/// What replay leaves for the writer.
pub(crate) struct Replayed {
    pub(crate) state: FileState,
    /// Damaged bytes left in the file (compaction drops them).
    pub(crate) damaged_bytes: u64,
}

fn note_damage(report: &mut ReplayReport, path: &Path, offset: u64, len: u64) {
    report.skipped_records += 1;
    report.skipped_bytes += len;
    report.damaged_range_count += 1;
    if report.damaged_ranges.len() < MAX_REPORTED_RANGES {
        report.damaged_ranges.push((offset, len));
    }
    if report.damaged_range_count <= MAX_LOGGED_DAMAGE {
        tracing::warn!(path = %path.display(), offset, len, "journal: skipped damaged bytes (the records in them are lost)");
    }
}

/// Records handed from the decoding thread to the caller's at a time. A batch is also the
/// window in which records of one uid are folded into the last of them: large enough to
/// catch a backup's status changes and its deletion when they came close together (the
/// common shape of a journal cut off by `kill -9`), small enough that the batches in flight
/// hold a few tens of MB at most.
const BATCH: usize = 32 << 10;
/// Full batches waiting for the caller's thread.
const BATCHES_IN_FLIGHT: usize = 2;

/// What the decoding thread hands over.
enum Handover {
    Expect(u64),
    Records(Vec<Option<Record>>),
}

/// One batch of replayed records, in which a record is dropped when a later one of the same
/// uid arrives: a uid's state is its last record's, so the caller gets the same result with
/// one map operation instead of several.
struct Batch {
    records: Vec<Option<Record>>,
    /// The position of the latest record for each uid hash. A hash shared by two uids only
    /// means that some record is not folded, never that a wrong one is. Seeded at random:
    /// uids come from producers, who must not be able to aim collisions at a replay.
    latest: std::collections::HashMap<u64, usize, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
    folded: u64,
}

impl Batch {
    fn new() -> Self {
        Batch {
            records: Vec::with_capacity(BATCH),
            latest: std::collections::HashMap::with_capacity_and_hasher(
                BATCH,
                foldhash::fast::RandomState::default(),
            ),
            hasher: foldhash::fast::RandomState::default(),
            folded: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.records.len() == BATCH
    }

    fn push(&mut self, record: Record) {
        use std::hash::BuildHasher;
        if let Some(uid) = record.backup_uid() {
            let at = self.records.len();
            match self.latest.entry(self.hasher.hash_one(uid)) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let earlier = &mut self.records[*e.get()];
                    if earlier.as_ref().and_then(Record::backup_uid) == Some(uid) {
                        *earlier = None;
                        self.folded += 1;
                    }
                    e.insert(at);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(at);
                }
            }
        }
        self.records.push(Some(record));
    }

    /// How many records a file of `len` bytes gives, judged from this batch, which ends at
    /// `offset`. Only for the first batch (`folded` counts from the start).
    fn expect_in(&self, offset: u64, len: u64) -> u64 {
        let kept = self.records.len() as u64 - self.folded;
        let read = offset.saturating_sub(MAGIC_LEN).max(1);
        u64::try_from(u128::from(kept) * u128::from(len - MAGIC_LEN) / u128::from(read))
            .unwrap_or(u64::MAX)
    }

    /// The records, and an empty batch for the next ones.
    fn take(&mut self) -> Vec<Option<Record>> {
        self.latest.clear();
        std::mem::replace(&mut self.records, Vec::with_capacity(BATCH))
    }
}

/// Replays the format 2 journal `file` (`len` bytes, magic checked) into `sink`, cutting off a
/// torn tail.
///
/// Reading, checksumming and decoding run on a thread of their own while `sink` runs on the
/// caller's: a restart after `kill -9` replays a million records or more, and the two halves
/// take about as long as each other (the sink's is mostly map lookups).
pub(crate) fn replay_v2(
    file: File,
    path: &Path,
    len: u64,
    report: &mut ReplayReport,
    sink: &mut impl ReplaySink,
) -> Result<Replayed, JournalError> {
    let decoded = &mut *report;
    let scanned = std::thread::scope(|scope| {
        let (batches, received) = std::sync::mpsc::sync_channel::<Handover>(BATCHES_IN_FLIGHT);
        let file = &file;
        let decoder = std::thread::Builder::new()
            .name("journal-replay".into())
            .spawn_scoped(scope, move || {
                let mut batch = Batch::new();
                let mut first = true;
                let scanned = scan(file, path, len, decoded, |r, at| {
                    batch.push(r);
                    if !batch.is_full() {
                        return true;
                    }
                    if std::mem::take(&mut first) {
                        let _ = batches.send(Handover::Expect(batch.expect_in(at, len)));
                    }
                    // The receiver only goes away if the sink panicked: then reading stops.
                    batches.send(Handover::Records(batch.take())).is_ok()
                });
                let _ = batches.send(Handover::Records(batch.take()));
                tracing::debug!(
                    folded = batch.folded,
                    "journal replay: records folded into a later one of their uid"
                );
                scanned
            })
            .map_err(io_error(path, MAGIC_LEN, "start the replay thread"))?;
        for handover in received {
            match handover {
                Handover::Expect(n) => sink.expect(n),
                Handover::Records(batch) => {
                    batch.into_iter().flatten().for_each(|r| sink.record(r));
                }
            }
        }
        decoder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    let Scanned {
        end,
        records_in_file,
        preserved,
        damaged_bytes,
    } = scanned;
    if end < len {
        file.set_len(end)
            .and_then(|()| file.sync_all())
            .map_err(io_error(path, end, "truncate the torn tail"))?;
    }
    if report.damaged_range_count > MAX_LOGGED_DAMAGE {
        tracing::warn!(path = %path.display(), ranges = report.damaged_range_count, bytes = damaged_bytes, "journal: damaged ranges skipped in all");
    }
    Ok(Replayed {
        state: FileState {
            file,
            end,
            records: records_in_file,
            preserved,
        },
        damaged_bytes,
    })
}

/// What a scan of a format 2 file found besides its records.
struct Scanned {
    /// Where the intact part ends (before a torn tail).
    end: u64,
    records_in_file: u64,
    /// Intact frames this build cannot read, kept in the file.
    preserved: Vec<(u64, u32)>,
    damaged_bytes: u64,
}

/// Reads every frame of `file`, giving each record it decodes to `emit` in file order with the
/// offset where its frame ends, until the end or until `emit` returns false.
fn scan(
    file: &File,
    path: &Path,
    len: u64,
    report: &mut ReplayReport,
    mut emit: impl FnMut(Record, u64) -> bool,
) -> Result<Scanned, JournalError> {
    let mut scanner = Scanner::new(file, len, MAGIC_LEN);
    let mut scopes = Scopes::default();
    let mut scanned = Scanned {
        end: len,
        records_in_file: 0,
        preserved: Vec::new(),
        damaged_bytes: 0,
    };
    let read_err = |offset| io_error(path, offset, "read");
    let mut at = MAGIC_LEN;
    while let Some(item) = scanner.next_item().map_err(read_err(at))? {
        match item {
            Item::Frame { offset, len: n } => {
                at = offset;
                scanned.records_in_file += 1;
                let payload = scanner.payload(offset, n).map_err(read_err(offset))?;
                match record::decode(payload, &mut scopes) {
                    Ok(r) => {
                        report.records += 1;
                        let frame_end = offset + (super::frame::HEADER_LEN + n) as u64;
                        if !emit(r, frame_end) {
                            break;
                        }
                    }
                    Err(e) => {
                        // Intact but not for this build (a later one wrote it): kept as it is,
                        // so that a roll-forward finds it again.
                        report.skipped_records += 1;
                        report.unreadable_records += 1;
                        if report.unreadable_records <= MAX_LOGGED_DAMAGE {
                            tracing::warn!(path = %path.display(), offset, error = %e, "journal: record this build cannot read; skipped, and kept in the file");
                        }
                        let frame_len =
                            u32::try_from(n + super::frame::HEADER_LEN).unwrap_or(u32::MAX);
                        scanned.preserved.push((offset, frame_len));
                    }
                }
            }
            Item::Damaged { offset, len: n } => {
                at = offset + n;
                scanned.damaged_bytes += n;
                note_damage(report, path, offset, n);
            }
            Item::Tail { offset, len: n } => {
                // No intact frame from here to the end: what an interrupted append leaves.
                tracing::warn!(path = %path.display(), offset, len = n, "journal: torn tail cut off");
                report.skipped_records += 1;
                report.skipped_bytes += n;
                report.truncated_tail_bytes = n;
                scanned.end = offset;
            }
        }
    }
    Ok(scanned)
}

/// Reads the format 1 journal `file` into `sink` and rewrites it as format 2: temp file,
/// fsync, rename, fsync of the directory. The old file is replaced only once the new one is
/// durable; if anything in it could not be read (beyond a torn tail), a hard link to it is
/// kept next to the journal.
pub(crate) fn upgrade_v1(
    file: File,
    dir: &Path,
    path: &Path,
    len: u64,
    report: &mut ReplayReport,
    sink: &mut impl ReplaySink,
) -> Result<Replayed, JournalError> {
    let tmp = tmp_path(path);
    let mut w = create_temp(&tmp)?;
    let mut offset = MAGIC_LEN;
    let mut count = 0u64;
    let mut frame = Vec::with_capacity(1024);
    let outcome = v1::read(&file, path, len, |r| {
        frame.clear();
        record::encode_frame(&mut frame, &r.as_record_ref()).map_err(|source| {
            JournalError::Refused {
                what: format!(
                    "{} (upgrading {})",
                    r.as_record_ref().describe(),
                    path.display()
                ),
                source,
            }
        })?;
        w.write_all(&frame)
            .map_err(io_error(&tmp, offset, "write"))?;
        offset += frame.len() as u64;
        count += 1;
        report.records += 1;
        sink.record(r);
        Ok(())
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            drop(w);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let mut clean = outcome.undecodable.is_empty();
    for &at in &outcome.undecodable {
        tracing::error!(path = %path.display(), offset = at, "format 1 journal: record skipped");
        report.skipped_records += 1;
    }
    if let Some((at, why)) = outcome.stopped_at {
        let n = len - at;
        report.skipped_records += 1;
        report.skipped_bytes += n;
        if outcome.torn_tail {
            tracing::warn!(path = %path.display(), offset = at, len = n, "format 1 journal: torn tail dropped");
            report.truncated_tail_bytes = n;
        } else {
            tracing::error!(path = %path.display(), offset = at, len = n, reason = why, "format 1 journal: reading stopped at damage");
            report.damaged_range_count += 1;
            report.damaged_ranges.push((at, n));
            clean = false;
        }
    }
    let new = finish_temp(w, &tmp).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    if !clean {
        let keep = dir.join(format!(
            "{}.v1-damaged-{}",
            super::FILE_NAME,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ));
        fs::hard_link(path, &keep).map_err(io_error(
            &keep,
            0,
            "keep the damaged format 1 journal",
        ))?;
        tracing::error!(kept = %keep.display(), "format 1 journal had damage; the original is kept");
    }
    drop(file);
    fs::rename(&tmp, path).map_err(io_error(path, 0, "rename the upgraded journal over"))?;
    fsync_dir(dir)?;
    tracing::info!(path = %path.display(), records = count, "journal upgraded from format 1 to format 2");
    report.upgraded_from = Some(1);
    Ok(Replayed {
        state: FileState {
            file: reopen(new, path)?,
            end: offset,
            records: count,
            preserved: Vec::new(),
        },
        damaged_bytes: 0,
    })
}

/// The written temp file, now the journal, positioned for appends.
fn reopen(f: File, path: &Path) -> Result<File, JournalError> {
    let mut f = f;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(io_error(path, 0, "seek"))?;
    Ok(f)
}

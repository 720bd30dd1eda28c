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

/// Replays the format 2 journal `file` (`len` bytes, magic checked) into `sink`, cutting off a
/// torn tail.
pub(crate) fn replay_v2(
    file: File,
    path: &Path,
    len: u64,
    report: &mut ReplayReport,
    sink: &mut impl FnMut(Record),
) -> Result<Replayed, JournalError> {
    let mut scanner = Scanner::new(&file, len, MAGIC_LEN);
    let mut scopes = Scopes::default();
    let mut records_in_file = 0u64;
    let mut preserved = Vec::new();
    let mut damaged_bytes = 0u64;
    let mut end = len;
    let read_err = |offset| io_error(path, offset, "read");
    let mut at = MAGIC_LEN;
    while let Some(item) = scanner.next_item().map_err(read_err(at))? {
        match item {
            Item::Frame { offset, len: n } => {
                at = offset;
                records_in_file += 1;
                let payload = scanner.payload(offset, n).map_err(read_err(offset))?;
                match record::decode(payload, &mut scopes) {
                    Ok(r) => {
                        report.records += 1;
                        sink(r);
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
                        preserved.push((offset, frame_len));
                    }
                }
            }
            Item::Damaged { offset, len: n } => {
                at = offset + n;
                damaged_bytes += n;
                note_damage(report, path, offset, n);
            }
            Item::Tail { offset, len: n } => {
                // No intact frame from here to the end: what an interrupted append leaves.
                tracing::warn!(path = %path.display(), offset, len = n, "journal: torn tail cut off");
                report.skipped_records += 1;
                report.skipped_bytes += n;
                report.truncated_tail_bytes = n;
                end = offset;
            }
        }
    }
    drop(scanner);
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
    sink: &mut impl FnMut(Record),
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
        sink(r);
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

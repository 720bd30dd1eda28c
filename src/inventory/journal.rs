//! The tombstone journal: an append-only file of checksummed records in the state dir, so that
//! deleted backups (and each schedule's last success) survive a restart or a kill -9.
//!
//! File: an 8-byte magic, then frames `[len: u32 LE][crc32(payload): u32 LE][payload]`, the
//! payload a postcard-encoded `Record`. Each applied batch is appended and fsynced once.
//! Replay stops at the first frame that is truncated or fails its checksum (after a crash only
//! the tail can be torn), counts it, and truncates the file there so the loss is not reported
//! again. Compaction writes the live records to a temporary file, fsyncs it and renames it over
//! the journal (then fsyncs the directory), so a crash at any point leaves one whole journal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Backup, BackupStatus, Owner, SourceId, Timestamp, Volume};

const MAGIC: &[u8; 8] = b"PXBJRNL1";
const FILE_NAME: &str = "tombstones.journal";
/// No record comes near this; a larger length can only be corruption.
const MAX_RECORD: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state dir {path}: {source}")]
    StateDir { path: PathBuf, source: io::Error },
    #[error("journal {path} is not a pxbackup-sidecar journal (bad magic)")]
    NotAJournal { path: PathBuf },
    #[error("journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("journal record could not be encoded: {0}")]
    Encode(#[from] postcard::Error),
}

/// Schedules are identified in the last-success series by these labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScheduleKey {
    pub org_id: String,
    pub cluster: String,
    pub cluster_uid: String,
    pub schedule_name: String,
}

/// What the journal holds. Expiry needs no record: replay drops tombstones whose backfill
/// window has passed. Live backups are journaled too, so that a backup deleted while the
/// sidecar was down is found missing by its source's first re-list, and tombstoned.
#[derive(Debug, PartialEq, Deserialize)]
pub enum Record {
    Tombstone {
        source: SourceId,
        backup: Box<V1Backup>,
        previous: BackupStatus,
        deleted_at: Timestamp,
    },
    /// The tombstone of this uid was replaced by a re-created backup.
    Forget {
        uid: String,
    },
    LastSuccess {
        key: ScheduleKey,
        completed_at: Timestamp,
    },
    ForgetLastSuccess {
        key: ScheduleKey,
    },
    /// A live backup, as last seen.
    Backup {
        source: SourceId,
        backup: Box<V1Backup>,
        last_terminal: Option<BackupStatus>,
    },
}

/// A backup as format 1 records it: the fields `model::Backup` had when the format was
/// frozen. Later fields are not journaled by this format.
#[derive(Debug, PartialEq, Deserialize)]
pub struct V1Backup {
    pub uid: String,
    pub name: String,
    pub owner: Owner,
    pub schedule_name: String,
    pub namespaces: Vec<String>,
    pub backup_location: String,
    pub backup_object_type: String,
    pub status: BackupStatus,
    pub size_bytes: Option<u64>,
    pub resource_count: Option<u64>,
    pub volumes: Vec<Volume>,
    pub created_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
}

impl From<V1Backup> for Backup {
    fn from(b: V1Backup) -> Backup {
        Backup {
            uid: b.uid,
            name: b.name,
            owner: b.owner,
            schedule_name: b.schedule_name,
            namespaces: b.namespaces,
            backup_location: b.backup_location,
            backup_object_type: b.backup_object_type,
            status: b.status,
            size_bytes: b.size_bytes,
            resource_count: b.resource_count,
            volumes: b.volumes,
            created_at: b.created_at,
            completed_at: b.completed_at,
            ..Backup::default()
        }
    }
}

/// The borrowed twin of `V1Backup`, encoded identically.
#[derive(Debug, Serialize)]
pub struct V1BackupRef<'a> {
    uid: &'a str,
    name: &'a str,
    owner: &'a Owner,
    schedule_name: &'a str,
    namespaces: &'a [String],
    backup_location: &'a str,
    backup_object_type: &'a str,
    status: BackupStatus,
    size_bytes: Option<u64>,
    resource_count: Option<u64>,
    volumes: &'a [Volume],
    created_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
}

impl<'a> From<&'a Backup> for V1BackupRef<'a> {
    fn from(b: &'a Backup) -> Self {
        V1BackupRef {
            uid: &b.uid,
            name: &b.name,
            owner: &b.owner,
            schedule_name: &b.schedule_name,
            namespaces: &b.namespaces,
            backup_location: &b.backup_location,
            backup_object_type: &b.backup_object_type,
            status: b.status,
            size_bytes: b.size_bytes,
            resource_count: b.resource_count,
            volumes: &b.volumes,
            created_at: b.created_at,
            completed_at: b.completed_at,
        }
    }
}

/// The borrowed twin of `Record`, encoded identically, so writing needs no clones.
#[derive(Debug, Serialize)]
pub enum RecordRef<'a> {
    Tombstone {
        source: SourceId,
        backup: V1BackupRef<'a>,
        previous: BackupStatus,
        deleted_at: Timestamp,
    },
    Forget {
        uid: &'a str,
    },
    LastSuccess {
        key: &'a ScheduleKey,
        completed_at: Timestamp,
    },
    ForgetLastSuccess {
        key: &'a ScheduleKey,
    },
    Backup {
        source: SourceId,
        backup: V1BackupRef<'a>,
        last_terminal: Option<BackupStatus>,
    },
}

/// What replay found.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Record>,
    /// Frames after the last good one that were dropped (a torn or corrupt tail counts once).
    pub skipped_records: u64,
    pub skipped_bytes: u64,
}

pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Records in the file, to decide when compaction pays.
    records_in_file: u64,
    /// A write failed: the file may lack records, so the next write is a full rewrite.
    needs_rewrite: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads it back. Fails if the dir cannot be
    /// written: better to refuse to start than to lose tombstones silently later.
    pub fn open(dir: &Path) -> Result<(Journal, Replay), JournalError> {
        let state_dir_err = |source| JournalError::StateDir {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(state_dir_err)?;
        let probe = dir.join(".write-probe");
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(state_dir_err)?;

        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let replay = if len == 0 {
            file.write_all(MAGIC).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            Replay::default()
        } else {
            let (replay, good_end) = read_frames(&mut file, &path, len)?;
            if good_end < len {
                file.set_len(good_end).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
            }
            replay
        };
        file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        let records_in_file = replay.records.len() as u64;
        Ok((
            Journal {
                dir: dir.to_owned(),
                path,
                file,
                records_in_file,
                needs_rewrite: false,
            },
            replay,
        ))
    }

    pub fn records_in_file(&self) -> u64 {
        self.records_in_file
    }

    pub fn needs_rewrite(&self) -> bool {
        self.needs_rewrite
    }

    /// Appends a batch and fsyncs once. On failure (disk full, I/O error) the journal asks for
    /// a rewrite: the caller's next `compact` writes the whole live state again.
    pub fn append(&mut self, records: &[RecordRef<'_>]) -> Result<(), JournalError> {
        let mut frames = Vec::with_capacity(records.len() * 256);
        for r in records {
            encode(&mut frames, r)?;
        }
        self.append_frames(&frames, records.len() as u64)
    }

    /// Appends frames made by `encode` (`count` of them) and fsyncs once.
    pub fn append_frames(&mut self, frames: &[u8], count: u64) -> Result<(), JournalError> {
        if count == 0 {
            return Ok(());
        }
        let result = self
            .file
            .write_all(frames)
            .and_then(|()| self.file.sync_data())
            .map_err(io_err(&self.path));
        match result {
            Ok(()) => {
                self.records_in_file += count;
                Ok(())
            }
            Err(e) => {
                self.needs_rewrite = true;
                Err(e)
            }
        }
    }

    /// Replaces the journal by exactly `records` (write temp, fsync, rename, fsync dir).
    pub fn compact<'a>(
        &mut self,
        records: impl Iterator<Item = RecordRef<'a>>,
    ) -> Result<(), JournalError> {
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let result = (|| {
            let f = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            w.write_all(MAGIC).map_err(io_err(&tmp))?;
            let mut frame = Vec::with_capacity(512);
            let mut count = 0u64;
            for r in records {
                frame.clear();
                encode(&mut frame, &r)?;
                w.write_all(&frame).map_err(io_err(&tmp))?;
                count += 1;
            }
            let f = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
            f.sync_all().map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(io_err(&self.path))?;
            file.seek(SeekFrom::End(0)).map_err(io_err(&self.path))?;
            Ok::<_, JournalError>((file, count))
        })();
        match result {
            Ok((file, count)) => {
                self.file = file;
                self.records_in_file = count;
                self.needs_rewrite = false;
                Ok(())
            }
            Err(e) => {
                // The old journal is untouched by a failed compaction; drop the partial temp.
                let _ = std::fs::remove_file(&tmp);
                self.needs_rewrite = true;
                Err(e)
            }
        }
    }

    /// Points the journal's writes at another file (tests: `/dev/full` for a full disk).
    #[cfg(test)]
    pub(crate) fn redirect_writes_for_test(&mut self, file: File) {
        self.file = file;
    }
}

/// Appends one framed record to `buf`.
pub fn encode(buf: &mut Vec<u8>, record: &RecordRef<'_>) -> Result<(), JournalError> {
    let payload = postcard::to_stdvec(record)?;
    // A record over MAX_RECORD would be unreadable; backups are nowhere near that size.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Reads frames until the end or the first bad one; returns the records and the offset after
/// the last good frame. Frame boundaries are found in one pass; checksums and decoding, the
/// costly part, run on every core.
fn read_frames(file: &mut File, path: &Path, len: u64) -> Result<(Replay, u64), JournalError> {
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(JournalError::NotAJournal {
            path: path.to_owned(),
        });
    }
    // (crc, payload range) of every frame whose length fits in the file.
    let mut frames: Vec<(u32, std::ops::Range<usize>)> = Vec::new();
    let mut offset = MAGIC.len();
    while let Some(header) = bytes.get(offset..offset + 8) {
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (size, crc) = (word(0), word(4));
        let start = offset + 8;
        let end = start + size as usize;
        if size > MAX_RECORD || end > bytes.len() {
            break;
        }
        frames.push((crc, start..end));
        offset = end;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = frames.len().div_ceil(threads).max(1);
    let decoded: Vec<Vec<Option<Record>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = frames
            .chunks(chunk)
            .map(|part| {
                let bytes = &bytes;
                scope.spawn(move || {
                    part.iter()
                        .map(|(crc, range)| {
                            let payload = &bytes[range.clone()];
                            (crc32fast::hash(payload) == *crc)
                                .then(|| postcard::from_bytes::<Record>(payload).ok())
                                .flatten()
                        })
                        .collect()
                })
            })
            .collect();
        // A worker only panics on a bug; its frames are then treated as unreadable.
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut replay = Replay::default();
    let mut good_end = MAGIC.len() as u64;
    for (record, (_, range)) in decoded.into_iter().flatten().zip(&frames) {
        let Some(record) = record else { break };
        replay.records.push(record);
        good_end = range.end as u64;
    }
    if good_end < len {
        replay.skipped_records = 1;
        replay.skipped_bytes = len - good_end;
    }
    Ok((replay, good_end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackupStatus, Owner};

    fn backup(uid: &str) -> Backup {
        Backup {
            uid: uid.into(),
            name: format!("b-{uid}"),
            owner: Owner {
                org_id: "default".into(),
                cluster: "c1".into(),
                cluster_uid: "cu1".into(),
            },
            schedule_name: "nightly".into(),
            namespaces: vec!["shop".into()],
            backup_location: "s3".into(),
            backup_object_type: "All".into(),
            status: BackupStatus::Success,
            size_bytes: Some(10),
            resource_count: None,
            volumes: vec![],
            created_at: Some(Timestamp(1)),
            completed_at: None,
            ..Backup::default()
        }
    }

    fn tomb(b: &Backup) -> RecordRef<'_> {
        RecordRef::Tombstone {
            source: SourceId::Ingest,
            backup: b.into(),
            previous: BackupStatus::Failed,
            deleted_at: Timestamp(5000),
        }
    }

    #[test]
    fn records_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (b1, b2) = (backup("u1"), backup("u2"));
        {
            let (mut j, replay) = Journal::open(dir.path()).unwrap();
            assert!(replay.records.is_empty());
            j.append(&[tomb(&b1), tomb(&b2)]).unwrap();
            j.append(&[RecordRef::Forget { uid: "u1" }]).unwrap();
        }
        let (j, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(j.records_in_file(), 3);
        assert_eq!(replay.skipped_records, 0);
        assert_eq!(
            replay.records[1],
            Record::Tombstone {
                source: SourceId::Ingest,
                backup: Box::new(V1Backup {
                    uid: b2.uid,
                    name: b2.name,
                    owner: b2.owner,
                    schedule_name: b2.schedule_name,
                    namespaces: b2.namespaces,
                    backup_location: b2.backup_location,
                    backup_object_type: b2.backup_object_type,
                    status: b2.status,
                    size_bytes: b2.size_bytes,
                    resource_count: b2.resource_count,
                    volumes: b2.volumes,
                    created_at: b2.created_at,
                    completed_at: b2.completed_at,
                }),
                previous: BackupStatus::Failed,
                deleted_at: Timestamp(5000)
            }
        );
        assert_eq!(replay.records[2], Record::Forget { uid: "u1".into() });
    }

    #[test]
    fn torn_tail_is_skipped_counted_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (b1, b2) = (backup("u1"), backup("u2"));
        {
            let (mut j, _) = Journal::open(dir.path()).unwrap();
            j.append(&[tomb(&b1)]).unwrap();
            j.append(&[tomb(&b2)]).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let len = std::fs::metadata(&path).unwrap().len();
        // Cut the second record in half, as a crash mid-write would.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        let (_, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(replay.records.len(), 1);
        assert_eq!(replay.skipped_records, 1);
        assert!(replay.skipped_bytes > 0);
        // The cut-off tail is gone: the next start reports nothing lost.
        let (_, again) = Journal::open(dir.path()).unwrap();
        assert_eq!((again.records.len(), again.skipped_records), (1, 0));
    }

    #[test]
    fn flipped_bit_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let b1 = backup("u1");
        {
            let (mut j, _) = Journal::open(dir.path()).unwrap();
            j.append(&[tomb(&b1)]).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let (_, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!((replay.records.len(), replay.skipped_records), (0, 1));
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"hello world, not a journal").unwrap();
        let err = Journal::open(dir.path()).err().unwrap();
        assert!(matches!(err, JournalError::NotAJournal { .. }), "{err}");
    }

    #[test]
    fn state_dir_that_is_a_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Journal::open(&file.join("state")).err().unwrap();
        assert!(err.to_string().contains("plain-file"), "{err}");
    }

    #[test]
    fn disk_full_asks_for_rewrite_and_compaction_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (b1, b2) = (backup("u1"), backup("u2"));
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[tomb(&b1)]).unwrap();
        j.redirect_writes_for_test(OpenOptions::new().write(true).open("/dev/full").unwrap());
        let err = j.append(&[tomb(&b2)]).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(j.needs_rewrite());
        // Space is back: the rewrite holds everything, including the record that failed.
        j.compact([tomb(&b1), tomb(&b2)].into_iter()).unwrap();
        assert!(!j.needs_rewrite());
        drop(j);
        let (_, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(replay.records.len(), 2);
    }
}

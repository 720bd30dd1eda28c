//! Persistence: the journal of tombstones, live backups and schedules' last successes in the
//! state dir (`<state dir>/tombstones.journal`), so that they survive a restart and `kill -9`.
//!
//! # File format 2
//!
//! An 8-byte magic `PXBJRNL2`, then frames (see `frame`): a checksummed 16-byte header (sync
//! marker, payload length, payload CRC-32, header CRC-32) and a payload
//! `[record version u8][record type u8][postcard fields]` (see `record`). Backup and Tombstone
//! records carry the backup as `object`, the journal's own encoding of `model::Backup` (see
//! `object`), which the inventory keeps in memory as it is, to write it again at compaction.
//!
//! # Rules for changing records (read before touching `record` or `object`)
//!
//! - Everything on disk is described by this module's own wire structs, frozen per version;
//!   model types are never serialized directly, and enums are written as the codes of
//!   explicit tables, so a change in `model` cannot silently change the format.
//! - A field is only ever added at the END of a record (or of the backup object), never in
//!   the middle and never inside a nested struct. Readers decode with
//!   `postcard::take_from_bytes` and ignore trailing bytes they do not know, so an older build
//!   reads a newer record. A newer build reads an older record by decoding the fields it has
//!   and taking the defaults of the ones it finds no bytes for.
//! - Anything else (removing, reordering or retyping a field, or a new code in a code table,
//!   such as a new status, which an older build could not decode) is a new record version (or
//!   object version). A build that meets a version or type it does not know skips the record,
//!   counts it, and keeps its frame verbatim through every compaction, so a rollback followed by
//!   a roll-forward loses nothing.
//! - Tests freeze the bytes of every record type and of a fully populated backup.
//!
//! # Guarantees
//!
//! - Damage in the middle of the file costs only the frames it touches: replay resynchronizes
//!   on the next intact frame, and counts and logs what it skipped with its offset.
//! - A frame that passed its checksum is never cut off. Only a torn tail (no intact frame from
//!   some offset to the end: an interrupted append) is truncated, logged and counted.
//! - Creating or renaming the journal fsyncs the directory. Compaction and upgrade write a
//!   temp file, fsync it, rename it over the journal and fsync the directory: a crash at any
//!   point leaves one whole journal (a stale temp file is removed at the next open).
//! - A record over `MAX_PAYLOAD` is refused by `append`, never written, so every frame
//!   written can be replayed.
//! - Appends are committed in groups on a writer thread (one write and one fsync for every
//!   batch queued meanwhile); compaction runs on a helper thread. Callers only encode and
//!   queue, under their own lock, and wait for their `Ticket` after releasing it.
//! - Replay streams: it holds one 1 MiB window of the file (or one frame, if larger), never
//!   the whole file.
//! - A format 1 journal (the previous release) is read and rewritten as format 2.

pub mod files;
mod frame;
mod object;
mod record;
mod replay;
mod v1;
mod view;
mod writer;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use frame::MAX_PAYLOAD;
pub use object::{decode_backup, encode_backup};
pub use record::{OwnedRecordRef, Record, RecordError, RecordRef, ScheduleKey};
pub use view::{
    BackupView, Head, List, NamespaceResourcesView, Parts, ResourceTypeView, Sections, Summary,
    Times, Totals, VirtualMachineView, VmResourceView, VolumeView,
};
pub use writer::Ticket;

use frame::{MAGIC_FAMILY, MAGIC_LEN, MAGIC_V1, MAGIC_V2};
use writer::{FileState, Op, Shared, Writer};

/// The journal's file name in the state dir.
pub const FILE_NAME: &str = "tombstones.journal";

/// Damaged ranges logged one by one at replay; beyond this only a summary.
const MAX_LOGGED_DAMAGE: u64 = 16;
/// Damaged ranges listed in the `ReplayReport` (all are counted).
const MAX_REPORTED_RANGES: usize = 256;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("journal {path}: {op} at offset {offset}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        offset: u64,
        source: Arc<io::Error>,
    },
    #[error("{path} is not a pxbackup-sidecar journal (it starts with {found:?}); left untouched")]
    NotAJournal { path: PathBuf, found: String },
    #[error("journal {path} is in format {magic:?}, newer than this build reads; left untouched")]
    NewerFormat { path: PathBuf, magic: String },
    #[error("journal record refused ({what}): {source}")]
    Refused { what: String, source: RecordError },
    #[error("journal {path}: the writer has stopped")]
    Closed { path: PathBuf },
    #[error("journal {path}: the writer thread panicked")]
    WriterPanicked { path: PathBuf },
    #[error("state dir {dir} is in use by another pxbackup-sidecar ({holder}); one sidecar per state dir, this one stops")]
    InUse { dir: PathBuf, holder: String },
}

/// Maps an I/O error to one naming the file, the operation and the offset.
pub(crate) fn io_error<'a>(
    path: &'a Path,
    offset: u64,
    op: &'static str,
) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_owned(),
        op,
        offset,
        source: Arc::new(source),
    }
}

/// Counters for the self metrics.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Length of the journal file.
    pub file_bytes: AtomicU64,
    /// Intact frames in the file: live, superseded and kept-unreadable records.
    pub records_in_file: AtomicU64,
    /// Failed appends (one per group) and failed compactions.
    pub write_errors: AtomicU64,
    /// What replay skipped: see `ReplayReport::skipped_records`.
    pub skipped_records: AtomicU64,
    /// Records in the file that this build cannot read (kept verbatim).
    pub unreadable_records: AtomicU64,
    /// Records refused for their size (by `append` or left out of a compaction).
    pub refused_records: AtomicU64,
    /// Batches committed (or failed), and the fsyncs that committed them.
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub compactions: AtomicU64,
}

/// What opening the journal found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records handed to the sink.
    pub records: u64,
    /// A lower bound of the records lost or not read: every unreadable record, every damaged
    /// range and a torn tail count one each.
    pub skipped_records: u64,
    /// Intact records this build cannot read (a later build wrote them): kept in the file.
    pub unreadable_records: u64,
    /// Bytes of damaged ranges and torn tail.
    pub skipped_bytes: u64,
    /// Damaged ranges as (offset, length), the first `MAX_REPORTED_RANGES` of them.
    pub damaged_ranges: Vec<(u64, u64)>,
    pub damaged_range_count: u64,
    /// Length of the torn tail cut off (format 2) or dropped (format 1).
    pub truncated_tail_bytes: u64,
    /// The format the file was upgraded from.
    pub upgraded_from: Option<u32>,
    /// Length of the journal after opening.
    pub file_bytes: u64,
}

/// Where replayed records go. Any `FnMut(Record)` is one.
pub trait ReplaySink {
    /// About how many records will reach `record` in all, known once the first ones are read
    /// (from their size and how many were folded into later ones): room can be made once
    /// instead of growing a million entries at a time. A hint that may be off either way.
    fn expect(&mut self, _records: u64) {}
    fn record(&mut self, record: Record);
}

impl<F: FnMut(Record)> ReplaySink for F {
    fn record(&mut self, record: Record) {
        self(record)
    }
}

/// The journal. `Send + Sync`: appends come from any thread; the writer thread owns the file.
pub struct Journal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    /// The state dir is this process's while the journal is open (released after the writer
    /// has stopped: fields drop after `Drop::drop`).
    _lock: files::StateDirLock,
}

/// What a compaction calls between runs of records it writes: it returns when the compaction
/// may go on (the inventory's waits while a scrape is in flight, see `inventory::give_way`).
pub type Pause = Box<dyn FnMut() + Send>;
/// Makes the `Pause` of one compaction.
pub(crate) type PauseSource = Box<dyn Fn() -> Pause + Send + Sync>;

impl Journal {
    /// Compactions from now on call `source`'s pause between runs of records. Set once; a
    /// second call is ignored.
    pub fn give_way_with(&self, source: impl Fn() -> Pause + Send + Sync + 'static) {
        let _ = self.shared.pause.set(Box::new(source));
    }

    /// Opens (creating) `<dir>/tombstones.journal`, replays it streaming into `sink` in file
    /// order, and starts the writer. Of several records of one uid close together in a format
    /// 2 file only the last reaches `sink` (a uid's state is its last record's). A format 1
    /// file is upgraded (read in full, every record given to `sink`, then replaced by its
    /// format 2 rewrite once that is durable). On `Err` the file
    /// is left as it was (beyond a torn tail cut off) and the records already given to `sink`
    /// are to be discarded.
    pub fn open(
        dir: &Path,
        mut sink: impl ReplaySink,
    ) -> Result<(Journal, ReplayReport), JournalError> {
        let lock = prepare_dir(dir)?;
        let path = dir.join(FILE_NAME);
        remove_stale_temp(&path)?;
        let (file, created) =
            files::open_append(&path, true).map_err(io_error(&path, 0, "open"))?;
        if created {
            writer::fsync_dir(dir)?;
        }
        let len = file.metadata().map_err(io_error(&path, 0, "stat"))?.len();
        let mut report = ReplayReport::default();
        let mut head = [0u8; MAGIC_LEN as usize];
        let head = &mut head[..usize::try_from(len.min(MAGIC_LEN)).unwrap_or(0)];
        file.read_exact_at(head, 0)
            .map_err(io_error(&path, 0, "read"))?;
        let replayed = if len < MAGIC_LEN {
            if !MAGIC_V2.starts_with(head) {
                return Err(not_a_journal(&path, head));
            }
            // New, or its creation was cut short before the magic was whole.
            init_empty(file, dir, &path)?
        } else if head == MAGIC_V2 {
            replay::replay_v2(file, &path, len, &mut report, &mut sink)?
        } else if head == MAGIC_V1 {
            replay::upgrade_v1(file, dir, &path, len, &mut report, &mut sink)?
        } else if head.starts_with(MAGIC_FAMILY) {
            return Err(JournalError::NewerFormat {
                path,
                magic: String::from_utf8_lossy(head).into_owned(),
            });
        } else {
            return Err(not_a_journal(&path, head));
        };
        report.file_bytes = replayed.state.end;
        let shared = Arc::new(Shared::new(dir, &path));
        shared
            .stats
            .skipped_records
            .store(report.skipped_records, Relaxed);
        shared
            .stats
            .unreadable_records
            .store(report.unreadable_records, Relaxed);
        shared.damaged_bytes.store(replayed.damaged_bytes, Relaxed);
        let writer = Writer::spawn(Arc::clone(&shared), replayed.state).map_err(io_error(
            &path,
            0,
            "start the writer thread",
        ))?;
        Ok((
            Journal {
                shared,
                writer: Some(writer),
                _lock: lock,
            },
            report,
        ))
    }

    /// Encodes `records` into one batch and queues it; frames are written in call order.
    /// Cheap (encoding and a queue push), meant to be called under the caller's lock; wait for
    /// the ticket after releasing it. `Err` only if a record is over `MAX_PAYLOAD` (or cannot
    /// be encoded): then nothing of the batch is queued, and `needs_rewrite` turns true so that
    /// the next compaction writes the rest of the caller's state.
    pub fn append(&self, records: &[RecordRef<'_>]) -> Result<Ticket, JournalError> {
        if records.is_empty() {
            return Ok(Ticket::done(Ok(())));
        }
        let mut frames = Vec::with_capacity(records.len() * 512);
        for r in records {
            if let Err(source) = record::encode_frame(&mut frames, r) {
                self.shared.stats.refused_records.fetch_add(1, Relaxed);
                self.shared.needs_rewrite.store(true, Relaxed);
                return Err(JournalError::Refused {
                    what: r.describe(),
                    source,
                });
            }
        }
        let (ticket, done) = Ticket::new(&self.shared.path);
        let op = Op::Append {
            frames,
            count: records.len() as u64,
            done,
        };
        // A stopped writer fails the ticket (the completer is dropped with the op).
        let _ = self.shared.enqueue(op);
        Ok(ticket)
    }

    /// Rewrites the journal as exactly `records` (plus the frames kept verbatim for a later
    /// build). `records` must be the caller's whole state as of this call: appends queued
    /// before it are committed first and are then superseded by it; appends queued after it
    /// follow it in the new file. Runs on a helper thread, off the caller's lock; appends keep
    /// committing meanwhile. A compaction asked for while another runs supersedes any queued
    /// one (both tickets complete with the later one).
    pub fn compact(&self, records: Vec<OwnedRecordRef>) -> Ticket {
        let (ticket, done) = Ticket::new(&self.shared.path);
        self.shared.compactions_pending.fetch_add(1, Relaxed);
        if self.shared.enqueue(Op::Compact { records, done }).is_err() {
            self.shared.compactions_pending.fetch_sub(1, Relaxed);
        }
        ticket
    }

    /// Whether a compaction pays: most of the file is dead records (superseded or forgotten),
    /// or replay skipped damage that is still in it. False while a compaction is pending.
    /// `live_records`: what a compaction would write.
    pub fn wants_compaction(&self, live_records: u64) -> bool {
        if self.shared.compactions_pending.load(Relaxed) > 0 {
            return false;
        }
        let in_file = self.shared.stats.records_in_file.load(Relaxed);
        let kept = self.shared.preserved_records.load(Relaxed);
        in_file.saturating_sub(kept) > 2 * live_records + 1024
            || self.shared.damaged_bytes.load(Relaxed) > 0
    }

    /// A write failed (or a record was refused): the file may miss records, and the caller
    /// should answer with `compact`. False once a compaction that heals it is pending.
    pub fn needs_rewrite(&self) -> bool {
        self.shared.needs_rewrite.load(Relaxed)
            && self.shared.compactions_pending.load(Relaxed) == 0
    }

    pub fn stats(&self) -> &JournalStats {
        &self.shared.stats
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Stops the writer after everything queued is done (appends committed, compactions
    /// installed).
    pub fn close(mut self) -> Result<(), JournalError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), JournalError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        self.shared.close();
        writer.join().map_err(|_| JournalError::WriterPanicked {
            path: self.shared.path.to_path_buf(),
        })
    }

    /// Points appends at `file` (tests: `/dev/full` for a full disk); compactions still write
    /// the real journal.
    #[cfg(test)]
    pub(crate) fn redirect_writes_for_test(&self, file: File) {
        let _ = self.shared.enqueue(Op::Redirect(file));
    }

    #[cfg(test)]
    pub(crate) fn shared_for_test(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // As `close`: what was queued is written before the process goes on.
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "journal writer");
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn not_a_journal(path: &Path, head: &[u8]) -> JournalError {
    JournalError::NotAJournal {
        path: path.to_owned(),
        found: String::from_utf8_lossy(head).into_owned(),
    }
}

/// Creates (or checks) the state dir, takes it for this process, and proves it writable:
/// better to refuse to start than to lose tombstones silently later. The lock comes before
/// anything else is touched in it: a second sidecar must not even remove the first one's
/// compaction temp file.
fn prepare_dir(dir: &Path) -> Result<files::StateDirLock, JournalError> {
    let state_dir_err = |source| JournalError::StateDir {
        path: dir.to_owned(),
        source: Arc::new(source),
    };
    files::state_dir(dir).map_err(state_dir_err)?;
    let lock = files::StateDirLock::acquire(dir).map_err(|e| match e {
        files::LockError::Held { holder } => JournalError::InUse {
            dir: dir.to_owned(),
            holder,
        },
        files::LockError::Io(path, source) => JournalError::StateDir {
            path,
            source: Arc::new(source),
        },
    })?;
    let probe = dir.join(".write-probe");
    files::replace_new(&probe, false)
        .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(state_dir_err)?;
    Ok(lock)
}

/// A temp file left by a crash mid-compaction or mid-upgrade: the rename is the commit point,
/// so it was never the journal.
fn remove_stale_temp(path: &Path) -> Result<(), JournalError> {
    let tmp = writer::tmp_path(path);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {
            tracing::info!(path = %tmp.display(), "removed an unfinished journal rewrite");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(&tmp, 0, "remove")(e)),
    }
}

fn init_empty(file: File, dir: &Path, path: &Path) -> Result<replay::Replayed, JournalError> {
    let mut file = file;
    file.set_len(0)
        .and_then(|()| file.write_all(&MAGIC_V2))
        .and_then(|()| file.sync_all())
        .map_err(io_error(path, 0, "initialize"))?;
    writer::fsync_dir(dir)?;
    Ok(replay::Replayed {
        state: FileState {
            file,
            end: MAGIC_LEN,
            records: 0,
            preserved: Vec::new(),
        },
        damaged_bytes: 0,
    })
}

#[cfg(test)]
mod tests;

//! The writer thread: owns the journal file, commits appends in groups and installs
//! compactions.
//!
//! Group commit: callers queue encoded batches (cheap, under their own lock); the writer takes
//! everything queued at once, writes it, fsyncs once and completes every batch's `Ticket`. A
//! failed write or fsync fails every ticket of that group, cuts the file back to its last good
//! length and raises `needs_rewrite`; the caller answers with a compaction.
//!
//! Compaction: a helper thread writes the snapshot (plus the frames kept verbatim) to
//! `<journal>.tmp` and fsyncs it, while the writer keeps committing appends to the old file and
//! also keeps a copy of them (the tail). When the helper is done, the writer appends the tail
//! to the temp file, fsyncs it, renames it over the journal and fsyncs the directory. A crash
//! at any point leaves either the old journal (which has every append) or the new one (which
//! has the snapshot and every append since), never a mix; a stale temp file is removed at
//! the next open.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use super::frame::{MAGIC_LEN, MAGIC_V2};
use super::record::{self, OwnedRecordRef};
use super::{io_error, JournalError, JournalStats};

/// The temp file of compactions and upgrades, next to the journal.
pub(crate) fn tmp_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Makes a rename or creation in `dir` durable: without it a crash can lose the directory
/// entry even though the file's data was synced.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, 0, "fsync directory"))
}

/// Creates (truncating a stale one) the temp file and writes the format 2 magic.
pub(crate) fn create_temp(tmp: &Path) -> Result<io::BufWriter<File>, JournalError> {
    // A stale temp file (or a link planted in its name) is removed, never written through.
    let f = super::files::replace_new(tmp, false).map_err(io_error(tmp, 0, "create"))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, f);
    w.write_all(&MAGIC_V2).map_err(io_error(tmp, 0, "write"))?;
    Ok(w)
}

/// Flushes and fsyncs a temp file; it is then whole on disk, but not yet the journal.
pub(crate) fn finish_temp(w: io::BufWriter<File>, tmp: &Path) -> Result<File, JournalError> {
    let f = w
        .into_inner()
        .map_err(|e| io_error(tmp, 0, "flush")(e.into_error()))?;
    f.sync_all().map_err(io_error(tmp, 0, "fsync"))?;
    Ok(f)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent at each step, so the state of a
    // poisoned lock (a panic elsewhere) is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- Tickets ----

struct Slot {
    result: Mutex<Option<Result<(), JournalError>>>,
    ready: Condvar,
}

impl Slot {
    fn set(&self, r: Result<(), JournalError>) {
        *lock(&self.result) = Some(r);
        self.ready.notify_all();
    }
}

/// Completes one ticket. Dropped without completing (the writer stopped or panicked), it fails
/// the ticket, so no waiter ever hangs.
pub(crate) struct Completer {
    slot: Option<Arc<Slot>>,
    path: Arc<Path>,
}

impl Completer {
    fn complete(mut self, r: Result<(), JournalError>) {
        if let Some(slot) = self.slot.take() {
            slot.set(r);
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.set(Err(JournalError::Closed {
                path: self.path.to_path_buf(),
            }));
        }
    }
}

/// A batch (or compaction) handed to the writer; `wait` blocks until it is durable or failed.
#[must_use = "a ticket says whether the batch became durable"]
pub struct Ticket {
    slot: Arc<Slot>,
}

impl Ticket {
    pub(crate) fn new(path: &Arc<Path>) -> (Ticket, Completer) {
        let slot = Arc::new(Slot {
            result: Mutex::new(None),
            ready: Condvar::new(),
        });
        let completer = Completer {
            slot: Some(Arc::clone(&slot)),
            path: Arc::clone(path),
        };
        (Ticket { slot }, completer)
    }

    /// A ticket that is already done (an empty batch).
    pub(crate) fn done(r: Result<(), JournalError>) -> Ticket {
        let slot = Arc::new(Slot {
            result: Mutex::new(Some(r)),
            ready: Condvar::new(),
        });
        Ticket { slot }
    }

    /// Blocks until the batch is fsynced (`Ok`) or its write failed (`Err`, the batch may not
    /// survive a restart).
    pub fn wait(self) -> Result<(), JournalError> {
        let mut result = lock(&self.slot.result);
        loop {
            if let Some(r) = result.take() {
                return r;
            }
            result = self
                .slot
                .ready
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether `wait` would return at once.
    pub fn is_done(&self) -> bool {
        lock(&self.slot.result).is_some()
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("done", &self.is_done())
            .finish()
    }
}

// ---- The queue shared by callers and the writer ----

pub(crate) enum Op {
    Append {
        frames: Vec<u8>,
        count: u64,
        done: Completer,
    },
    Compact {
        records: Vec<OwnedRecordRef>,
        done: Completer,
    },
    /// Points appends at another file (tests: `/dev/full`).
    #[cfg(test)]
    Redirect(File),
}

#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    closing: bool,
    /// The writer has exited: nothing queued will be done.
    stopped: bool,
    /// The compaction helper has finished: the writer installs its result.
    helper_done: bool,
    /// Tests: the writer takes nothing while held (to make a group deterministic).
    #[cfg(test)]
    held: bool,
}

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) path: Arc<Path>,
    queue: Mutex<Queue>,
    wake: Condvar,
    pub(crate) stats: JournalStats,
    pub(crate) needs_rewrite: AtomicBool,
    /// Compactions asked for and not finished (queued, running or superseded).
    pub(crate) compactions_pending: AtomicU64,
    /// Frames kept verbatim (unreadable by this build): not dead, never compacted away.
    pub(crate) preserved_records: AtomicU64,
    /// Damaged bytes replay skipped that are still in the file.
    pub(crate) damaged_bytes: AtomicU64,
    /// Set by `Journal::give_way_with`.
    pub(crate) pause: std::sync::OnceLock<super::PauseSource>,
    #[cfg(test)]
    pub(crate) compaction_gate: (Mutex<bool>, Condvar),
}

impl Shared {
    pub(crate) fn new(dir: &Path, path: &Path) -> Shared {
        Shared {
            dir: dir.to_owned(),
            path: Arc::from(path),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stats: JournalStats::default(),
            needs_rewrite: AtomicBool::new(false),
            compactions_pending: AtomicU64::new(0),
            preserved_records: AtomicU64::new(0),
            damaged_bytes: AtomicU64::new(0),
            pause: std::sync::OnceLock::new(),
            #[cfg(test)]
            compaction_gate: (Mutex::new(false), Condvar::new()),
        }
    }

    /// Queues `op`; gives it back if the writer has stopped.
    pub(crate) fn enqueue(&self, op: Op) -> Result<(), Op> {
        let mut q = lock(&self.queue);
        if q.stopped || q.closing {
            return Err(op);
        }
        q.ops.push(op);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn close(&self) {
        lock(&self.queue).closing = true;
        self.wake.notify_one();
    }

    fn next_work(&self) -> (Vec<Op>, bool, bool) {
        let mut q = lock(&self.queue);
        loop {
            #[cfg(test)]
            let held = q.held;
            #[cfg(not(test))]
            let held = false;
            if !held && (!q.ops.is_empty() || q.closing || q.helper_done) {
                break;
            }
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
        let helper_done = std::mem::take(&mut q.helper_done);
        (std::mem::take(&mut q.ops), q.closing, helper_done)
    }

    fn helper_finished(&self) {
        lock(&self.queue).helper_done = true;
        self.wake.notify_one();
    }

    /// Marks the writer stopped if nothing is queued; returns whether it did.
    fn stop_if_idle(&self) -> bool {
        let mut q = lock(&self.queue);
        if q.ops.is_empty() {
            q.stopped = true;
        }
        q.stopped
    }

    #[cfg(test)]
    pub(crate) fn hold(&self, held: bool) {
        lock(&self.queue).held = held;
        self.wake.notify_one();
    }

    #[cfg(test)]
    pub(crate) fn hold_compaction(&self, held: bool) {
        *lock(&self.compaction_gate.0) = held;
        self.compaction_gate.1.notify_all();
    }

    #[cfg(test)]
    fn pass_compaction_gate(&self) {
        let mut held = lock(&self.compaction_gate.0);
        while *held {
            held = self
                .compaction_gate
                .1
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

// ---- The writer ----

/// A snapshot the helper wrote and fsynced to the temp file.
struct Snapshot {
    file: File,
    bytes: u64,
    records: u64,
    preserved: Vec<(u64, u32)>,
}

/// Frames appended since a snapshot was taken, in order: they follow it in the new file.
#[derive(Default)]
struct Tail {
    frames: Vec<u8>,
    count: u64,
}

impl Tail {
    fn push(&mut self, frames: &[u8], count: u64) {
        self.frames.extend_from_slice(frames);
        self.count += count;
    }
}

struct Running {
    helper: JoinHandle<Result<Snapshot, JournalError>>,
    tail: Tail,
    done: Vec<Completer>,
}

/// A compaction asked for while another runs. It collects its own tail from the moment it is
/// asked for: appends committed before it starts are in neither snapshot.
struct Queued {
    records: Vec<OwnedRecordRef>,
    tail: Tail,
    done: Vec<Completer>,
}

/// What the writer starts from (after replay or upgrade).
pub(crate) struct FileState {
    pub(crate) file: File,
    /// The file's length: everything before it is intact (or skipped damage).
    pub(crate) end: u64,
    pub(crate) records: u64,
    /// Frames kept verbatim: (offset, frame length).
    pub(crate) preserved: Vec<(u64, u32)>,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    file: File,
    end: u64,
    records: u64,
    preserved: Vec<(u64, u32)>,
    running: Option<Running>,
    /// A later one supersedes it.
    queued: Option<Queued>,
    scratch: Vec<u8>,
}

impl Writer {
    pub(crate) fn spawn(shared: Arc<Shared>, state: FileState) -> io::Result<JoinHandle<()>> {
        shared.stats.file_bytes.store(state.end, Relaxed);
        shared.stats.records_in_file.store(state.records, Relaxed);
        shared
            .preserved_records
            .store(state.preserved.len() as u64, Relaxed);
        let writer = Writer {
            shared,
            file: state.file,
            end: state.end,
            records: state.records,
            preserved: state.preserved,
            running: None,
            queued: None,
            scratch: Vec::new(),
        };
        thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
    }

    fn run(mut self) {
        loop {
            let (ops, closing, helper_done) = self.shared.next_work();
            self.process(ops);
            if helper_done {
                self.finish_compaction();
            }
            if closing {
                // Graceful stop: what was asked for is finished first.
                while self.running.is_some() {
                    self.finish_compaction();
                }
                if self.shared.stop_if_idle() {
                    return;
                }
            }
        }
    }

    fn process(&mut self, ops: Vec<Op>) {
        let mut group = Vec::new();
        for op in ops {
            match op {
                Op::Append {
                    frames,
                    count,
                    done,
                } => group.push((frames, count, done)),
                Op::Compact { records, done } => {
                    // Appends queued before the compaction are committed before it starts.
                    self.commit(&mut group);
                    self.compact(records, done);
                }
                #[cfg(test)]
                Op::Redirect(file) => {
                    self.commit(&mut group);
                    self.file = file;
                }
            }
        }
        self.commit(&mut group);
    }

    /// Writes a group of batches and fsyncs once.
    fn commit(&mut self, group: &mut Vec<(Vec<u8>, u64, Completer)>) {
        if group.is_empty() {
            return;
        }
        let bytes: usize = group.iter().map(|g| g.0.len()).sum();
        let count: u64 = group.iter().map(|g| g.1).sum();
        let path = Arc::clone(&self.shared.path);
        let data: &[u8] = if let [(frames, _, _)] = group.as_slice() {
            frames
        } else {
            self.scratch.clear();
            for (frames, _, _) in group.iter() {
                self.scratch.extend_from_slice(frames);
            }
            &self.scratch
        };
        let result = self
            .file
            .write_all(data)
            .and_then(|()| self.file.sync_data())
            .map_err(io_error(&path, self.end, "append"));
        let stats = &self.shared.stats;
        stats.batches.fetch_add(group.len() as u64, Relaxed);
        stats.fsyncs.fetch_add(1, Relaxed);
        match &result {
            Ok(()) => {
                self.end += bytes as u64;
                self.records += count;
                stats.file_bytes.store(self.end, Relaxed);
                stats.records_in_file.store(self.records, Relaxed);
            }
            Err(e) => {
                stats.write_errors.fetch_add(1, Relaxed);
                self.shared.needs_rewrite.store(true, Relaxed);
                tracing::error!(error = %e, batches = group.len(), "journal append failed; the journal will be rewritten by the next compaction");
                // Drop a partial write so later appends follow intact frames (best effort:
                // replay would resync past it anyway).
                let _ = self.file.set_len(self.end);
                let _ = self.file.seek(SeekFrom::Start(self.end));
            }
        }
        // The compactions' files get these too, whether or not the old file took them.
        for (frames, count, _) in group.iter() {
            if let Some(run) = &mut self.running {
                run.tail.push(frames, *count);
            }
            if let Some(queued) = &mut self.queued {
                queued.tail.push(frames, *count);
            }
        }
        for (_, _, done) in group.drain(..) {
            done.complete(result.clone());
        }
        if self.scratch.capacity() > 8 << 20 {
            self.scratch = Vec::new();
        }
    }

    fn compact(&mut self, records: Vec<OwnedRecordRef>, done: Completer) {
        if self.running.is_some() {
            // Only the latest snapshot matters (it holds every append committed before it);
            // earlier waiters are done when it is.
            let mut waiting = self.queued.take().map(|q| q.done).unwrap_or_default();
            waiting.push(done);
            self.queued = Some(Queued {
                records,
                tail: Tail::default(),
                done: waiting,
            });
        } else {
            self.start_compaction(records, Tail::default(), vec![done]);
        }
    }

    fn start_compaction(&mut self, records: Vec<OwnedRecordRef>, tail: Tail, done: Vec<Completer>) {
        let shared = Arc::clone(&self.shared);
        let preserved = self.preserved.clone();
        let spawned = thread::Builder::new()
            .name("journal-compact".into())
            .spawn(move || {
                crate::priority::background();
                let snapshot = write_snapshot(&shared, &preserved, records);
                #[cfg(test)]
                shared.pass_compaction_gate();
                shared.helper_finished();
                snapshot
            });
        match spawned {
            Ok(helper) => {
                self.running = Some(Running { helper, tail, done });
            }
            Err(e) => {
                let e = io_error(&self.shared.dir, 0, "start compaction thread")(e);
                self.compaction_done(done, Err(e));
            }
        }
    }

    fn finish_compaction(&mut self) {
        let Some(run) = self.running.take() else {
            return;
        };
        let result = match run.helper.join() {
            Ok(snapshot) => snapshot,
            Err(_) => Err(JournalError::WriterPanicked {
                path: self.shared.path.to_path_buf(),
            }),
        };
        let result = result.and_then(|s| self.install(s, &run.tail));
        if result.is_err() {
            // The old journal is untouched and holds everything; drop the partial temp.
            let _ = fs::remove_file(tmp_path(&self.shared.path));
        }
        self.compaction_done(run.done, result);
        if let Some(q) = self.queued.take() {
            self.start_compaction(q.records, q.tail, q.done);
        }
    }

    /// Appends the tail to the snapshot and makes it the journal.
    fn install(&mut self, s: Snapshot, tail: &Tail) -> Result<(), JournalError> {
        let path = Arc::clone(&self.shared.path);
        let tmp = tmp_path(&path);
        let Snapshot {
            mut file,
            bytes,
            records,
            preserved,
        } = s;
        if !tail.frames.is_empty() {
            file.write_all(&tail.frames)
                .and_then(|()| file.sync_data())
                .map_err(io_error(&tmp, bytes, "append"))?;
        }
        fs::rename(&tmp, &path).map_err(io_error(&path, 0, "rename the compacted journal over"))?;
        // The new file is the journal now, durable or not: appends go to it.
        self.file = file;
        self.end = bytes + tail.frames.len() as u64;
        self.records = records + tail.count;
        self.preserved = preserved;
        let stats = &self.shared.stats;
        stats.file_bytes.store(self.end, Relaxed);
        stats.records_in_file.store(self.records, Relaxed);
        self.shared.damaged_bytes.store(0, Relaxed);
        self.shared
            .preserved_records
            .store(self.preserved.len() as u64, Relaxed);
        if let Err(e) = fsync_dir(&self.shared.dir) {
            // A crash could bring the old file back, without what is appended from now on.
            self.shared.needs_rewrite.store(true, Relaxed);
            return Err(e);
        }
        Ok(())
    }

    fn compaction_done(&mut self, done: Vec<Completer>, result: Result<(), JournalError>) {
        match &result {
            Ok(()) => {
                self.shared.needs_rewrite.store(false, Relaxed);
                self.shared.stats.compactions.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.shared.stats.write_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "journal compaction failed");
            }
        }
        // No longer pending before anyone hears of it: a caller woken by a failed compaction
        // must find `needs_rewrite` true again, or its next batch would be appended (and
        // acknowledged) to a journal that misses records.
        self.shared
            .compactions_pending
            .fetch_sub(done.len() as u64, Relaxed);
        for d in done {
            d.complete(result.clone());
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Normally the queue is empty here; after a panic, whatever is left fails its tickets
        // (dropped completers) instead of leaving callers waiting.
        let left = {
            let mut q = lock(&self.shared.queue);
            q.stopped = true;
            std::mem::take(&mut q.ops)
        };
        drop(left);
    }
}

/// Records a compaction writes between calls of its pause: a few MB, a few ms of work.
const PAUSE_EVERY: usize = 4096;

/// Runs on the helper thread: the kept frames, then the snapshot, fsynced, in the temp file.
fn write_snapshot(
    shared: &Shared,
    preserved: &[(u64, u32)],
    records: Vec<OwnedRecordRef>,
) -> Result<Snapshot, JournalError> {
    let tmp = tmp_path(&shared.path);
    let mut pause = shared.pause.get().map(|source| source());
    let result = (|| {
        let mut w = create_temp(&tmp)?;
        let mut offset = MAGIC_LEN;
        let mut kept = Vec::with_capacity(preserved.len());
        if !preserved.is_empty() {
            // Frames a later build wrote go first: this build's own records, written after
            // them, supersede them at replay.
            let src =
                super::files::open_read(&shared.path).map_err(io_error(&shared.path, 0, "open"))?;
            let mut buf = Vec::new();
            for &(at, len) in preserved {
                buf.resize(len as usize, 0);
                src.read_exact_at(&mut buf, at).map_err(io_error(
                    &shared.path,
                    at,
                    "read a kept record",
                ))?;
                w.write_all(&buf).map_err(io_error(&tmp, offset, "write"))?;
                kept.push((offset, len));
                offset += u64::from(len);
            }
        }
        let mut frame = Vec::with_capacity(1024);
        let mut count = 0u64;
        for (i, r) in records.iter().enumerate() {
            if i % PAUSE_EVERY == 0 {
                if let Some(pause) = &mut pause {
                    pause();
                }
            }
            frame.clear();
            let r = r.as_record_ref();
            match record::encode_frame(&mut frame, &r) {
                Ok(()) => {
                    w.write_all(&frame)
                        .map_err(io_error(&tmp, offset, "write"))?;
                    offset += frame.len() as u64;
                    count += 1;
                }
                Err(e) => {
                    // Unreplayable; append refused it too. The rest must not suffer for it.
                    shared.stats.refused_records.fetch_add(1, Relaxed);
                    tracing::error!(record = %r.describe(), error = %e, "record left out of the compacted journal");
                }
            }
        }
        let file = finish_temp(w, &tmp)?;
        Ok(Snapshot {
            file,
            bytes: offset,
            records: count + kept.len() as u64,
            preserved: kept,
        })
    })();
    // Freed here, off the writer thread: a million uids and objects take a while to drop.
    drop(records);
    result
}

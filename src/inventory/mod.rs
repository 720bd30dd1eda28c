//! The inventory: the one owner of object state. Sources feed it events; the exposition reads
//! pre-rendered snapshots of it; telemetry reads summaries of it.
//!
//! Objects are kept per kind in an `IndexMap` keyed by uid (dense, so a scrape walks a vector),
//! each with its series rendered when it changes. A deleted backup becomes a tombstone that
//! keeps only its info series (status="Deleted") until its backfill window ends; tombstones are
//! indexed by expiry time, so expiry touches only what expires. Tombstones and each schedule's
//! last success are journaled (see `journal`) and come back after a restart.
//!
//! Defined outcomes of the awkward cases (each tested below):
//! - delete of an unknown uid: ignored, counted as `unknown_uid`;
//! - delete of an already deleted backup: ignored (the first deletion time stands), counted as
//!   `already_deleted`;
//! - upsert of a deleted backup's uid: a re-creation replaces the tombstone, unless the upsert's
//!   `created_at` is not after the deletion time, in which case it is a stale event from before
//!   the deletion: ignored, counted as `stale_upsert`;
//! - `deleted_at` in the future (clock skew) is taken as "now"; a deletion older than the
//!   backfill window leaves no tombstone; no `deleted_at` means "now";
//! - a backfill window of 0 drops deleted backups at once.

pub mod journal;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indexmap::IndexMap;

use crate::clock::Clock;
use crate::exposition::render::{self, Rendered};
use crate::model::{Backup, BackupStatus, Event, Kind, Object, Origin, SourceId, Timestamp};
pub use journal::{Journal, JournalError, ScheduleKey};
use journal::{Record, RecordRef};

/// Why an event changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    UnknownUid,
    AlreadyDeleted,
    StaleUpsert,
}

impl IgnoreReason {
    pub const ALL: [IgnoreReason; 3] = [
        IgnoreReason::UnknownUid,
        IgnoreReason::AlreadyDeleted,
        IgnoreReason::StaleUpsert,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::UnknownUid => "unknown_uid",
            IgnoreReason::AlreadyDeleted => "already_deleted",
            IgnoreReason::StaleUpsert => "stale_upsert",
        }
    }
}

/// Counters the inventory keeps about itself; read by the self metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub applied: [AtomicU64; SourceId::COUNT],
    pub ignored: [AtomicU64; 3],
    pub tombstones_expired: AtomicU64,
    pub journal_errors: AtomicU64,
    pub journal_records_skipped: AtomicU64,
}

/// A batch was applied in memory, but its journal write failed (disk full, I/O error): it
/// would not survive a restart. The journal is rewritten whole by the next change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("applied, but not written to the journal: {0}")]
pub struct NotDurable(pub String);

/// Why applying a batch off the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    NotDurable(#[from] NotDurable),
    #[error("the apply task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub applied: usize,
    pub ignored: usize,
}

enum Entry {
    Backup {
        backup: Box<Backup>,
        last_terminal: Option<BackupStatus>,
    },
    Tombstone {
        backup: Box<Backup>,
        previous: BackupStatus,
        deleted_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Restores, schedules, clusters and backup locations: no retention, kept as they are.
    Other(Box<Object>),
}

struct Slot {
    origin: Origin,
    entry: Entry,
    rendered: Rendered,
}

struct LastSuccess {
    completed_at: Timestamp,
    rendered: Rendered,
}

/// Frames for the journal, gathered while a batch is applied and written once at its end.
#[derive(Default)]
struct Pending {
    frames: Vec<u8>,
    count: u64,
    encode_failed: bool,
}

impl Pending {
    fn record(&mut self, r: RecordRef<'_>) {
        match journal::encode(&mut self.frames, &r) {
            Ok(()) => self.count += 1,
            Err(e) => {
                tracing::error!(error = %e, "journal record could not be encoded");
                self.encode_failed = true;
            }
        }
    }
}

#[derive(Default)]
struct State {
    tables: [IndexMap<Box<str>, Slot>; 5],
    /// Tombstones by expiry time: expiry pops from the front.
    expiry: BTreeSet<(Timestamp, Box<str>)>,
    last_success: BTreeMap<ScheduleKey, LastSuccess>,
    journal: Option<Journal>,
}

/// What a restart found in the journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Tombstones brought back.
    pub tombstones: usize,
    /// Live backups brought back, exported as last seen until their source re-lists.
    pub live_backups: usize,
    /// Journaled tombstones whose window had passed (while down, or while running before
    /// the journal was compacted); not brought back.
    pub expired: usize,
    pub skipped_records: u64,
    pub skipped_bytes: u64,
}

/// Everything a scrape needs, taken under the lock and written out after it is released.
pub struct Snapshot {
    pub kinds: [Vec<Rendered>; 5],
    pub last_success: Vec<Rendered>,
    /// Bytes of all rendered series, to size the response up front.
    pub series_bytes: usize,
    pub live_objects: [usize; 5],
    pub tombstones: usize,
}

/// How many objects of each kind (by `Kind::index`) are live, and how many deleted backups are
/// retained as tombstones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub live_objects: [usize; 5],
    pub tombstones: usize,
}

/// Counts for telemetry's health upload and the cluster-UUID upload.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub objects: BTreeMap<&'static str, usize>,
    pub backups_by_status: BTreeMap<&'static str, usize>,
    pub tombstones_by_previous_status: BTreeMap<&'static str, usize>,
    pub cluster_uids: BTreeSet<String>,
}

pub struct Inventory {
    state: Mutex<State>,
    clock: Clock,
    backfill: Duration,
    stats: Stats,
    expiry_changed: tokio::sync::Notify,
}

impl Inventory {
    /// An inventory without a journal: tombstones do not survive a restart.
    pub fn in_memory(clock: Clock, backfill: Duration) -> Inventory {
        Inventory {
            state: Mutex::new(State::default()),
            clock,
            backfill,
            stats: Stats::default(),
            expiry_changed: tokio::sync::Notify::new(),
        }
    }

    /// Opens the journal in `state_dir` and restores the tombstones and last successes it
    /// holds, each with its original deletion time.
    pub fn open(
        clock: Clock,
        backfill: Duration,
        state_dir: &Path,
    ) -> Result<(Inventory, ReplayReport), JournalError> {
        let (journal, replay) = Journal::open(state_dir)?;
        let inv = Inventory::in_memory(clock, backfill);
        let now = inv.clock.now();
        let mut report = ReplayReport {
            skipped_records: replay.skipped_records,
            skipped_bytes: replay.skipped_bytes,
            ..ReplayReport::default()
        };
        inv.stats
            .journal_records_skipped
            .fetch_add(replay.skipped_records, Relaxed);
        {
            let mut st = inv.lock();
            let st = &mut *st;
            // Records are replayed in order straight into the table; series are rendered
            // afterwards, once per surviving backup, on every core.
            st.tables[Kind::Backup.index()].reserve(replay.records.len());
            for record in replay.records {
                match record {
                    Record::Tombstone {
                        source,
                        backup,
                        previous,
                        deleted_at,
                    } => {
                        let expires_at = deleted_at.saturating_add(inv.backfill);
                        let uid: Box<str> = backup.uid.as_str().into();
                        if expires_at <= now {
                            st.tables[Kind::Backup.index()].swap_remove(&uid);
                            report.expired += 1;
                            continue;
                        }
                        let entry = Entry::Tombstone {
                            backup: Box::new(Backup::from(*backup)),
                            previous,
                            deleted_at,
                            expires_at,
                        };
                        st.insert_unrendered(uid, source, entry);
                    }
                    Record::Backup {
                        source,
                        backup,
                        last_terminal,
                    } => {
                        let uid: Box<str> = backup.uid.as_str().into();
                        let entry = Entry::Backup {
                            backup: Box::new(Backup::from(*backup)),
                            last_terminal,
                        };
                        st.insert_unrendered(uid, source, entry);
                    }
                    Record::Forget { uid } => {
                        st.tables[Kind::Backup.index()].swap_remove(uid.as_str());
                    }
                    Record::LastSuccess { key, completed_at } => {
                        let rendered = render_last_success(&key, completed_at);
                        st.last_success.insert(
                            key,
                            LastSuccess {
                                completed_at,
                                rendered,
                            },
                        );
                    }
                    Record::ForgetLastSuccess { key } => {
                        st.last_success.remove(&key);
                    }
                }
            }
            let table = &mut st.tables[Kind::Backup.index()];
            if table.capacity() > table.len() + table.len() / 2 {
                // Superseded records made the reservation too large: give it back.
                table.shrink_to_fit();
            }
            render_backups_in_parallel(table);
            st.expiry = table
                .iter()
                .filter_map(|(uid, slot)| match slot.entry {
                    Entry::Tombstone { expires_at, .. } => Some((expires_at, uid.clone())),
                    _ => None,
                })
                .collect();
            report.tombstones = st.expiry.len();
            report.live_backups = table.len() - report.tombstones;
            // A bloated journal is compacted by the first change, not here: start-up serves first.
            st.journal = Some(journal);
        }
        Ok((inv, report))
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves state that is still structurally valid (every
        // mutation is a single map operation), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a batch of events from one origin atomically, with one journal write. `Err`
    /// means the batch is applied in memory but its journal write failed: it would not
    /// survive a restart, so a producer that can retry should (applying again is idempotent).
    pub fn apply(&self, origin: &Origin, events: Vec<Event>) -> Result<ApplyOutcome, NotDurable> {
        let now = self.clock.now();
        let mut st = self.lock();
        self.apply_locked(&mut st, origin, events, now)
    }

    /// `apply` on tokio's blocking pool, for async callers: the journal's fsync blocks, and a
    /// runtime worker must not. Fails only if `apply` panicked.
    pub async fn apply_off_runtime(
        self: &std::sync::Arc<Self>,
        origin: Origin,
        events: Vec<Event>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let inventory = std::sync::Arc::clone(self);
        Ok(tokio::task::spawn_blocking(move || inventory.apply(&origin, events)).await??)
    }

    /// After a (re-)list of `kind` from `origin`: every live object of that origin and kind
    /// that was not listed was deleted while we were not watching. Returns how many; `Err` as
    /// for `apply`.
    pub fn resync(
        &self,
        origin: &Origin,
        kind: Kind,
        listed: &HashSet<String>,
    ) -> Result<usize, NotDurable> {
        let now = self.clock.now();
        let mut st = self.lock();
        let gone: Vec<Event> = st.tables[kind.index()]
            .iter()
            .filter(|(uid, slot)| {
                slot.origin == *origin
                    && !matches!(slot.entry, Entry::Tombstone { .. })
                    && !listed.contains(&***uid)
            })
            .map(|(uid, _)| Event::Delete {
                kind,
                uid: uid.to_string(),
                deleted_at: None,
            })
            .collect();
        let n = gone.len();
        self.apply_locked(&mut st, origin, gone, now)?;
        Ok(n)
    }

    fn apply_locked(
        &self,
        st: &mut State,
        origin: &Origin,
        events: Vec<Event>,
        now: Timestamp,
    ) -> Result<ApplyOutcome, NotDurable> {
        let first_expiry = st.expiry.first().map(|(t, _)| *t);
        let mut pending = Pending::default();
        let mut outcome = ApplyOutcome::default();
        for event in events {
            match self.apply_one(st, origin, event, now, &mut pending) {
                Ok(()) => outcome.applied += 1,
                Err(reason) => {
                    outcome.ignored += 1;
                    self.stats.ignored[reason as usize].fetch_add(1, Relaxed);
                }
            }
        }
        self.stats.applied[origin.source as usize].fetch_add(outcome.applied as u64, Relaxed);
        let persisted = self.persist(st, pending);
        if st.expiry.first().map(|(t, _)| *t) != first_expiry {
            self.expiry_changed.notify_one();
        }
        persisted.map(|()| outcome)
    }

    fn apply_one(
        &self,
        st: &mut State,
        origin: &Origin,
        event: Event,
        now: Timestamp,
        pending: &mut Pending,
    ) -> Result<(), IgnoreReason> {
        match event {
            Event::Upsert(Object::Backup(b)) => st.upsert_backup(origin, b, pending),
            Event::Upsert(other) => {
                let rendered = match &other {
                    Object::Restore(r) => render::restore(r),
                    Object::Schedule(s) => render::schedule(s),
                    Object::Cluster(c) => render::cluster(c),
                    Object::BackupLocation(l) => render::backup_location(l),
                    Object::Backup(_) => unreachable!("backups are matched above"),
                };
                let kind = other.kind();
                let uid: Box<str> = other.uid().into();
                st.tables[kind.index()].insert(
                    uid,
                    Slot {
                        origin: origin.clone(),
                        entry: Entry::Other(Box::new(other)),
                        rendered,
                    },
                );
                Ok(())
            }
            Event::Delete {
                kind: Kind::Backup,
                uid,
                deleted_at,
            } => {
                // A deletion reported with a time ahead of ours is skew; it happened by now.
                let deleted_at = deleted_at.map_or(now, |t| t.min(now));
                self.delete_backup(st, &uid, deleted_at, now, pending)
            }
            Event::Delete { kind, uid, .. } => {
                let slot = st.tables[kind.index()]
                    .swap_remove(uid.as_str())
                    .ok_or(IgnoreReason::UnknownUid)?;
                if let Entry::Other(obj) = slot.entry {
                    if let Object::Schedule(s) = *obj {
                        st.forget_last_success(&s, pending);
                    }
                }
                Ok(())
            }
        }
    }

    fn delete_backup(
        &self,
        st: &mut State,
        uid: &str,
        deleted_at: Timestamp,
        now: Timestamp,
        pending: &mut Pending,
    ) -> Result<(), IgnoreReason> {
        let table = &mut st.tables[Kind::Backup.index()];
        match table.get(uid).map(|s| &s.entry) {
            None => return Err(IgnoreReason::UnknownUid),
            Some(Entry::Tombstone { .. }) => return Err(IgnoreReason::AlreadyDeleted),
            Some(_) => {}
        }
        let Some((uid, slot)) = table.swap_remove_entry(uid) else {
            return Err(IgnoreReason::UnknownUid);
        };
        let Entry::Backup {
            backup,
            last_terminal,
        } = slot.entry
        else {
            unreachable!("checked above: a live backup");
        };
        let previous = last_terminal.unwrap_or(backup.status);
        let expires_at = deleted_at.saturating_add(self.backfill);
        if expires_at <= now {
            // Outside the backfill window already (or a window of 0): nothing to keep.
            self.stats.tombstones_expired.fetch_add(1, Relaxed);
            pending.record(RecordRef::Forget { uid: &uid });
            return Ok(());
        }
        pending.record(RecordRef::Tombstone {
            source: slot.origin.source,
            backup: (&*backup).into(),
            previous,
            deleted_at,
        });
        st.insert_tombstone(uid, slot.origin, backup, previous, deleted_at, expires_at);
        Ok(())
    }

    fn persist(&self, st: &mut State, pending: Pending) -> Result<(), NotDurable> {
        let Some(journal) = st.journal.as_mut() else {
            return Ok(());
        };
        let result = if journal.needs_rewrite() || pending.encode_failed {
            self.compact(st)
        } else {
            journal.append_frames(&pending.frames, pending.count)
        };
        match result {
            Ok(()) => {
                self.maybe_compact(st);
                Ok(())
            }
            Err(e) => {
                self.stats.journal_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "journal write failed; tombstones are kept in memory and the journal will be rewritten on the next change");
                Err(NotDurable(e.to_string()))
            }
        }
    }

    /// Rewrites the journal as exactly the live state (at shutdown, so that the next start
    /// replays nothing superseded). Without a journal, does nothing.
    pub fn compact_journal(&self) -> Result<(), JournalError> {
        let mut st = self.lock();
        self.compact(&mut st)
    }

    fn compact(&self, st: &mut State) -> Result<(), JournalError> {
        let State {
            tables,
            last_success,
            journal,
            ..
        } = st;
        let Some(journal) = journal.as_mut() else {
            return Ok(());
        };
        let backups = tables[Kind::Backup.index()]
            .values()
            .filter_map(|slot| match &slot.entry {
                Entry::Tombstone {
                    backup,
                    previous,
                    deleted_at,
                    ..
                } => Some(RecordRef::Tombstone {
                    source: slot.origin.source,
                    backup: (&**backup).into(),
                    previous: *previous,
                    deleted_at: *deleted_at,
                }),
                Entry::Backup {
                    backup,
                    last_terminal,
                } => Some(RecordRef::Backup {
                    source: slot.origin.source,
                    backup: (&**backup).into(),
                    last_terminal: *last_terminal,
                }),
                Entry::Other(_) => None,
            });
        let successes = last_success.iter().map(|(key, ls)| RecordRef::LastSuccess {
            key,
            completed_at: ls.completed_at,
        });
        journal.compact(backups.chain(successes))
    }

    /// Rewrites the journal when most of it is dead records (superseded, expired, forgotten).
    fn maybe_compact(&self, st: &mut State) {
        let live = (st.tables[Kind::Backup.index()].len() + st.last_success.len()) as u64;
        let in_file = st.journal.as_ref().map_or(0, Journal::records_in_file);
        if in_file > 2 * live + 1024 {
            if let Err(e) = self.compact(st) {
                self.stats.journal_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "journal compaction failed");
            }
        }
    }

    /// Drops every tombstone whose backfill window has ended by `now`; returns how many.
    pub fn expire_due(&self, now: Timestamp) -> usize {
        let mut st = self.lock();
        self.expire_locked(&mut st, now)
    }

    fn expire_locked(&self, st: &mut State, now: Timestamp) -> usize {
        let mut n = 0;
        while let Some((expires_at, _)) = st.expiry.first() {
            if *expires_at > now {
                break;
            }
            if let Some((_, uid)) = st.expiry.pop_first() {
                st.tables[Kind::Backup.index()].swap_remove(&uid);
                n += 1;
            }
        }
        if n > 0 {
            self.stats.tombstones_expired.fetch_add(n as u64, Relaxed);
            self.maybe_compact(st);
            release_unused_capacity(st);
        }
        n
    }

    /// When the next tombstone expires, if any.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.lock().expiry.first().map(|(t, _)| *t)
    }

    /// Expires tombstones on time until `shutdown` resolves. Scrapes also expire what is due,
    /// so exposition is exact even if this task runs late.
    pub async fn run_expiry(&self, shutdown: impl std::future::Future<Output = ()>) {
        // Re-check at least this often: the wall clock can jump.
        const MAX_WAIT: Duration = Duration::from_secs(30);
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now();
            self.expire_due(now);
            let wait = self.next_expiry().map_or(MAX_WAIT, |t| {
                Duration::from_millis(u64::try_from(t.0 - now.0).unwrap_or(0)).min(MAX_WAIT)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.expiry_changed.notified() => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// Takes what a scrape needs, expiring what is due first.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let mut st = self.lock();
        self.expire_locked(&mut st, now);
        let mut series_bytes = 0;
        let mut live_objects = [0; 5];
        let kinds: [Vec<Rendered>; 5] = std::array::from_fn(|k| {
            let table = &st.tables[k];
            live_objects[k] = table.len();
            table
                .values()
                .map(|slot| {
                    series_bytes += slot.rendered.len();
                    slot.rendered.clone()
                })
                .collect()
        });
        let tombstones = st.expiry.len();
        live_objects[Kind::Backup.index()] -= tombstones;
        let last_success = st
            .last_success
            .values()
            .map(|ls| {
                series_bytes += ls.rendered.len();
                ls.rendered.clone()
            })
            .collect();
        Snapshot {
            kinds,
            last_success,
            series_bytes,
            live_objects,
            tombstones,
        }
    }

    pub fn summary(&self) -> Summary {
        let st = self.lock();
        let mut s = Summary::default();
        for kind in Kind::ALL {
            let table = &st.tables[kind.index()];
            let tombs = if kind == Kind::Backup {
                st.expiry.len()
            } else {
                0
            };
            s.objects.insert(kind.as_str(), table.len() - tombs);
            for slot in table.values() {
                match &slot.entry {
                    Entry::Backup { backup, .. } => {
                        *s.backups_by_status
                            .entry(backup.status.as_str())
                            .or_default() += 1;
                        s.cluster_uids.insert(backup.owner.cluster_uid.clone());
                    }
                    Entry::Tombstone { previous, .. } => {
                        *s.tombstones_by_previous_status
                            .entry(previous.as_str())
                            .or_default() += 1;
                    }
                    Entry::Other(obj) => match &**obj {
                        Object::Cluster(c) => {
                            s.cluster_uids.insert(c.uid.clone());
                        }
                        Object::Restore(r) => {
                            s.cluster_uids.insert(r.owner.cluster_uid.clone());
                        }
                        Object::Schedule(sc) => {
                            s.cluster_uids.insert(sc.owner.cluster_uid.clone());
                        }
                        Object::BackupLocation(_) | Object::Backup(_) => {}
                    },
                }
            }
        }
        s.cluster_uids.remove("");
        s
    }

    /// Objects and tombstones held now, without expiring anything: O(1), for the self
    /// metrics and telemetry's health bundle.
    pub fn counts(&self) -> Counts {
        let st = self.lock();
        let tombstones = st.expiry.len();
        let mut live_objects: [usize; 5] = std::array::from_fn(|k| st.tables[k].len());
        live_objects[Kind::Backup.index()] -= tombstones;
        Counts {
            live_objects,
            tombstones,
        }
    }

    pub fn tombstone_count(&self) -> usize {
        self.lock().expiry.len()
    }
}

/// Renders every backup and tombstone of a freshly replayed table, split across the cores.
fn render_backups_in_parallel(table: &mut IndexMap<Box<str>, Slot>) {
    let mut slots: Vec<&mut Slot> = table.values_mut().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = slots.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for part in slots.chunks_mut(chunk) {
            scope.spawn(move || {
                for slot in part {
                    slot.rendered = match &slot.entry {
                        Entry::Tombstone {
                            backup,
                            previous,
                            deleted_at,
                            ..
                        } => render::tombstone(backup, *previous, *deleted_at),
                        Entry::Backup {
                            backup,
                            last_terminal,
                        } => render::backup(backup, *last_terminal),
                        Entry::Other(_) => continue,
                    };
                }
            });
        }
    });
}

fn render_last_success(key: &ScheduleKey, completed_at: Timestamp) -> Rendered {
    render::schedule_last_success(
        &key.org_id,
        &key.cluster,
        &key.cluster_uid,
        &key.schedule_name,
        completed_at,
    )
}

/// Gives memory back once a burst of tombstones has expired, so that expiry leaves no lasting
/// cost: maps keep their capacity otherwise.
fn release_unused_capacity(st: &mut State) {
    for table in &mut st.tables {
        if table.capacity() > 64 && table.len() < table.capacity() / 4 {
            table.shrink_to_fit();
        }
    }
}

impl State {
    /// A replayed backup or tombstone; rendered once replay is done.
    fn insert_unrendered(&mut self, uid: Box<str>, source: SourceId, entry: Entry) {
        let slot = Slot {
            origin: Origin::source(source),
            entry,
            rendered: Rendered::default(),
        };
        self.tables[Kind::Backup.index()].insert(uid, slot);
    }

    fn upsert_backup(
        &mut self,
        origin: &Origin,
        b: Backup,
        pending: &mut Pending,
    ) -> Result<(), IgnoreReason> {
        let table = &mut self.tables[Kind::Backup.index()];
        let mut last_terminal = None;
        match table.get(b.uid.as_str()).map(|s| &s.entry) {
            Some(Entry::Tombstone {
                deleted_at,
                expires_at,
                ..
            }) => {
                if b.created_at.is_some_and(|c| c <= *deleted_at) {
                    return Err(IgnoreReason::StaleUpsert);
                }
                let key = (*expires_at, Box::<str>::from(b.uid.as_str()));
                self.expiry.remove(&key);
                pending.record(RecordRef::Forget { uid: &b.uid });
            }
            Some(Entry::Backup {
                backup,
                last_terminal: lt,
            }) => {
                // A re-list repeats what we have: nothing to render or journal.
                if **backup == b {
                    return Ok(());
                }
                last_terminal = *lt;
            }
            _ => {}
        }
        if b.status.is_terminal() {
            last_terminal = Some(b.status);
        }
        pending.record(RecordRef::Backup {
            source: origin.source,
            backup: (&b).into(),
            last_terminal,
        });
        if b.status == BackupStatus::Success && !b.schedule_name.is_empty() {
            if let Some(completed_at) = b.completed_at {
                self.note_success(&b, completed_at, pending);
            }
        }
        let rendered = render::backup(&b, last_terminal);
        let uid: Box<str> = b.uid.as_str().into();
        self.tables[Kind::Backup.index()].insert(
            uid,
            Slot {
                origin: origin.clone(),
                entry: Entry::Backup {
                    backup: Box::new(b),
                    last_terminal,
                },
                rendered,
            },
        );
        Ok(())
    }

    fn note_success(&mut self, b: &Backup, completed_at: Timestamp, pending: &mut Pending) {
        let key = ScheduleKey {
            org_id: b.owner.org_id.clone(),
            cluster: b.owner.cluster.clone(),
            cluster_uid: b.owner.cluster_uid.clone(),
            schedule_name: b.schedule_name.clone(),
        };
        if self
            .last_success
            .get(&key)
            .is_some_and(|ls| ls.completed_at >= completed_at)
        {
            return;
        }
        pending.record(RecordRef::LastSuccess {
            key: &key,
            completed_at,
        });
        let rendered = render_last_success(&key, completed_at);
        self.last_success.insert(
            key,
            LastSuccess {
                completed_at,
                rendered,
            },
        );
    }

    fn forget_last_success(&mut self, s: &crate::model::Schedule, pending: &mut Pending) {
        let key = ScheduleKey {
            org_id: s.owner.org_id.clone(),
            cluster: s.owner.cluster.clone(),
            cluster_uid: s.owner.cluster_uid.clone(),
            schedule_name: s.name.clone(),
        };
        if self.last_success.remove(&key).is_some() {
            pending.record(RecordRef::ForgetLastSuccess { key: &key });
        }
    }

    fn insert_tombstone(
        &mut self,
        uid: Box<str>,
        origin: Origin,
        backup: Box<Backup>,
        previous: BackupStatus,
        deleted_at: Timestamp,
        expires_at: Timestamp,
    ) {
        let rendered = render::tombstone(&backup, previous, deleted_at);
        self.expiry.insert((expires_at, uid.clone()));
        self.tables[Kind::Backup.index()].insert(
            uid,
            Slot {
                origin,
                entry: Entry::Tombstone {
                    backup,
                    previous,
                    deleted_at,
                    expires_at,
                },
                rendered,
            },
        );
    }
}

#[cfg(test)]
mod tests;

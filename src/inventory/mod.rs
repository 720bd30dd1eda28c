//! The inventory: the one owner of object state. Sources feed it events; the exposition reads
//! its rendered series; telemetry reads its counts.
//!
//! - `store`: objects by uid, their series rendered and compressed per group (`segment`);
//! - `retention`: the rules for deleted backups and the index of tombstones by expiry time;
//! - `entries`: what is kept per object, and the running counts;
//! - `crate::persistence`: the journal of backups, tombstones and last successes, written in
//!   the order of the changes (queued under the lock) and fsynced off it (group commit).
//!
//! Defined outcomes of the awkward cases (each tested in `tests`):
//! - delete of an unknown uid: ignored, counted as `unknown_uid`;
//! - delete of an already deleted backup: ignored (the first deletion time stands), counted as
//!   `already_deleted`;
//! - upsert of a deleted backup's uid: a re-creation replaces the tombstone only when its
//!   `created_at` is after the deletion time; otherwise (or without `created_at`) it is a
//!   stale event from before the deletion: ignored, counted as `stale_upsert`;
//! - `deleted_at` in the future (clock skew) is taken as "now"; a deletion older than the
//!   backfill window leaves no tombstone; no `deleted_at` means "now";
//! - a backfill window of 0 drops deleted backups at once.

pub mod entries;
pub mod give_way;
pub mod retention;
pub mod segment;
pub mod store;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Clock;
use crate::families::backup::{self as backup_families, BackupState};
use crate::families::objects::{self, LastSuccess};
use crate::families::{Family, KindFamilies};
use crate::model::{
    Backup, BackupLocation, BackupStatus, Cluster, Event, Kind, Object, Origin, Restore, Schedule,
    SourceId, Timestamp,
};
use crate::persistence::{self, Journal, OwnedRecordRef, Record, Ticket};
pub use crate::persistence::{JournalError, ScheduleKey};
use crate::priority::BackgroundThread;
pub use entries::Summary;
use entries::{encode_backup, BackupEntry, LastSuccessEntry, ObjectEntry, Tally};

pub use retention::BackfillWindow;
use retention::ExpiryIndex;
use segment::{Compressor, SharedGroup};
use store::{make_group, Freshness, GroupView, Render, Table};

/// Groups changed in place that one scrape renders itself, per kind, when no more changed:
/// 4 groups of backups are 256 backups, ~0.7 MB of text, about 6 ms of CPU: a fifth of a
/// scrape of 100,000 backups. More than that is a burst, left whole to the refresher.
pub const SCRAPE_RENDER_BUDGET: usize = 4;

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
    pub journal_records_skipped: AtomicU64,
    pub resource_series_dropped: AtomicU64,
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
    #[error(transparent)]
    Applier(#[from] crate::priority::Gone),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub applied: usize,
    pub ignored: usize,
}

/// How the inventory keeps what it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub backfill: BackfillWindow,
    /// At most this many resource series (VM resources, namespace resource types) per backup.
    pub max_resource_series_per_backup: usize,
}

impl Options {
    pub fn with_backfill(window: Duration) -> Self {
        Options {
            backfill: BackfillWindow {
                window,
                federated: false,
            },
            max_resource_series_per_backup: 500,
        }
    }
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
    /// Records lost to damage or a torn tail (a lower bound; see the persistence module).
    pub skipped_records: u64,
    pub skipped_bytes: u64,
    /// Records a later build wrote, kept in the journal unread.
    pub unreadable_records: u64,
    /// Damaged ranges of the journal as (offset, length).
    pub damaged_ranges: Vec<(u64, u64)>,
    pub truncated_tail_bytes: u64,
    /// The journal format the file was upgraded from, if it was.
    pub upgraded_from: Option<u32>,
    pub journal_bytes: u64,
    /// Backups whose encoding this build cannot read (a later build's): kept as they are.
    pub undecodable_backups: usize,
}

/// How many objects of each kind (by `Kind::index`) are live, and how many deleted backups are
/// retained as tombstones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub live_objects: [usize; 5],
    pub tombstones: usize,
}

/// The series of one kind as a scrape serves them: for each family in order, the segment of
/// that family in every part.
pub struct KindSnapshot {
    pub families: Vec<&'static Family>,
    pub parts: Vec<Part>,
}

/// Consecutive entries of a kind, in order: one group, or a run of groups packed.
#[derive(Clone)]
pub enum Part {
    Group(SharedGroup),
    Packed(Arc<segment::Pack>),
}

impl Part {
    /// The part's segment of the kind's family `f`.
    pub fn family(&self, f: usize) -> Option<&segment::Segment> {
        match self {
            Part::Group(g) => g.families.get(f),
            Part::Packed(p) => p.families.get(f),
        }
    }
}

/// Everything a scrape needs, in exposition order; only shared pointers to compressed
/// segments, so it costs next to nothing to hold.
pub struct Snapshot {
    pub kinds: Vec<KindSnapshot>,
}

/// Journal records gathered while a batch is applied, queued once at its end.
#[derive(Default)]
struct Pending {
    records: Vec<OwnedRecordRef>,
}

impl Pending {
    fn record(&mut self, r: OwnedRecordRef) {
        self.records.push(r);
    }
}

type Objects<T> = Table<Arc<str>, ObjectEntry<T>>;

struct State {
    backups: Table<Arc<str>, BackupEntry>,
    restores: Objects<Restore>,
    schedules: Objects<Schedule>,
    clusters: Objects<Cluster>,
    locations: Objects<BackupLocation>,
    last_success: Table<ScheduleKey, LastSuccessEntry>,
    expiry: ExpiryIndex,
    tally: Tally,
}

impl Default for State {
    fn default() -> Self {
        State {
            backups: Table::new(backup_families::FAMILIES.len()),
            restores: Table::new(objects::RESTORE.len()),
            schedules: Table::new(objects::SCHEDULE.len()),
            clusters: Table::new(objects::CLUSTER.len()),
            locations: Table::new(objects::BACKUP_LOCATION.len()),
            last_success: Table::new(objects::SCHEDULE_LAST_SUCCESS.len()),
            expiry: ExpiryIndex::default(),
            tally: Tally::default(),
        }
    }
}

impl State {
    /// Every journaled fact, to rewrite the journal as exactly the live state: only shared
    /// pointers are copied, so this is cheap enough to do under the lock.
    fn journal_snapshot(&self) -> Vec<OwnedRecordRef> {
        let mut out = Vec::with_capacity(self.backups.len() + self.last_success.len());
        out.extend(self.backups.iter().map(|(uid, e)| backup_record(uid, e)));
        out.extend(
            self.last_success
                .iter()
                .map(|(key, e)| OwnedRecordRef::LastSuccess {
                    key: key.clone(),
                    completed_at: e.0.completed_at,
                }),
        );
        out
    }

    fn live_objects(&self) -> [usize; 5] {
        let mut n = [0; 5];
        n[Kind::Backup.index()] = self.backups.len() - self.expiry.len();
        n[Kind::Restore.index()] = self.restores.len();
        n[Kind::Schedule.index()] = self.schedules.len();
        n[Kind::Cluster.index()] = self.clusters.len();
        n[Kind::BackupLocation.index()] = self.locations.len();
        n
    }
}

pub struct Inventory {
    state: Mutex<State>,
    /// Appended to under `state`'s lock (so records follow the order of the changes), waited
    /// on after it is released.
    journal: Option<Journal>,
    /// One scrape at a time renders stale groups; a second one waits and finds them fresh.
    refresh: Mutex<()>,
    clock: Clock,
    options: Options,
    stats: Stats,
    expiry_changed: tokio::sync::Notify,
    /// Something was applied: the refresher has groups to render.
    changed: tokio::sync::Notify,
    resource_cap_reported: std::sync::Once,
    /// Where `apply_off_runtime` applies batches.
    applier: BackgroundThread,
    /// Scrapes in flight: the applier and the background refresher give way to them.
    scrapes: give_way::Scrapes,
}

impl Inventory {
    /// An inventory without a journal: tombstones do not survive a restart.
    pub fn in_memory(clock: Clock, backfill: Duration) -> Inventory {
        Inventory::new(clock, Options::with_backfill(backfill))
    }

    pub fn new(clock: Clock, options: Options) -> Inventory {
        Inventory {
            state: Mutex::new(State::default()),
            journal: None,
            refresh: Mutex::new(()),
            clock,
            options,
            stats: Stats::default(),
            expiry_changed: tokio::sync::Notify::new(),
            changed: tokio::sync::Notify::new(),
            resource_cap_reported: std::sync::Once::new(),
            applier: BackgroundThread::start("apply"),
            scrapes: give_way::Scrapes::default(),
        }
    }

    /// Opens the journal in `state_dir` and restores the backups, tombstones and last
    /// successes it holds, each tombstone with its original deletion time. Replay streams
    /// records straight into the store; series are rendered by the first scrape.
    pub fn open(
        clock: Clock,
        options: Options,
        state_dir: &Path,
    ) -> Result<(Inventory, ReplayReport), JournalError> {
        let mut inv = Inventory::new(clock, options);
        let now = inv.clock.now();
        let mut report = ReplayReport::default();
        let mut st = State::default();
        let (journal, replay) = Journal::open(
            state_dir,
            Restoring {
                st: &mut st,
                options: &inv.options,
                now,
                report: &mut report,
            },
        )?;
        // Live backups that survived are decoded for their status and cluster; the tally and
        // the expiry index are built once, from what survived.
        // Every backup of a cluster shares one copy of its UID.
        let mut clusters: std::collections::HashMap<String, Arc<str>> = Default::default();
        for e in st.backups.values_mut_unrendered() {
            if e.is_tombstone() {
                continue;
            }
            match persistence::decode_backup(&e.object) {
                Ok(b) => {
                    e.status = b.status;
                    e.cluster_uid = Arc::clone(
                        clusters
                            .entry(b.owner.cluster_uid)
                            .or_insert_with_key(|k| Arc::from(k.as_str())),
                    );
                }
                Err(err) => {
                    report.undecodable_backups += 1;
                    tracing::warn!(error = %err, "a journaled backup cannot be decoded by this build; it is kept as it is");
                }
            }
        }
        let mut expiring = Vec::new();
        let mut tally = Tally::default();
        for (uid, e) in st.backups.iter() {
            tally.add_backup(e);
            if let BackupState::Deleted { deleted_at, .. } = e.state {
                expiring.push((inv.options.backfill.expires_at(deleted_at), Arc::clone(uid)));
            }
        }
        st.tally = tally;
        st.expiry = ExpiryIndex::from_unsorted(expiring);
        st.backups.release_unused_capacity();
        report.tombstones = st.expiry.len();
        report.live_backups = st.backups.len() - report.tombstones;
        report.skipped_records = replay.skipped_records;
        report.skipped_bytes = replay.skipped_bytes;
        report.unreadable_records = replay.unreadable_records;
        report.damaged_ranges = replay.damaged_ranges;
        report.truncated_tail_bytes = replay.truncated_tail_bytes;
        report.upgraded_from = replay.upgraded_from;
        report.journal_bytes = replay.file_bytes;
        inv.stats
            .journal_records_skipped
            .fetch_add(replay.skipped_records, Relaxed);
        // A bloated journal is compacted by the first change, not here: start-up serves first.
        inv.state = Mutex::new(st);
        let scrapes = inv.scrapes.clone();
        journal.give_way_with(move || {
            let way = scrapes.give_way(give_way::REFRESH_WAIT);
            Box::new(move || way.wait())
        });
        inv.journal = Some(journal);
        Ok((inv, report))
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn options(&self) -> &Options {
        &self.options
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
        let (outcome, ticket) = self.apply_queued(origin, events);
        // Waiting for the fsync happens off the lock: scrapes and other sources go on.
        self.wait_durable(ticket)?;
        Ok(outcome)
    }

    /// Applies a batch and queues its journal records; the ticket says when they are durable.
    fn apply_queued(&self, origin: &Origin, events: Vec<Event>) -> (ApplyOutcome, Option<Ticket>) {
        let now = self.clock.now();
        let mut st = self.lock();
        self.apply_locked(&mut st, origin, events, now)
    }

    fn wait_durable(&self, ticket: Option<Ticket>) -> Result<(), NotDurable> {
        let Some(ticket) = ticket else {
            return Ok(());
        };
        ticket.wait().map_err(|e| {
            tracing::error!(error = %e, "journal write failed; the change is kept in memory and the journal will be rewritten whole by the next change");
            NotDurable(e.to_string())
        })
    }

    /// `apply` on tokio's blocking pool, for async callers: the journal's fsync blocks, and a
    /// runtime worker must not.
    pub async fn apply_off_runtime(
        self: &Arc<Self>,
        origin: Origin,
        events: Vec<Event>,
    ) -> Result<ApplyOutcome, ApplyError> {
        // Applying runs at background priority (`crate::priority`) and waits for a scrape in
        // flight (`give_way`): under a burst of changes scrapes keep the cores, and the
        // producers wait a little longer.
        let inventory = Arc::clone(self);
        let (outcome, ticket) = self
            .applier
            .run(move || {
                inventory.scrapes.give_way(give_way::APPLY_WAIT).wait();
                inventory.apply_queued(&origin, events)
            })
            .await?;
        // The wait costs no CPU; on a blocking thread of its own, concurrent batches share
        // one fsync (group commit) instead of waiting in line behind each other's.
        if ticket.is_some() {
            let inventory = Arc::clone(self);
            tokio::task::spawn_blocking(move || inventory.wait_durable(ticket)).await??;
        }
        Ok(outcome)
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
        fn missing<'a, E: Render>(
            table: &'a Table<Arc<str>, E>,
            listed: &'a HashSet<String>,
            mine: impl Fn(&E) -> bool + 'a,
        ) -> impl Iterator<Item = String> + 'a {
            table
                .iter()
                .filter(move |(uid, e)| mine(e) && !listed.contains(&***uid))
                .map(|(uid, _)| uid.to_string())
        }
        let gone: Vec<String> = match kind {
            Kind::Backup => missing(&st.backups, listed, |e| {
                e.origin == *origin && !e.is_tombstone()
            })
            .collect(),
            Kind::Restore => missing(&st.restores, listed, |e| e.origin == *origin).collect(),
            Kind::Schedule => missing(&st.schedules, listed, |e| e.origin == *origin).collect(),
            Kind::Cluster => missing(&st.clusters, listed, |e| e.origin == *origin).collect(),
            Kind::BackupLocation => {
                missing(&st.locations, listed, |e| e.origin == *origin).collect()
            }
        };
        let n = gone.len();
        let events = gone
            .into_iter()
            .map(|uid| Event::Delete {
                kind,
                uid,
                deleted_at: None,
            })
            .collect();
        let (_, ticket) = self.apply_locked(&mut st, origin, events, now);
        drop(st);
        self.wait_durable(ticket)?;
        Ok(n)
    }

    fn apply_locked(
        &self,
        st: &mut State,
        origin: &Origin,
        events: Vec<Event>,
        now: Timestamp,
    ) -> (ApplyOutcome, Option<Ticket>) {
        let first_expiry = st.expiry.next();
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
        let ticket = self.persist(st, pending);
        if st.expiry.next() != first_expiry {
            self.expiry_changed.notify_one();
        }
        if outcome.applied > 0 {
            self.changed.notify_one();
        }
        (outcome, ticket)
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
            Event::Upsert(Object::Backup(b)) => self.upsert_backup(st, origin, b, pending),
            Event::Upsert(Object::Restore(r)) => upsert_object(
                &mut st.restores,
                &mut st.tally,
                origin,
                r,
                &objects::RESTORE,
                |r| (&r.uid, &r.owner.cluster_uid),
            ),
            Event::Upsert(Object::Schedule(s)) => upsert_object(
                &mut st.schedules,
                &mut st.tally,
                origin,
                s,
                &objects::SCHEDULE,
                |s| (&s.uid, &s.owner.cluster_uid),
            ),
            Event::Upsert(Object::Cluster(c)) => upsert_object(
                &mut st.clusters,
                &mut st.tally,
                origin,
                c,
                &objects::CLUSTER,
                |c| (&c.uid, &c.uid),
            ),
            Event::Upsert(Object::BackupLocation(l)) => upsert_object(
                &mut st.locations,
                &mut st.tally,
                origin,
                l,
                &objects::BACKUP_LOCATION,
                |l| (&l.uid, ""),
            ),
            Event::Delete {
                kind: Kind::Backup,
                uid,
                deleted_at,
            } => {
                let deleted_at = retention::effective_deletion(deleted_at, now);
                self.delete_backup(st, &uid, deleted_at, now, pending)
            }
            Event::Delete { kind, uid, .. } => {
                let tally = &mut st.tally;
                match kind {
                    Kind::Restore => {
                        let (_, e) = st
                            .restores
                            .remove(uid.as_str())
                            .ok_or(IgnoreReason::UnknownUid)?;
                        tally.remove_cluster(&e.object.owner.cluster_uid);
                    }
                    Kind::Schedule => {
                        let (_, e) = st
                            .schedules
                            .remove(uid.as_str())
                            .ok_or(IgnoreReason::UnknownUid)?;
                        tally.remove_cluster(&e.object.owner.cluster_uid);
                        let key = ScheduleKey {
                            org_id: e.object.owner.org_id.clone(),
                            cluster: e.object.owner.cluster.clone(),
                            cluster_uid: e.object.owner.cluster_uid.clone(),
                            schedule_name: e.object.name.clone(),
                        };
                        if st.last_success.remove(&key).is_some() {
                            pending.record(OwnedRecordRef::ForgetLastSuccess { key });
                        }
                    }
                    Kind::Cluster => {
                        let (_, e) = st
                            .clusters
                            .remove(uid.as_str())
                            .ok_or(IgnoreReason::UnknownUid)?;
                        tally.remove_cluster(&e.object.uid);
                    }
                    Kind::BackupLocation => {
                        st.locations
                            .remove(uid.as_str())
                            .ok_or(IgnoreReason::UnknownUid)?;
                    }
                    Kind::Backup => unreachable!("backups are matched above"),
                }
                Ok(())
            }
        }
    }

    fn upsert_backup(
        &self,
        st: &mut State,
        origin: &Origin,
        mut b: Backup,
        pending: &mut Pending,
    ) -> Result<(), IgnoreReason> {
        let cut = backup_families::cap_resource_series(
            &mut b,
            self.options.max_resource_series_per_backup,
        );
        let object = encode_backup(&b);
        let mut previous = None;
        if let Some(e) = st.backups.get(b.uid.as_str()) {
            match e.state {
                BackupState::Deleted { deleted_at, .. } => {
                    if !retention::is_recreation(b.created_at, deleted_at) {
                        return Err(IgnoreReason::StaleUpsert);
                    }
                    let uid: Arc<str> = b.uid.as_str().into();
                    st.expiry
                        .remove(self.options.backfill.expires_at(deleted_at), &uid);
                    pending.record(OwnedRecordRef::Forget { uid });
                }
                BackupState::Live { previous: p } => {
                    // A re-list or an unchanged poll repeats what we have: nothing to render
                    // or journal.
                    if e.object == object && e.origin == *origin {
                        return Ok(());
                    }
                    previous = p;
                }
            }
        }
        if cut > 0 {
            self.stats
                .resource_series_dropped
                .fetch_add(cut as u64, Relaxed);
            self.resource_cap_reported.call_once(|| {
                tracing::warn!(
                    uid = %b.uid,
                    name = %b.name,
                    cut,
                    max = self.options.max_resource_series_per_backup,
                    "a backup has more resource series than --max-resource-series-per-backup; the rest are left out (counted in pxbackup_sidecar_resource_series_dropped_total; said once)"
                );
            });
        }
        let previous = retention::next_previous(previous, b.status);
        let uid: Arc<str> = b.uid.as_str().into();
        pending.record(OwnedRecordRef::Backup {
            uid: Arc::clone(&uid),
            origin: origin.clone(),
            previous,
            object: Arc::clone(&object),
        });
        if b.status == BackupStatus::Success && !b.schedule_name.is_empty() {
            if let Some(completed_at) = b.completed_at {
                note_success(st, &b, completed_at, pending);
            }
        }
        let entry = BackupEntry {
            origin: origin.clone(),
            state: BackupState::Live { previous },
            status: b.status,
            cluster_uid: st.tally.intern_cluster(&b.owner.cluster_uid),
            object,
        };
        st.tally.add_backup(&entry);
        if let Some(old) = st.backups.insert(uid, entry) {
            st.tally.remove_backup(&old);
        }
        Ok(())
    }

    fn delete_backup(
        &self,
        st: &mut State,
        uid: &str,
        deleted_at: Timestamp,
        now: Timestamp,
        pending: &mut Pending,
    ) -> Result<(), IgnoreReason> {
        let (previous, status) = match st.backups.get(uid) {
            None => return Err(IgnoreReason::UnknownUid),
            Some(e) => match e.state {
                BackupState::Deleted { .. } => return Err(IgnoreReason::AlreadyDeleted),
                BackupState::Live { previous } => (previous, e.status),
            },
        };
        let previous = retention::tombstone_previous(previous, status);
        let expires_at = self.options.backfill.expires_at(deleted_at);
        if expires_at <= now {
            // Outside the backfill window already (or a window of 0): nothing to keep.
            if let Some((_, old)) = st.backups.remove(uid) {
                st.tally.remove_backup(&old);
            }
            self.stats.tombstones_expired.fetch_add(1, Relaxed);
            pending.record(OwnedRecordRef::Forget { uid: uid.into() });
            return Ok(());
        }
        let State {
            backups,
            tally,
            expiry,
            ..
        } = st;
        let uid: Arc<str> = uid.into();
        let recorded = backups.update(&uid, |e| {
            tally.remove_backup(e);
            e.state = BackupState::Deleted {
                previous,
                deleted_at,
            };
            tally.add_backup(e);
            backup_record(&uid, e)
        });
        if let Some(record) = recorded {
            pending.record(record);
            expiry.insert(expires_at, uid);
        }
        Ok(())
    }

    /// Queues the batch's records (under the lock, so the journal follows the order of the
    /// changes); the caller waits for the ticket after releasing the lock. An unchanged batch
    /// writes nothing, unless the journal must be rewritten.
    fn persist(&self, st: &State, pending: Pending) -> Option<Ticket> {
        let journal = self.journal.as_ref()?;
        if journal.needs_rewrite() {
            // An earlier write failed, so the file may miss records: rewrite it whole, this
            // batch included. Even an unchanged batch does: a producer retrying a refused
            // batch changes nothing, and its retry must still make the state durable.
            return Some(journal.compact(st.journal_snapshot()));
        }
        if pending.records.is_empty() {
            return None;
        }
        let refs: Vec<_> = pending
            .records
            .iter()
            .map(OwnedRecordRef::as_record_ref)
            .collect();
        match journal.append(&refs) {
            Ok(ticket) => {
                self.maybe_compact(st);
                Some(ticket)
            }
            Err(e) => {
                // Refused before anything was written (a record over the size limit): the
                // rest is made durable by a rewrite, which leaves that record out.
                tracing::error!(error = %e, "a journal record was refused");
                Some(journal.compact(st.journal_snapshot()))
            }
        }
    }

    /// Rewrites the journal as exactly the live state (at shutdown, so that the next start
    /// replays nothing superseded). Without a journal, does nothing.
    pub fn compact_journal(&self) -> Result<(), JournalError> {
        let Some(journal) = self.journal.as_ref() else {
            return Ok(());
        };
        let snapshot = self.lock().journal_snapshot();
        journal.compact(snapshot).wait()
    }

    /// Starts a rewrite of the journal when most of it is dead records (superseded, expired,
    /// forgotten). It runs on the journal's own thread; nothing waits for it.
    fn maybe_compact(&self, st: &State) {
        let Some(journal) = self.journal.as_ref() else {
            return;
        };
        let live = (st.backups.len() + st.last_success.len()) as u64;
        if journal.wants_compaction(live) {
            drop(journal.compact(st.journal_snapshot()));
        }
    }

    /// Failed journal writes (appends and compactions) and records refused for their size.
    pub fn journal_errors(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| {
            let stats = j.stats();
            stats.write_errors.load(Relaxed) + stats.refused_records.load(Relaxed)
        })
    }

    /// Drops every tombstone whose backfill window has ended by `now`; returns how many.
    pub fn expire_due(&self, now: Timestamp) -> usize {
        let mut st = self.lock();
        self.expire_locked(&mut st, now)
    }

    fn expire_locked(&self, st: &mut State, now: Timestamp) -> usize {
        let mut n = 0;
        while let Some(uid) = st.expiry.pop_due(now) {
            if let Some((_, e)) = st.backups.remove(&uid) {
                st.tally.remove_backup(&e);
            }
            n += 1;
        }
        if n > 0 {
            self.stats.tombstones_expired.fetch_add(n as u64, Relaxed);
            self.maybe_compact(st);
            st.backups.release_unused_capacity();
        }
        n
    }

    /// When the next tombstone expires, if any.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.lock().expiry.next()
    }

    /// Expires tombstones on time until `shutdown` resolves. Scrapes also expire what is due,
    /// so exposition is exact even if this task runs late.
    pub async fn run_expiry(&self, shutdown: impl std::future::Future<Output = ()>) {
        // Re-check at least this often: the wall clock can jump.
        const MAX_WAIT: Duration = Duration::from_secs(30);
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now();
            let next = {
                let mut st = self.lock();
                self.expire_locked(&mut st, now);
                st.expiry.next()
            };
            let wait = next.map_or(MAX_WAIT, |t| {
                Duration::from_millis(u64::try_from(t.0 - now.0).unwrap_or(0)).min(MAX_WAIT)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.expiry_changed.notified() => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// Keeps the compressed series up to date between scrapes: shortly after changes, renders
    /// the stale groups on a blocking thread, so that a scrape usually finds every group ready
    /// and only copies (a scrape still renders whatever is stale when it comes). Runs until
    /// `shutdown` resolves.
    pub async fn run_refresher(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        // A burst of changes (a page of a poll, a batch) settles before it is rendered, and a
        // group that changes all the time is rendered at most once a second, as a scrape
        // every second would.
        const SETTLE: Duration = Duration::from_millis(100);
        const MIN_GAP: Duration = Duration::from_secs(1);
        tokio::pin!(shutdown);
        // Its own thread at background priority: it renders while the cores are idle and
        // gives way to scrapes, which render what they need on normal threads.
        let renderer = BackgroundThread::start("series-refresh");
        loop {
            tokio::select! {
                () = self.changed.notified() => {}
                () = &mut shutdown => return,
            }
            tokio::select! {
                () = tokio::time::sleep(SETTLE) => {}
                () = &mut shutdown => return,
            }
            let inventory = Arc::clone(&self);
            if let Err(e) = renderer
                .run(move || {
                    drop(inventory.snapshot_in_background());
                    inventory.pack_in_background();
                })
                .await
            {
                tracing::error!(error = %e, "rendering changed series failed; the next scrape renders them");
            }
            tokio::select! {
                () = tokio::time::sleep(MIN_GAP.saturating_sub(SETTLE)) => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// Everything as it is now: expires what is due, renders and compresses every group that
    /// changed (on every core, off the lock), and returns shared pointers to every group's
    /// segments. Blocking: call it off the async workers.
    pub fn snapshot(&self) -> Snapshot {
        let _one_at_a_time = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        self.snapshot_with(Freshness::Exact, None).0
    }

    /// `snapshot` for the background refresher: between groups it waits while a scrape is in
    /// flight (see `give_way`).
    fn snapshot_in_background(&self) -> Snapshot {
        let _one_at_a_time = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let way = self.scrapes.give_way(give_way::REFRESH_WAIT);
        self.snapshot_with(Freshness::Exact, Some(&way)).0
    }

    /// Packs every run of groups whose pack a change dropped (see `segment::Pack`), off the
    /// lock, between runs waiting while a scrape is in flight. A run that changes meanwhile
    /// is left for the next pass.
    fn pack_in_background(&self) {
        let way = self.scrapes.give_way(give_way::REFRESH_WAIT);
        self.pack_table(|st| &mut st.backups, &way);
        self.pack_table(|st| &mut st.restores, &way);
        self.pack_table(|st| &mut st.schedules, &way);
        self.pack_table(|st| &mut st.last_success, &way);
        self.pack_table(|st| &mut st.clusters, &way);
        self.pack_table(|st| &mut st.locations, &way);
    }

    fn pack_table<K: std::hash::Hash + Eq, E: Render>(
        &self,
        table: impl Fn(&mut State) -> &mut Table<K, E>,
        way: &give_way::GiveWay,
    ) {
        let (unpacked, families) = {
            let mut st = self.lock();
            let t = table(&mut st);
            (t.unpacked(), t.families())
        };
        for run in unpacked {
            way.wait();
            let (pack, groups) = segment::pack(&run.groups, families);
            table(&mut self.lock()).install_pack(&run, pack, groups);
        }
    }

    /// Counts a scrape as in flight until the guard drops: hold it until the response body
    /// is sent.
    pub fn scrape_started(&self) -> give_way::ScrapeInFlight {
        self.scrapes.start()
    }

    pub fn scrapes_in_flight(&self) -> usize {
        self.scrapes.in_flight()
    }

    /// What a scrape serves: `snapshot`, but a scrape renders groups changed in place only
    /// when a kind has at most `SCRAPE_RENDER_BUDGET` of them (and none while the background
    /// refresher is rendering); otherwise they are served as rendered last, and the refresher,
    /// already woken by the change, renders them within about a second. So a burst of changes
    /// (a mass deletion, a re-list that changes everything) never makes a scrape slow, and a
    /// handful of changes still shows in the very next scrape. New and moved groups have
    /// nothing to serve in their place: they are always rendered.
    pub fn snapshot_for_scrape(&self) -> Snapshot {
        let (snapshot, made) = match self.refresh.try_lock() {
            Ok(_one_at_a_time) => self.snapshot_with(Freshness::Budget(SCRAPE_RENDER_BUDGET), None),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let _one_at_a_time = p.into_inner();
                self.snapshot_with(Freshness::Budget(SCRAPE_RENDER_BUDGET), None)
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                self.snapshot_with(Freshness::Budget(0), None)
            }
        };
        // What this scrape made is not packed yet (after a restart, nothing is): the refresher
        // packs it.
        if made > 0 {
            self.changed.notify_one();
        }
        snapshot
    }

    /// The snapshot, and how many groups it made.
    fn snapshot_with(
        &self,
        freshness: Freshness,
        give_way: Option<&give_way::GiveWay>,
    ) -> (Snapshot, usize) {
        let now = self.clock.now();
        let views = {
            let mut st = self.lock();
            self.expire_locked(&mut st, now);
            Views {
                backups: st.backups.view(freshness),
                restores: st.restores.view(freshness),
                schedules: st.schedules.view(freshness),
                last_success: st.last_success.view(freshness),
                clusters: st.clusters.view(freshness),
                locations: st.locations.view(freshness),
            }
        };
        let backups = refresh(views.backups, &backup_families::FAMILIES, give_way);
        let restores = refresh(views.restores, &objects::RESTORE, give_way);
        let schedules = refresh(views.schedules, &objects::SCHEDULE, give_way);
        let last_success = refresh(
            views.last_success,
            &objects::SCHEDULE_LAST_SUCCESS,
            give_way,
        );
        let clusters = refresh(views.clusters, &objects::CLUSTER, give_way);
        let locations = refresh(views.locations, &objects::BACKUP_LOCATION, give_way);
        {
            let mut st = self.lock();
            backups.install(&mut st.backups);
            restores.install(&mut st.restores);
            schedules.install(&mut st.schedules);
            last_success.install(&mut st.last_success);
            clusters.install(&mut st.clusters);
            locations.install(&mut st.locations);
        }
        let made = [
            &backups,
            &restores,
            &schedules,
            &last_success,
            &clusters,
            &locations,
        ]
        .iter()
        .map(|r| r.made.len())
        .sum();
        let snapshot = Snapshot {
            kinds: vec![
                backups.snapshot(&backup_families::FAMILIES),
                restores.snapshot(&objects::RESTORE),
                schedules.snapshot(&objects::SCHEDULE),
                last_success.snapshot(&objects::SCHEDULE_LAST_SUCCESS),
                clusters.snapshot(&objects::CLUSTER),
                locations.snapshot(&objects::BACKUP_LOCATION),
            ],
        };
        (snapshot, made)
    }

    /// The scopes (organizations, namespaces) under which live backups of `source` are held:
    /// after a restart, those the journal brought back. A walk over every backup: for a
    /// source's first complete poll, not for every poll.
    pub fn backup_scopes(&self, source: SourceId) -> HashSet<Arc<str>> {
        let st = self.lock();
        st.backups
            .values()
            .filter(|e| e.origin.source == source && !e.is_tombstone())
            .map(|e| Arc::clone(&e.origin.scope))
            .collect()
    }

    /// Objects and tombstones held now, without expiring anything: O(1), for the self
    /// metrics and telemetry's health bundle.
    pub fn counts(&self) -> Counts {
        let st = self.lock();
        Counts {
            live_objects: st.live_objects(),
            tombstones: st.expiry.len(),
        }
    }

    /// Counts by kind and status and the cluster UIDs in use, kept as objects change: reading
    /// it never expires, renders or writes anything.
    pub fn summary(&self) -> Summary {
        let st = self.lock();
        st.tally.summary(&st.live_objects())
    }

    pub fn tombstone_count(&self) -> usize {
        self.lock().expiry.len()
    }

    /// Compressed series bytes held (for the benchmark's sizing table).
    pub fn deflate_bytes(&self) -> usize {
        let st = self.lock();
        st.backups.deflate_bytes()
            + st.restores.deflate_bytes()
            + st.schedules.deflate_bytes()
            + st.last_success.deflate_bytes()
            + st.clusters.deflate_bytes()
            + st.locations.deflate_bytes()
    }
}

/// Upserts a restore, schedule, cluster or location; an unchanged one changes nothing.
fn upsert_object<T: Send + Sync + PartialEq>(
    table: &mut Objects<T>,
    tally: &mut Tally,
    origin: &Origin,
    object: T,
    families: &'static KindFamilies<T>,
    identity: fn(&T) -> (&str, &str),
) -> Result<(), IgnoreReason> {
    let (uid, cluster_uid) = identity(&object);
    if let Some(e) = table.get(uid) {
        if *e.object == object && e.origin == *origin {
            return Ok(());
        }
    }
    let (uid, cluster_uid): (Arc<str>, Arc<str>) = (uid.into(), tally.intern_cluster(cluster_uid));
    tally.add_cluster(&cluster_uid);
    if let Some(old) = table.insert(uid, ObjectEntry::new(origin.clone(), object, families)) {
        tally.remove_cluster(identity(&old.object).1);
    }
    Ok(())
}

fn last_success_entry(key: &ScheduleKey, completed_at: Timestamp) -> LastSuccessEntry {
    LastSuccessEntry(Arc::new(LastSuccess {
        org_id: key.org_id.clone(),
        cluster: key.cluster.clone(),
        cluster_uid: key.cluster_uid.clone(),
        schedule_name: key.schedule_name.clone(),
        completed_at,
    }))
}

fn note_success(st: &mut State, b: &Backup, completed_at: Timestamp, pending: &mut Pending) {
    let key = ScheduleKey {
        org_id: b.owner.org_id.clone(),
        cluster: b.owner.cluster.clone(),
        cluster_uid: b.owner.cluster_uid.clone(),
        schedule_name: b.schedule_name.clone(),
    };
    if st
        .last_success
        .get(&key)
        .is_some_and(|e| e.0.completed_at >= completed_at)
    {
        return;
    }
    pending.record(OwnedRecordRef::LastSuccess {
        key: key.clone(),
        completed_at,
    });
    let entry = last_success_entry(&key, completed_at);
    st.last_success.insert(key, entry);
}

/// The journal record of a backup or tombstone as the store holds it.
fn backup_record(uid: &Arc<str>, e: &BackupEntry) -> OwnedRecordRef {
    match e.state {
        BackupState::Live { previous } => OwnedRecordRef::Backup {
            uid: Arc::clone(uid),
            origin: e.origin.clone(),
            previous,
            object: Arc::clone(&e.object),
        },
        BackupState::Deleted {
            previous,
            deleted_at,
        } => OwnedRecordRef::Tombstone {
            uid: Arc::clone(uid),
            origin: e.origin.clone(),
            previous,
            deleted_at,
            object: Arc::clone(&e.object),
        },
    }
}

/// The store being restored from the journal.
struct Restoring<'a> {
    st: &'a mut State,
    options: &'a Options,
    now: Timestamp,
    report: &'a mut ReplayReport,
}

impl persistence::ReplaySink for Restoring<'_> {
    fn expect(&mut self, records: u64) {
        // Nearly all of a journal's records are backups and tombstones.
        let more = usize::try_from(records).unwrap_or(usize::MAX);
        self.st
            .backups
            .reserve(more.saturating_sub(self.st.backups.len()));
    }
    fn record(&mut self, record: Record) {
        replay_record(self.st, self.options, self.now, record, self.report);
    }
}

/// Applies one replayed journal record to the store.
fn replay_record(
    st: &mut State,
    options: &Options,
    now: Timestamp,
    record: Record,
    report: &mut ReplayReport,
) {
    match record {
        Record::Backup {
            uid,
            origin,
            previous,
            object,
        } => {
            // Its status and cluster (for the counts) are read once replay is done, from the
            // backups still live then: after a kill -9 most live records are superseded by a
            // tombstone or a later record, and decoding them would double a restart.
            let entry = BackupEntry {
                origin,
                state: BackupState::Live { previous },
                status: BackupStatus::Invalid,
                cluster_uid: Arc::from(""),
                object,
            };
            st.backups
                .upsert(uid.as_str(), |k: &str| Arc::from(k), entry);
        }
        Record::Tombstone {
            uid,
            origin,
            previous,
            deleted_at,
            object,
        } => {
            if options.backfill.expires_at(deleted_at) <= now {
                st.backups.remove(uid.as_str());
                report.expired += 1;
                return;
            }
            let entry = BackupEntry {
                origin,
                state: BackupState::Deleted {
                    previous,
                    deleted_at,
                },
                status: previous,
                cluster_uid: Arc::from(""),
                object,
            };
            st.backups
                .upsert(uid.as_str(), |k: &str| Arc::from(k), entry);
        }
        Record::Forget { uid } => {
            st.backups.remove(uid.as_str());
        }
        Record::LastSuccess { key, completed_at } => {
            let entry = last_success_entry(&key, completed_at);
            st.last_success.insert(key, entry);
        }
        Record::ForgetLastSuccess { key } => {
            st.last_success.remove(&key);
        }
    }
}

/// What one scrape took from the tables.
struct Views {
    backups: Vec<GroupView<BackupEntry>>,
    restores: Vec<GroupView<ObjectEntry<Restore>>>,
    schedules: Vec<GroupView<ObjectEntry<Schedule>>>,
    last_success: Vec<GroupView<LastSuccessEntry>>,
    clusters: Vec<GroupView<ObjectEntry<Cluster>>>,
    locations: Vec<GroupView<ObjectEntry<BackupLocation>>>,
}

/// A table's parts after a refresh, and the groups made fresh (to keep for the next scrape):
/// group index, generation, position among the parts.
struct Refreshed {
    parts: Vec<Part>,
    made: Vec<(usize, u64, usize)>,
}

impl Refreshed {
    fn install<K: std::hash::Hash + Eq, E: Render>(&self, table: &mut Table<K, E>) {
        for (index, generation, at) in &self.made {
            if let Some(Part::Group(g)) = self.parts.get(*at) {
                table.install(*index, *generation, g);
            }
        }
    }
    fn snapshot<T: ?Sized>(self, families: &'static KindFamilies<T>) -> KindSnapshot {
        KindSnapshot {
            families: families.families().collect(),
            parts: self.parts,
        }
    }
}

/// Renders and compresses the stale groups of one table, split across the cores.
fn refresh<E: Render, T: ?Sized>(
    views: Vec<GroupView<E>>,
    families: &'static KindFamilies<T>,
    give_way: Option<&give_way::GiveWay>,
) -> Refreshed {
    let n_families = families.len();
    let mut parts: Vec<Option<Part>> = Vec::with_capacity(views.len());
    let mut stale = Vec::new();
    for view in views {
        match view {
            GroupView::Packed(p) => parts.push(Some(Part::Packed(p))),
            GroupView::Ready(g) => parts.push(Some(Part::Group(g))),
            GroupView::Stale(s) => {
                stale.push((parts.len(), s));
                parts.push(None);
            }
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(stale.len().div_ceil(4))
        .max(1);
    let chunk = stale.len().div_ceil(threads).max(1);
    let work = |part: &[(usize, store::StaleGroup<E>)]| -> Vec<(usize, SharedGroup)> {
        let mut compressor = Compressor::default();
        let (mut texts, mut identity) = (Vec::new(), Vec::new());
        part.iter()
            .map(|(at, s)| {
                if let Some(way) = give_way {
                    way.wait();
                }
                let g = make_group(
                    &s.entries,
                    n_families,
                    &mut compressor,
                    &mut texts,
                    &mut identity,
                );
                (*at, g)
            })
            .collect()
    };
    let results: Vec<(usize, SharedGroup)> = if threads == 1 {
        work(&stale)
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = stale
                .chunks(chunk)
                .map(|part| scope.spawn(move || work(part)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let stale_at: std::collections::HashMap<usize, (usize, u64)> = stale
        .iter()
        .map(|(at, s)| (*at, (s.index, s.generation)))
        .collect();
    let mut made = Vec::with_capacity(results.len());
    for (at, g) in results {
        if let (Some(slot), Some((index, generation))) = (parts.get_mut(at), stale_at.get(&at)) {
            *slot = Some(Part::Group(g));
            made.push((*index, *generation, at));
        }
    }
    Refreshed {
        // A group a worker could not make (it panicked on a bug) is served empty this time
        // and stays stale, so the next scrape tries again.
        parts: parts
            .into_iter()
            .map(|p| p.unwrap_or_else(|| Part::Group(SharedGroup::default())))
            .collect(),
        made,
    }
}

#[cfg(test)]
mod tests;

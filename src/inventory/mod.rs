//! The inventory: the one owner of object state. Sources feed it events; the exposition reads
//! its rendered series; telemetry reads its counts.
//!
//! One owner per job:
//! - `store`: objects by uid, their series rendered and compressed per group (`segment`);
//! - `entries`: what is kept per object, and the running counts;
//! - `apply`: the rules of each change, applied under the lock;
//! - `retention`: the rules for deleted backups and the index of tombstones by expiry time;
//!   `expiry` drops tombstones when their window ends;
//! - `journaling`: what is journaled and when; `crate::persistence` writes it, in the order
//!   of the changes (queued under the lock) and fsynced off it (group commit);
//! - `restore`: the store brought back from the journal at start; `series_cache`: the
//!   backups' compressed series kept beside it, so a restart need not render them all again;
//! - `snapshot`: what a scrape serves: for gzip the compressed series, rendered when they
//!   changed, packed in the background; for plain text the entries as they are, written as the
//!   body is sent; `give_way`: the background work waits while a scrape is in flight.
//!
//! The outcomes of the awkward cases (a delete of an unknown uid, a re-creation) are `apply`'s.

mod apply;
pub mod entries;
mod expiry;
pub mod give_way;
mod journaling;
mod restore;
pub mod retention;
pub mod segment;
pub mod series_cache;
mod snapshot;
pub mod store;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Clock;
use crate::families::backup as backup_families;
use crate::families::objects;
use crate::model::{BackupLocation, Cluster, Kind, Restore, Schedule, SourceId};
use crate::persistence::Journal;
pub use crate::persistence::{JournalError, ScheduleKey};
use crate::priority::BackgroundThread;
pub use entries::Summary;
use entries::{BackupEntry, LastSuccessEntry, ObjectEntry, SharedIdentities, Tally};
pub use restore::ReplayReport;
pub use retention::BackfillWindow;
use retention::ExpiryIndex;
pub use snapshot::{KindSnapshot, KindText, Part, Snapshot, TextSnapshot, SCRAPE_RENDER_BUDGET};
use store::Table;

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

/// How many objects of each kind (by `Kind::index`) are live, and how many deleted backups are
/// retained as tombstones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub live_objects: [usize; 5],
    pub tombstones: usize,
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
    shared_identities: SharedIdentities,
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
            shared_identities: SharedIdentities::default(),
        }
    }
}

impl State {
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
    /// The backups' series kept across restarts, with a state directory.
    series_cache: Option<series_cache::SeriesCache>,
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
            series_cache: None,
        }
    }

    /// The seed of the groups' fingerprints (see `series_cache`); without a cache they are
    /// never compared, and any seed does.
    fn fingerprint_seed(&self) -> u64 {
        self.series_cache.as_ref().map_or(0, |c| c.seed())
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

    /// The uids of the live backups of `source` held now: after a restart, those the journal
    /// brought back, so that a source can key each object the way it was keyed before. A walk
    /// over every backup, as `backup_scopes`: for a source's start, not for every change.
    pub fn live_backup_uids(&self, source: SourceId) -> HashSet<Arc<str>> {
        let st = self.lock();
        st.backups
            .iter()
            .filter(|(_, e)| e.origin.source == source && !e.is_tombstone())
            .map(|(uid, _)| Arc::clone(uid))
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

#[cfg(test)]
mod tests;

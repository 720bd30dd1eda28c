//! Restoring the inventory from the journal at start: records streamed straight into the
//! store, then the counts and the expiry index built once from what survived. Series are
//! rendered by the first scrape, not here.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use super::entries::{self, BackupEntry, LastSuccessEntry, Tally};
use super::retention::ExpiryIndex;
use super::{give_way, Inventory, Options, State};
use crate::clock::Clock;
use crate::families::backup::{self as backup_families, BackupState};
use crate::model::{BackupStatus, Timestamp};
use crate::persistence::{self, Journal, JournalError, Record};

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

impl Inventory {
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
        // What survived is read once, in place: how it is written (see `entries::text_of`),
        // and for live backups their status and cluster (for the counts). After a kill -9
        // most records are superseded by a tombstone or a later record, and reading them all
        // as they were replayed would double a restart.
        // Every backup of a cluster shares one copy of its UID.
        let mut clusters: std::collections::HashSet<Arc<str>> = Default::default();
        let State {
            backups,
            shared_identities,
            ..
        } = &mut st;
        for e in backups.values_mut_unrendered() {
            let view = match persistence::BackupView::parse_checked(&e.object) {
                Ok(view) => view,
                Err(err) => {
                    report.undecodable_backups += 1;
                    tracing::warn!(error = %err, "a journaled backup cannot be decoded by this build; it is kept as it is and renders no series");
                    continue;
                }
            };
            e.text = Some(entries::text_of_view(&view, shared_identities));
            if !e.is_tombstone() {
                e.status = view.summary.status;
                // Checked UTF-8 by `parse_checked`.
                let cluster_uid = std::str::from_utf8(view.head.cluster_uid).unwrap_or_default();
                e.cluster_uid = match clusters.get(cluster_uid) {
                    Some(c) => Arc::clone(c),
                    None => {
                        let c: Arc<str> = Arc::from(cluster_uid);
                        clusters.insert(Arc::clone(&c));
                        c
                    }
                };
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
        inv.series_cache = Some(super::series_cache::SeriesCache::open(
            state_dir,
            backup_families::FAMILIES.len(),
        ));
        Ok((inv, report))
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
                text: None,
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
                text: None,
                object,
            };
            st.backups
                .upsert(uid.as_str(), |k: &str| Arc::from(k), entry);
        }
        Record::Forget { uid } => {
            st.backups.remove(uid.as_str());
        }
        Record::LastSuccess { key, completed_at } => {
            let entry = LastSuccessEntry::new(&key, completed_at);
            st.last_success.insert(key, entry);
        }
        Record::ForgetLastSuccess { key } => {
            st.last_success.remove(&key);
        }
    }
}

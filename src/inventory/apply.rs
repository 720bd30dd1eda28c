//! Applying events: the rules of each kind of change (upserts, deletions, re-creations, a
//! re-list's missing objects), under the lock, with the batch's journal records gathered in
//! the order of the changes.
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

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::entries::{encode_backup, text_of, BackupEntry, LastSuccessEntry, ObjectEntry, Tally};
use super::journaling::backup_record;
use super::store::{Render, Table};
use super::{
    retention, ApplyError, ApplyOutcome, IgnoreReason, Inventory, NotDurable, Objects, State,
};
use crate::families::backup::{self as backup_families, BackupState};
use crate::families::objects;
use crate::families::{KindFamilies, Owned};
use crate::model::{Backup, BackupStatus, Event, Kind, Object, Origin, Owner, SourceId, Timestamp};
use crate::persistence::{OwnedRecordRef, ScheduleKey, Ticket};

/// Journal records gathered while a batch is applied, queued once at its end.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) records: Vec<OwnedRecordRef>,
}

impl Pending {
    fn record(&mut self, r: OwnedRecordRef) {
        self.records.push(r);
    }
}

impl Inventory {
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
                inventory.give_way_to_scrapes();
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
        self.resync_where(origin, |o| o == origin, kind, listed)
    }

    /// `resync` over every origin of `source` (a list that covers the whole source, whose
    /// objects are applied under several origins).
    pub fn resync_source(
        &self,
        source: SourceId,
        kind: Kind,
        listed: &HashSet<String>,
    ) -> Result<usize, NotDurable> {
        self.resync_where(
            &Origin::source(source),
            |o| o.source == source,
            kind,
            listed,
        )
    }

    fn resync_where(
        &self,
        origin: &Origin,
        of: impl Fn(&Origin) -> bool,
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
            Kind::Backup => {
                missing(&st.backups, listed, |e| of(&e.origin) && !e.is_tombstone()).collect()
            }
            Kind::Restore => missing(&st.restores, listed, |e| of(&e.origin)).collect(),
            Kind::Schedule => missing(&st.schedules, listed, |e| of(&e.origin)).collect(),
            Kind::Cluster => missing(&st.clusters, listed, |e| of(&e.origin)).collect(),
            Kind::BackupLocation => missing(&st.locations, listed, |e| of(&e.origin)).collect(),
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
                        let key = schedule_key(&e.object.owner, &e.object.name, &e.origin);
                        forget_legacy_key(st, &key, pending);
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
                note_success(st, origin, &b, completed_at, pending);
            }
        }
        let entry = BackupEntry {
            origin: origin.clone(),
            state: BackupState::Live { previous },
            status: b.status,
            cluster_uid: st.tally.intern_cluster(&b.owner.cluster_uid),
            text: text_of(&object, &mut st.shared_identities),
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
}

/// Upserts a restore, schedule, cluster or location; an unchanged one changes nothing.
fn upsert_object<T: Send + Sync + PartialEq>(
    table: &mut Objects<T>,
    tally: &mut Tally,
    origin: &Origin,
    object: T,
    families: &'static KindFamilies<Owned<T>>,
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

/// The last-success key of the schedule `name` of `owner`, in the namespace of `origin`.
fn schedule_key(owner: &Owner, name: &str, origin: &Origin) -> ScheduleKey {
    ScheduleKey {
        org_id: owner.org_id.clone(),
        cluster: owner.cluster.clone(),
        cluster_uid: owner.cluster_uid.clone(),
        schedule_name: name.to_owned(),
        schedule_namespace: origin.namespace().to_owned(),
    }
}

/// A journal of a build whose keys had no namespace holds the schedule under an empty one:
/// that entry is the same schedule's (as far as it can tell), so it goes when the schedule's
/// namespaced key is first written or forgotten, and its time is carried over. Otherwise it
/// would stay for ever, a stale series the "no recent success" alert would fire on.
fn forget_legacy_key(
    st: &mut State,
    key: &ScheduleKey,
    pending: &mut Pending,
) -> Option<Timestamp> {
    if key.schedule_namespace.is_empty() {
        return None;
    }
    let legacy = ScheduleKey {
        schedule_namespace: String::new(),
        ..key.clone()
    };
    let (legacy, entry) = st.last_success.remove(&legacy)?;
    pending.record(OwnedRecordRef::ForgetLastSuccess { key: legacy });
    Some(entry.0.completed_at)
}

fn note_success(
    st: &mut State,
    origin: &Origin,
    b: &Backup,
    completed_at: Timestamp,
    pending: &mut Pending,
) {
    let key = schedule_key(&b.owner, &b.schedule_name, origin);
    let completed_at = match forget_legacy_key(st, &key, pending) {
        Some(legacy) => legacy.max(completed_at),
        None => completed_at,
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
    let entry = LastSuccessEntry::new(&key, completed_at);
    st.last_success.insert(key, entry);
}

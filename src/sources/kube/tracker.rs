//! Bookkeeping of the kube source's watchers: what each one has listed, which objects are
//! live, whether every watcher has synced, whether any is failing; and the schedule policies,
//! which give schedules their interval.
//!
//! Lost deletes: kube-runtime's watcher does not report objects deleted while it was
//! disconnected; it lists again instead. After a list (`InitDone`), every live object of that
//! watcher's origin (its namespace, or the whole source for an all-namespaces watcher, whose
//! objects are applied under their own namespace's origin) that the list no longer holds was
//! deleted meanwhile, and `Inventory::resync` (`resync_source`) makes it a tombstone. Two rules keep that from deleting what exists:
//! - a watcher's resync covers only its own origin: a list of one namespace says nothing
//!   about another;
//! - after a start, no watcher of a kind resyncs before every watcher of that kind has
//!   finished a first list (the journal brought back objects that a watcher still listing
//!   would vouch for); the deferred resyncs run when the last of them finishes.
//!
//! Schedule policies are held here only (they are not exported). A schedule's interval is that
//! of the policy it names: a `NamespacedSchedulePolicy` of that name in the schedule's
//! namespace, else the cluster-wide `SchedulePolicy` (Stork's order). When a policy changes,
//! appears or goes, every schedule that resolves through it is applied again.
//!
//! Identity: each backup and restore CR is given its key (the inventory uid) when first seen,
//! and keeps it for its life (`Tracker::role`); after a restart, the journal's backups say how
//! a CR was keyed before. ApplicationBackups made by PX-Backup for a restore are not exported.
//! Restores name their backup as that backup is exported: the tracker keeps each backup CR's
//! exported name by namespace and name, and applies a restore again when the backup it names
//! appears or is renamed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::inventory::Inventory;
use crate::model::{
    Backup, Cluster, ClusterStatus, Event, Kind, Object, Origin, Restore, Schedule, SourceId,
    Timestamp,
};
use crate::sources::SourceStatus;

use super::mapping::{ClusterIdentity, CrId, Item, PolicyKey, Watched, DEFAULT_ORG_ID};

/// InitApply objects are applied in batches of this size (one journal write each) rather than
/// all at the end of a list, so that a huge list does not sit twice in memory.
const LIST_BATCH: usize = 256;

/// What a watcher saw, as the tracker needs it.
#[derive(Debug)]
pub enum Signal {
    /// A (re-)list starts.
    Relist,
    /// An object of the list. `item` is `None` when the object is malformed: it exists (so
    /// it is not deleted) but there is nothing to apply.
    Listed { id: CrId, item: Option<Item> },
    /// The list is complete.
    ListDone,
    /// An object was added or modified while watching.
    Changed { id: CrId, item: Option<Item> },
    /// An object was deleted while watching, at `deleted_at` (its `deletionTimestamp`) when
    /// known.
    Gone {
        id: CrId,
        deleted_at: Option<Timestamp>,
    },
    /// The watcher failed (list, watch, or an ERROR event) and will list again after a backoff.
    Failed,
}

/// A watcher as the tracker knows it: what it feeds, and the origin of what it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherSpec {
    pub watched: Watched,
    pub origin: Origin,
}

#[derive(Debug)]
struct WatcherState {
    spec: WatcherSpec,
    /// The CRs (by `metadata.uid`) that exist, as far as this watcher knows.
    live: HashSet<String>,
    /// CR uids seen since `Relist`, while a list is in progress.
    listing: Option<HashSet<String>>,
    synced_once: bool,
    failing: bool,
}

/// What a backup or restore CR is exported as, decided when it is first seen and kept for its
/// life.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    /// Exported under this key (its inventory uid).
    Exported(String),
    /// An ApplicationBackup made for a restore: only its name is kept (restores of it name
    /// their backup so); never exported, so its removal is no deletion.
    RestoreCopy,
}

/// The keys of one kind's CRs. Only what is not the CR's own uid is kept: a CR a watcher
/// knows (`WatcherState::live`) without an entry here is keyed by its `metadata.uid`.
#[derive(Debug, Default)]
struct Keys {
    role_of: HashMap<String, Role>,
    /// Which CR holds each PX-Backup uid taken as a key: a second CR that carries it too is
    /// keyed by its own uid.
    holder: HashMap<String, String>,
}

/// A live schedule and what its interval was resolved from.
#[derive(Debug)]
struct ScheduleEntry {
    /// As mapped: without its interval.
    schedule: Schedule,
    namespace: String,
    policy_name: String,
    origin: Origin,
    /// The interval it was last applied with.
    applied_interval: Option<u64>,
}

/// An ApplicationBackup CR by namespace and name: how a restore names its backup.
type CrName = (String, String);

/// A live restore and the backup it names.
#[derive(Debug)]
struct RestoreEntry {
    /// As it is (or is to be) applied: `backup` resolved when it could be.
    restore: Restore,
    /// `spec.backupName` in the restore's namespace.
    backup_cr: CrName,
    /// `restore.backup` is the backup's exported name (else still `spec.backupName`).
    resolved: bool,
    origin: Origin,
    /// Not applied yet: seen before every backup watcher had listed, and its backup not
    /// found yet (applied once the backups are listed, so its `backup` label need not change).
    held: bool,
}

pub struct Tracker {
    inventory: Arc<Inventory>,
    sources: Arc<SourceStatus>,
    cluster: ClusterIdentity,
    watchers: Vec<WatcherState>,
    /// Events of lists in progress, not applied yet, and the origin they are applied with.
    pending: Option<(Origin, Vec<Event>)>,
    /// Kinds whose watchers have all finished a first list since start: resyncs may run.
    resync_allowed: HashSet<Kind>,
    /// Longest gap between runs by policy (`None`: the policy never runs).
    policies: HashMap<PolicyKey, Option<u64>>,
    /// The key of each policy object, by uid (a deletion brings its uid).
    policy_keys: HashMap<String, PolicyKey>,
    schedules: HashMap<String, ScheduleEntry>,
    /// Backup and restore keys, by kind.
    keys: HashMap<Kind, Keys>,
    /// After a start, until every backup watcher has listed: the live backups the journal
    /// brought back, so that a CR is keyed as it was before the restart.
    journaled: Option<HashSet<Arc<str>>>,
    /// The ApplicationBackup CRs exported under another name than their own (PX-Backup's):
    /// their namespace and name by CR uid, and that name (restore copies: would be).
    backup_crs: HashMap<String, CrName>,
    backup_names: HashMap<CrName, String>,
    /// Live restores by CR uid, and which of them name each backup CR.
    restores: HashMap<String, RestoreEntry>,
    restores_by_backup: HashMap<CrName, HashSet<String>>,
    /// One origin per namespace, for what the all-namespaces watchers apply.
    namespaces: HashMap<String, Origin>,
    /// What the Cluster object last said, to upsert it only on a change.
    cluster_status: Option<ClusterStatus>,
    synced_reported: bool,
}

impl Tracker {
    /// `watchers[i]` describes the watcher whose signals come as number `i`.
    pub async fn new(
        inventory: Arc<Inventory>,
        sources: Arc<SourceStatus>,
        cluster: ClusterIdentity,
        watchers: &[WatcherSpec],
    ) -> Self {
        let journaled = {
            let inventory = Arc::clone(&inventory);
            tokio::task::spawn_blocking(move || inventory.live_backup_uids(SourceId::Kube))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "the journal's backups could not be read back");
                    HashSet::new()
                })
        };
        let mut t = Tracker {
            inventory,
            sources,
            cluster,
            watchers: watchers
                .iter()
                .map(|spec| WatcherState {
                    spec: spec.clone(),
                    live: HashSet::new(),
                    listing: None,
                    synced_once: false,
                    failing: false,
                })
                .collect(),
            pending: None,
            resync_allowed: HashSet::new(),
            policies: HashMap::new(),
            policy_keys: HashMap::new(),
            schedules: HashMap::new(),
            keys: HashMap::new(),
            journaled: Some(journaled),
            backup_crs: HashMap::new(),
            backup_names: HashMap::new(),
            restores: HashMap::new(),
            restores_by_backup: HashMap::new(),
            namespaces: HashMap::new(),
            cluster_status: None,
            synced_reported: false,
        };
        // The kube-system namespace was just read: the API answers.
        t.set_cluster_status(ClusterStatus::Online).await;
        t
    }

    pub async fn handle(&mut self, watcher: usize, signal: Signal) {
        if watcher >= self.watchers.len() {
            tracing::error!(watcher, "signal from an unknown watcher");
            return;
        }
        match signal {
            Signal::Relist => {
                self.flush().await;
                self.watchers[watcher].listing = Some(HashSet::new());
            }
            Signal::Listed { id, item } => {
                let w = &mut self.watchers[watcher];
                let known = w.live.contains(&id.uid);
                let first = w
                    .listing
                    .get_or_insert_with(HashSet::new)
                    .insert(id.uid.clone());
                self.seen(watcher, id, item, known || !first).await;
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|(_, e)| e.len() >= LIST_BATCH)
                {
                    self.flush().await;
                }
            }
            Signal::ListDone => {
                self.flush().await;
                let w = &mut self.watchers[watcher];
                let listed = w.listing.take().unwrap_or_default();
                let before = std::mem::replace(&mut w.live, listed);
                w.synced_once = true;
                w.failing = false;
                let gone: Vec<String> = before
                    .difference(&self.watchers[watcher].live)
                    .cloned()
                    .collect();
                for uid in gone {
                    // The inventory's side is the resync's (below), or the policies'.
                    self.forget(watcher, &uid).await;
                }
                if let Watched::Objects(kind) = self.watchers[watcher].spec.watched {
                    self.listed_objects(watcher, kind).await;
                }
                self.update_health().await;
            }
            Signal::Changed { id, item } => {
                let w = &mut self.watchers[watcher];
                let known = !w.live.insert(id.uid.clone());
                let recovered = std::mem::replace(&mut w.failing, false);
                self.seen(watcher, id, item, known).await;
                self.flush().await;
                if recovered {
                    self.update_health().await;
                }
            }
            Signal::Gone { id, deleted_at } => {
                let w = &mut self.watchers[watcher];
                w.live.remove(&id.uid);
                let recovered = std::mem::replace(&mut w.failing, false);
                let origin = self.origin_of(watcher, &id.namespace);
                if let Some(event) = self.forget(watcher, &id.uid).await {
                    let event = match event {
                        Event::Delete { kind, uid, .. } => Event::Delete {
                            kind,
                            uid,
                            deleted_at,
                        },
                        other => other,
                    };
                    self.flush().await;
                    self.apply(&origin, vec![event]).await;
                }
                if recovered {
                    self.update_health().await;
                }
            }
            Signal::Failed => {
                // Objects of a list cut short are real: keep what was applied, forget the
                // partial set (only a complete list may delete).
                self.flush().await;
                let w = &mut self.watchers[watcher];
                w.listing = None;
                w.failing = true;
                self.update_health().await;
            }
        }
    }

    /// A CR listed, added or modified (`known`: seen before): its key is fixed at first
    /// sight, then what it says is taken (queued for the inventory, or recorded).
    async fn seen(&mut self, watcher: usize, id: CrId, item: Option<Item>, known: bool) {
        let role = match self.watchers[watcher].spec.watched {
            Watched::Objects(kind @ (Kind::Backup | Kind::Restore)) => {
                Some(self.role(kind, &id, known))
            }
            _ => None,
        };
        let Some(item) = item else {
            return;
        };
        let origin = self.origin_of(watcher, &id.namespace);
        match (item, role) {
            (Item::Backup(backup), Some(role)) => self.take_backup(&id, backup, role, origin).await,
            (Item::Restore(restore), Some(Role::Exported(key))) => {
                self.take_restore(
                    &id,
                    Restore {
                        uid: key,
                        ..restore
                    },
                    origin,
                )
                .await;
            }
            (
                Item::Schedule {
                    schedule,
                    namespace,
                    policy_name,
                },
                _,
            ) => {
                let interval = self.resolve(&namespace, &policy_name);
                let event = Event::Upsert(Object::Schedule(Schedule {
                    interval_seconds: interval,
                    ..schedule.clone()
                }));
                self.schedules.insert(
                    id.uid,
                    ScheduleEntry {
                        schedule,
                        namespace,
                        policy_name,
                        origin: origin.clone(),
                        applied_interval: interval,
                    },
                );
                self.queue(origin, event).await;
            }
            (Item::Policy { key, longest_gap }, _) => {
                if let Some(old) = self.policy_keys.insert(id.uid, key.clone()) {
                    if old != key {
                        // A policy object does not change its name; should one, its old
                        // name is gone.
                        self.policies.remove(&old);
                        self.policy_changed(&old).await;
                    }
                }
                if self.policies.insert(key.clone(), longest_gap) != Some(longest_gap) {
                    self.policy_changed(&key).await;
                }
            }
            (item, role) => {
                tracing::error!(?role, ?item, "an object of another kind than its watcher's");
            }
        }
    }

    /// The origin a watcher applies an object of `namespace` under: its own (its namespace's,
    /// with `--namespaces`); for a watcher of all namespaces, the object's namespace's, so
    /// that what the inventory keys by namespace (a schedule's last success) has it. Such a
    /// watcher's re-list covers every namespace (`Inventory::resync_source`).
    fn origin_of(&mut self, watcher: usize, namespace: &str) -> Origin {
        let spec = &self.watchers[watcher].spec;
        if !spec.origin.scope.is_empty() || spec.watched == Watched::SchedulePolicies {
            return spec.origin.clone();
        }
        let source = spec.origin.source;
        self.namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| Origin::scoped(source, namespace))
            .clone()
    }

    /// How the CR `id` of `kind` is exported, for its whole life. First seen, a CR is keyed
    /// by PX-Backup's uid of it when it carries one of its own (`CrId::pxb_uid`), unless
    ///  - another live CR already holds that uid (a copy: distinct CRs are never one object),
    ///  - or, after a restart, the journal holds the CR under its own uid and not under the
    ///    annotation's (the annotation came after the backup was first exported);
    ///
    /// and by its `metadata.uid` otherwise. An annotation that appears or changes later
    /// changes nothing: a backup is never deleted because its identity annotation moved.
    fn role(&mut self, kind: Kind, id: &CrId, known: bool) -> Role {
        let keys = self.keys.entry(kind).or_default();
        if let Some(role) = keys.role_of.get(&id.uid) {
            return role.clone();
        }
        if known {
            return Role::Exported(id.uid.clone());
        }
        let role = if kind == Kind::Backup && id.for_restore {
            Role::RestoreCopy
        } else {
            let key = match id.pxb_uid.as_deref() {
                Some(pxb) if pxb != id.uid => {
                    let shared = keys.holder.get(pxb).is_some_and(|h| *h != id.uid);
                    let journaled_as_cr = kind == Kind::Backup
                        && self
                            .journaled
                            .as_ref()
                            .is_some_and(|j| j.contains(id.uid.as_str()) && !j.contains(pxb));
                    if shared {
                        tracing::info!(%kind, namespace = %id.namespace, name = %id.name, pxb_uid = pxb,
                            "another object carries the same PX-Backup uid; this one is keyed by its own uid");
                    }
                    if shared || journaled_as_cr {
                        id.uid.clone()
                    } else {
                        pxb.to_owned()
                    }
                }
                _ => id.uid.clone(),
            };
            Role::Exported(key)
        };
        match &role {
            Role::Exported(key) if *key == id.uid => {}
            Role::Exported(key) => {
                keys.holder.insert(key.clone(), id.uid.clone());
                keys.role_of.insert(id.uid.clone(), role.clone());
            }
            Role::RestoreCopy => {
                keys.role_of.insert(id.uid.clone(), role.clone());
            }
        }
        role
    }

    /// A CR is gone (deleted, or no longer listed): forgets what the tracker kept of it, and
    /// returns its deletion for the inventory (none for a restore copy or a policy).
    async fn forget(&mut self, watcher: usize, uid: &str) -> Option<Event> {
        let watched = self.watchers[watcher].spec.watched;
        let kind = match watched {
            Watched::SchedulePolicies => {
                self.policy_gone(uid).await;
                return None;
            }
            Watched::Objects(kind) => kind,
        };
        let key = match kind {
            Kind::Backup | Kind::Restore => {
                let keys = self.keys.entry(kind).or_default();
                match keys.role_of.remove(uid) {
                    Some(Role::Exported(key)) => {
                        if keys.holder.get(&key).is_some_and(|h| h == uid) {
                            keys.holder.remove(&key);
                        }
                        Some(key)
                    }
                    Some(Role::RestoreCopy) => None,
                    None => Some(uid.to_owned()),
                }
            }
            _ => Some(uid.to_owned()),
        };
        match kind {
            Kind::Backup => {
                if let Some(cr) = self.backup_crs.remove(uid) {
                    // Restores of it keep the name they were given.
                    self.backup_names.remove(&cr);
                }
            }
            Kind::Restore => {
                if let Some(entry) = self.restores.remove(uid) {
                    if let Some(set) = self.restores_by_backup.get_mut(&entry.backup_cr) {
                        set.remove(uid);
                        if set.is_empty() {
                            self.restores_by_backup.remove(&entry.backup_cr);
                        }
                    }
                }
            }
            Kind::Schedule => {
                self.schedules.remove(uid);
            }
            Kind::Cluster | Kind::BackupLocation => {}
        }
        key.map(|uid| Event::Delete {
            kind,
            uid,
            deleted_at: None,
        })
    }

    /// A backup CR's state: its name for the restores that name it, and, unless it is a
    /// restore copy, the backup under its key.
    async fn take_backup(&mut self, id: &CrId, backup: Backup, role: Role, origin: Origin) {
        self.backup_named(id, &backup.name).await;
        if let Role::Exported(key) = role {
            let backup = Backup { uid: key, ..backup };
            self.queue(origin, Event::Upsert(Object::Backup(backup)))
                .await;
        }
    }

    /// The name the backup CR `id` is exported with: restores that name it follow.
    async fn backup_named(&mut self, id: &CrId, name: &str) {
        let cr: CrName = (id.namespace.clone(), id.name.clone());
        let other = (name != id.name).then(|| name.to_owned());
        if self.backup_names.get(&cr) == other.as_ref() {
            return;
        }
        match &other {
            Some(other) => {
                self.backup_crs.insert(id.uid.clone(), cr.clone());
                self.backup_names.insert(cr.clone(), other.clone());
            }
            None => {
                self.backup_crs.remove(&id.uid);
                self.backup_names.remove(&cr);
            }
        }
        let Some(referring) = self.restores_by_backup.get(&cr) else {
            return;
        };
        let referring: Vec<String> = referring.iter().cloned().collect();
        for uid in referring {
            let Some(entry) = self.restores.get_mut(&uid) else {
                continue;
            };
            if entry.resolved && entry.restore.backup == name {
                continue;
            }
            entry.restore.backup = name.to_owned();
            entry.resolved = true;
            entry.held = false;
            let (origin, restore) = (entry.origin.clone(), entry.restore.clone());
            self.queue(origin, Event::Upsert(Object::Restore(restore)))
                .await;
        }
    }

    /// A restore, its `backup` named as that backup's series name it: the exported name of the
    /// ApplicationBackup CR `spec.backupName` in the restore's namespace (a restore copy
    /// included), once that CR has been seen; kept when the CR goes.
    async fn take_restore(&mut self, id: &CrId, mut restore: Restore, origin: Origin) {
        let backup_cr: CrName = (id.namespace.clone(), restore.backup.clone());
        let known = self.backup_names.get(&backup_cr).cloned();
        let before = self.restores.remove(&id.uid);
        let kept = before
            .as_ref()
            .filter(|e| e.resolved && e.backup_cr == backup_cr)
            .map(|e| e.restore.backup.clone());
        if let Some(old) = before.filter(|e| e.backup_cr != backup_cr) {
            if let Some(set) = self.restores_by_backup.get_mut(&old.backup_cr) {
                set.remove(&id.uid);
            }
        }
        let resolved = match known.or(kept) {
            Some(name) => {
                restore.backup = name;
                true
            }
            None => false,
        };
        let held = !resolved && !self.resync_allowed.contains(&Kind::Backup);
        self.restores_by_backup
            .entry(backup_cr.clone())
            .or_default()
            .insert(id.uid.clone());
        self.restores.insert(
            id.uid.clone(),
            RestoreEntry {
                restore: restore.clone(),
                backup_cr,
                resolved,
                origin: origin.clone(),
                held,
            },
        );
        if !held {
            self.queue(origin, Event::Upsert(Object::Restore(restore)))
                .await;
        }
    }

    /// Every backup watcher has listed: the restores whose backup is still unknown are
    /// applied as they are (`backup` = `spec.backupName`).
    async fn release_held_restores(&mut self) {
        let mut held: Vec<(Origin, Restore)> = Vec::new();
        for entry in self.restores.values_mut().filter(|e| e.held) {
            entry.held = false;
            held.push((entry.origin.clone(), entry.restore.clone()));
        }
        for (origin, restore) in held {
            self.queue(origin, Event::Upsert(Object::Restore(restore)))
                .await;
        }
    }

    async fn policy_gone(&mut self, uid: &str) {
        if let Some(key) = self.policy_keys.remove(uid) {
            self.policies.remove(&key);
            self.policy_changed(&key).await;
        }
    }

    /// The interval of a schedule in `namespace` that names `policy`.
    fn resolve(&self, namespace: &str, policy: &str) -> Option<u64> {
        if policy.is_empty() {
            return None;
        }
        let namespaced = PolicyKey {
            namespace: Some(namespace.to_owned()),
            name: policy.to_owned(),
        };
        match self.policies.get(&namespaced) {
            Some(gap) => *gap,
            None => self
                .policies
                .get(&PolicyKey {
                    namespace: None,
                    name: policy.to_owned(),
                })
                .copied()
                .flatten(),
        }
    }

    /// Applies again every schedule whose interval `key` may decide, when it changed.
    async fn policy_changed(&mut self, key: &PolicyKey) {
        // Queued schedule upserts carry the interval they were resolved with: they go first,
        // so that what follows supersedes them.
        self.flush().await;
        let mut changed: BTreeMap<Origin, Vec<Event>> = BTreeMap::new();
        let uses_key = |e: &ScheduleEntry| {
            e.policy_name == key.name && key.namespace.as_deref().is_none_or(|ns| ns == e.namespace)
        };
        let resolved: Vec<(String, Option<u64>)> = self
            .schedules
            .iter()
            .filter(|(_, e)| uses_key(e))
            .map(|(uid, e)| (uid.clone(), self.resolve(&e.namespace, &e.policy_name)))
            .collect();
        for (uid, interval) in resolved {
            let Some(entry) = self.schedules.get_mut(&uid) else {
                continue;
            };
            if entry.applied_interval == interval {
                continue;
            }
            entry.applied_interval = interval;
            changed
                .entry(entry.origin.clone())
                .or_default()
                .push(Event::Upsert(Object::Schedule(Schedule {
                    interval_seconds: interval,
                    ..entry.schedule.clone()
                })));
        }
        for (origin, events) in changed {
            self.apply(&origin, events).await;
        }
    }

    /// After a complete list of `kind` by `watcher`: resync its origin, once every watcher of
    /// that kind has finished a first list; the first time, the others' deferred resyncs too.
    async fn listed_objects(&mut self, watcher: usize, kind: Kind) {
        let of_kind: Vec<usize> = (0..self.watchers.len())
            .filter(|i| self.watchers[*i].spec.watched == Watched::Objects(kind))
            .collect();
        let due: Vec<usize> = if self.resync_allowed.contains(&kind) {
            vec![watcher]
        } else if of_kind.iter().all(|i| self.watchers[*i].synced_once) {
            self.resync_allowed.insert(kind);
            of_kind
        } else {
            tracing::debug!(%kind, "re-list deferred until every watcher of this kind has listed");
            return;
        };
        for i in due {
            let origin = self.watchers[i].spec.origin.clone();
            let keys = self.keys.get(&kind);
            let listed: HashSet<String> = self.watchers[i]
                .live
                .iter()
                .filter_map(|uid| match keys.and_then(|k| k.role_of.get(uid)) {
                    Some(Role::Exported(key)) => Some(key.clone()),
                    Some(Role::RestoreCopy) => None,
                    None => Some(uid.clone()),
                })
                .collect();
            self.resync(origin, kind, listed).await;
        }
        if kind == Kind::Backup && self.journaled.is_some() {
            // Every CR has its key now: the journal's word is no longer needed.
            self.journaled = None;
            self.release_held_restores().await;
            self.flush().await;
        }
    }

    async fn queue(&mut self, origin: Origin, event: Event) {
        if self.pending.as_ref().is_some_and(|(o, _)| *o != origin) {
            self.flush().await;
        }
        self.pending
            .get_or_insert_with(|| (origin, Vec::new()))
            .1
            .push(event);
    }

    async fn flush(&mut self) {
        if let Some((origin, events)) = self.pending.take() {
            self.apply(&origin, events).await;
        }
    }

    /// Applies a batch the way every source does (`Inventory::apply_off_runtime`: at
    /// background priority, giving way to scrapes). A journal failure is logged and counted by
    /// the inventory; the change is applied in memory, and the next re-list repeats it.
    async fn apply(&self, origin: &Origin, events: Vec<Event>) {
        if let Err(e) = self
            .inventory
            .apply_off_runtime(origin.clone(), events)
            .await
        {
            tracing::warn!(%origin, error = %e, "Stork objects applied in memory only");
        }
    }

    /// `Inventory::resync` off the runtime, as the other sources run it: what `origin` holds
    /// of `kind` and a complete list no longer has was deleted while not watched. The origin
    /// of a watcher of all namespaces stands for every namespace's.
    async fn resync(&self, origin: Origin, kind: Kind, listed: HashSet<String>) {
        let inventory = Arc::clone(&self.inventory);
        let done = tokio::task::spawn_blocking(move || {
            let gone = if origin.scope.is_empty() {
                inventory.resync_source(origin.source, kind, &listed)
            } else {
                inventory.resync(&origin, kind, &listed)
            };
            (origin, gone)
        })
        .await;
        match done {
            Ok((origin, Ok(gone))) if gone > 0 => {
                tracing::info!(%kind, %origin, gone, "deleted while not watched (found by a re-list)");
            }
            Ok((_, Ok(_))) => {}
            Ok((origin, Err(e))) => {
                tracing::warn!(%kind, %origin, error = %e, "deletions applied in memory only");
            }
            Err(e) => tracing::error!(%kind, error = %e, "the resync task failed"),
        }
    }

    async fn update_health(&mut self) {
        let all_synced = self.watchers.iter().all(|w| w.synced_once);
        let failing = self.watchers.iter().any(|w| w.failing);
        if all_synced && !self.synced_reported {
            // /readyz waits for this: every resource has been listed once.
            self.sources.mark_synced(SourceId::Kube);
            self.synced_reported = true;
            tracing::info!("kube source synced: every Stork resource was listed");
        }
        self.sources.set_up(SourceId::Kube, all_synced && !failing);
        self.set_cluster_status(if failing {
            ClusterStatus::Offline
        } else {
            ClusterStatus::Online
        })
        .await;
    }

    async fn set_cluster_status(&mut self, status: ClusterStatus) {
        if self.cluster_status == Some(status) {
            return;
        }
        self.cluster_status = Some(status);
        let cluster = Event::Upsert(Object::Cluster(Cluster {
            uid: self.cluster.uid.clone(),
            name: self.cluster.name.clone(),
            org_id: DEFAULT_ORG_ID.to_owned(),
            status,
        }));
        self.apply(&Origin::source(SourceId::Kube), vec![cluster])
            .await;
    }
}

#[cfg(test)]
mod tests;

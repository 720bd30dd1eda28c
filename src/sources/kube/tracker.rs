//! Bookkeeping of the kube source's watchers: what each one has listed, which objects are
//! live, whether every watcher has synced, whether any is failing; and the schedule policies,
//! which give schedules their interval.
//!
//! Lost deletes: kube-runtime's watcher does not report objects deleted while it was
//! disconnected; it lists again instead. After a list (`InitDone`), every live object of that
//! watcher's origin (its namespace, or the whole source for an all-namespaces watcher) that
//! the list no longer holds was deleted meanwhile, and `Inventory::resync` makes it a
//! tombstone. Two rules keep that from deleting what exists:
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::inventory::Inventory;
use crate::model::{Cluster, ClusterStatus, Event, Kind, Object, Origin, Schedule, SourceId};
use crate::sources::SourceStatus;

use super::mapping::{ClusterIdentity, Item, PolicyKey, Watched, DEFAULT_ORG_ID};

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
    Listed { uid: String, item: Option<Item> },
    /// The list is complete.
    ListDone,
    /// An object was added or modified while watching.
    Changed { uid: String, item: Option<Item> },
    /// An object was deleted while watching; `event` is its deletion for the inventory
    /// (`None` for a schedule policy, which is not an inventory object).
    Gone { uid: String, event: Option<Event> },
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
    live: HashSet<String>,
    /// UIDs seen since `Relist`, while a list is in progress.
    listing: Option<HashSet<String>>,
    synced_once: bool,
    failing: bool,
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
            Signal::Listed { uid, item } => {
                self.watchers[watcher]
                    .listing
                    .get_or_insert_with(HashSet::new)
                    .insert(uid.clone());
                if let Some(item) = item {
                    self.take(watcher, uid, item).await;
                }
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
                match w.spec.watched {
                    Watched::Objects(kind) => self.listed_objects(watcher, kind).await,
                    Watched::SchedulePolicies => {
                        let gone: Vec<String> = before
                            .difference(&self.watchers[watcher].live)
                            .cloned()
                            .collect();
                        for uid in gone {
                            self.policy_gone(&uid).await;
                        }
                    }
                }
                self.update_health().await;
            }
            Signal::Changed { uid, item } => {
                let w = &mut self.watchers[watcher];
                w.live.insert(uid.clone());
                let recovered = std::mem::replace(&mut w.failing, false);
                if let Some(item) = item {
                    self.take(watcher, uid, item).await;
                    self.flush().await;
                }
                if recovered {
                    self.update_health().await;
                }
            }
            Signal::Gone { uid, event } => {
                let w = &mut self.watchers[watcher];
                w.live.remove(&uid);
                let recovered = std::mem::replace(&mut w.failing, false);
                let (watched, origin) = (w.spec.watched, w.spec.origin.clone());
                match watched {
                    Watched::SchedulePolicies => self.policy_gone(&uid).await,
                    Watched::Objects(Kind::Schedule) => {
                        self.schedules.remove(&uid);
                    }
                    Watched::Objects(_) => {}
                }
                if let Some(event) = event {
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

    /// Takes what a watcher saw: queues an object for the inventory, or records a policy.
    async fn take(&mut self, watcher: usize, uid: String, item: Item) {
        let origin = self.watchers[watcher].spec.origin.clone();
        match item {
            Item::Object(object) => self.queue(origin, Event::Upsert(object)).await,
            Item::Schedule {
                schedule,
                namespace,
                policy_name,
            } => {
                let interval = self.resolve(&namespace, &policy_name);
                let event = Event::Upsert(Object::Schedule(Schedule {
                    interval_seconds: interval,
                    ..schedule.clone()
                }));
                self.schedules.insert(
                    uid,
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
            Item::Policy { key, longest_gap } => {
                if let Some(old) = self.policy_keys.insert(uid, key.clone()) {
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
            let live = self.watchers[i].live.clone();
            self.resync(origin.clone(), kind, live).await;
            if kind == Kind::Schedule {
                let live = &self.watchers[i].live;
                self.schedules
                    .retain(|uid, e| e.origin != origin || live.contains(uid));
            }
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
    /// of `kind` and a complete list no longer has was deleted while not watched.
    async fn resync(&self, origin: Origin, kind: Kind, listed: HashSet<String>) {
        let inventory = Arc::clone(&self.inventory);
        let done = tokio::task::spawn_blocking(move || {
            let gone = inventory.resync(&origin, kind, &listed);
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

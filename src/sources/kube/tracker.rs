//! Bookkeeping of the kube source's watchers: what each one has listed, which objects are
//! live, whether every watcher has synced, and whether any is failing.
//!
//! Lost deletes: kube-runtime's watcher does not report objects deleted while it was
//! disconnected; it lists again instead. After each list (`InitDone`), every live object of
//! that kind that no watcher knows about was deleted meanwhile, and `Inventory::resync` makes
//! it a tombstone. Watchers of one kind in different namespaces share the inventory's table,
//! so the set handed to `resync` is this watcher's new list plus what the other watchers of
//! that kind hold live; otherwise a re-list in one namespace would delete the others.

use std::collections::HashSet;

use crate::inventory::Inventory;
use crate::model::{Cluster, ClusterStatus, Event, Kind, Object, Origin, SourceId};
use crate::sources::SourceStatus;

use super::mapping::{ClusterIdentity, DEFAULT_ORG_ID};

/// InitApply objects are applied in batches of this size (one journal write each) rather than
/// all at the end of a list, so that a huge list does not sit twice in memory.
const LIST_BATCH: usize = 256;

/// What a watcher saw, as the tracker needs it.
#[derive(Debug)]
pub enum Signal {
    /// A (re-)list starts.
    Relist,
    /// An object of the list. `event` is `None` when the object is malformed: it exists (so
    /// it is not deleted) but there is nothing to apply.
    Listed { uid: String, event: Option<Event> },
    /// The list is complete.
    ListDone,
    /// An object was added or modified while watching.
    Changed { uid: String, event: Option<Event> },
    /// An object was deleted while watching.
    Gone { uid: String, event: Event },
    /// The watcher failed (list, watch, or an ERROR event) and will list again after a backoff.
    Failed,
}

#[derive(Debug)]
struct WatcherState {
    kind: Kind,
    live: HashSet<String>,
    /// UIDs seen since `Relist`, while a list is in progress.
    listing: Option<HashSet<String>>,
    synced_once: bool,
    failing: bool,
}

pub struct Tracker<'a> {
    inventory: &'a Inventory,
    origin: Origin,
    sources: &'a SourceStatus,
    cluster: ClusterIdentity,
    watchers: Vec<WatcherState>,
    pending: Vec<Event>,
    /// What the Cluster object last said, to upsert it only on a change.
    cluster_status: Option<ClusterStatus>,
    synced_reported: bool,
}

impl<'a> Tracker<'a> {
    /// `kinds[i]` is the kind watched by watcher `i`.
    pub fn new(
        inventory: &'a Inventory,
        sources: &'a SourceStatus,
        cluster: ClusterIdentity,
        kinds: &[Kind],
    ) -> Self {
        let mut t = Tracker {
            inventory,
            origin: Origin::source(SourceId::Kube),
            sources,
            cluster,
            watchers: kinds
                .iter()
                .map(|kind| WatcherState {
                    kind: *kind,
                    live: HashSet::new(),
                    listing: None,
                    synced_once: false,
                    failing: false,
                })
                .collect(),
            pending: Vec::new(),
            cluster_status: None,
            synced_reported: false,
        };
        // The kube-system namespace was just read: the API answers.
        t.set_cluster_status(ClusterStatus::Online);
        t
    }

    pub fn handle(&mut self, watcher: usize, signal: Signal) {
        if watcher >= self.watchers.len() {
            tracing::error!(watcher, "signal from an unknown watcher");
            return;
        }
        match signal {
            Signal::Relist => {
                self.flush();
                self.watchers[watcher].listing = Some(HashSet::new());
            }
            Signal::Listed { uid, event } => {
                self.watchers[watcher]
                    .listing
                    .get_or_insert_with(HashSet::new)
                    .insert(uid);
                if let Some(event) = event {
                    self.pending.push(event);
                    if self.pending.len() >= LIST_BATCH {
                        self.flush();
                    }
                }
            }
            Signal::ListDone => {
                self.flush();
                let w = &mut self.watchers[watcher];
                let kind = w.kind;
                w.live = w.listing.take().unwrap_or_default();
                w.synced_once = true;
                w.failing = false;
                let mut known: HashSet<String> = HashSet::new();
                for other in self.watchers.iter().filter(|o| o.kind == kind) {
                    known.extend(other.live.iter().cloned());
                }
                // A journal failure is logged and counted by the inventory.
                let gone = self
                    .inventory
                    .resync(&self.origin, kind, &known)
                    .unwrap_or_default();
                if gone > 0 {
                    tracing::info!(%kind, gone, "deleted while not watched (found by a re-list)");
                }
                self.update_health();
            }
            Signal::Changed { uid, event } => {
                let w = &mut self.watchers[watcher];
                w.live.insert(uid);
                let recovered = std::mem::replace(&mut w.failing, false);
                if let Some(event) = event {
                    self.apply(vec![event]);
                }
                if recovered {
                    self.update_health();
                }
            }
            Signal::Gone { uid, event } => {
                let w = &mut self.watchers[watcher];
                w.live.remove(&uid);
                let recovered = std::mem::replace(&mut w.failing, false);
                self.apply(vec![event]);
                if recovered {
                    self.update_health();
                }
            }
            Signal::Failed => {
                // Objects of a list cut short are real: keep what was applied, forget the
                // partial set (only a complete list may delete).
                self.flush();
                let w = &mut self.watchers[watcher];
                w.listing = None;
                w.failing = true;
                self.update_health();
            }
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.apply(batch);
        }
    }

    /// A journal failure is logged and counted by the inventory; the change is applied in
    /// memory, and the next re-list repeats it.
    fn apply(&self, events: Vec<Event>) {
        let _ = self.inventory.apply(&self.origin, events);
    }

    fn update_health(&mut self) {
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
        });
    }

    fn set_cluster_status(&mut self, status: ClusterStatus) {
        if self.cluster_status == Some(status) {
            return;
        }
        self.cluster_status = Some(status);
        self.apply(vec![Event::Upsert(Object::Cluster(Cluster {
            uid: self.cluster.uid.clone(),
            name: self.cluster.name.clone(),
            org_id: DEFAULT_ORG_ID.to_owned(),
            status,
        }))]);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Clock;
    use crate::model::{Backup, BackupStatus};

    fn backup(uid: &str, status: BackupStatus) -> Event {
        Event::Upsert(Object::Backup(Backup {
            uid: uid.into(),
            name: uid.into(),
            status,
            ..Backup::default()
        }))
    }

    fn listed(uid: &str) -> Signal {
        Signal::Listed {
            uid: uid.into(),
            event: Some(backup(uid, BackupStatus::Success)),
        }
    }

    fn identity() -> ClusterIdentity {
        ClusterIdentity {
            name: "c".into(),
            uid: "cuid".into(),
        }
    }

    fn fixture() -> (Inventory, SourceStatus) {
        (
            Inventory::in_memory(Clock::System, Duration::from_secs(3600)),
            SourceStatus::new(&[SourceId::Kube]),
        )
    }

    #[test]
    fn relist_in_one_namespace_deletes_only_what_that_watcher_lost() {
        let (inv, sources) = fixture();
        // Watchers 0 and 1 watch backups in two namespaces, 2 watches schedules.
        let mut t = Tracker::new(
            &inv,
            &sources,
            identity(),
            &[Kind::Backup, Kind::Backup, Kind::Schedule],
        );
        for (w, uids) in [(0, &["a1", "a2"][..]), (1, &["b1"][..]), (2, &[][..])] {
            t.handle(w, Signal::Relist);
            for uid in uids {
                t.handle(w, listed(uid));
            }
            t.handle(w, Signal::ListDone);
        }
        assert!(sources.not_synced().is_empty());
        assert!(sources.is_up(SourceId::Kube));
        assert_eq!(inv.summary().backups_by_status.get("Success"), Some(&3));

        // Namespace A re-lists after a disconnection: a2 was deleted meanwhile.
        t.handle(0, Signal::Failed);
        assert!(!sources.is_up(SourceId::Kube));
        t.handle(0, Signal::Relist);
        t.handle(0, listed("a1"));
        t.handle(0, Signal::ListDone);
        assert!(sources.is_up(SourceId::Kube));
        let s = inv.summary();
        assert_eq!(
            s.backups_by_status.get("Success"),
            Some(&2),
            "a1 and b1 stay"
        );
        assert_eq!(
            s.tombstones_by_previous_status.get("Success"),
            Some(&1),
            "a2"
        );
    }

    #[test]
    fn readiness_waits_for_every_watcher_and_health_follows_failures() {
        let (inv, sources) = fixture();
        let mut t = Tracker::new(&inv, &sources, identity(), &[Kind::Backup, Kind::Restore]);
        t.handle(0, Signal::Relist);
        t.handle(0, Signal::ListDone);
        assert_eq!(
            sources.not_synced(),
            [SourceId::Kube],
            "restores not listed yet"
        );
        assert!(!sources.is_up(SourceId::Kube));
        t.handle(1, Signal::Relist);
        t.handle(1, Signal::Failed);
        assert_eq!(sources.not_synced(), [SourceId::Kube]);
        t.handle(1, Signal::Relist);
        t.handle(1, Signal::ListDone);
        assert!(sources.not_synced().is_empty());
        assert!(sources.is_up(SourceId::Kube));
        assert!(
            inv.summary().cluster_uids.contains("cuid"),
            "the Cluster object"
        );

        t.handle(1, Signal::Failed);
        assert!(!sources.is_up(SourceId::Kube));
        // A watch event proves the watcher works again.
        t.handle(
            1,
            Signal::Changed {
                uid: "r".into(),
                event: None,
            },
        );
        assert!(sources.is_up(SourceId::Kube));
    }

    #[test]
    fn a_list_cut_short_deletes_nothing() {
        let (inv, sources) = fixture();
        let mut t = Tracker::new(&inv, &sources, identity(), &[Kind::Backup]);
        t.handle(0, Signal::Relist);
        t.handle(0, listed("x"));
        t.handle(0, listed("y"));
        t.handle(0, Signal::ListDone);
        t.handle(0, Signal::Relist);
        t.handle(0, listed("x"));
        t.handle(0, Signal::Failed);
        assert_eq!(inv.summary().backups_by_status.get("Success"), Some(&2));
        assert_eq!(inv.tombstone_count(), 0);
        // A malformed object still exists: it is not deleted by the next list.
        t.handle(0, Signal::Relist);
        t.handle(0, listed("x"));
        t.handle(
            0,
            Signal::Listed {
                uid: "y".into(),
                event: None,
            },
        );
        t.handle(0, Signal::ListDone);
        assert_eq!(inv.tombstone_count(), 0);
    }

    #[test]
    fn a_list_longer_than_a_batch_is_applied_whole() {
        let (inv, sources) = fixture();
        let mut t = Tracker::new(&inv, &sources, identity(), &[Kind::Backup]);
        let n = LIST_BATCH * 2 + 7;
        t.handle(0, Signal::Relist);
        for i in 0..n {
            t.handle(0, listed(&format!("b{i}")));
        }
        t.handle(0, Signal::ListDone);
        assert_eq!(inv.summary().backups_by_status.get("Success"), Some(&n));
        assert_eq!(inv.tombstone_count(), 0);
    }
}

use std::time::Duration;

use super::*;
use crate::clock::Clock;
use crate::exposition::{encode, Format};
use crate::model::{BackupStatus, Owner, RestoreStatus, ScheduleStatus};

fn backup(uid: &str, status: BackupStatus) -> Backup {
    Backup {
        uid: uid.into(),
        name: uid.into(),
        status,
        ..Backup::default()
    }
}

/// A CR of uid `uid`, named `uid` in namespace "ns", without PX-Backup's annotations.
fn cr(uid: &str) -> CrId {
    CrId {
        uid: uid.into(),
        namespace: "ns".into(),
        name: uid.into(),
        pxb_uid: None,
        for_restore: false,
    }
}

fn listed(uid: &str) -> Signal {
    Signal::Listed {
        id: cr(uid),
        item: Some(Item::Backup(backup(uid, BackupStatus::Success))),
    }
}

fn identity() -> ClusterIdentity {
    ClusterIdentity {
        name: "c".into(),
        uid: "cuid".into(),
    }
}

fn fixture() -> (Arc<Inventory>, Arc<SourceStatus>) {
    (
        Arc::new(Inventory::in_memory(
            Clock::System,
            Duration::from_secs(3600),
        )),
        Arc::new(SourceStatus::new(&[SourceId::Kube])),
    )
}

fn in_ns(ns: &str, watched: Watched) -> WatcherSpec {
    WatcherSpec {
        watched,
        origin: Origin::scoped(SourceId::Kube, ns),
    }
}

fn everywhere(watched: Watched) -> WatcherSpec {
    WatcherSpec {
        watched,
        origin: Origin::source(SourceId::Kube),
    }
}

const BACKUPS: Watched = Watched::Objects(Kind::Backup);
const SCHEDULES: Watched = Watched::Objects(Kind::Schedule);

async fn list(t: &mut Tracker, watcher: usize, uids: &[&str]) {
    t.handle(watcher, Signal::Relist).await;
    for uid in uids {
        t.handle(watcher, listed(uid)).await;
    }
    t.handle(watcher, Signal::ListDone).await;
}

fn live(inv: &Inventory) -> Option<usize> {
    inv.summary().backups_by_status.get("Success").copied()
}

fn scrape(inv: &Inventory) -> String {
    let text = String::from_utf8(encode(&inv.snapshot(), Format::Text, &[])).expect("utf-8");
    let written = crate::exposition::encode_text(inv.text_snapshot(), Format::Text, &[]);
    assert_eq!(String::from_utf8(written).expect("utf-8"), text);
    text
}

#[tokio::test]
async fn relist_in_one_namespace_deletes_only_what_that_watcher_lost() {
    let (inv, sources) = fixture();
    // Watchers 0 and 1 watch backups in two namespaces, 2 watches schedules.
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[
            in_ns("a", BACKUPS),
            in_ns("b", BACKUPS),
            everywhere(SCHEDULES),
        ],
    )
    .await;
    list(&mut t, 0, &["a1", "a2"]).await;
    list(&mut t, 1, &["b1"]).await;
    list(&mut t, 2, &[]).await;
    assert!(sources.not_synced().is_empty());
    assert!(sources.is_up(SourceId::Kube));
    assert_eq!(live(&inv), Some(3));

    // Namespace a re-lists after a disconnection: a2 was deleted meanwhile.
    t.handle(0, Signal::Failed).await;
    assert!(!sources.is_up(SourceId::Kube));
    list(&mut t, 0, &["a1"]).await;
    assert!(sources.is_up(SourceId::Kube));
    assert_eq!(live(&inv), Some(2), "a1 and b1 stay");
    assert_eq!(
        inv.summary().tombstones_by_previous_status.get("Success"),
        Some(&1),
        "a2"
    );
}

/// What the journal brings back after a restart: backups of two namespaces, each with its
/// origin (journal format 2).
fn replayed(inv: &Inventory, ns: &str, uids: &[&str]) {
    inv.apply(
        &Origin::scoped(SourceId::Kube, ns),
        uids.iter()
            .map(|u| Event::Upsert(Object::Backup(backup(u, BackupStatus::Success))))
            .collect(),
    )
    .expect("applied");
}

#[tokio::test]
async fn after_a_restart_no_watcher_deletes_before_every_watcher_of_its_kind_has_listed() {
    for first in [0, 1] {
        let (inv, sources) = fixture();
        replayed(&inv, "a", &["a1", "a2"]);
        replayed(&inv, "b", &["b1"]);
        let mut t = Tracker::new(
            inv.clone(),
            sources.clone(),
            identity(),
            &[in_ns("a", BACKUPS), in_ns("b", BACKUPS)],
        )
        .await;
        let second = 1 - first;
        let lists: [&[&str]; 2] = [&["a1"], &["b1"]];
        // The first namespace to list has lost a backup while the sidecar was down; its
        // deletion waits for the other namespace's list.
        list(&mut t, first, lists[first]).await;
        assert_eq!(inv.tombstone_count(), 0, "{first} listed first");
        assert_eq!(live(&inv), Some(3));
        t.handle(second, Signal::Relist).await;
        t.handle(second, listed(lists[second][0])).await;
        assert_eq!(inv.tombstone_count(), 0, "still listing");
        t.handle(second, Signal::ListDone).await;
        assert_eq!(inv.tombstone_count(), 1, "a2, once both have listed");
        assert_eq!(live(&inv), Some(2), "a1 and b1");
    }
}

#[tokio::test]
async fn a_watcher_that_fails_its_first_list_holds_back_the_deletions_of_its_kind() {
    let (inv, sources) = fixture();
    replayed(&inv, "a", &["a1", "a2"]);
    replayed(&inv, "b", &["b1"]);
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[
            in_ns("a", BACKUPS),
            in_ns("b", BACKUPS),
            in_ns("a", SCHEDULES),
        ],
    )
    .await;
    list(&mut t, 0, &["a1"]).await;
    list(&mut t, 2, &[]).await;
    t.handle(1, Signal::Relist).await;
    t.handle(1, Signal::Failed).await;
    // a re-lists again: still deferred, b has never completed a list.
    list(&mut t, 0, &["a1"]).await;
    assert_eq!(inv.tombstone_count(), 0);
    list(&mut t, 1, &["b1"]).await;
    assert_eq!(inv.tombstone_count(), 1);
    // From now on each re-list resyncs at once.
    list(&mut t, 1, &[]).await;
    assert_eq!(inv.tombstone_count(), 2, "b1");
}

#[tokio::test]
async fn readiness_waits_for_every_watcher_and_health_follows_failures() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[
            everywhere(BACKUPS),
            everywhere(Watched::Objects(Kind::Restore)),
        ],
    )
    .await;
    list(&mut t, 0, &[]).await;
    assert_eq!(
        sources.not_synced(),
        [SourceId::Kube],
        "restores not listed yet"
    );
    assert!(!sources.is_up(SourceId::Kube));
    t.handle(1, Signal::Relist).await;
    t.handle(1, Signal::Failed).await;
    assert_eq!(sources.not_synced(), [SourceId::Kube]);
    list(&mut t, 1, &[]).await;
    assert!(sources.not_synced().is_empty());
    assert!(sources.is_up(SourceId::Kube));
    assert!(
        inv.summary().cluster_uids.contains("cuid"),
        "the Cluster object"
    );

    t.handle(1, Signal::Failed).await;
    assert!(!sources.is_up(SourceId::Kube));
    // A watch event proves the watcher works again.
    t.handle(
        1,
        Signal::Changed {
            id: cr("r"),
            item: None,
        },
    )
    .await;
    assert!(sources.is_up(SourceId::Kube));
}

#[tokio::test]
async fn a_list_cut_short_deletes_nothing() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[everywhere(BACKUPS)],
    )
    .await;
    list(&mut t, 0, &["x", "y"]).await;
    t.handle(0, Signal::Relist).await;
    t.handle(0, listed("x")).await;
    t.handle(0, Signal::Failed).await;
    assert_eq!(live(&inv), Some(2));
    assert_eq!(inv.tombstone_count(), 0);
    // A malformed object still exists: it is not deleted by the next list.
    t.handle(0, Signal::Relist).await;
    t.handle(0, listed("x")).await;
    t.handle(
        0,
        Signal::Listed {
            id: cr("y"),
            item: None,
        },
    )
    .await;
    t.handle(0, Signal::ListDone).await;
    assert_eq!(inv.tombstone_count(), 0);
}

#[tokio::test]
async fn a_list_longer_than_a_batch_is_applied_whole() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[everywhere(BACKUPS)],
    )
    .await;
    let n = LIST_BATCH * 2 + 7;
    t.handle(0, Signal::Relist).await;
    for i in 0..n {
        t.handle(0, listed(&format!("b{i}"))).await;
    }
    t.handle(0, Signal::ListDone).await;
    assert_eq!(live(&inv), Some(n));
    assert_eq!(inv.tombstone_count(), 0);
}

#[tokio::test]
async fn interleaved_lists_of_two_namespaces_keep_their_origins() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[in_ns("a", BACKUPS), in_ns("b", BACKUPS)],
    )
    .await;
    t.handle(0, Signal::Relist).await;
    t.handle(1, Signal::Relist).await;
    for i in 0..5 {
        t.handle(0, listed(&format!("a{i}"))).await;
        t.handle(1, listed(&format!("b{i}"))).await;
    }
    t.handle(0, Signal::ListDone).await;
    t.handle(1, Signal::ListDone).await;
    assert_eq!(live(&inv), Some(10));
    // b's re-list without b0 deletes b0 only: every a* was applied under a's origin.
    list(&mut t, 1, &["b1", "b2", "b3", "b4"]).await;
    assert_eq!(inv.tombstone_count(), 1);
    assert_eq!(live(&inv), Some(9));
}

// ------------------------------------------------------------------ schedule policies

fn schedule(uid: &str, ns: &str, policy: &str) -> Signal {
    Signal::Changed {
        id: cr(uid),
        item: Some(schedule_item(uid, ns, policy)),
    }
}

fn schedule_item(uid: &str, ns: &str, policy: &str) -> Item {
    Item::Schedule {
        schedule: Schedule {
            uid: uid.into(),
            name: uid.into(),
            owner: Owner::default(),
            status: ScheduleStatus::Active,
            interval_seconds: None,
        },
        namespace: ns.into(),
        policy_name: policy.into(),
    }
}

fn policy(uid: &str, ns: Option<&str>, name: &str, gap: Option<u64>) -> Signal {
    Signal::Changed {
        id: cr(uid),
        item: Some(Item::Policy {
            key: PolicyKey {
                namespace: ns.map(str::to_owned),
                name: name.into(),
            },
            longest_gap: gap,
        }),
    }
}

/// `pxbackup_backup_schedule_interval_seconds` of schedule `uid`, if exported.
fn interval(inv: &Inventory, uid: &str) -> Option<u64> {
    scrape(inv)
        .lines()
        .filter(|l| l.starts_with("pxbackup_backup_schedule_interval_seconds{"))
        .find(|l| l.contains(&format!("uid=\"{uid}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn schedules_take_the_interval_of_their_policy_namespaced_first() {
    let (inv, sources) = fixture();
    // 0: schedules everywhere, 1: namespaced policies everywhere, 2: cluster policies.
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[
            everywhere(SCHEDULES),
            everywhere(Watched::SchedulePolicies),
            everywhere(Watched::SchedulePolicies),
        ],
    )
    .await;
    for w in 0..3 {
        list(&mut t, w, &[]).await;
    }
    // A schedule seen before its policy has no interval yet.
    t.handle(0, schedule("s-shop", "shop", "nightly")).await;
    t.handle(0, schedule("s-crm", "crm", "nightly")).await;
    t.handle(0, schedule("s-none", "crm", "")).await;
    assert_eq!(interval(&inv, "s-shop"), None);

    t.handle(2, policy("p-cluster", None, "nightly", Some(86_400)))
        .await;
    assert_eq!(interval(&inv, "s-shop"), Some(86_400));
    assert_eq!(interval(&inv, "s-crm"), Some(86_400));
    assert_eq!(interval(&inv, "s-none"), None);

    // A namespaced policy of that name wins in its namespace only.
    t.handle(1, policy("p-shop", Some("shop"), "nightly", Some(604_800)))
        .await;
    assert_eq!(interval(&inv, "s-shop"), Some(604_800));
    assert_eq!(interval(&inv, "s-crm"), Some(86_400));

    // The cluster policy changes: the crm schedule follows, shop's keeps its own.
    t.handle(2, policy("p-cluster", None, "nightly", Some(3_600)))
        .await;
    assert_eq!(interval(&inv, "s-crm"), Some(3_600));
    assert_eq!(interval(&inv, "s-shop"), Some(604_800));

    // An invalid namespaced policy still shadows the cluster one (Stork runs nothing).
    t.handle(1, policy("p-shop", Some("shop"), "nightly", None))
        .await;
    assert_eq!(interval(&inv, "s-shop"), None);

    // The namespaced policy is deleted: back to the cluster one.
    t.handle(
        1,
        Signal::Gone {
            id: cr("p-shop"),
            deleted_at: None,
        },
    )
    .await;
    assert_eq!(interval(&inv, "s-shop"), Some(3_600));

    // The cluster policy is deleted while its watcher was away: the re-list finds it gone.
    list(&mut t, 2, &[]).await;
    assert_eq!(interval(&inv, "s-crm"), None);
    assert_eq!(interval(&inv, "s-shop"), None);

    // A schedule that moves to another policy follows it.
    t.handle(2, policy("p-weekly", None, "weekly", Some(604_800)))
        .await;
    t.handle(0, schedule("s-crm", "crm", "weekly")).await;
    assert_eq!(interval(&inv, "s-crm"), Some(604_800));
}

async fn list_policies(t: &mut Tracker) {
    t.handle(1, Signal::Relist).await;
    t.handle(
        1,
        Signal::Listed {
            id: cr("p"),
            item: Some(Item::Policy {
                key: PolicyKey {
                    namespace: None,
                    name: "weekly".into(),
                },
                longest_gap: Some(604_800),
            }),
        },
    )
    .await;
    t.handle(1, Signal::ListDone).await;
}

#[tokio::test]
async fn schedules_listed_with_their_policies_get_the_interval_in_either_order() {
    for policies_first in [true, false] {
        let (inv, sources) = fixture();
        let mut t = Tracker::new(
            inv.clone(),
            sources.clone(),
            identity(),
            &[everywhere(SCHEDULES), everywhere(Watched::SchedulePolicies)],
        )
        .await;
        if policies_first {
            list_policies(&mut t).await;
        }
        t.handle(0, Signal::Relist).await;
        t.handle(
            0,
            Signal::Listed {
                id: cr("s"),
                item: Some(schedule_item("s", "shop", "weekly")),
            },
        )
        .await;
        if !policies_first {
            // The policy arrives while the schedule's list is still being gathered.
            list_policies(&mut t).await;
        }
        t.handle(0, Signal::ListDone).await;
        assert_eq!(
            interval(&inv, "s"),
            Some(604_800),
            "policies first: {policies_first}"
        );
    }
}

// ------------------------------------------------------------------ identity

/// A backup CR `uid` that carries PX-Backup's uid `pxb` (`None`: none).
fn pxb_cr(uid: &str, pxb: Option<&str>) -> CrId {
    CrId {
        pxb_uid: pxb.map(str::to_owned),
        ..cr(uid)
    }
}

fn changed(id: CrId) -> Signal {
    let b = backup(&id.uid, BackupStatus::Success);
    Signal::Changed {
        id,
        item: Some(Item::Backup(b)),
    }
}

fn listed_as(id: CrId) -> Signal {
    let b = backup(&id.uid, BackupStatus::Success);
    Signal::Listed {
        id,
        item: Some(Item::Backup(b)),
    }
}

/// The uids of the backups exported, live or not.
fn backup_uids(inv: &Inventory) -> Vec<String> {
    let mut uids: Vec<String> = scrape(inv)
        .lines()
        .filter(|l| l.starts_with("pxbackup_backup_object_info{"))
        .filter_map(|l| {
            let rest = &l[l.find("uid=\"")? + 5..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect();
    uids.sort();
    uids.dedup();
    uids
}

#[tokio::test]
async fn a_backup_keeps_its_key_when_its_identity_annotation_appears_or_changes() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[everywhere(BACKUPS)],
    )
    .await;
    list(&mut t, 0, &["m1"]).await;
    // PX-Backup's annotation arrives, then changes.
    t.handle(0, changed(pxb_cr("m1", Some("pxb-a")))).await;
    t.handle(0, changed(pxb_cr("m1", Some("pxb-b")))).await;
    t.handle(0, Signal::Relist).await;
    t.handle(0, listed_as(pxb_cr("m1", Some("pxb-b")))).await;
    t.handle(0, Signal::ListDone).await;
    assert_eq!(backup_uids(&inv), ["m1"]);
    assert_eq!(inv.tombstone_count(), 0);
    // A deletion finds it under that key.
    t.handle(
        0,
        Signal::Gone {
            id: pxb_cr("m1", Some("pxb-b")),
            deleted_at: None,
        },
    )
    .await;
    assert_eq!(inv.tombstone_count(), 1);
}

#[tokio::test]
async fn after_a_restart_a_backup_is_keyed_as_the_journal_has_it() {
    let (inv, sources) = fixture();
    // m1 was exported by its own uid (its annotation came later); m2 by PX-Backup's.
    replayed(&inv, "a", &["m1", "pxb-2"]);
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[in_ns("a", BACKUPS)],
    )
    .await;
    t.handle(0, Signal::Relist).await;
    t.handle(0, listed_as(pxb_cr("m1", Some("pxb-1")))).await;
    t.handle(0, listed_as(pxb_cr("m2", Some("pxb-2")))).await;
    t.handle(0, Signal::ListDone).await;
    assert_eq!(backup_uids(&inv), ["m1", "pxb-2"]);
    assert_eq!(inv.tombstone_count(), 0);
    // A CR new since the restart takes PX-Backup's uid.
    t.handle(0, changed(pxb_cr("m3", Some("pxb-3")))).await;
    assert_eq!(backup_uids(&inv), ["m1", "pxb-2", "pxb-3"]);
}

#[tokio::test]
async fn two_crs_carrying_one_pxb_uid_stay_two_backups() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[everywhere(BACKUPS)],
    )
    .await;
    t.handle(0, Signal::Relist).await;
    t.handle(0, listed_as(pxb_cr("m1", Some("pxb-a")))).await;
    t.handle(0, listed_as(pxb_cr("m2", Some("pxb-a")))).await;
    t.handle(0, Signal::ListDone).await;
    assert_eq!(backup_uids(&inv), ["m2", "pxb-a"]);
    assert_eq!(live(&inv), Some(2));
    // Either goes alone.
    t.handle(
        0,
        Signal::Gone {
            id: pxb_cr("m2", Some("pxb-a")),
            deleted_at: None,
        },
    )
    .await;
    assert_eq!(live(&inv), Some(1));
    list(&mut t, 0, &[]).await;
    assert_eq!(inv.tombstone_count(), 2);
}

fn restore_copy(uid: &str, name: &str, ns: &str) -> (CrId, Backup) {
    let id = CrId {
        uid: uid.into(),
        namespace: ns.into(),
        name: name.into(),
        pxb_uid: Some("pxb-backup".into()),
        for_restore: true,
    };
    let b = Backup {
        name: "shop-2026-11-23".into(),
        ..backup(uid, BackupStatus::Success)
    };
    (id, b)
}

#[tokio::test]
async fn a_backup_copied_for_a_restore_is_not_exported_and_its_removal_deletes_nothing() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[everywhere(BACKUPS)],
    )
    .await;
    let (id, b) = restore_copy("copy", "shop-2026-11-23-9b1c4d2", "shop");
    t.handle(0, Signal::Relist).await;
    t.handle(0, listed("own")).await;
    t.handle(
        0,
        Signal::Listed {
            id: id.clone(),
            item: Some(Item::Backup(b.clone())),
        },
    )
    .await;
    t.handle(0, Signal::ListDone).await;
    assert_eq!(backup_uids(&inv), ["own"]);
    t.handle(
        0,
        Signal::Changed {
            id: id.clone(),
            item: Some(Item::Backup(b)),
        },
    )
    .await;
    t.handle(
        0,
        Signal::Gone {
            id,
            deleted_at: None,
        },
    )
    .await;
    list(&mut t, 0, &["own"]).await;
    assert_eq!(inv.tombstone_count(), 0);
    assert_eq!(backup_uids(&inv), ["own"]);
}

// ------------------------------------------------------------------ restores and their backups

const RESTORES: Watched = Watched::Objects(Kind::Restore);

fn restore_signal(uid: &str, pxb: Option<&str>, backup_cr: &str, listing: bool) -> Signal {
    let id = CrId {
        namespace: "shop".into(),
        ..pxb_cr(uid, pxb)
    };
    let r = Restore {
        uid: uid.into(),
        name: uid.into(),
        owner: Owner::default(),
        backup: backup_cr.into(),
        status: RestoreStatus::Success,
        size_bytes: None,
        resource_count: None,
        volume_count: None,
        created_at: None,
        completed_at: None,
    };
    let item = Some(Item::Restore(r));
    if listing {
        Signal::Listed { id, item }
    } else {
        Signal::Changed { id, item }
    }
}

/// The `backup` label of restore `uid`, if it is exported.
fn restore_backup(inv: &Inventory, uid: &str) -> Option<String> {
    let text = scrape(inv);
    let line = text.lines().find(|l| {
        l.starts_with("pxbackup_restore_status{") && l.contains(&format!("uid=\"{uid}\""))
    })?;
    let rest = &line[line.find("backup=\"")? + 8..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// A backup CR `name` in namespace shop, exported with the name `exported`.
fn named_backup(uid: &str, name: &str, exported: &str, listing: bool) -> Signal {
    let id = CrId {
        uid: uid.into(),
        namespace: "shop".into(),
        name: name.into(),
        pxb_uid: None,
        for_restore: false,
    };
    let item = Some(Item::Backup(Backup {
        name: exported.into(),
        ..backup(uid, BackupStatus::Success)
    }));
    if listing {
        Signal::Listed { id, item }
    } else {
        Signal::Changed { id, item }
    }
}

async fn list_restore_r1(t: &mut Tracker) {
    let signals = [
        Signal::Relist,
        restore_signal("r1", Some("pxb-r1"), "shop-2026-11-23-9b1c4d2", true),
        Signal::ListDone,
    ];
    for s in signals {
        t.handle(1, s).await;
    }
}

#[tokio::test]
async fn a_restore_names_its_backup_as_the_backup_is_exported_whichever_lists_first() {
    for restores_first in [true, false] {
        let (inv, sources) = fixture();
        let mut t = Tracker::new(
            inv.clone(),
            sources.clone(),
            identity(),
            &[everywhere(BACKUPS), everywhere(RESTORES)],
        )
        .await;
        if restores_first {
            list_restore_r1(&mut t).await;
            assert_eq!(
                restore_backup(&inv, "pxb-r1"),
                None,
                "held until the backups are listed"
            );
        }
        t.handle(0, Signal::Relist).await;
        t.handle(
            0,
            named_backup("b1", "shop-2026-11-23-9b1c4d2", "shop-2026-11-23", true),
        )
        .await;
        t.handle(0, Signal::ListDone).await;
        if !restores_first {
            list_restore_r1(&mut t).await;
        }
        assert_eq!(
            restore_backup(&inv, "pxb-r1").as_deref(),
            Some("shop-2026-11-23"),
            "restores first: {restores_first}; keyed by PX-Backup's restore uid"
        );
        // The backup CR goes (PX-Backup removes its restore copy): the restore keeps the name.
        t.handle(
            0,
            Signal::Gone {
                id: CrId {
                    uid: "b1".into(),
                    namespace: "shop".into(),
                    name: "shop-2026-11-23-9b1c4d2".into(),
                    pxb_uid: None,
                    for_restore: false,
                },
                deleted_at: None,
            },
        )
        .await;
        t.handle(
            1,
            restore_signal("r1", Some("pxb-r1"), "shop-2026-11-23-9b1c4d2", false),
        )
        .await;
        assert_eq!(
            restore_backup(&inv, "pxb-r1").as_deref(),
            Some("shop-2026-11-23")
        );
    }
}

#[tokio::test]
async fn a_restore_of_a_backup_not_seen_yet_follows_it_when_it_comes() {
    let (inv, sources) = fixture();
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[everywhere(BACKUPS), everywhere(RESTORES)],
    )
    .await;
    list(&mut t, 0, &[]).await;
    t.handle(1, Signal::Relist).await;
    t.handle(1, Signal::ListDone).await;
    // A restore of a copy PX-Backup has not made yet: spec.backupName as it is.
    t.handle(1, restore_signal("r2", None, "later-7e8f9a0", false))
        .await;
    assert_eq!(restore_backup(&inv, "r2").as_deref(), Some("later-7e8f9a0"));
    // The restore copy arrives: not exported, but it names the backup.
    let (id, b) = restore_copy("copy", "later-7e8f9a0", "shop");
    t.handle(
        0,
        Signal::Changed {
            id,
            item: Some(Item::Backup(b)),
        },
    )
    .await;
    assert_eq!(
        restore_backup(&inv, "r2").as_deref(),
        Some("shop-2026-11-23")
    );
    assert!(!backup_uids(&inv).contains(&"copy".to_owned()));
}

#[tokio::test]
async fn an_all_namespaces_watcher_applies_under_each_namespace_and_relists_them_all() {
    let (inv, sources) = fixture();
    // A journal of a build that applied everything under the source's origin, and one of a
    // namespace's watcher.
    inv.apply(
        &Origin::source(SourceId::Kube),
        vec![Event::Upsert(Object::Backup(backup(
            "old",
            BackupStatus::Success,
        )))],
    )
    .expect("applied");
    replayed(&inv, "a", &["a1"]);
    let mut t = Tracker::new(
        inv.clone(),
        sources.clone(),
        identity(),
        &[everywhere(BACKUPS)],
    )
    .await;
    list(&mut t, 0, &["x"]).await;
    assert_eq!(
        inv.tombstone_count(),
        2,
        "old and a1: the list covers every namespace"
    );
    assert_eq!(backup_uids(&inv), ["a1", "old", "x"]);
    // x is held under its namespace's origin ("ns"), not the source's.
    let none = HashSet::new();
    assert_eq!(
        inv.resync(&Origin::source(SourceId::Kube), Kind::Backup, &none),
        Ok(0)
    );
    assert_eq!(
        inv.resync(&Origin::scoped(SourceId::Kube, "ns"), Kind::Backup, &none),
        Ok(1)
    );
}

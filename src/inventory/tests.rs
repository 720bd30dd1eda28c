//! Retention, expiry and journal behaviour, on a clock that follows paused tokio time.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::store::Freshness;
use super::*;
use crate::exposition::{encode, encode_text, Format};
use crate::model::{
    Backup, BackupStatus, Event, Object, Origin, Owner, Schedule, ScheduleStatus, Timestamp, Volume,
};

const HOUR: Duration = Duration::from_secs(3600);
const T0: i64 = 1_795_395_600_000; // 2026-11-23T01:00:00Z

pub(super) fn backup(uid: &str, status: BackupStatus) -> Backup {
    Backup {
        uid: uid.into(),
        name: format!("backup-{uid}"),
        owner: Owner {
            org_id: "default".into(),
            cluster: "prod-east".into(),
            cluster_uid: "3e0f".into(),
        },
        schedule_name: "nightly".into(),
        namespaces: vec!["shop".into()],
        backup_location: "s3-east".into(),
        backup_object_type: "All".into(),
        status,
        size_bytes: Some(1024),
        resource_count: Some(3),
        volumes: vec![Volume {
            volume: "pvc-1".into(),
            pvc: "data".into(),
            pvc_namespace: "shop".into(),
            storage_class: "px-csi".into(),
            driver: "pxd".into(),
            status: Some(status),
        }],
        created_at: Some(Timestamp(T0)),
        completed_at: status.is_terminal().then_some(Timestamp(T0 + 60_000)),
        ..Backup::default()
    }
}

pub(super) fn upsert(b: Backup) -> Event {
    Event::Upsert(Object::Backup(b))
}

pub(super) fn delete(uid: &str, at: Option<i64>) -> Event {
    Event::Delete {
        kind: Kind::Backup,
        uid: uid.into(),
        deleted_at: at.map(Timestamp),
    }
}

/// The plain text a scrape serves. Both ways: inflated from the segments a gzip scrape sends,
/// and written from the entries as a plain-text scrape is; every test that scrapes checks
/// that they agree.
pub(super) fn scrape(inv: &Inventory) -> String {
    let inflated = String::from_utf8(encode(&inv.snapshot(), Format::Text, &[])).unwrap();
    let written = String::from_utf8(encode_text(inv.text_snapshot(), Format::Text, &[])).unwrap();
    assert_eq!(
        written, inflated,
        "plain text written from the entries = the gzip body's text"
    );
    inflated
}

/// Sample lines of one family (exact name match).
fn lines(text: &str, family: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(family))
        .map(str::to_owned)
        .collect()
}

fn inventory(backfill: Duration) -> Inventory {
    Inventory::in_memory(Clock::tokio_anchored(Timestamp(T0)), backfill)
}

#[tokio::test(start_paused = true)]
async fn deleted_backup_keeps_info_series_with_previous_status() {
    let inv = inventory(24 * HOUR);
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("u1", BackupStatus::Failed))],
    )
    .unwrap();
    let live = scrape(&inv);
    assert_eq!(lines(&live, "pxbackup_backup_status").len(), 1);
    assert!(lines(&live, "pxbackup_backup_deleted_timestamp_seconds").is_empty());

    tokio::time::advance(Duration::from_secs(10)).await;
    inv.apply(&Origin::source(SourceId::Ingest), vec![delete("u1", None)])
        .unwrap();
    let text = scrape(&inv);
    let info = lines(&text, "pxbackup_backup_object_info");
    assert_eq!(info.len(), 1);
    assert!(
        info[0].contains(r#"status="Deleted",previous_status="Failed"} 1"#),
        "{}",
        info[0]
    );
    let vol = lines(&text, "pxbackup_backup_volume_info");
    assert!(
        vol[0].contains(r#"status="Deleted",previous_status="Failed"} 1"#),
        "{}",
        vol[0]
    );
    // Numeric gauges end at deletion.
    for gone in [
        "pxbackup_backup_status",
        "pxbackup_backup_size_bytes",
        "pxbackup_backup_volumes",
    ] {
        assert!(lines(&text, gone).is_empty(), "{gone} still exported");
    }
    let deleted = lines(&text, "pxbackup_backup_deleted_timestamp_seconds");
    assert_eq!(deleted.len(), 1);
    assert!(
        deleted[0].ends_with(",previous_status=\"Failed\"} 1795395610"),
        "{}",
        deleted[0]
    );
    assert_eq!(inv.tombstone_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn previous_status_is_the_last_terminal_one() {
    let inv = inventory(24 * HOUR);
    // Success, then Deleting (PXB deletes the cloud data first): previous stays Success.
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("a", BackupStatus::Success))],
    )
    .unwrap();
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("a", BackupStatus::Deleting))],
    )
    .unwrap();
    let text = scrape(&inv);
    assert!(
        text.contains(r#"status="Deleting",previous_status="Success"} 1"#),
        "{text}"
    );
    // Never finished: the last status seen.
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("b", BackupStatus::InProgress))],
    )
    .unwrap();
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![delete("a", None), delete("b", None)],
    )
    .unwrap();
    let info = lines(&scrape(&inv), "pxbackup_backup_object_info");
    assert!(info
        .iter()
        .any(|l| l.contains(r#"uid="a""#) && l.contains(r#"previous_status="Success""#)));
    assert!(info
        .iter()
        .any(|l| l.contains(r#"uid="b""#) && l.contains(r#"previous_status="InProgress""#)));
}

async fn expires_exactly_after(backfill: Duration) {
    let inv = inventory(backfill);
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("u1", BackupStatus::Success))],
    )
    .unwrap();
    inv.apply(&Origin::source(SourceId::Ingest), vec![delete("u1", None)])
        .unwrap();
    assert_eq!(lines(&scrape(&inv), "pxbackup_backup_object_info").len(), 1);
    tokio::time::advance(backfill - Duration::from_secs(1)).await;
    assert_eq!(
        lines(&scrape(&inv), "pxbackup_backup_object_info").len(),
        1,
        "expired a second early"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        lines(&scrape(&inv), "pxbackup_backup_object_info").is_empty(),
        "not expired on time"
    );
    assert_eq!(inv.stats().tombstones_expired.load(Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn classic_window_expires_on_the_second() {
    expires_exactly_after(Duration::from_secs(
        crate::config::CLASSIC_BACKFILL_HOURS * 3600,
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn federated_window_expires_on_the_second() {
    expires_exactly_after(Duration::from_secs(
        crate::config::FEDERATED_BACKFILL_HOURS * 3600,
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn zero_window_drops_at_once() {
    let inv = inventory(Duration::ZERO);
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("u1", BackupStatus::Success))],
    )
    .unwrap();
    let out = inv
        .apply(&Origin::source(SourceId::Ingest), vec![delete("u1", None)])
        .unwrap();
    assert_eq!(out.applied, 1);
    assert!(lines(&scrape(&inv), "pxbackup_backup_object_info").is_empty());
    assert_eq!(inv.tombstone_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn expiry_task_wakes_for_the_next_tombstone() {
    let inv = std::sync::Arc::new(inventory(HOUR));
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let (inv, stop) = (inv.clone(), stop.clone());
        async move { inv.run_expiry(stop.cancelled_owned()).await }
    });
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("u1", BackupStatus::Success))],
    )
    .unwrap();
    inv.apply(&Origin::source(SourceId::Ingest), vec![delete("u1", None)])
        .unwrap();
    tokio::time::sleep(HOUR + Duration::from_millis(1)).await;
    // Expired by the task itself: nothing scraped in between.
    assert_eq!(inv.tombstone_count(), 0);
    assert_eq!(inv.stats().tombstones_expired.load(Relaxed), 1);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn awkward_events_have_defined_outcomes() {
    let inv = inventory(24 * HOUR);
    // Unknown uid.
    let out = inv
        .apply(
            &Origin::source(SourceId::Ingest),
            vec![delete("nope", None)],
        )
        .unwrap();
    assert_eq!((out.applied, out.ignored), (0, 1));
    assert_eq!(
        inv.stats().ignored[IgnoreReason::UnknownUid as usize].load(Relaxed),
        1
    );

    // Twice: the first deletion time stands.
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("u1", BackupStatus::Success))],
    )
    .unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![delete("u1", Some(T0 + 5_000))],
    )
    .unwrap();
    let out = inv
        .apply(
            &Origin::source(SourceId::Ingest),
            vec![delete("u1", Some(T0 + 9_000))],
        )
        .unwrap();
    assert_eq!(out.ignored, 1);
    assert_eq!(
        inv.stats().ignored[IgnoreReason::AlreadyDeleted as usize].load(Relaxed),
        1
    );
    let text = scrape(&inv);
    assert!(
        lines(&text, "pxbackup_backup_deleted_timestamp_seconds")[0].ends_with(" 1795395605"),
        "{text}"
    );

    // A stale upsert (created before the deletion) does not resurrect the backup.
    let out = inv
        .apply(
            &Origin::source(SourceId::Ingest),
            vec![upsert(backup("u1", BackupStatus::Success))],
        )
        .unwrap();
    assert_eq!(out.ignored, 1);
    assert_eq!(
        inv.stats().ignored[IgnoreReason::StaleUpsert as usize].load(Relaxed),
        1
    );
    assert_eq!(inv.tombstone_count(), 1);

    // A re-creation with the same uid replaces the tombstone.
    let mut again = backup("u1", BackupStatus::InProgress);
    again.created_at = Some(Timestamp(T0 + 6_000));
    inv.apply(&Origin::source(SourceId::Ingest), vec![upsert(again)])
        .unwrap();
    let text = scrape(&inv);
    assert_eq!(inv.tombstone_count(), 0);
    let info = lines(&text, "pxbackup_backup_object_info");
    assert_eq!(info.len(), 1);
    assert!(info[0].contains(r#"status="InProgress""#), "{}", info[0]);

    // A deletion time ahead of ours is clock skew: taken as now.
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![delete("u1", Some(T0 + 3_600_000))],
    )
    .unwrap();
    let text = scrape(&inv);
    assert!(
        lines(&text, "pxbackup_backup_deleted_timestamp_seconds")[0].ends_with(" 1795395610"),
        "{text}"
    );

    // A deletion older than the window leaves nothing behind.
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("old", BackupStatus::Success))],
    )
    .unwrap();
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![delete("old", Some(T0 - 25 * 3_600_000))],
    )
    .unwrap();
    assert!(!scrape(&inv).contains(r#"uid="old""#));
}

#[tokio::test(start_paused = true)]
async fn tombstones_and_last_success_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_anchored(Timestamp(T0));
    {
        let (inv, report) =
            Inventory::open(clock.clone(), Options::with_backfill(2 * HOUR), dir.path()).unwrap();
        assert_eq!(report.tombstones + report.live_backups + report.expired, 0);
        inv.apply(
            &Origin::source(SourceId::Ingest),
            vec![
                upsert(backup("u1", BackupStatus::Success)),
                upsert(backup("u2", BackupStatus::Failed)),
                upsert(backup("u3", BackupStatus::Success)),
            ],
        )
        .unwrap();
        inv.apply(
            &Origin::source(SourceId::Ingest),
            vec![delete("u1", Some(T0 - 3_600_000)), delete("u2", None)],
        )
        .unwrap();
        // Dropped without any shutdown: what is on disk is what a kill -9 leaves.
    }
    tokio::time::advance(Duration::from_secs(1800)).await;
    let (inv, report) =
        Inventory::open(clock.clone(), Options::with_backfill(2 * HOUR), dir.path()).unwrap();
    assert_eq!(report.tombstones, 2);
    let text = scrape(&inv);
    let deleted = lines(&text, "pxbackup_backup_deleted_timestamp_seconds");
    assert!(
        deleted
            .iter()
            .any(|l| l.contains(r#"uid="u1""#) && l.ends_with(" 1795392000")),
        "{deleted:?}"
    );
    assert!(
        deleted
            .iter()
            .any(|l| l.contains(r#"uid="u2""#) && l.ends_with(" 1795395600")),
        "{deleted:?}"
    );
    // The live backup is back as last seen, until its source re-lists.
    assert_eq!(report.live_backups, 1);
    let status = lines(&text, "pxbackup_backup_status");
    assert!(
        status
            .iter()
            .any(|l| l.contains(r#"uid="u3""#) && l.ends_with("} 6")),
        "{status:?}"
    );
    // The newest success of the schedule is remembered.
    let ls = lines(&text, "pxbackup_schedule_last_success_timestamp_seconds");
    assert_eq!(ls.len(), 1);
    assert!(ls[0].ends_with(" 1795395660"), "{}", ls[0]);

    // Original schedule: u1 was deleted at T0-1h with a 2 h window, so it goes at T0+1h.
    tokio::time::advance(Duration::from_secs(1800)).await;
    let text = scrape(&inv);
    assert!(!text.contains(r#"uid="u1""#), "u1 outlived its window");
    assert!(text.contains(r#"uid="u2""#));
    drop(inv);

    // Expired (u1 while running, u2 while down): neither comes back.
    tokio::time::advance(2 * HOUR).await;
    let (inv, report) =
        Inventory::open(clock, Options::with_backfill(2 * HOUR), dir.path()).unwrap();
    assert_eq!((report.tombstones, report.expired), (0, 2));
    assert_eq!(inv.tombstone_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_disk_loses_nothing_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_anchored(Timestamp(T0));
    let (inv, _) =
        Inventory::open(clock.clone(), Options::with_backfill(24 * HOUR), dir.path()).unwrap();
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![
            upsert(backup("u1", BackupStatus::Success)),
            upsert(backup("u2", BackupStatus::Success)),
        ],
    )
    .unwrap();
    {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        inv.journal.as_ref().unwrap().redirect_writes_for_test(full);
    }
    let out = inv.apply(&Origin::source(SourceId::Ingest), vec![delete("u1", None)]);
    assert!(
        matches!(&out, Err(e) if e.0.contains("No space left")),
        "the caller is told the batch is not durable: {out:?}"
    );
    assert_eq!(inv.journal_errors(), 1);
    assert!(scrape(&inv).contains(r#"status="Deleted""#));
    // The next change rewrites the whole journal (compaction makes a new file).
    inv.apply(&Origin::source(SourceId::Ingest), vec![delete("u2", None)])
        .unwrap();
    assert_eq!(inv.journal_errors(), 1);
    drop(inv);
    let (_, report) =
        Inventory::open(clock, Options::with_backfill(24 * HOUR), dir.path()).unwrap();
    assert_eq!(report.tombstones, 2);
}

#[tokio::test(start_paused = true)]
async fn expiry_gives_memory_back() {
    let inv = inventory(HOUR);
    let n = 5_000;
    inv.apply(
        &Origin::source(SourceId::Ingest),
        (0..n)
            .map(|i| upsert(backup(&format!("u{i}"), BackupStatus::Success)))
            .collect(),
    )
    .unwrap();
    inv.apply(
        &Origin::source(SourceId::Ingest),
        (0..n).map(|i| delete(&format!("u{i}"), None)).collect(),
    )
    .unwrap();
    assert_eq!(inv.tombstone_count(), n);
    tokio::time::advance(HOUR).await;
    assert_eq!(inv.expire_due(inv.clock().now()), n);
    let st = inv.lock();
    assert!(st.backups.capacity() < 64, "{}", st.backups.capacity());
    assert!(st.expiry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn resync_tombstones_what_the_source_no_longer_lists() {
    let inv = inventory(HOUR);
    inv.apply(
        &Origin::source(SourceId::Kube),
        vec![
            upsert(backup("k1", BackupStatus::Success)),
            upsert(backup("k2", BackupStatus::Failed)),
        ],
    )
    .unwrap();
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![upsert(backup("i1", BackupStatus::Success))],
    )
    .unwrap();
    let listed: HashSet<String> = ["k1".to_owned()].into();
    assert_eq!(
        inv.resync(&Origin::source(SourceId::Kube), Kind::Backup, &listed),
        Ok(1)
    );
    let text = scrape(&inv);
    let info = lines(&text, "pxbackup_backup_object_info");
    assert!(info
        .iter()
        .any(|l| l.contains(r#"uid="k2""#)
            && l.contains(r#"status="Deleted",previous_status="Failed""#)));
    // Another source's objects are not touched.
    assert!(info
        .iter()
        .any(|l| l.contains(r#"uid="i1""#) && l.contains(r#"status="Success""#)));
    // A second resync does not delete the tombstone again.
    assert_eq!(
        inv.resync(&Origin::source(SourceId::Kube), Kind::Backup, &listed),
        Ok(0)
    );
}

#[tokio::test(start_paused = true)]
async fn schedule_deletion_forgets_its_last_success() {
    let inv = inventory(HOUR);
    let owner = backup("x", BackupStatus::Success).owner;
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![
            Event::Upsert(Object::Schedule(Schedule {
                uid: "s1".into(),
                name: "nightly".into(),
                owner,
                status: ScheduleStatus::Active,
                interval_seconds: None,
            })),
            upsert(backup("x", BackupStatus::Success)),
        ],
    )
    .unwrap();
    assert_eq!(
        lines(
            &scrape(&inv),
            "pxbackup_schedule_last_success_timestamp_seconds"
        )
        .len(),
        1
    );
    inv.apply(
        &Origin::source(SourceId::Ingest),
        vec![Event::Delete {
            kind: Kind::Schedule,
            uid: "s1".into(),
            deleted_at: None,
        }],
    )
    .unwrap();
    assert!(lines(
        &scrape(&inv),
        "pxbackup_schedule_last_success_timestamp_seconds"
    )
    .is_empty());
}

fn schedule(uid: &str, owner: Owner) -> Event {
    Event::Upsert(Object::Schedule(Schedule {
        uid: uid.into(),
        name: "nightly".into(),
        owner,
        status: ScheduleStatus::Active,
        interval_seconds: None,
    }))
}

/// `schedule_namespace` of each last-success series.
fn last_success_namespaces(inv: &Inventory) -> Vec<String> {
    let mut out: Vec<String> = lines(
        &scrape(inv),
        "pxbackup_schedule_last_success_timestamp_seconds",
    )
    .iter()
    .filter_map(|l| {
        let rest = &l[l.find("schedule_namespace=\"")? + 20..];
        Some(rest[..rest.find('"')?].to_owned())
    })
    .collect();
    out.sort();
    out
}

#[tokio::test(start_paused = true)]
async fn same_named_schedules_of_two_namespaces_have_a_last_success_each() {
    let inv = inventory(HOUR);
    let owner = backup("x", BackupStatus::Success).owner;
    let (shop, crm) = (
        Origin::scoped(SourceId::Kube, "shop"),
        Origin::scoped(SourceId::Kube, "crm"),
    );
    for (origin, s, b) in [(&shop, "s-shop", "b-shop"), (&crm, "s-crm", "b-crm")] {
        inv.apply(
            origin,
            vec![
                schedule(s, owner.clone()),
                upsert(backup(b, BackupStatus::Success)),
            ],
        )
        .unwrap();
    }
    assert_eq!(last_success_namespaces(&inv), ["crm", "shop"]);
    // Sources without namespaces keep an empty one (on their own cluster: an empty one of
    // the same cluster and name is taken as a journal's from before namespaces, below).
    let mut pushed = backup("b-ingest", BackupStatus::Success);
    pushed.owner.cluster_uid = "7a1b".into();
    inv.apply(&Origin::source(SourceId::Ingest), vec![upsert(pushed)])
        .unwrap();
    assert_eq!(last_success_namespaces(&inv), ["", "crm", "shop"]);
    // Deleting one schedule forgets its own series only.
    inv.apply(
        &crm,
        vec![Event::Delete {
            kind: Kind::Schedule,
            uid: "s-crm".into(),
            deleted_at: None,
        }],
    )
    .unwrap();
    assert_eq!(last_success_namespaces(&inv), ["", "shop"]);
}

#[tokio::test(start_paused = true)]
async fn a_last_success_journaled_without_namespace_moves_to_its_schedules_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let owner = backup("x", BackupStatus::Success).owner;
    let legacy_time = T0 + 3_600_000;
    {
        let (inv, _) = Inventory::open(
            Clock::tokio_anchored(Timestamp(T0)),
            Options::with_backfill(HOUR),
            dir.path(),
        )
        .unwrap();
        // What a build without namespaces wrote for the kube source: an empty one.
        let mut b = backup("old", BackupStatus::Success);
        b.completed_at = Some(Timestamp(legacy_time));
        inv.apply(&Origin::source(SourceId::Kube), vec![upsert(b)])
            .unwrap();
    }
    let (inv, _) = Inventory::open(
        Clock::tokio_anchored(Timestamp(T0)),
        Options::with_backfill(HOUR),
        dir.path(),
    )
    .unwrap();
    assert_eq!(last_success_namespaces(&inv), [""]);
    // The schedule's next success, older than the journaled one: one series, the later time.
    let shop = Origin::scoped(SourceId::Kube, "shop");
    inv.apply(
        &shop,
        vec![
            schedule("s", owner),
            upsert(backup("new", BackupStatus::Success)),
        ],
    )
    .unwrap();
    let text = scrape(&inv);
    let series = lines(&text, "pxbackup_schedule_last_success_timestamp_seconds");
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(
        series[0].contains("schedule_namespace=\"shop\""),
        "{series:?}"
    );
    assert!(
        series[0].ends_with(&format!(" {}", legacy_time / 1000)),
        "{series:?}"
    );
    // And so it stays after a restart: the empty one was forgotten in the journal too.
    drop(inv);
    let (inv, _) = Inventory::open(
        Clock::tokio_anchored(Timestamp(T0)),
        Options::with_backfill(HOUR),
        dir.path(),
    )
    .unwrap();
    assert_eq!(last_success_namespaces(&inv), ["shop"]);
}

#[tokio::test(start_paused = true)]
async fn a_backup_deleted_while_down_is_tombstoned_by_the_first_relist() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_anchored(Timestamp(T0));
    {
        let (inv, _) =
            Inventory::open(clock.clone(), Options::with_backfill(24 * HOUR), dir.path()).unwrap();
        inv.apply(
            &Origin::source(SourceId::Kube),
            vec![
                upsert(backup("k1", BackupStatus::Success)),
                upsert(backup("k2", BackupStatus::Failed)),
            ],
        )
        .unwrap();
        inv.apply(
            &Origin::source(SourceId::Kube),
            vec![upsert(backup("k2", BackupStatus::Deleting))],
        )
        .unwrap();
    }
    // Down for ten minutes; k2 is deleted meanwhile.
    tokio::time::advance(Duration::from_secs(600)).await;
    let (inv, report) =
        Inventory::open(clock, Options::with_backfill(24 * HOUR), dir.path()).unwrap();
    assert_eq!(report.live_backups, 2);
    let listed: HashSet<String> = ["k1".to_owned()].into();
    assert_eq!(
        inv.resync(&Origin::source(SourceId::Kube), Kind::Backup, &listed),
        Ok(1)
    );
    let text = scrape(&inv);
    let info = lines(&text, "pxbackup_backup_object_info");
    assert!(
        info.iter().any(|l| l.contains(r#"uid="k2""#)
            && l.contains(r#"status="Deleted",previous_status="Failed""#)),
        "{info:?}"
    );
    // Its deletion time is when it was found missing.
    let deleted = lines(&text, "pxbackup_backup_deleted_timestamp_seconds");
    assert!(deleted[0].ends_with(" 1795396200"), "{deleted:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_relist_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (inv, _) = Inventory::open(
        Clock::tokio_anchored(Timestamp(T0)),
        Options::with_backfill(HOUR),
        dir.path(),
    )
    .unwrap();
    let fleet = || {
        (0..100)
            .map(|i| upsert(backup(&format!("u{i}"), BackupStatus::Success)))
            .collect()
    };
    inv.apply(&Origin::source(SourceId::Kube), fleet()).unwrap();
    let written = std::fs::metadata(dir.path().join("tombstones.journal"))
        .unwrap()
        .len();
    inv.apply(&Origin::source(SourceId::Kube), fleet()).unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("tombstones.journal"))
            .unwrap()
            .len(),
        written
    );
}

#[tokio::test(start_paused = true)]
async fn a_backup_dropped_at_once_stays_dropped_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_anchored(Timestamp(T0));
    {
        let (inv, _) = Inventory::open(
            clock.clone(),
            Options::with_backfill(Duration::ZERO),
            dir.path(),
        )
        .unwrap();
        inv.apply(
            &Origin::source(SourceId::Ingest),
            vec![upsert(backup("u1", BackupStatus::Success))],
        )
        .unwrap();
        inv.apply(&Origin::source(SourceId::Ingest), vec![delete("u1", None)])
            .unwrap();
    }
    let (inv, report) =
        Inventory::open(clock, Options::with_backfill(Duration::ZERO), dir.path()).unwrap();
    assert_eq!((report.live_backups, report.tombstones), (0, 0));
    assert!(!scrape(&inv).contains(r#"uid="u1""#));
}

#[tokio::test(start_paused = true)]
async fn the_journal_stays_bounded_under_endless_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (inv, _) = Inventory::open(
        Clock::tokio_anchored(Timestamp(T0)),
        Options::with_backfill(HOUR),
        dir.path(),
    )
    .unwrap();
    let journal = dir.path().join("tombstones.journal");
    let mut record_size = 0;
    for i in 0..5_000u64 {
        let mut b = backup("u1", BackupStatus::InProgress);
        b.size_bytes = Some(i);
        inv.apply(&Origin::source(SourceId::Kube), vec![upsert(b)])
            .unwrap();
        if i == 0 {
            record_size = std::fs::metadata(&journal).unwrap().len();
        }
    }
    let size = std::fs::metadata(&journal).unwrap().len();
    // One live backup: compaction keeps the file near 2 x live + 1024 records, not 5,000.
    assert!(
        size < record_size * 1_100,
        "{size} bytes for records of {record_size}"
    );
    drop(inv);
    let (_, report) = Inventory::open(
        Clock::tokio_anchored(Timestamp(T0)),
        Options::with_backfill(HOUR),
        dir.path(),
    )
    .unwrap();
    assert_eq!(report.live_backups, 1);
}

/// A VM backup and a namespace backup with every part the six information families describe.
fn vm_backup(uid: &str, status: BackupStatus) -> Backup {
    use crate::model::{VirtualMachine, VmResource};
    Backup {
        backup_object_type: "VirtualMachine".into(),
        virtual_machines: vec![VirtualMachine {
            name: "erp-db".into(),
            namespace: "vms".into(),
            os_name: "rhel9".into(),
            status: Some(status),
        }],
        vm_resources: vec![VmResource {
            group: "kubevirt.io".into(),
            version: "v1".into(),
            kind: "VirtualMachine".into(),
            name: "erp-db".into(),
            namespace: "vms".into(),
            virtual_machines: vec!["erp-db".into()],
        }],
        ..backup(uid, status)
    }
}

fn namespace_backup(uid: &str, status: BackupStatus) -> Backup {
    use crate::model::{NamespaceResources, NamespaceStatus, ResourceType};
    Backup {
        namespace_resources: vec![NamespaceResources {
            namespace: "shop".into(),
            status: Some(NamespaceStatus::PartialSuccess),
            total_resources: Some(12),
            total_volumes: Some(1),
            failed_resources: Some(2),
            failed_volumes: Some(0),
            resource_types: vec![ResourceType {
                name: "apps/v1/Deployment".into(),
                total_resources: Some(3),
                failed_resources: Some(1),
            }],
        }],
        failed_resource_count: Some(2),
        failed_volume_count: Some(0),
        ..backup(uid, status)
    }
}

const SIX_INFO_FAMILIES: [&str; 6] = [
    "pxbackup_backup_object_info",
    "pxbackup_backup_volume_info",
    "pxbackup_virtual_machine_info",
    "pxbackup_virtual_machine_resource_info",
    "pxbackup_namespace_resource_info",
    "pxbackup_namespace_resource_type_info",
];

#[tokio::test(start_paused = true)]
async fn all_six_information_families_keep_a_deleted_backup_and_expire_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_anchored(Timestamp(T0));
    let (inv, _) =
        Inventory::open(clock.clone(), Options::with_backfill(HOUR), dir.path()).unwrap();
    let origin = Origin::source(SourceId::Ingest);
    inv.apply(
        &origin,
        vec![
            upsert(vm_backup("vm1", BackupStatus::PartialSuccess)),
            upsert(namespace_backup("ns1", BackupStatus::Success)),
        ],
    )
    .unwrap();
    let live = scrape(&inv);
    for family in SIX_INFO_FAMILIES {
        assert!(!lines(&live, family).is_empty(), "no live {family}");
    }
    assert!(lines(&live, "pxbackup_namespace_failed_resources")[0].ends_with("} 2"));
    assert!(lines(&live, "pxbackup_virtual_machine_info")[0]
        .contains(r#"virtual_machine="erp-db",virtual_machine_namespace="vms",os_name="rhel9",status="PartialSuccess""#));
    tokio::time::advance(Duration::from_secs(60)).await;
    inv.apply(&origin, vec![delete("vm1", None), delete("ns1", None)])
        .unwrap();
    let check = |text: &str| {
        for family in SIX_INFO_FAMILIES {
            let l = lines(text, family);
            assert!(!l.is_empty(), "{family} lost the tombstone");
            for line in l {
                assert!(
                    line.contains(r#"status="Deleted",previous_status=""#),
                    "{line}"
                );
                assert!(!line.contains(r#"previous_status="""#), "{line}");
            }
        }
        for gone in [
            "pxbackup_namespace_resources",
            "pxbackup_backup_failed_resources",
        ] {
            assert!(lines(text, gone).is_empty(), "{gone} outlives the backup");
        }
    };
    check(&scrape(&inv));
    // kill -9: the inventory is dropped without a compaction.
    drop(inv);
    let (inv, report) =
        Inventory::open(clock.clone(), Options::with_backfill(HOUR), dir.path()).unwrap();
    assert_eq!(report.tombstones, 2);
    check(&scrape(&inv));
    tokio::time::advance(HOUR - Duration::from_secs(1)).await;
    check(&scrape(&inv));
    tokio::time::advance(Duration::from_secs(1)).await;
    let expired = scrape(&inv);
    for family in SIX_INFO_FAMILIES {
        assert!(
            lines(&expired, family).is_empty(),
            "{family} outlives the window"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_backup_deleted_while_it_runs_keeps_its_running_status() {
    let inv = inventory(HOUR);
    let origin = Origin::source(SourceId::Ingest);
    for status in [
        BackupStatus::Pending,
        BackupStatus::InProgress,
        BackupStatus::Deleting,
    ] {
        inv.apply(&origin, vec![upsert(backup("u1", status))])
            .unwrap();
    }
    inv.apply(&origin, vec![delete("u1", None)]).unwrap();
    let text = scrape(&inv);
    assert!(
        lines(&text, "pxbackup_backup_object_info")[0]
            .contains(r#"status="Deleted",previous_status="InProgress""#),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_upsert_without_created_at_does_not_revive_a_deleted_backup() {
    let inv = inventory(HOUR);
    let origin = Origin::source(SourceId::Ingest);
    inv.apply(&origin, vec![upsert(backup("u1", BackupStatus::Success))])
        .unwrap();
    inv.apply(&origin, vec![delete("u1", None)]).unwrap();
    let retried = Backup {
        created_at: None,
        ..backup("u1", BackupStatus::Success)
    };
    let out = inv.apply(&origin, vec![upsert(retried)]).unwrap();
    assert_eq!(out.ignored, 1);
    assert_eq!(
        inv.stats().ignored[IgnoreReason::StaleUpsert as usize].load(Relaxed),
        1
    );
    assert_eq!(inv.tombstone_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_upsert_renders_nothing() {
    let inv = inventory(HOUR);
    let origin = Origin::source(SourceId::Ingest);
    let batch: Vec<Event> = (0..100)
        .map(|i| upsert(backup(&format!("u{i}"), BackupStatus::Success)))
        .collect();
    inv.apply(&origin, batch.clone()).unwrap();
    inv.snapshot();
    inv.apply(&origin, batch).unwrap();
    let st = inv.lock();
    let stale = st
        .backups
        .view(store::Freshness::Exact)
        .into_iter()
        .filter(|g| matches!(g, store::GroupView::Stale(_)))
        .count();
    assert_eq!(stale, 0, "an unchanged re-list made groups stale");
}

#[tokio::test(start_paused = true)]
async fn resource_series_are_capped_per_backup_and_counted() {
    use crate::model::VmResource;
    let inv = Inventory::new(
        Clock::tokio_anchored(Timestamp(T0)),
        Options {
            max_resource_series_per_backup: 3,
            ..Options::with_backfill(HOUR)
        },
    );
    let big = Backup {
        vm_resources: (0..10)
            .map(|i| VmResource {
                kind: "ConfigMap".into(),
                version: "v1".into(),
                name: format!("cm-{i}"),
                ..VmResource::default()
            })
            .collect(),
        ..backup("u1", BackupStatus::Success)
    };
    inv.apply(&Origin::source(SourceId::Ingest), vec![upsert(big.clone())])
        .unwrap();
    // The same backup again is unchanged: not counted twice.
    inv.apply(&Origin::source(SourceId::Ingest), vec![upsert(big)])
        .unwrap();
    assert_eq!(
        lines(&scrape(&inv), "pxbackup_virtual_machine_resource_info").len(),
        3
    );
    assert_eq!(inv.stats().resource_series_dropped.load(Relaxed), 7);
}

#[tokio::test(start_paused = true)]
async fn the_summary_counts_without_scanning() {
    let inv = inventory(HOUR);
    let origin = Origin::source(SourceId::Ingest);
    inv.apply(
        &origin,
        vec![
            upsert(backup("a", BackupStatus::Success)),
            upsert(backup("b", BackupStatus::Failed)),
            upsert(backup("c", BackupStatus::Success)),
        ],
    )
    .unwrap();
    inv.apply(&origin, vec![delete("b", None)]).unwrap();
    let s = inv.summary();
    assert_eq!(s.backups_by_status.get("Success"), Some(&2));
    assert_eq!(s.backups_by_status.get("Failed"), None);
    assert_eq!(s.tombstones_by_previous_status.get("Failed"), Some(&1));
    assert_eq!(s.objects.get("backup"), Some(&2));
    assert!(s.cluster_uids.contains("3e0f"));
    inv.apply(&origin, vec![delete("a", None), delete("c", None)])
        .unwrap();
    assert!(
        inv.summary().cluster_uids.is_empty(),
        "no live object names the cluster"
    );
}

/// The upgrade path: a journal written by the previous release (format 1, after `kill -9`)
/// comes back with nothing lost: every series that release exported from it is exported again
/// (`pxbackup_backup_status` now also carries `backup_namespace`).
#[tokio::test(start_paused = true)]
async fn a_format_1_journal_comes_back_whole() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures.join("v1.journal"),
        dir.path().join(crate::persistence::FILE_NAME),
    )
    .unwrap();
    // An hour after the fixture's deletions, inside their 24 h window.
    let clock = Clock::tokio_anchored(Timestamp(1_795_603_615_000 + 3_600_000));
    let (inv, report) =
        Inventory::open(clock, Options::with_backfill(24 * HOUR), dir.path()).unwrap();
    assert_eq!(report.upgraded_from, Some(1));
    assert_eq!((report.tombstones, report.live_backups), (5, 3));
    let ours = scrape(&inv);
    let ours: HashSet<String> = ours
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            if l.starts_with("pxbackup_backup_status{") {
                let start = l.find(",backup_namespace=").unwrap();
                let end = start + l[start..].find("\"}").unwrap() + 1;
                format!("{}{}", &l[..start], &l[end..])
            } else if l.starts_with("pxbackup_schedule_last_success_timestamp_seconds{") {
                // Format 1 kept no namespace: the label added since is empty.
                l.replacen(",schedule_namespace=\"\"", "", 1)
            } else {
                l.to_owned()
            }
        })
        .collect();
    let expected = std::fs::read_to_string(fixtures.join("v1.expected.txt")).unwrap();
    for line in expected.lines() {
        assert!(ours.contains(line), "lost in the upgrade: {line}");
    }
    // And the file is format 2 now: a second start reads it without upgrading.
    drop(inv);
    let clock = Clock::tokio_anchored(Timestamp(1_795_603_615_000 + 3_600_000));
    let (_, again) = Inventory::open(clock, Options::with_backfill(24 * HOUR), dir.path()).unwrap();
    assert_eq!(again.upgraded_from, None);
    assert_eq!((again.tombstones, again.live_backups), (5, 3));
}

/// A burst of changes in place (more groups than a scrape's budget): scrapes serve them as
/// rendered last and the background refresher renders them within about a second; a handful
/// of changes (up to the budget) always shows in the very next scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_reaches_scrapes_through_the_refresher() {
    let inv = Arc::new(Inventory::in_memory(Clock::System, HOUR));
    let origin = Origin::source(SourceId::Ingest);
    // More than the refresher takes in one hold of the lock, so a pass takes several.
    let groups = snapshot::REMAKE_AT_ONCE * 2 + SCRAPE_RENDER_BUDGET;
    let uids: Vec<String> = (0..groups * store::GROUP)
        .map(|i| format!("u{i}"))
        .collect();
    let all = |status| {
        uids.iter()
            .map(|u| upsert(backup(u, status)))
            .collect::<Vec<_>>()
    };
    inv.apply(&origin, all(BackupStatus::InProgress)).unwrap();
    inv.snapshot();
    let failed_in = |snapshot: &Snapshot| {
        let text = String::from_utf8(encode(snapshot, Format::Text, &[])).unwrap();
        lines(&text, "pxbackup_backup_status")
            .iter()
            .filter(|l| l.ends_with(" 4"))
            .count()
    };

    // A handful: at once.
    let one = vec![upsert(backup(&uids[0], BackupStatus::Failed))];
    inv.apply(&origin, one).unwrap();
    assert_eq!(failed_in(&inv.snapshot_for_scrape()), 1);

    // As many groups as the budget: at once too.
    let budget_full: Vec<_> = (0..SCRAPE_RENDER_BUDGET)
        .map(|g| upsert(backup(&uids[g * store::GROUP + 1], BackupStatus::Failed)))
        .collect();
    inv.apply(&origin, budget_full).unwrap();
    let at_once = failed_in(&inv.snapshot_for_scrape());
    assert_eq!(at_once, 1 + SCRAPE_RENDER_BUDGET);

    // Every group, more than the budget: the scrape serves them as rendered last and the
    // refresher renders them all.
    inv.apply(&origin, all(BackupStatus::Failed)).unwrap();
    assert_eq!(failed_in(&inv.snapshot_for_scrape()), at_once);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let refresher = tokio::spawn(Arc::clone(&inv).run_refresher(async move {
        let _ = stopped.await;
    }));
    // Looking renders nothing, so only the refresher can make the rest.
    let look = || inv.snapshot_with(Freshness::Budget(0)).0;
    assert_eq!(failed_in(&look()), at_once);
    let started = std::time::Instant::now();
    while failed_in(&look()) < uids.len() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the refresher never rendered the rest"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    refresher.await.unwrap();
}

/// What a scrape makes, the background refresher packs (after a restart nothing is packed
/// until then); packed or not, plain or gzip, a scrape serves the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresher_packs_what_scrapes_made_and_the_text_stays_the_same() {
    use crate::exposition::Scrape;
    use std::io::Read;
    let inv = Arc::new(Inventory::in_memory(Clock::System, HOUR));
    let origin = Origin::source(SourceId::Ingest);
    let n = store::GROUP * store::PACK * 2 + 10;
    let uids: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let events = uids
        .iter()
        .map(|u| upsert(backup(u, BackupStatus::Success)));
    inv.apply(&origin, events.collect()).unwrap();
    let packs = |s: &Snapshot| {
        let parts = &s.kinds[0].parts;
        let packed = parts
            .iter()
            .filter(|p| matches!(p, Part::Packed(_)))
            .count();
        (packed, parts.len())
    };
    let served = |s: &Snapshot| {
        let text = String::from_utf8(encode(s, Format::Text, &[])).unwrap();
        let gzip = Scrape::new(s, Format::Text, Vec::new()).gzip().concat();
        let mut inflated = String::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert_eq!(inflated, text, "the gzip body is the plain text");
        text
    };
    let first = inv.snapshot_for_scrape();
    assert_eq!(packs(&first), (0, n.div_ceil(store::GROUP)));
    let before = served(&first);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let refresher = tokio::spawn(Arc::clone(&inv).run_refresher(async move {
        let _ = stopped.await;
    }));
    let look = || inv.snapshot_with(Freshness::Budget(0)).0;
    let wait_for = |want: (usize, usize)| {
        let look = &look;
        async move {
            let started = std::time::Instant::now();
            while packs(&look()) != want {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "never packed: {:?}, want {want:?}",
                    packs(&look())
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for((3, 3)).await;
    assert_eq!(served(&look()), before);

    // One change in the second run: once the refresher made its group again, the run is
    // packed again, with the change.
    let changed = store::GROUP * store::PACK + 3;
    inv.apply(
        &origin,
        vec![upsert(backup(&uids[changed], BackupStatus::Failed))],
    )
    .unwrap();
    let started = std::time::Instant::now();
    while packs(&look()) != (3, 3) || served(&look()) == before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never packed again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = served(&look());
    let failed = lines(&after, "pxbackup_backup_status")
        .into_iter()
        .filter(|l| l.ends_with(" 4"))
        .count();
    assert_eq!(failed, 1);
    let _ = stop.send(());
    refresher.await.unwrap();
}

//! The mapping against the CRs in `tests/fixtures/kube/`, written from Stork's field names.

use kube::core::DeserializeGuard;
use serde_json::json;

use super::*;

const BACKUP_PENDING: &str = include_str!("../../../../tests/fixtures/kube/backup-pending.json");
const BACKUP_SUCCESSFUL: &str =
    include_str!("../../../../tests/fixtures/kube/backup-successful.json");
const BACKUP_UNKNOWN: &str =
    include_str!("../../../../tests/fixtures/kube/backup-unknown-status.json");
const BACKUP_MALFORMED: &str =
    include_str!("../../../../tests/fixtures/kube/backup-malformed.json");
const RESTORE_SUCCESSFUL: &str =
    include_str!("../../../../tests/fixtures/kube/restore-successful.json");
const SCHEDULE_SUSPENDED: &str =
    include_str!("../../../../tests/fixtures/kube/schedule-suspended.json");

fn cluster() -> ClusterIdentity {
    ClusterIdentity {
        name: "prod-east".into(),
        uid: "8f1e2d3c-4b5a-4968-8776-655443322110".into(),
    }
}

fn parse<K: serde::de::DeserializeOwned>(text: &str) -> K {
    serde_json::from_str(text).expect("fixture parses")
}

fn with(text: &str, patch: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
    patch(&mut v);
    v.to_string()
}

fn backup_of(m: Mapped) -> Backup {
    match m.object {
        Object::Backup(b) => b,
        other => panic!("not a backup: {other:?}"),
    }
}

#[test]
fn successful_backup_with_pxb_annotations() {
    let cr: ApplicationBackup = parse(BACKUP_SUCCESSFUL);
    let mapped = cr.to_object(&cluster()).unwrap();
    assert!(mapped.unknown_statuses.is_empty());
    let b = backup_of(mapped);
    assert_eq!(
        b.uid, "9b1c4d2e-0000-4000-8000-00000000b001",
        "PXB's uid wins"
    );
    assert_eq!(b.name, "nightly-2026-11-23", "PXB's name wins");
    assert_eq!(
        b.owner,
        Owner {
            org_id: "finance".into(),
            cluster: "prod-east".into(),
            cluster_uid: "8f1e2d3c-4b5a-4968-8776-655443322110".into(),
        }
    );
    assert_eq!(b.schedule_name, "nightly-shop");
    assert_eq!(b.namespaces, ["shop", "shop-db"]);
    assert_eq!(b.backup_location, "s3-east");
    assert_eq!(b.backup_object_type, "All");
    assert_eq!(b.status, BackupStatus::Success);
    assert_eq!(b.size_bytes, Some(1_073_742_848));
    assert_eq!(b.resource_count, Some(42));
    assert_eq!(
        b.created_at,
        Some(Timestamp::parse_rfc3339("2026-11-23T01:00:00Z").unwrap()),
        "triggerTimestamp, not creationTimestamp"
    );
    assert_eq!(
        crate::model::elapsed_secs(b.created_at, b.completed_at),
        Some(250.0)
    );
    assert_eq!(
        b.volumes,
        vec![
            Volume {
                volume: "pvc-c3d4e5f6".into(),
                pvc: "data".into(),
                pvc_namespace: "shop".into(),
                storage_class: "px-csi-db".into(),
                driver: "pxd".into(),
                status: Some(BackupStatus::Success),
            },
            Volume {
                volume: "pvc-d4e5f6a7".into(),
                pvc: "logs".into(),
                pvc_namespace: "shop-db".into(),
                storage_class: "gp3".into(),
                driver: "kdmp".into(),
                status: Some(BackupStatus::Success),
            },
        ]
    );
}

#[test]
fn fresh_backup_is_pending_with_metadata_identity() {
    let b = backup_of(
        parse::<ApplicationBackup>(BACKUP_PENDING)
            .to_object(&cluster())
            .unwrap(),
    );
    assert_eq!(b.uid, "5a0c9e6e-1f7d-4c4e-9d55-2a3b4c5d6e01");
    assert_eq!(b.name, "shop-manual-1");
    assert_eq!(b.owner.org_id, DEFAULT_ORG_ID);
    assert_eq!(b.schedule_name, "");
    assert_eq!(b.status, BackupStatus::Pending);
    assert!(b.volumes.is_empty(), "volumes: null");
    assert_eq!(
        b.created_at,
        Some(Timestamp::parse_rfc3339("2026-11-23T01:00:00Z").unwrap()),
        "no triggerTimestamp yet: creationTimestamp"
    );
    assert_eq!(b.completed_at, None);
}

#[test]
fn every_stork_backup_status_maps_as_designed() {
    for (stork, pxb) in [
        ("", BackupStatus::Pending),
        ("Pending", BackupStatus::Pending),
        ("InProgress", BackupStatus::InProgress),
        ("InCleanup", BackupStatus::InProgress),
        ("Successful", BackupStatus::Success),
        ("Failed", BackupStatus::Failed),
        ("PartialSuccess", BackupStatus::PartialSuccess),
    ] {
        let text = with(BACKUP_PENDING, |v| v["status"]["status"] = json!(stork));
        let b = backup_of(
            parse::<ApplicationBackup>(&text)
                .to_object(&cluster())
                .unwrap(),
        );
        assert_eq!(b.status, pxb, "{stork:?}");
    }
    let text = with(BACKUP_PENDING, |v| v["status"] = json!(null));
    let b = backup_of(
        parse::<ApplicationBackup>(&text)
            .to_object(&cluster())
            .unwrap(),
    );
    assert_eq!(b.status, BackupStatus::Pending, "no status at all");
}

#[test]
fn unknown_status_is_invalid_and_reported() {
    let mapped = parse::<ApplicationBackup>(BACKUP_UNKNOWN)
        .to_object(&cluster())
        .unwrap();
    let values: Vec<&str> = mapped
        .unknown_statuses
        .iter()
        .map(|u| u.value.as_str())
        .collect();
    assert_eq!(values, ["Teleporting", "Warping"]);
    let b = backup_of(mapped);
    assert_eq!(b.status, BackupStatus::Invalid);
    assert_eq!(b.volumes[0].status, Some(BackupStatus::Invalid));
}

#[test]
fn deletion_timestamp_means_deleting() {
    let text = with(BACKUP_SUCCESSFUL, |v| {
        v["metadata"]["deletionTimestamp"] = json!("2026-11-23T09:00:00Z")
    });
    let b = backup_of(
        parse::<ApplicationBackup>(&text)
            .to_object(&cluster())
            .unwrap(),
    );
    assert_eq!(b.status, BackupStatus::Deleting);
}

#[test]
fn malformed_backup_is_isolated_with_its_metadata() {
    assert!(serde_json::from_str::<ApplicationBackup>(BACKUP_MALFORMED).is_err());
    let guarded: DeserializeGuard<ApplicationBackup> = parse(BACKUP_MALFORMED);
    let invalid = guarded.0.expect_err("totalSize: \"lots\" is not a number");
    assert_eq!(invalid.metadata.name.as_deref(), Some("shop-broken"));
    assert_eq!(
        ApplicationBackup::inventory_uid(&invalid.metadata).as_deref(),
        Some("e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a04")
    );
}

#[test]
fn backup_without_uid_is_an_error() {
    let text = with(BACKUP_PENDING, |v| {
        v["metadata"].as_object_mut().unwrap().remove("uid");
    });
    assert_eq!(
        parse::<ApplicationBackup>(&text).to_object(&cluster()),
        Err(MappingError::NoUid)
    );
}

#[test]
fn successful_restore() {
    let cr: ApplicationRestore = parse(RESTORE_SUCCESSFUL);
    let mapped = cr.to_object(&cluster()).unwrap();
    assert!(mapped.unknown_statuses.is_empty());
    let Object::Restore(r) = mapped.object else {
        panic!("not a restore")
    };
    assert_eq!(r.uid, "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e05");
    assert_eq!(r.name, "shop-restore-1");
    assert_eq!(r.backup, "nightly-shop-2026-11-23-010000");
    assert_eq!(r.owner.org_id, DEFAULT_ORG_ID);
    assert_eq!(r.status, RestoreStatus::Success);
    assert_eq!(r.size_bytes, Some(1_073_742_848));
    assert_eq!(r.resource_count, Some(40));
    assert_eq!(r.volume_count, Some(2));
    assert_eq!(
        crate::model::elapsed_secs(r.created_at, r.completed_at),
        Some(150.0)
    );
}

#[test]
fn every_stork_restore_status_maps() {
    for (stork, pxb) in [
        ("", RestoreStatus::Pending),
        ("Pending", RestoreStatus::Pending),
        ("InProgress", RestoreStatus::InProgress),
        ("DeletingPrevious", RestoreStatus::InProgress),
        ("Successful", RestoreStatus::Success),
        ("Failed", RestoreStatus::Failed),
        ("PartialSuccess", RestoreStatus::PartialSuccess),
        ("Retained", RestoreStatus::Retained),
        ("Sideways", RestoreStatus::Invalid),
    ] {
        let text = with(RESTORE_SUCCESSFUL, |v| v["status"]["status"] = json!(stork));
        let Object::Restore(r) = parse::<ApplicationRestore>(&text)
            .to_object(&cluster())
            .unwrap()
            .object
        else {
            panic!("not a restore")
        };
        assert_eq!(r.status, pxb, "{stork:?}");
    }
}

#[test]
fn schedule_suspend() {
    let cr: ApplicationBackupSchedule = parse(SCHEDULE_SUSPENDED);
    let Object::Schedule(s) = cr.to_object(&cluster()).unwrap().object else {
        panic!("not a schedule")
    };
    assert_eq!(s.name, "nightly-shop");
    assert_eq!(s.owner.org_id, "finance");
    assert_eq!(s.status, ScheduleStatus::Suspended);
    for suspend in [json!(false), json!(null)] {
        let text = with(SCHEDULE_SUSPENDED, |v| {
            v["spec"]["suspend"] = suspend.clone()
        });
        let Object::Schedule(s) = parse::<ApplicationBackupSchedule>(&text)
            .to_object(&cluster())
            .unwrap()
            .object
        else {
            panic!("not a schedule")
        };
        assert_eq!(s.status, ScheduleStatus::Active, "suspend: {suspend}");
    }
}

//! The mapping against the CRs in `tests/fixtures/kube/`, written from Stork's field names.

use kube::core::DeserializeGuard;
use serde_json::json;

use super::*;
use crate::sources::kube::crd::{NamespacedSchedulePolicy, SchedulePolicy};

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
const BACKUP_VM: &str = include_str!("../../../../tests/fixtures/kube/backup-vm.json");
const BACKUP_NAMESPACES_PARTIAL: &str =
    include_str!("../../../../tests/fixtures/kube/backup-namespaces-partial.json");
const POLICY_WEEKLY: &str =
    include_str!("../../../../tests/fixtures/kube/schedulepolicy-weekly.json");
const NAMESPACED_POLICY_DAILY: &str =
    include_str!("../../../../tests/fixtures/kube/namespacedschedulepolicy-daily.json");

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

fn resource(
    group: &str,
    version: &str,
    kind: &str,
    name: &str,
    ns: &str,
    vms: &[&str],
) -> VmResource {
    VmResource {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        name: name.into(),
        namespace: ns.into(),
        virtual_machines: vms.iter().map(|v| v.to_string()).collect(),
    }
}

#[test]
fn a_vm_backup_lists_its_vms_and_their_resources() {
    let mapped = parse::<ApplicationBackup>(BACKUP_VM)
        .to_object(&cluster())
        .unwrap();
    assert!(mapped.unknown_statuses.is_empty());
    let b = backup_of(mapped);
    assert_eq!(b.backup_object_type, "VirtualMachine");
    assert_eq!(b.status, BackupStatus::PartialSuccess);
    let vm = |name: &str, ns: &str, status| VirtualMachine {
        name: name.into(),
        namespace: ns.into(),
        os_name: String::new(),
        status: Some(status),
    };
    assert_eq!(
        b.virtual_machines,
        [
            vm("web-vm", "vms", BackupStatus::Success),
            vm("lab-1", "vms-lab", BackupStatus::Success),
            vm("lab-2", "vms-lab", BackupStatus::Failed),
        ]
    );
    assert_eq!(
        b.vm_resources,
        [
            // "core" is the core group, written as "".
            resource(
                "",
                "v1",
                "PersistentVolumeClaim",
                "web-vm-rootdisk",
                "vms",
                &["web-vm"]
            ),
            resource(
                "cdi.kubevirt.io",
                "v1beta1",
                "DataVolume",
                "web-vm-rootdisk",
                "vms",
                &["web-vm"]
            ),
            // Two VMs in vms-lab: which one the secret serves is not recorded by Stork.
            resource("", "v1", "Secret", "lab-cloudinit", "vms-lab", &[]),
        ]
    );
    assert!(b.namespace_resources.is_empty(), "a VM backup");
    assert_eq!(b.failed_resource_count, Some(1));
    assert_eq!(b.failed_volume_count, Some(1));
}

fn namespace(
    ns: &str,
    status: Option<NamespaceStatus>,
    resources: (u64, u64),
    volumes: (u64, u64),
    types: &[(&str, u64, u64)],
) -> NamespaceResources {
    NamespaceResources {
        namespace: ns.into(),
        status,
        total_resources: Some(resources.0),
        failed_resources: Some(resources.1),
        total_volumes: Some(volumes.0),
        failed_volumes: Some(volumes.1),
        resource_types: types
            .iter()
            .map(|(name, total, failed)| ResourceType {
                name: (*name).into(),
                total_resources: Some(*total),
                failed_resources: Some(*failed),
            })
            .collect(),
    }
}

#[test]
fn a_namespace_backup_counts_each_namespace_and_resource_type() {
    let b = backup_of(
        parse::<ApplicationBackup>(BACKUP_NAMESPACES_PARTIAL)
            .to_object(&cluster())
            .unwrap(),
    );
    assert!(b.virtual_machines.is_empty() && b.vm_resources.is_empty());
    assert_eq!(b.failed_resource_count, Some(1));
    assert_eq!(b.failed_volume_count, Some(0));
    assert_eq!(
        b.namespace_resources,
        [
            namespace(
                "shop",
                Some(NamespaceStatus::Success),
                (3, 0),
                (0, 0),
                &[("/v1/ConfigMap", 1, 0), ("apps/v1/Deployment", 2, 0)]
            ),
            namespace(
                "shop-db",
                Some(NamespaceStatus::PartialSuccess),
                (2, 1),
                (1, 0),
                &[("/v1/ConfigMap", 1, 0), ("apps/v1/StatefulSet", 1, 1)]
            ),
            // Listed in the spec, nothing recorded: its outcome in a partial backup is unknown.
            namespace("shop-empty", None, (0, 0), (0, 0), &[]),
        ],
        "the PersistentVolume (no namespace) belongs to none"
    );
}

#[test]
fn namespace_status_follows_the_backup() {
    let status_of = |stork: &str| {
        let text = with(BACKUP_NAMESPACES_PARTIAL, |v| {
            v["status"]["status"] = json!(stork)
        });
        backup_of(
            parse::<ApplicationBackup>(&text)
                .to_object(&cluster())
                .unwrap(),
        )
        .namespace_resources
        .iter()
        .map(|n| n.status)
        .collect::<Vec<_>>()
    };
    assert_eq!(
        status_of("InProgress"),
        [Some(NamespaceStatus::InProgress); 3]
    );
    assert_eq!(status_of("Successful"), [Some(NamespaceStatus::Success); 3]);
    assert_eq!(status_of("Failed"), [Some(NamespaceStatus::Failed); 3]);
    assert_eq!(status_of("Teleporting"), [None; 3]);
}

#[test]
fn large_resource_backups_do_not_claim_zero_resources() {
    let text = with(BACKUP_NAMESPACES_PARTIAL, |v| {
        v["status"]["largeResourceEnabled"] = json!(true);
        v["status"]["resources"] = json!(null);
    });
    let b = backup_of(
        parse::<ApplicationBackup>(&text)
            .to_object(&cluster())
            .unwrap(),
    );
    assert_eq!(b.failed_resource_count, None);
    let db = &b.namespace_resources[1];
    assert_eq!(db.namespace, "shop-db");
    assert_eq!((db.total_resources, db.failed_resources), (None, None));
    assert_eq!((db.total_volumes, db.failed_volumes), (Some(1), Some(0)));
    assert_eq!(db.status, Some(NamespaceStatus::Success), "by its volume");
    // A pending backup has recorded nothing yet.
    let b = backup_of(
        parse::<ApplicationBackup>(BACKUP_PENDING)
            .to_object(&cluster())
            .unwrap(),
    );
    assert_eq!(b.failed_resource_count, None, "resources: null");
    assert_eq!(b.failed_volume_count, Some(0), "as Stork writes it");
}

#[test]
fn a_schedule_names_its_policy() {
    let cr: ApplicationBackupSchedule = parse(SCHEDULE_SUSPENDED);
    let Item::Schedule {
        schedule,
        namespace,
        policy_name,
    } = cr.observe(&cluster()).unwrap().item
    else {
        panic!("not a schedule")
    };
    assert_eq!(
        (namespace.as_str(), policy_name.as_str()),
        ("shop", "daily")
    );
    assert_eq!(schedule.interval_seconds, None, "resolved by the tracker");
}

#[test]
fn policies_become_their_longest_gap() {
    let weekly = parse::<SchedulePolicy>(POLICY_WEEKLY)
        .observe(&cluster())
        .unwrap();
    assert_eq!(
        weekly.item,
        Item::Policy {
            key: PolicyKey {
                namespace: None,
                name: "backup-policy".into()
            },
            longest_gap: Some(7 * 86_400),
        }
    );
    assert!(!weekly.invalid);
    let daily = parse::<NamespacedSchedulePolicy>(NAMESPACED_POLICY_DAILY)
        .observe(&cluster())
        .unwrap();
    assert_eq!(
        daily.item,
        Item::Policy {
            key: PolicyKey {
                namespace: Some("shop".into()),
                name: "backup-policy".into()
            },
            longest_gap: Some(86_400),
        }
    );

    // Stork refuses it: no interval, a warning naming the field, counted as invalid.
    let text = with(POLICY_WEEKLY, |v| {
        v["policy"]["weekly"]["day"] = json!("Someday")
    });
    let refused = parse::<SchedulePolicy>(&text).observe(&cluster()).unwrap();
    assert!(refused.invalid);
    assert!(
        refused.warnings[0].contains("\"Someday\""),
        "{:?}",
        refused.warnings
    );
    assert!(matches!(
        refused.item,
        Item::Policy {
            longest_gap: None,
            ..
        }
    ));

    // Unreadable: it still exists (and shadows a cluster policy), without an interval.
    let text = with(NAMESPACED_POLICY_DAILY, |v| {
        v["policy"]["daily"] = json!("23:30")
    });
    let guarded: DeserializeGuard<NamespacedSchedulePolicy> = parse(&text);
    let invalid = guarded.0.expect_err("daily is an object");
    assert_eq!(
        NamespacedSchedulePolicy::observe_malformed(&invalid.metadata),
        Some(Item::Policy {
            key: PolicyKey {
                namespace: Some("shop".into()),
                name: "backup-policy".into()
            },
            longest_gap: None,
        })
    );
}

//! The mapping against the CRs in `tests/fixtures/kube/`, shaped as Stork writes them (that
//! folder's README says after which code), and against the patches of them that stand for
//! other paths of Stork's code.

use kube::core::DeserializeGuard;
use serde_json::json;

use super::*;
use crate::model::{BackupStatus as B, Timestamp};
use crate::sources::kube::crd::{NamespacedSchedulePolicy, SchedulePolicy};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../tests/fixtures/kube/", $name))
    };
}

const BACKUP_PENDING: &str = fixture!("backup-pending.json");
const BACKUP_IN_PROGRESS: &str = fixture!("backup-in-progress.json");
const BACKUP_SUCCESSFUL: &str = fixture!("backup-successful.json");
const BACKUP_PARTIAL: &str = fixture!("backup-partial-success.json");
const BACKUP_VM: &str = fixture!("backup-vm.json");
const BACKUP_FAILED_PRE_EXEC: &str = fixture!("backup-failed-pre-exec-rule.json");
const BACKUP_FROM_SCHEDULE: &str = fixture!("backup-from-schedule.json");
const BACKUP_RESTORE_COPY: &str = fixture!("backup-restore-copy.json");
const BACKUP_UNKNOWN: &str = fixture!("backup-unknown-status.json");
const BACKUP_MALFORMED: &str = fixture!("backup-malformed.json");
const RESTORE_SUCCESSFUL: &str = fixture!("restore-successful.json");
const SCHEDULE_SUSPENDED: &str = fixture!("schedule-suspended.json");
const POLICY_WEEKLY: &str = fixture!("schedulepolicy-weekly.json");
const NAMESPACED_POLICY_DAILY: &str = fixture!("namespacedschedulepolicy-daily.json");

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

fn backup(text: &str) -> Backup {
    let mapped = parse::<ApplicationBackup>(text)
        .to_object(&cluster())
        .expect("mapped");
    assert!(mapped.unknown_statuses.is_empty(), "{mapped:?}");
    assert!(mapped.null_entries.is_empty(), "{mapped:?}");
    mapped.object
}

fn restore(text: &str) -> Restore {
    parse::<ApplicationRestore>(text)
        .to_object(&cluster())
        .expect("mapped")
        .object
}

fn id_of<K: StorkResource>(text: &str) -> CrId {
    K::cr_id(&parse::<K>(text).meta().clone()).expect("a uid")
}

fn at(rfc3339: &str) -> Option<Timestamp> {
    Some(Timestamp::parse_rfc3339(rfc3339).expect("rfc3339"))
}

// ------------------------------------------------------------------ identity

#[test]
fn a_pxb_backup_is_named_and_identified_by_its_own_annotations() {
    let id = id_of::<ApplicationBackup>(BACKUP_SUCCESSFUL);
    assert_eq!(id.uid, "0b6f2a51-7c1e-4e0c-8d2f-9a8b7c6d5e02");
    assert_eq!(
        id.pxb_uid.as_deref(),
        Some("9b1c4d2e-0000-4000-8000-00000000b001")
    );
    assert!(!id.for_restore);
    assert_eq!(
        (id.namespace.as_str(), id.name.as_str()),
        ("px-admin", "shop-2026-11-23-9b1c4d2")
    );
    let b = backup(BACKUP_SUCCESSFUL);
    assert_eq!(b.name, "shop-2026-11-23", "PX-Backup's name, not the CR's");
    assert_eq!(b.schedule_name, "");
}

#[test]
fn a_scheduled_backup_does_not_take_the_identity_its_schedule_copied_onto_it() {
    let id = id_of::<ApplicationBackup>(BACKUP_FROM_SCHEDULE);
    assert_eq!(
        id.pxb_uid, None,
        "the schedule's uid annotation is not this backup's"
    );
    let b = backup(BACKUP_FROM_SCHEDULE);
    assert_eq!(
        b.name, "shop-daily-daily-2026-11-22-010000",
        "the CR's own name"
    );
    assert_eq!(b.schedule_name, "shop-daily");
    assert_eq!(b.status, B::Success);
    assert_eq!(b.size_bytes, Some(0), "no volumes: nothing to add up");
    assert_eq!(b.resource_count, Some(2));
}

#[test]
fn a_backup_made_for_a_restore_says_so() {
    let id = id_of::<ApplicationBackup>(BACKUP_RESTORE_COPY);
    assert!(id.for_restore);
    assert_eq!(
        id.pxb_uid.as_deref(),
        Some("9b1c4d2e-0000-4000-8000-00000000b001"),
        "the uid of the backup it copies"
    );
    assert_eq!(backup(BACKUP_RESTORE_COPY).name, "shop-2026-11-23");
    // Plain Stork objects have neither.
    let plain = id_of::<ApplicationBackup>(BACKUP_PENDING);
    assert_eq!((plain.pxb_uid, plain.for_restore), (None, false));
}

#[test]
fn the_org_annotation_is_read_when_present() {
    assert_eq!(backup(BACKUP_SUCCESSFUL).owner.org_id, DEFAULT_ORG_ID);
    let text = with(BACKUP_SUCCESSFUL, |v| {
        v["metadata"]["annotations"]["portworx.io/org-id"] = json!("finance")
    });
    assert_eq!(
        backup(&text).owner,
        Owner {
            org_id: "finance".into(),
            cluster: "prod-east".into(),
            cluster_uid: "8f1e2d3c-4b5a-4968-8776-655443322110".into(),
        }
    );
}

// ------------------------------------------------------------------ phases

#[test]
fn a_successful_backup_carries_every_measurement() {
    let b = backup(BACKUP_SUCCESSFUL);
    assert_eq!(b.status, B::Success);
    assert_eq!(b.namespaces, ["shop", "shop-db"]);
    assert_eq!(b.backup_location, "s3-east");
    assert_eq!(b.backup_object_type, "All");
    assert_eq!(b.size_bytes, Some(1_073_742_848));
    assert_eq!(b.resource_count, Some(7));
    assert_eq!(b.created_at, at("2026-11-23T01:00:00Z"));
    assert_eq!(
        b.completed_at,
        at("2026-11-23T01:04:10Z"),
        "finishTimestamp"
    );
    assert_eq!(
        crate::model::elapsed_secs(b.created_at, b.completed_at),
        Some(250.0)
    );
    assert_eq!(
        b.failed_resource_count,
        Some(0),
        "Stork says everything was taken"
    );
    assert_eq!(b.failed_volume_count, Some(0));
    assert_eq!(
        b.volumes,
        vec![
            Volume {
                volume: "pvc-c3d4e5f6a7b8".into(),
                pvc: "data".into(),
                pvc_namespace: "shop-db".into(),
                storage_class: "px-csi-db".into(),
                driver: "pxd".into(),
                status: Some(B::Success),
            },
            Volume {
                volume: "pvc-d4e5f6a7b8c9".into(),
                pvc: "logs".into(),
                pvc_namespace: "shop".into(),
                storage_class: "gp3".into(),
                driver: "kdmp".into(),
                status: Some(B::Success),
            },
        ]
    );
    let shop = &b.namespace_resources[0];
    assert_eq!(shop.namespace, "shop");
    assert_eq!(shop.status, Some(NamespaceStatus::Success));
    assert_eq!(
        (shop.total_resources, shop.failed_resources),
        (Some(3), Some(0))
    );
    assert_eq!(
        (shop.total_volumes, shop.failed_volumes),
        (Some(1), Some(0))
    );
    let types: Vec<(&str, Option<u64>, Option<u64>)> = shop
        .resource_types
        .iter()
        .map(|t| (t.name.as_str(), t.total_resources, t.failed_resources))
        .collect();
    assert_eq!(
        types,
        [
            ("/v1/ConfigMap", Some(1), Some(0)),
            ("/v1/PersistentVolumeClaim", Some(1), Some(0)),
            ("apps/v1/Deployment", Some(1), Some(0)),
        ],
        "\"core\" is written as the empty group; the PVs (no namespace) belong to none"
    );
}

#[test]
fn zeros_stork_has_not_filled_yet_are_not_measurements() {
    // Before Stork's first reconcile: every count 0, every list and time null.
    let b = backup(BACKUP_PENDING);
    assert_eq!(b.status, B::Pending);
    assert_eq!((b.size_bytes, b.resource_count), (None, None));
    assert_eq!(
        (b.failed_resource_count, b.failed_volume_count),
        (None, None)
    );
    assert!(b.volumes.is_empty());
    assert_eq!(
        b.created_at,
        at("2026-11-23T01:00:00Z"),
        "no triggerTimestamp yet: creation"
    );
    assert_eq!(b.completed_at, None);
    let ns = &b.namespace_resources[0];
    assert_eq!(ns.status, Some(NamespaceStatus::InProgress));
    assert_eq!((ns.total_resources, ns.failed_resources), (None, None));
    assert_eq!((ns.total_volumes, ns.failed_volumes), (None, None));

    // In the volume stage: the volumes are listed (none failed so far), sizes still 0.
    let b = backup(BACKUP_IN_PROGRESS);
    assert_eq!(b.status, B::InProgress);
    assert_eq!((b.size_bytes, b.resource_count), (None, None));
    assert_eq!(b.failed_resource_count, None);
    assert_eq!(
        b.failed_volume_count,
        Some(0),
        "the volumes Stork has started"
    );
    assert_eq!(b.volumes.len(), 2);
    assert_eq!(b.volumes[0].status, Some(B::InProgress));
    assert_eq!(b.completed_at, None);

    // A volume that fails sets finishTimestamp while the backup goes on: not its end.
    let text = with(BACKUP_IN_PROGRESS, |v| {
        v["status"]["volumes"][0]["status"] = json!("Failed");
        v["status"]["finishTimestamp"] = json!("2026-11-23T01:01:00Z");
    });
    let b = backup(&text);
    assert_eq!(b.completed_at, None);
    assert_eq!(b.failed_volume_count, Some(1));
}

#[test]
fn a_failed_backup_without_finish_timestamp_ends_at_its_last_update() {
    let b = backup(BACKUP_FAILED_PRE_EXEC);
    assert_eq!(b.status, B::Failed);
    assert_eq!(
        b.completed_at,
        at("2026-11-23T04:00:07Z"),
        "lastUpdateTimestamp"
    );
    assert_eq!(
        crate::model::elapsed_secs(b.created_at, b.completed_at),
        Some(7.0)
    );
    assert_eq!(b.size_bytes, None, "Stork adds the size up only on success");
    assert_eq!(b.resource_count, None);
    assert_eq!(
        b.failed_resource_count, None,
        "Stork records no per-resource outcome"
    );
    assert_eq!(
        b.failed_volume_count,
        Some(0),
        "it ended with no volume started"
    );

    // A finishTimestamp left by a volume that failed earlier is older than the failure.
    let text = with(BACKUP_FAILED_PRE_EXEC, |v| {
        v["status"]["finishTimestamp"] = json!("2026-11-23T04:00:03Z")
    });
    assert_eq!(backup(&text).completed_at, at("2026-11-23T04:00:07Z"));

    // Created already failed (the schedule controller's object-lock check): no times at all.
    let text = with(BACKUP_FAILED_PRE_EXEC, |v| {
        v["status"]["lastUpdateTimestamp"] = json!(null);
        v["status"]["triggerTimestamp"] = json!(null);
    });
    assert_eq!(
        backup(&text).completed_at,
        at("2026-11-23T04:00:00Z"),
        "creation"
    );
}

#[test]
fn a_portworx_volume_whose_size_query_failed_counts_with_the_bytes_it_moved() {
    // GetBackupStatus writes totalSize 0 when the size query fails; actualSize stays.
    let text = with(BACKUP_SUCCESSFUL, |v| {
        v["status"]["volumes"][0]["totalSize"] = json!(0);
        v["status"]["totalSize"] = json!(1024);
    });
    assert_eq!(backup(&text).size_bytes, Some(1024 + 536_870_912));
    // Neither: the size is unknown, not 1024.
    let text = with(&text, |v| {
        v["status"]["volumes"][0]["actualSize"] = json!(0)
    });
    assert_eq!(backup(&text).size_bytes, None);
}

#[test]
fn a_partial_success_fails_the_pvcs_of_its_failed_volumes() {
    let b = backup(BACKUP_PARTIAL);
    assert_eq!(b.status, B::PartialSuccess);
    assert_eq!(b.size_bytes, Some(1024));
    assert_eq!(b.resource_count, Some(5));
    assert_eq!(b.failed_volume_count, Some(1));
    assert_eq!(
        b.failed_resource_count,
        Some(1),
        "shop-db/data, left out of the list"
    );
    let ns = |name: &str| {
        b.namespace_resources
            .iter()
            .find(|n| n.namespace == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let shop = ns("shop");
    assert_eq!(shop.status, Some(NamespaceStatus::Success));
    assert_eq!(
        (shop.total_resources, shop.failed_resources),
        (Some(3), Some(0))
    );
    let db = ns("shop-db");
    assert_eq!(
        db.status,
        Some(NamespaceStatus::PartialSuccess),
        "its StatefulSet was taken"
    );
    assert_eq!(
        (db.total_resources, db.failed_resources),
        (Some(2), Some(1))
    );
    assert_eq!((db.total_volumes, db.failed_volumes), (Some(1), Some(1)));
    let types: Vec<(&str, Option<u64>, Option<u64>)> = db
        .resource_types
        .iter()
        .map(|t| (t.name.as_str(), t.total_resources, t.failed_resources))
        .collect();
    assert_eq!(
        types,
        [
            ("/v1/PersistentVolumeClaim", Some(1), Some(1)),
            ("apps/v1/StatefulSet", Some(1), Some(0)),
        ]
    );
    let empty = ns("shop-empty");
    assert_eq!(
        empty.status,
        Some(NamespaceStatus::Success),
        "nothing of it failed"
    );
    assert_eq!(
        (empty.total_resources, empty.total_volumes),
        (Some(0), Some(0))
    );

    // A namespace whose every volume failed and that has nothing else recorded failed.
    let text = with(BACKUP_PARTIAL, |v| {
        let kept: Vec<serde_json::Value> = v["status"]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter(|r| r["namespace"] != "shop-db")
            .cloned()
            .collect();
        v["status"]["resources"] = json!(kept);
    });
    let b = backup(&text);
    let db = b
        .namespace_resources
        .iter()
        .find(|n| n.namespace == "shop-db");
    assert_eq!(db.and_then(|n| n.status), Some(NamespaceStatus::Failed));
}

#[test]
fn with_large_resources_stork_keeps_the_list_out_and_the_count_in() {
    // backupResources: resources stripped to [] and largeResourceEnabled set, the count kept.
    let text = with(BACKUP_PARTIAL, |v| {
        v["status"]["largeResourceEnabled"] = json!(true);
        v["status"]["resources"] = json!([]);
    });
    let b = backup(&text);
    assert_eq!(b.resource_count, Some(5));
    assert_eq!(b.failed_resource_count, Some(1), "known from the volumes");
    let db = b
        .namespace_resources
        .iter()
        .find(|n| n.namespace == "shop-db")
        .expect("shop-db");
    assert_eq!(db.total_resources, None, "not in the CR");
    assert_eq!(db.failed_resources, Some(1));
    assert!(db.resource_types.is_empty());
    assert_eq!(
        db.status, None,
        "every volume failed; its other resources are not recorded"
    );
}

#[test]
fn every_stork_backup_status_maps_as_designed() {
    for (stork, pxb) in [
        ("", B::Pending),
        ("Pending", B::Pending),
        ("InProgress", B::InProgress),
        ("InCleanup", B::InProgress),
        ("Successful", B::Success),
        ("Failed", B::Failed),
        ("PartialSuccess", B::PartialSuccess),
    ] {
        let text = with(BACKUP_PENDING, |v| v["status"]["status"] = json!(stork));
        assert_eq!(backup(&text).status, pxb, "{stork:?}");
    }
    let text = with(BACKUP_PENDING, |v| v["status"] = json!(null));
    assert_eq!(backup(&text).status, B::Pending, "no status at all");
}

#[test]
fn unknown_status_is_invalid_and_reported_and_claims_nothing() {
    let mapped = parse::<ApplicationBackup>(BACKUP_UNKNOWN)
        .to_object(&cluster())
        .unwrap();
    let values: Vec<&str> = mapped
        .unknown_statuses
        .iter()
        .map(|u| u.value.as_str())
        .collect();
    assert_eq!(values, ["Teleporting", "Warping"]);
    let b = mapped.object;
    assert_eq!(b.status, B::Invalid);
    assert_eq!(b.volumes[0].status, Some(B::Invalid));
    assert_eq!((b.size_bytes, b.completed_at), (None, None));
    assert_eq!(b.failed_resource_count, None);
    assert_eq!(b.namespace_resources[0].status, None);
}

#[test]
fn deletion_timestamp_means_deleting_and_keeps_what_the_backup_measured() {
    let text = with(BACKUP_SUCCESSFUL, |v| {
        v["metadata"]["deletionTimestamp"] = json!("2026-11-23T09:00:00Z")
    });
    let b = backup(&text);
    assert_eq!(b.status, B::Deleting);
    assert_eq!(b.size_bytes, Some(1_073_742_848));
    assert_eq!(b.completed_at, at("2026-11-23T01:04:10Z"));
}

#[test]
fn namespace_backups_are_all_and_star_is_no_namespace() {
    for t in [json!(""), json!(null), json!("All")] {
        let text = with(BACKUP_PENDING, |v| {
            v["spec"]["backupObjectType"] = t.clone()
        });
        assert_eq!(backup(&text).backup_object_type, "All", "{t}");
    }
    // Until Stork replaces "*" with every namespace (updateWithAllNamespaces).
    let text = with(BACKUP_PENDING, |v| v["spec"]["namespaces"] = json!(["*"]));
    let b = backup(&text);
    assert!(b.namespaces.is_empty());
    assert!(b.namespace_resources.is_empty());
}

#[test]
fn a_null_list_entry_is_skipped_and_reported_not_the_object() {
    let text = with(BACKUP_SUCCESSFUL, |v| {
        let volumes = v["status"]["volumes"].as_array_mut().expect("volumes");
        volumes.insert(0, json!(null));
        v["status"]["resources"]
            .as_array_mut()
            .expect("resources")
            .push(json!(null));
    });
    let cr: ApplicationBackup = parse(&text);
    let mapped = cr.to_object(&cluster()).unwrap();
    assert_eq!(
        mapped.null_entries,
        ["status.volumes[0]", "status.resources[7]"]
    );
    assert_eq!(mapped.object.volumes.len(), 2);
    assert_eq!(mapped.object.size_bytes, Some(1_073_742_848));
    let observed = cr.observe(&cluster()).unwrap();
    assert!(observed.invalid, "counted");
    assert!(
        observed
            .warnings
            .iter()
            .any(|w| w.contains("status.volumes[0] is null")),
        "{:?}",
        observed.warnings
    );
}

#[test]
fn malformed_backup_is_isolated_with_its_metadata() {
    assert!(serde_json::from_str::<ApplicationBackup>(BACKUP_MALFORMED).is_err());
    let guarded: DeserializeGuard<ApplicationBackup> = parse(BACKUP_MALFORMED);
    let invalid = guarded.0.expect_err("totalSize: \"lots\" is not a number");
    assert_eq!(invalid.metadata.name.as_deref(), Some("shop-broken"));
    assert_eq!(
        ApplicationBackup::cr_id(&invalid.metadata).map(|id| id.uid),
        Some("e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a04".to_owned())
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

// ------------------------------------------------------------------ VM backups

fn vm(name: &str, ns: &str, status: Option<B>) -> VirtualMachine {
    VirtualMachine {
        name: name.into(),
        namespace: ns.into(),
        os_name: String::new(),
        status,
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
fn a_vm_backup_lists_its_vms_with_what_stork_tells_of_them() {
    let b = backup(BACKUP_VM);
    assert_eq!(b.backup_object_type, "VirtualMachine");
    assert_eq!(b.status, B::PartialSuccess);
    assert_eq!(
        b.virtual_machines,
        [
            vm("web-vm", "vms", Some(B::Success)),
            // A disk failed in vms-lab, which holds two VMs: Stork does not say whose.
            vm("lab-1", "vms-lab", None),
            vm("lab-2", "vms-lab", None),
        ]
    );
    assert_eq!(
        b.vm_resources,
        [
            resource(
                "cdi.kubevirt.io",
                "v1beta1",
                "DataVolume",
                "web-vm-rootdisk",
                "vms",
                &["web-vm"]
            ),
            resource(
                "",
                "v1",
                "PersistentVolumeClaim",
                "web-vm-rootdisk",
                "vms",
                &["web-vm"]
            ),
            resource("", "v1", "PersistentVolume", "pvc-0a1b2c3d4e5f", "", &[]),
            resource(
                "",
                "v1",
                "PersistentVolumeClaim",
                "lab-1-rootdisk",
                "vms-lab",
                &[]
            ),
            resource("", "v1", "PersistentVolume", "pvc-1b2c3d4e5f6a", "", &[]),
            resource("", "v1", "Secret", "lab-cloudinit", "vms-lab", &[]),
        ]
    );
    assert!(b.namespace_resources.is_empty(), "a VM backup");
    assert_eq!(b.failed_resource_count, Some(1), "lab-2's disk PVC");
    assert_eq!(b.failed_volume_count, Some(1));
    assert_eq!(b.size_bytes, Some(16_106_127_360));

    // web-vm's disk fails instead (its PVC and PV then left out of the resources): alone in
    // its namespace, the VM is known to have partly failed.
    let text = with(BACKUP_VM, |v| {
        v["status"]["volumes"][0]["status"] = json!("Failed");
        let kept: Vec<serde_json::Value> = v["status"]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter(|r| {
                !(r["kind"] == "PersistentVolumeClaim" && r["name"] == "web-vm-rootdisk")
                    && r["name"] != "pvc-0a1b2c3d4e5f"
            })
            .cloned()
            .collect();
        v["status"]["resources"] = json!(kept);
    });
    let b = backup(&text);
    assert_eq!(
        b.virtual_machines[0],
        vm("web-vm", "vms", Some(B::PartialSuccess))
    );
}

#[test]
fn vms_come_from_the_spec_while_the_resource_list_is_empty() {
    // Large resources: the list is stripped.
    let text = with(BACKUP_VM, |v| {
        v["status"]["largeResourceEnabled"] = json!(true);
        v["status"]["resources"] = json!([]);
    });
    let b = backup(&text);
    let names: Vec<&str> = b.virtual_machines.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["web-vm", "lab-1", "lab-2"]);
    assert!(b.vm_resources.is_empty());
    assert_eq!(b.resource_count, Some(9));

    // Not gathered yet: the backup runs, its VMs are in progress.
    let text = with(BACKUP_VM, |v| {
        v["status"] =
            serde_json::from_str::<serde_json::Value>(BACKUP_PENDING).unwrap()["status"].clone();
        v["status"]["status"] = json!("InProgress");
    });
    let b = backup(&text);
    assert_eq!(
        b.virtual_machines,
        [
            vm("web-vm", "vms", Some(B::InProgress)),
            vm("lab-1", "vms-lab", Some(B::InProgress)),
            vm("lab-2", "vms-lab", Some(B::InProgress)),
        ]
    );
}

// ------------------------------------------------------------------ restores

#[test]
fn a_pxb_restore_is_identified_by_its_annotations_and_names_its_backup_cr() {
    let id = id_of::<ApplicationRestore>(RESTORE_SUCCESSFUL);
    assert_eq!(id.uid, "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e05");
    assert_eq!(
        id.pxb_uid.as_deref(),
        Some("4d5e6f70-0000-4000-8000-0000000000a5")
    );
    let r = restore(RESTORE_SUCCESSFUL);
    assert_eq!(r.name, "shop-restore-1", "PX-Backup's name of the restore");
    assert_eq!(
        r.backup, "shop-2026-11-23-9b1c4d2",
        "spec.backupName; the tracker names it"
    );
    assert_eq!(r.owner.org_id, DEFAULT_ORG_ID);
    assert_eq!(r.status, RestoreStatus::Success);
    assert_eq!(r.size_bytes, Some(1_073_742_848));
    assert_eq!(r.resource_count, Some(3));
    assert_eq!(r.volume_count, Some(2));
    assert_eq!(
        crate::model::elapsed_secs(r.created_at, r.completed_at),
        Some(150.0)
    );
}

#[test]
fn a_running_or_failed_restore_has_no_size_or_count_yet() {
    let text = with(RESTORE_SUCCESSFUL, |v| {
        v["status"]["stage"] = json!("Volumes");
        v["status"]["status"] = json!("InProgress");
        v["status"]["totalSize"] = json!(0);
        v["status"]["resourceCount"] = json!(0);
        v["status"]["finishTimestamp"] = json!(null);
    });
    let r = restore(&text);
    assert_eq!(
        (r.size_bytes, r.resource_count, r.completed_at),
        (None, None, None)
    );
    assert_eq!(r.volume_count, Some(2));
    // Failed where only lastUpdateTimestamp is set (a failed ResourceExport).
    let text = with(&text, |v| {
        v["status"]["status"] = json!("Failed");
        v["status"]["stage"] = json!("Final");
    });
    let r = restore(&text);
    assert_eq!(r.completed_at, at("2026-11-23T05:02:31Z"));
    assert_eq!(r.size_bytes, None);
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
        assert_eq!(restore(&text).status, pxb, "{stork:?}");
    }
}

// ------------------------------------------------------------------ schedules and policies

#[test]
fn schedule_suspend() {
    let cr: ApplicationBackupSchedule = parse(SCHEDULE_SUSPENDED);
    let s = cr.to_object(&cluster()).unwrap();
    assert_eq!(s.name, "nightly-shop");
    assert_eq!(s.uid, "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a706");
    assert_eq!(s.status, ScheduleStatus::Suspended);
    for suspend in [json!(false), json!(null)] {
        let text = with(SCHEDULE_SUSPENDED, |v| {
            v["spec"]["suspend"] = suspend.clone()
        });
        let s = parse::<ApplicationBackupSchedule>(&text)
            .to_object(&cluster())
            .unwrap();
        assert_eq!(s.status, ScheduleStatus::Active, "suspend: {suspend}");
    }
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

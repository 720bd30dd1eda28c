//! Typed views of Stork's custom resources (`stork.libopenstorage.org/v1alpha1`), holding only
//! the fields the sidecar reads. Field names follow Stork's Go types
//! (`pkg/apis/stork/v1alpha1/application{backup,restore,backupschedule}.go`,
//! `schedulepolicy.go`, `namespacedschedulepolicy.go`).
//!
//! Stork's status structs are not pointers and carry no `omitempty`, so a fresh object is
//! serialised with `null` for every unset list and time and `0` for every count not filled
//! yet: every field is an `Option`, missing or `null` both read as "not set", and which zeros
//! are measurements is the mapping's business (see `mapping`). Lists of pointers
//! (`[]*ApplicationBackupVolumeInfo`, ...) may hold `null` entries: they are read as
//! `Option`s, so that one such entry is skipped rather than the whole object. A field of the
//! wrong type (`totalSize: "lots"`) is a malformed object; the watcher isolates it with
//! `DeserializeGuard`.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{ClusterResourceScope, NamespaceResourceScope, Resource};
use serde::Deserialize;

pub const GROUP: &str = "stork.libopenstorage.org";
pub const VERSION: &str = "v1alpha1";

/// Implements `kube::Resource` for a Stork CR: static type information, namespaced unless
/// a scope is given.
macro_rules! stork_resource {
    ($ty:ident, $kind:literal, $plural:literal) => {
        stork_resource!($ty, $kind, $plural, NamespaceResourceScope);
    };
    ($ty:ident, $kind:literal, $plural:literal, $scope:ty) => {
        impl Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// `ApplicationBackup`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ApplicationBackup {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<ApplicationBackupSpec>,
    #[serde(default)]
    pub status: Option<ApplicationBackupStatus>,
}
stork_resource!(ApplicationBackup, "ApplicationBackup", "applicationbackups");

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationBackupSpec {
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub backup_location: Option<String>,
    /// "All" (or "", older Stork) for a namespace backup, "VirtualMachine" for a VM backup.
    #[serde(default)]
    pub backup_object_type: Option<String>,
    /// `[]ObjectInfo`: for a VM backup, the VMs chosen (Stork also takes every VM of
    /// `namespaces`); for a namespace backup, the resources to take.
    #[serde(default)]
    pub include_resources: Option<Vec<Option<ObjectInfo>>>,
}

/// `ObjectInfo`: a name, a namespace and the inlined `GroupVersionKind`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationBackupStatus {
    #[serde(default)]
    pub stage: Option<String>,
    /// `ApplicationBackupStatusType`: "", Pending, InProgress, Failed, PartialSuccess,
    /// Successful (and InCleanup in older Stork).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub volumes: Option<Vec<Option<ApplicationBackupVolumeInfo>>>,
    /// Set by Stork when it starts the backup (to the creation time).
    #[serde(default)]
    pub trigger_timestamp: Option<Time>,
    /// Set at every step, including the failures that never set `finishTimestamp`.
    #[serde(default)]
    pub last_update_timestamp: Option<Time>,
    /// Set when the backup ends (and, for a while, when one of its volumes fails).
    #[serde(default)]
    pub finish_timestamp: Option<Time>,
    /// The sum of the volumes' `totalSize`, added up only when the backup succeeds; 0 before.
    #[serde(default)]
    pub total_size: Option<u64>,
    /// Set with `resources`; 0 before.
    #[serde(default)]
    pub resource_count: Option<u64>,
    /// The Kubernetes resources backed up: name, namespace and group/version/kind, no outcome
    /// (Stork's controller never writes the `status` that newer types declare). A failed
    /// volume's PVC and PV are left out. `null` until Stork has gathered them, empty when
    /// `largeResourceEnabled` (Stork then keeps the list out of the CR).
    #[serde(default)]
    pub resources: Option<Vec<Option<ObjectInfo>>>,
    #[serde(default)]
    pub large_resource_enabled: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationBackupVolumeInfo {
    #[serde(default)]
    pub persistent_volume_claim: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub volume: Option<String>,
    #[serde(default)]
    pub driver_name: Option<String>,
    #[serde(default)]
    pub storage_class: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// The size of the volume's backup; 0 for a Portworx volume whose size query failed.
    #[serde(default)]
    pub total_size: Option<u64>,
    /// The bytes the driver moved (Portworx: the cloud snapshot's bytes done).
    #[serde(default)]
    pub actual_size: Option<u64>,
}

/// `ApplicationRestore`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ApplicationRestore {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<ApplicationRestoreSpec>,
    #[serde(default)]
    pub status: Option<ApplicationRestoreStatus>,
}
stork_resource!(
    ApplicationRestore,
    "ApplicationRestore",
    "applicationrestores"
);

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRestoreSpec {
    /// Name of the `ApplicationBackup` restored from.
    #[serde(default)]
    pub backup_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRestoreStatus {
    #[serde(default)]
    pub stage: Option<String>,
    /// `ApplicationRestoreStatusType`: "", Pending, InProgress, Failed, PartialSuccess,
    /// Retained, Successful.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub volumes: Option<Vec<Option<ApplicationRestoreVolumeInfo>>>,
    #[serde(default)]
    pub last_update_timestamp: Option<Time>,
    #[serde(default)]
    pub finish_timestamp: Option<Time>,
    /// Added up from the volumes once they are restored; 0 before.
    #[serde(default)]
    pub total_size: Option<u64>,
    /// Set while the resources are applied; 0 before.
    #[serde(default)]
    pub resource_count: Option<u64>,
}

/// Only counted: the restore metrics carry a volume count, not per-volume series.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRestoreVolumeInfo {
    #[serde(default)]
    pub persistent_volume_claim: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// `ApplicationBackupSchedule`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ApplicationBackupSchedule {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<ApplicationBackupScheduleSpec>,
}
stork_resource!(
    ApplicationBackupSchedule,
    "ApplicationBackupSchedule",
    "applicationbackupschedules"
);

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationBackupScheduleSpec {
    /// `*bool` in Stork: absent means not suspended.
    #[serde(default)]
    pub suspend: Option<bool>,
    /// The policy that says when the schedule runs: a `NamespacedSchedulePolicy` of that name
    /// in the schedule's namespace, else the cluster-scoped `SchedulePolicy`.
    #[serde(default)]
    pub schedule_policy_name: Option<String>,
}

/// `SchedulePolicy`: cluster-scoped.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SchedulePolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub policy: Option<SchedulePolicyItem>,
}
stork_resource!(
    SchedulePolicy,
    "SchedulePolicy",
    "schedulepolicies",
    ClusterResourceScope
);

/// `NamespacedSchedulePolicy`: Stork's Go type inlines a `*SchedulePolicy`, so it is the same
/// document, in a namespace.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NamespacedSchedulePolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub policy: Option<SchedulePolicyItem>,
}
stork_resource!(
    NamespacedSchedulePolicy,
    "NamespacedSchedulePolicy",
    "namespacedschedulepolicies"
);

/// `SchedulePolicyItem`: any of the four may be set, and each one that is triggers runs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SchedulePolicyItem {
    #[serde(default)]
    pub interval: Option<IntervalPolicy>,
    #[serde(default)]
    pub daily: Option<DailyPolicy>,
    #[serde(default)]
    pub weekly: Option<WeeklyPolicy>,
    #[serde(default)]
    pub monthly: Option<MonthlyPolicy>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IntervalPolicy {
    #[serde(default)]
    pub interval_minutes: Option<i64>,
}

/// `time` is Go's `time.Kitchen` layout: `3:04PM` (or `3:04pm`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DailyPolicy {
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct WeeklyPolicy {
    #[serde(default)]
    pub day: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct MonthlyPolicy {
    /// Day of the month, 1 to 31.
    #[serde(default)]
    pub date: Option<i64>,
    #[serde(default)]
    pub time: Option<String>,
}

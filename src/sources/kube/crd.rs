//! Typed views of Stork's custom resources (`stork.libopenstorage.org/v1alpha1`), holding only
//! the fields the sidecar reads. Field names follow Stork's Go types
//! (`pkg/apis/stork/v1alpha1/application{backup,restore,backupschedule}.go`).
//!
//! Stork's status structs are not pointers and carry no `omitempty`, so a fresh object is
//! serialised with `null` for every unset list and time: every field is an `Option` and
//! missing or `null` both read as "not set". A field of the wrong type (`totalSize: "lots"`)
//! is a malformed object; the watcher isolates it with `DeserializeGuard`.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{NamespaceResourceScope, Resource};
use serde::Deserialize;

pub const GROUP: &str = "stork.libopenstorage.org";
pub const VERSION: &str = "v1alpha1";

/// Implements `kube::Resource` for a Stork CR: namespaced, static type information.
macro_rules! stork_resource {
    ($ty:ident, $kind:literal, $plural:literal) => {
        impl Resource for $ty {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

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
    /// "All" for a namespace backup, "VirtualMachine" for a VM backup (newer Stork only).
    #[serde(default)]
    pub backup_object_type: Option<String>,
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
    pub volumes: Option<Vec<ApplicationBackupVolumeInfo>>,
    #[serde(default)]
    pub trigger_timestamp: Option<Time>,
    #[serde(default)]
    pub finish_timestamp: Option<Time>,
    #[serde(default)]
    pub total_size: Option<u64>,
    #[serde(default)]
    pub resource_count: Option<u64>,
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
    pub volumes: Option<Vec<ApplicationRestoreVolumeInfo>>,
    #[serde(default)]
    pub finish_timestamp: Option<Time>,
    #[serde(default)]
    pub total_size: Option<u64>,
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
}

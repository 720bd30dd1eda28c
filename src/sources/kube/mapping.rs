//! Stork custom resources -> inventory objects, as DESIGN's "Stork mapping" says.
//!
//! Pure functions: no I/O, no logging. What is worth a warning (a status name this version
//! does not know) comes back with the object, and the watcher logs it with the namespace and
//! name of the CR.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;

use super::crd::{ApplicationBackup, ApplicationBackupSchedule, ApplicationRestore};
use crate::model::{
    Backup, BackupStatus, Kind, Object, Owner, Restore, RestoreStatus, Schedule, ScheduleStatus,
    Timestamp, UnknownStatus, Volume,
};

/// Set by PXB on the ApplicationBackups it creates: the backup's uid in PXB, which PXB's own
/// metrics use, so it wins over the CR's `metadata.uid`.
pub const ANNOTATION_BACKUP_UID: &str = "portworx.io/backup-uid";
/// Set by PXB: the backup's name in PXB (the CR name is a generated one).
pub const ANNOTATION_BACKUP_NAME: &str = "portworx.io/backup-name";
/// The PXB organisation an object belongs to.
pub const ANNOTATION_ORG_ID: &str = "portworx.io/org-id";
/// Set by Stork on the ApplicationBackups that a schedule created.
pub const ANNOTATION_SCHEDULE_NAME: &str = "stork.libopenstorage.org/applicationBackupScheduleName";
/// PXB's default organisation, used when a CR carries no org annotation (plain Stork).
pub const DEFAULT_ORG_ID: &str = "default";

/// The cluster the watched CRs live in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// `--cluster-name`.
    pub name: String,
    /// UID of the `kube-system` namespace.
    pub uid: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("the object has no metadata.uid")]
    NoUid,
}

/// An object for the inventory, and the status names that were not understood (the object
/// then carries `Invalid` there).
#[derive(Debug, PartialEq)]
pub struct Mapped {
    pub object: Object,
    pub unknown_statuses: Vec<UnknownStatus>,
}

/// What the kube source needs from each Stork CR type.
pub trait StorkResource:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + DeserializeOwned
    + Clone
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;

    /// The uid the inventory keys this object by. It must be computable from metadata alone,
    /// since a delete (or a malformed object) brings nothing else.
    fn inventory_uid(meta: &ObjectMeta) -> Option<String> {
        non_empty(meta.uid.as_deref())
    }

    fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped, MappingError>;
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn owner(meta: &ObjectMeta, cluster: &ClusterIdentity) -> Owner {
    Owner {
        org_id: annotation(meta, ANNOTATION_ORG_ID)
            .unwrap_or(DEFAULT_ORG_ID)
            .to_owned(),
        cluster: cluster.name.clone(),
        cluster_uid: cluster.uid.clone(),
    }
}

pub fn timestamp(t: &Time) -> Timestamp {
    Timestamp(t.0.as_millisecond())
}

const STORK_BACKUP_STATUSES: &str =
    "\"\" Pending InProgress InCleanup Successful Failed PartialSuccess";
const STORK_RESTORE_STATUSES: &str =
    "\"\" Pending InProgress DeletingPrevious Successful Failed PartialSuccess Retained";

fn unknown(kind: &'static str, value: &str, expected: &'static str) -> UnknownStatus {
    UnknownStatus {
        kind,
        value: value.to_owned(),
        expected,
    }
}

/// Stork `ApplicationBackupStatusType` -> PXB backup status. `InCleanup` (older Stork) is
/// the backup still finishing, so it counts as InProgress.
pub fn backup_status(stork: Option<&str>) -> Result<BackupStatus, UnknownStatus> {
    match stork.unwrap_or("") {
        "" | "Pending" => Ok(BackupStatus::Pending),
        "InProgress" | "InCleanup" => Ok(BackupStatus::InProgress),
        "Successful" => Ok(BackupStatus::Success),
        "Failed" => Ok(BackupStatus::Failed),
        "PartialSuccess" => Ok(BackupStatus::PartialSuccess),
        other => Err(unknown("Stork backup status", other, STORK_BACKUP_STATUSES)),
    }
}

/// Stork `ApplicationRestoreStatusType` -> PXB restore status. `DeletingPrevious` (a volume
/// being replaced before it is restored) is the restore still running.
pub fn restore_status(stork: Option<&str>) -> Result<RestoreStatus, UnknownStatus> {
    match stork.unwrap_or("") {
        "" | "Pending" => Ok(RestoreStatus::Pending),
        "InProgress" | "DeletingPrevious" => Ok(RestoreStatus::InProgress),
        "Successful" => Ok(RestoreStatus::Success),
        "Failed" => Ok(RestoreStatus::Failed),
        "PartialSuccess" => Ok(RestoreStatus::PartialSuccess),
        "Retained" => Ok(RestoreStatus::Retained),
        other => Err(unknown(
            "Stork restore status",
            other,
            STORK_RESTORE_STATUSES,
        )),
    }
}

impl StorkResource for ApplicationBackup {
    const KIND: Kind = Kind::Backup;

    fn inventory_uid(meta: &ObjectMeta) -> Option<String> {
        non_empty(annotation(meta, ANNOTATION_BACKUP_UID))
            .or_else(|| non_empty(meta.uid.as_deref()))
    }

    fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped, MappingError> {
        let meta = &self.metadata;
        let uid = Self::inventory_uid(meta).ok_or(MappingError::NoUid)?;
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut unknown_statuses = Vec::new();
        let mut status_or_invalid = |s: Option<&str>| {
            backup_status(s).unwrap_or_else(|e| {
                unknown_statuses.push(e);
                BackupStatus::Invalid
            })
        };
        let mut backup_state = status_or_invalid(status.status.as_deref());
        if meta.deletion_timestamp.is_some() {
            backup_state = BackupStatus::Deleting;
        }
        let volumes = status
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| Volume {
                volume: v.volume.unwrap_or_default(),
                pvc: v.persistent_volume_claim.unwrap_or_default(),
                pvc_namespace: v.namespace.unwrap_or_default(),
                storage_class: v.storage_class.unwrap_or_default(),
                driver: v.driver_name.unwrap_or_default(),
                status: v.status.as_deref().map(|s| status_or_invalid(Some(s))),
            })
            .collect();
        let backup = Backup {
            uid,
            name: annotation(meta, ANNOTATION_BACKUP_NAME)
                .or(meta.name.as_deref())
                .unwrap_or_default()
                .to_owned(),
            owner: owner(meta, cluster),
            schedule_name: annotation(meta, ANNOTATION_SCHEDULE_NAME)
                .unwrap_or_default()
                .to_owned(),
            namespaces: spec.namespaces.unwrap_or_default(),
            backup_location: spec.backup_location.unwrap_or_default(),
            backup_object_type: spec.backup_object_type.unwrap_or_default(),
            status: backup_state,
            size_bytes: status.total_size,
            resource_count: status.resource_count,
            volumes,
            created_at: status
                .trigger_timestamp
                .as_ref()
                .or(meta.creation_timestamp.as_ref())
                .map(timestamp),
            completed_at: status.finish_timestamp.as_ref().map(timestamp),
            ..Backup::default()
        };
        Ok(Mapped {
            object: Object::Backup(backup),
            unknown_statuses,
        })
    }
}

impl StorkResource for ApplicationRestore {
    const KIND: Kind = Kind::Restore;

    fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped, MappingError> {
        let meta = &self.metadata;
        let uid = Self::inventory_uid(meta).ok_or(MappingError::NoUid)?;
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut unknown_statuses = Vec::new();
        let mut restore_state = restore_status(status.status.as_deref()).unwrap_or_else(|e| {
            unknown_statuses.push(e);
            RestoreStatus::Invalid
        });
        if meta.deletion_timestamp.is_some() {
            restore_state = RestoreStatus::Deleting;
        }
        let restore = Restore {
            uid,
            name: meta.name.clone().unwrap_or_default(),
            owner: owner(meta, cluster),
            backup: spec.backup_name.unwrap_or_default(),
            status: restore_state,
            size_bytes: status.total_size,
            resource_count: status.resource_count,
            volume_count: status.volumes.map(|v| v.len() as u64),
            created_at: meta.creation_timestamp.as_ref().map(timestamp),
            completed_at: status.finish_timestamp.as_ref().map(timestamp),
        };
        Ok(Mapped {
            object: Object::Restore(restore),
            unknown_statuses,
        })
    }
}

impl StorkResource for ApplicationBackupSchedule {
    const KIND: Kind = Kind::Schedule;

    fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped, MappingError> {
        let meta = &self.metadata;
        let suspended = self.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        let schedule = Schedule {
            uid: Self::inventory_uid(meta).ok_or(MappingError::NoUid)?,
            name: meta.name.clone().unwrap_or_default(),
            owner: owner(meta, cluster),
            status: if suspended {
                ScheduleStatus::Suspended
            } else {
                ScheduleStatus::Active
            },
            // The interval lives in the SchedulePolicy the schedule names; not read yet.
            interval_seconds: None,
        };
        Ok(Mapped {
            object: Object::Schedule(schedule),
            unknown_statuses: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests;

//! Stork custom resources -> inventory objects, as docs/kube-source.md ("Mapping") says.
//!
//! Pure functions: no I/O, no logging. What is worth a warning (a status name this version
//! does not know) comes back with the object, and the watcher logs it with the namespace and
//! name of the CR.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::Resource;
use serde::de::DeserializeOwned;

use super::crd::{
    ApplicationBackup, ApplicationBackupResourceInfo, ApplicationBackupSchedule,
    ApplicationBackupVolumeInfo, ApplicationRestore, NamespacedSchedulePolicy, SchedulePolicy,
    SchedulePolicyItem,
};
use super::policy;
use crate::model::{
    Backup, BackupStatus, Kind, NamespaceResources, NamespaceStatus, Object, Owner, ResourceType,
    Restore, RestoreStatus, Schedule, ScheduleStatus, Timestamp, UnknownStatus, VirtualMachine,
    VmResource, Volume,
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

/// What a watcher of a Stork resource feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Watched {
    /// Inventory objects of this kind.
    Objects(Kind),
    /// Schedule policies: not exported themselves, they give schedules their interval.
    SchedulePolicies,
}

/// A schedule policy's name, and its namespace for a `NamespacedSchedulePolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub namespace: Option<String>,
    pub name: String,
}

/// What the tracker is told about a listed, added or modified object.
// Moved once, from the watcher to the tracker, like `model::Event`: boxing the large variant
// would add an allocation per object and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// Applied to the inventory as it is.
    Object(Object),
    /// A schedule; its interval is that of the policy it names, which the tracker resolves
    /// (and resolves again when the policy changes).
    Schedule {
        schedule: Schedule,
        namespace: String,
        policy_name: String,
    },
    /// A schedule policy and the longest gap between two of its runs (`None`: it never runs).
    Policy {
        key: PolicyKey,
        longest_gap: Option<u64>,
    },
}

/// An `Item` and what in the object was not understood, for the watcher to log with the
/// object's namespace and name.
#[derive(Debug, PartialEq)]
pub struct Observed {
    pub item: Item,
    pub warnings: Vec<String>,
    /// Part of the object is unusable (a policy Stork refuses): counted as an invalid object.
    pub invalid: bool,
}

/// What the kube source needs from each Stork CR type.
pub trait StorkResource:
    Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static
{
    const WATCHED: Watched;

    /// The uid the inventory keys this object by. It must be computable from metadata alone,
    /// since a delete (or a malformed object) brings nothing else.
    fn inventory_uid(meta: &ObjectMeta) -> Option<String> {
        non_empty(meta.uid.as_deref())
    }

    fn observe(&self, cluster: &ClusterIdentity) -> Result<Observed, MappingError>;

    /// What a malformed object still tells from its metadata. Nothing, for inventory objects
    /// (their last good state stays); a policy that cannot be read still shadows a
    /// cluster-wide one of its name, as in Stork, and runs nothing.
    fn observe_malformed(_meta: &ObjectMeta) -> Option<Item> {
        None
    }
}

fn observed(mapped: Mapped) -> Observed {
    Observed {
        item: Item::Object(mapped.object),
        warnings: mapped
            .unknown_statuses
            .iter()
            .map(|u| format!("{u}; exported as Invalid"))
            .collect(),
        invalid: false,
    }
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
    const WATCHED: Watched = Watched::Objects(Kind::Backup);

    fn inventory_uid(meta: &ObjectMeta) -> Option<String> {
        non_empty(annotation(meta, ANNOTATION_BACKUP_UID))
            .or_else(|| non_empty(meta.uid.as_deref()))
    }

    fn observe(&self, cluster: &ClusterIdentity) -> Result<Observed, MappingError> {
        self.to_object(cluster).map(observed)
    }
}

/// `spec.backupObjectType` of a backup of selected virtual machines.
pub const VM_BACKUP: &str = "VirtualMachine";
/// KubeVirt's group: its `VirtualMachine` resources are the VMs of a VM backup.
pub const KUBEVIRT_GROUP: &str = "kubevirt.io";

/// `group/version/kind` as PXB writes a resource type; Stork writes the core group as "" or
/// "core", both become "" (`/v1/ConfigMap`) so that one type has one name.
fn api_group(group: Option<&str>) -> String {
    match group.unwrap_or("") {
        "core" => String::new(),
        g => g.to_owned(),
    }
}

fn is_failed(stork_status: Option<&str>) -> bool {
    stork_status == Some("Failed")
}

/// The PXB status of a Stork backup status; `Invalid` (and the name noted in `unknown`) for
/// one this version does not know.
fn status_or_invalid(stork: Option<&str>, unknown: &mut Vec<UnknownStatus>) -> BackupStatus {
    backup_status(stork).unwrap_or_else(|e| {
        unknown.push(e);
        BackupStatus::Invalid
    })
}

/// The status of one resource of a backup: unset until Stork has written one.
fn resource_status(stork: Option<&str>, unknown: &mut Vec<UnknownStatus>) -> Option<BackupStatus> {
    match stork {
        None | Some("") => None,
        Some(s) => Some(status_or_invalid(Some(s), unknown)),
    }
}

/// Counts of one namespace of a namespace backup, while they are gathered.
#[derive(Default)]
struct NamespaceTally {
    resources: u64,
    failed_resources: u64,
    volumes: u64,
    failed_volumes: u64,
    /// (total, failed) by `group/version/kind`.
    types: BTreeMap<String, (u64, u64)>,
}

/// Each namespace of a namespace backup, from `spec.namespaces` and what `status.resources`
/// and `status.volumes` hold, with per-type counts. Resource counts are absent when Stork did
/// not record the resources (`resources` is `None`).
fn namespace_resources(
    namespaces: &[String],
    resources: Option<&[ApplicationBackupResourceInfo]>,
    volumes: &[ApplicationBackupVolumeInfo],
    stork_status: Option<&str>,
) -> Vec<NamespaceResources> {
    let mut tally: BTreeMap<String, NamespaceTally> = namespaces
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| (n.clone(), NamespaceTally::default()))
        .collect();
    for r in resources.unwrap_or_default() {
        // Cluster-scoped resources (a PV, a CRD) belong to no namespace.
        let Some(ns) = r.namespace.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let t = tally.entry(ns.to_owned()).or_default();
        let failed = u64::from(is_failed(r.status.as_deref()));
        t.resources += 1;
        t.failed_resources += failed;
        let name = format!(
            "{}/{}/{}",
            api_group(r.group.as_deref()),
            r.version.as_deref().unwrap_or(""),
            r.kind.as_deref().unwrap_or("")
        );
        let counts = t.types.entry(name).or_default();
        counts.0 += 1;
        counts.1 += failed;
    }
    for v in volumes {
        let Some(ns) = v.namespace.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let t = tally.entry(ns.to_owned()).or_default();
        t.volumes += 1;
        t.failed_volumes += u64::from(is_failed(v.status.as_deref()));
    }
    let recorded = resources.is_some();
    let backup = backup_status(stork_status).ok();
    tally
        .into_iter()
        .map(|(namespace, t)| {
            let items = t.volumes + if recorded { t.resources } else { 0 };
            let failed = t.failed_volumes + if recorded { t.failed_resources } else { 0 };
            let status = match backup {
                Some(BackupStatus::Pending | BackupStatus::InProgress) => {
                    Some(NamespaceStatus::InProgress)
                }
                // The backup as a whole is unusable, or whole: so is each namespace of it.
                Some(BackupStatus::Failed) => Some(NamespaceStatus::Failed),
                Some(BackupStatus::Success) => Some(NamespaceStatus::Success),
                // Partly: each namespace by what failed in it, unknown when nothing is recorded.
                Some(BackupStatus::PartialSuccess) if items > 0 => Some(if failed == 0 {
                    NamespaceStatus::Success
                } else if failed == items {
                    NamespaceStatus::Failed
                } else {
                    NamespaceStatus::PartialSuccess
                }),
                _ => None,
            };
            NamespaceResources {
                namespace,
                status,
                total_resources: recorded.then_some(t.resources),
                total_volumes: Some(t.volumes),
                failed_resources: recorded.then_some(t.failed_resources),
                failed_volumes: Some(t.failed_volumes),
                resource_types: t
                    .types
                    .into_iter()
                    .map(|(name, (total, failed))| ResourceType {
                        name,
                        total_resources: Some(total),
                        failed_resources: Some(failed),
                    })
                    .collect(),
            }
        })
        .collect()
}

impl ApplicationBackup {
    pub fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped, MappingError> {
        let meta = &self.metadata;
        let uid = Self::inventory_uid(meta).ok_or(MappingError::NoUid)?;
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut unknown_statuses = Vec::new();
        let mut backup_state = status_or_invalid(status.status.as_deref(), &mut unknown_statuses);
        if meta.deletion_timestamp.is_some() {
            backup_state = BackupStatus::Deleting;
        }
        let stork_volumes = status.volumes.clone().unwrap_or_default();
        // With `largeResourceEnabled` Stork keeps the resource list out of the CR: unknown,
        // not empty.
        let resources: Option<Vec<ApplicationBackupResourceInfo>> =
            match status.large_resource_enabled {
                Some(true) => None,
                _ => status
                    .resources
                    .clone()
                    .map(|r| r.into_iter().flatten().collect()),
            };
        let is_vm_backup = spec.backup_object_type.as_deref() == Some(VM_BACKUP);
        let (mut virtual_machines, mut vm_resources) = (Vec::new(), Vec::new());
        let mut namespace_backup = Vec::new();
        if is_vm_backup {
            let all = resources.as_deref().unwrap_or_default();
            let is_vm = |r: &ApplicationBackupResourceInfo| {
                r.kind.as_deref() == Some("VirtualMachine")
                    && r.group.as_deref() == Some(KUBEVIRT_GROUP)
            };
            for r in all.iter().filter(|r| is_vm(r)) {
                virtual_machines.push(VirtualMachine {
                    name: r.name.clone().unwrap_or_default(),
                    namespace: r.namespace.clone().unwrap_or_default(),
                    // The guest OS is on the VirtualMachine object, not in the backup CR.
                    os_name: String::new(),
                    status: resource_status(r.status.as_deref(), &mut unknown_statuses),
                });
            }
            for r in all.iter().filter(|r| !is_vm(r)) {
                let namespace = r.namespace.clone().unwrap_or_default();
                // Stork does not record which VM a resource was taken for. When its
                // namespace holds one VM of the backup, it is that VM's; otherwise unknown
                // rather than guessed.
                let mut in_namespace = virtual_machines
                    .iter()
                    .filter(|vm| vm.namespace == namespace);
                let owner = match (in_namespace.next(), in_namespace.next()) {
                    (Some(vm), None) => vec![vm.name.clone()],
                    _ => Vec::new(),
                };
                vm_resources.push(VmResource {
                    group: api_group(r.group.as_deref()),
                    version: r.version.clone().unwrap_or_default(),
                    kind: r.kind.clone().unwrap_or_default(),
                    name: r.name.clone().unwrap_or_default(),
                    namespace,
                    virtual_machines: owner,
                });
            }
        } else {
            namespace_backup = namespace_resources(
                spec.namespaces.as_deref().unwrap_or_default(),
                resources.as_deref(),
                &stork_volumes,
                status.status.as_deref(),
            );
        }
        let volumes = stork_volumes
            .into_iter()
            .map(|v| Volume {
                volume: v.volume.unwrap_or_default(),
                pvc: v.persistent_volume_claim.unwrap_or_default(),
                pvc_namespace: v.namespace.unwrap_or_default(),
                storage_class: v.storage_class.unwrap_or_default(),
                driver: v.driver_name.unwrap_or_default(),
                status: v
                    .status
                    .as_deref()
                    .map(|s| status_or_invalid(Some(s), &mut unknown_statuses)),
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
            failed_resource_count: resources
                .as_ref()
                .map(|r| r.iter().filter(|r| is_failed(r.status.as_deref())).count() as u64),
            failed_volume_count: status.failed_vol_count,
            virtual_machines,
            vm_resources,
            namespace_resources: namespace_backup,
        };
        Ok(Mapped {
            object: Object::Backup(backup),
            unknown_statuses,
        })
    }
}

impl StorkResource for ApplicationRestore {
    const WATCHED: Watched = Watched::Objects(Kind::Restore);

    fn observe(&self, cluster: &ClusterIdentity) -> Result<Observed, MappingError> {
        self.to_object(cluster).map(observed)
    }
}

impl ApplicationRestore {
    pub fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped, MappingError> {
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
    const WATCHED: Watched = Watched::Objects(Kind::Schedule);

    fn observe(&self, cluster: &ClusterIdentity) -> Result<Observed, MappingError> {
        let schedule = self.schedule(cluster)?;
        Ok(Observed {
            item: Item::Schedule {
                schedule,
                namespace: self.metadata.namespace.clone().unwrap_or_default(),
                policy_name: self
                    .spec
                    .as_ref()
                    .and_then(|s| s.schedule_policy_name.clone())
                    .unwrap_or_default(),
            },
            warnings: Vec::new(),
            invalid: false,
        })
    }
}

impl ApplicationBackupSchedule {
    /// The schedule without its interval, which the tracker resolves from the policy.
    pub fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped, MappingError> {
        Ok(Mapped {
            object: Object::Schedule(self.schedule(cluster)?),
            unknown_statuses: Vec::new(),
        })
    }

    fn schedule(&self, cluster: &ClusterIdentity) -> Result<Schedule, MappingError> {
        let meta = &self.metadata;
        let suspended = self.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        Ok(Schedule {
            uid: Self::inventory_uid(meta).ok_or(MappingError::NoUid)?,
            name: meta.name.clone().unwrap_or_default(),
            owner: owner(meta, cluster),
            status: if suspended {
                ScheduleStatus::Suspended
            } else {
                ScheduleStatus::Active
            },
            // The interval lives in the policy the schedule names: resolved by the tracker.
            interval_seconds: None,
        })
    }
}

/// A policy as the tracker needs it: its key and longest gap, or why Stork refuses it.
fn observe_policy(key: PolicyKey, policy: Option<&SchedulePolicyItem>) -> Observed {
    let (longest_gap, warnings) = match policy.map(policy::longest_gap_seconds) {
        Some(Ok(gap)) => (gap, Vec::new()),
        None => (None, Vec::new()),
        Some(Err(e)) => (
            None,
            vec![format!(
                "{e}: Stork runs nothing for this policy, so its schedules get no interval"
            )],
        ),
    };
    Observed {
        invalid: !warnings.is_empty(),
        item: Item::Policy { key, longest_gap },
        warnings,
    }
}

fn policy_key(meta: &ObjectMeta, namespaced: bool) -> PolicyKey {
    PolicyKey {
        namespace: namespaced.then(|| meta.namespace.clone().unwrap_or_default()),
        name: meta.name.clone().unwrap_or_default(),
    }
}

impl StorkResource for SchedulePolicy {
    const WATCHED: Watched = Watched::SchedulePolicies;

    fn observe(&self, _: &ClusterIdentity) -> Result<Observed, MappingError> {
        Ok(observe_policy(
            policy_key(&self.metadata, false),
            self.policy.as_ref(),
        ))
    }

    fn observe_malformed(meta: &ObjectMeta) -> Option<Item> {
        Some(Item::Policy {
            key: policy_key(meta, false),
            longest_gap: None,
        })
    }
}

impl StorkResource for NamespacedSchedulePolicy {
    const WATCHED: Watched = Watched::SchedulePolicies;

    fn observe(&self, _: &ClusterIdentity) -> Result<Observed, MappingError> {
        Ok(observe_policy(
            policy_key(&self.metadata, true),
            self.policy.as_ref(),
        ))
    }

    fn observe_malformed(meta: &ObjectMeta) -> Option<Item> {
        Some(Item::Policy {
            key: policy_key(meta, true),
            longest_gap: None,
        })
    }
}

#[cfg(test)]
mod tests;

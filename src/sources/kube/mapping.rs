//! Stork custom resources -> inventory objects, read as Stork's controllers write them
//! (`docs/kube-source.md` says which series exist in which phase, and why).
//!
//! Pure functions: no I/O, no logging. What is worth a warning (a status name this version
//! does not know, a `null` entry in a list) comes back with the object, and the watcher logs
//! it with the namespace and name of the CR. Which key an object is exported under is the
//! tracker's (it must stay the same for the object's whole life): the mapping gives the
//! candidates (`CrId`).

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::Resource;
use serde::de::DeserializeOwned;

use super::crd::{
    ApplicationBackup, ApplicationBackupSchedule, ApplicationBackupVolumeInfo, ApplicationRestore,
    NamespacedSchedulePolicy, ObjectInfo, SchedulePolicy, SchedulePolicyItem,
};
use super::policy;
use crate::model::{
    Backup, BackupStatus, Kind, NamespaceResources, NamespaceStatus, Owner, ResourceType, Restore,
    RestoreStatus, Schedule, ScheduleStatus, Timestamp, UnknownStatus, VirtualMachine, VmResource,
    Volume,
};

/// Set by PX-Backup on the CRs it creates (`created-by: px-backup`): the uid of its own
/// object. On an ApplicationBackup, the backup's uid in PX-Backup, which PX-Backup's metrics
/// use; on an ApplicationRestore, the restore's (Stork's kdmp driver reads both so).
pub const ANNOTATION_BACKUP_UID: &str = "portworx.io/backup-uid";
/// Set by PX-Backup beside the uid: its object's name (the CR's name is a generated one,
/// `<name>-<uid[0:7]>` for a backup).
pub const ANNOTATION_BACKUP_NAME: &str = "portworx.io/backup-name";
/// Set by PX-Backup on the ApplicationBackups it does not create for a backup of this
/// cluster: `restore` for the copy of a backup that a restore reads (Stork's backup
/// controller tells them apart the same way), `backup-schedule` for a scheduled backup.
pub const ANNOTATION_BACKUP_BY: &str = "portworx.io/backup-by";
/// `portworx.io/backup-by` of an ApplicationBackup made for a restore.
pub const BACKUP_BY_RESTORE: &str = "restore";
/// The PXB organisation an object belongs to. Not found in Stork's or PX-Backup's public code:
/// read when present, never required.
pub const ANNOTATION_ORG_ID: &str = "portworx.io/org-id";
/// Set by Stork's schedule controller on every ApplicationBackup it creates, which also
/// carries a copy of all the schedule's own annotations (so PX-Backup's identity annotations,
/// if the schedule has them, are the schedule's and shared by all its backups).
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

/// An object for the inventory (its uid still to be set by the tracker), what was not
/// understood (the object then carries `Invalid` there) and what was skipped.
#[derive(Debug, PartialEq)]
pub struct Mapped<T> {
    pub object: T,
    pub unknown_statuses: Vec<UnknownStatus>,
    /// `null` entries of lists, by field (`status.volumes[2]`): skipped, the rest is read.
    pub null_entries: Vec<String>,
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

/// A CR as its metadata tells it, which is all a deletion (or a malformed object) brings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrId {
    /// `metadata.uid`: unique, and the CR's for its whole life.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// PX-Backup's uid of the object (`portworx.io/backup-uid`), when the annotation is the
    /// CR's own: not on a backup made by a Stork schedule, which copies the schedule's.
    pub pxb_uid: Option<String>,
    /// An ApplicationBackup PX-Backup made for a restore (`portworx.io/backup-by: restore`):
    /// the copy of a backup, maybe of another cluster, not a backup of this one.
    pub for_restore: bool,
}

/// What the tracker is told about a listed, added or modified object.
// Moved once, from the watcher to the tracker, like `model::Event`: boxing the large variant
// would add an allocation per object and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A backup; its `uid` is set by the tracker. Its `name` is also how restores of it name
    /// it (`backup` label), found by its CR's namespace and name.
    Backup(Backup),
    /// A restore; its `uid` is set by the tracker, and `backup` is `spec.backupName` (the
    /// ApplicationBackup CR's name in the restore's namespace), which the tracker turns into
    /// the name that backup is exported with.
    Restore(Restore),
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
    /// Part of the object is unusable (a policy Stork refuses, a `null` list entry): counted
    /// as an invalid object.
    pub invalid: bool,
}

/// What the kube source needs from each Stork CR type.
pub trait StorkResource:
    Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static
{
    const WATCHED: Watched;

    /// Who the CR is, from metadata alone (`None` without a uid, which the API server never
    /// sends).
    fn cr_id(meta: &ObjectMeta) -> Option<CrId> {
        Some(CrId {
            uid: non_empty(meta.uid.as_deref())?,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            pxb_uid: None,
            for_restore: false,
        })
    }

    fn observe(&self, cluster: &ClusterIdentity) -> Result<Observed, MappingError>;

    /// What a malformed object still tells from its metadata. Nothing, for inventory objects
    /// (their last good state stays); a policy that cannot be read still shadows a
    /// cluster-wide one of its name, as in Stork, and runs nothing.
    fn observe_malformed(_meta: &ObjectMeta) -> Option<Item> {
        None
    }
}

fn observed<T>(mapped: Mapped<T>, item: impl FnOnce(T) -> Item) -> Observed {
    let mut warnings: Vec<String> = mapped
        .unknown_statuses
        .iter()
        .map(|u| format!("{u}; exported as Invalid"))
        .collect();
    warnings.extend(
        mapped
            .null_entries
            .iter()
            .map(|f| format!("{f} is null; that entry is skipped")),
    );
    Observed {
        item: item(mapped.object),
        invalid: !mapped.null_entries.is_empty(),
        warnings,
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

/// The entries of a list of pointers, the `null` ones noted by field name and skipped.
fn entries<'a, T>(
    list: Option<&'a [Option<T>]>,
    field: &str,
    nulls: &mut Vec<String>,
) -> Vec<&'a T> {
    let list = list.unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        match entry {
            Some(e) => out.push(e),
            None => nulls.push(format!("{field}[{i}]")),
        }
    }
    out
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

/// Where a Stork backup or restore is, as far as what it has filled in goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not ended: sizes and outcomes not filled yet.
    Running,
    /// Ended well: Stork added up the size and recorded the resources.
    Succeeded,
    /// Ended with some volumes failed (a backup's only partial failure in Stork).
    Partial,
    Failed,
    /// A status this version does not know: nothing is assumed.
    Unknown,
}

impl Phase {
    fn of_backup(s: Result<BackupStatus, &UnknownStatus>) -> Phase {
        match s {
            Ok(BackupStatus::Success) => Phase::Succeeded,
            Ok(BackupStatus::PartialSuccess) => Phase::Partial,
            Ok(BackupStatus::Failed) => Phase::Failed,
            Ok(_) => Phase::Running,
            Err(_) => Phase::Unknown,
        }
    }

    fn of_restore(s: Result<RestoreStatus, &UnknownStatus>) -> Phase {
        match s {
            Ok(RestoreStatus::Success | RestoreStatus::Retained) => Phase::Succeeded,
            Ok(RestoreStatus::PartialSuccess) => Phase::Partial,
            Ok(RestoreStatus::Failed) => Phase::Failed,
            Ok(_) => Phase::Running,
            Err(_) => Phase::Unknown,
        }
    }

    fn ended_well(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Partial)
    }

    fn ended(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Partial | Phase::Failed)
    }
}

/// When a Stork backup or restore ended: `finishTimestamp` when it ended well; for a failure,
/// the later of `finishTimestamp` and `lastUpdateTimestamp` (several failure paths set only
/// the latter, and a volume that failed earlier may have left an older `finishTimestamp`),
/// else `fallback` (a CR created already failed has neither).
fn completion(
    phase: Phase,
    finish: Option<&Time>,
    last_update: Option<&Time>,
    fallback: Option<&Time>,
) -> Option<Timestamp> {
    let (finish, last_update) = (finish.map(timestamp), last_update.map(timestamp));
    match phase {
        Phase::Succeeded | Phase::Partial => finish.or(last_update),
        Phase::Failed => finish.max(last_update).or_else(|| fallback.map(timestamp)),
        Phase::Running | Phase::Unknown => None,
    }
}

/// The PXB status of a Stork backup status; `Invalid` (and the name noted in `unknown`) for
/// one this version does not know.
fn status_or_invalid(stork: Option<&str>, unknown: &mut Vec<UnknownStatus>) -> BackupStatus {
    backup_status(stork).unwrap_or_else(|e| {
        unknown.push(e);
        BackupStatus::Invalid
    })
}

fn is_failed(stork_status: Option<&str>) -> bool {
    stork_status == Some("Failed")
}

impl StorkResource for ApplicationBackup {
    const WATCHED: Watched = Watched::Objects(Kind::Backup);

    fn cr_id(meta: &ObjectMeta) -> Option<CrId> {
        let from_schedule = annotation(meta, ANNOTATION_SCHEDULE_NAME).is_some();
        Some(CrId {
            uid: non_empty(meta.uid.as_deref())?,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            pxb_uid: if from_schedule {
                None
            } else {
                non_empty(annotation(meta, ANNOTATION_BACKUP_UID))
            },
            for_restore: annotation(meta, ANNOTATION_BACKUP_BY) == Some(BACKUP_BY_RESTORE),
        })
    }

    fn observe(&self, cluster: &ClusterIdentity) -> Result<Observed, MappingError> {
        self.to_object(cluster).map(|m| observed(m, Item::Backup))
    }
}

/// `spec.backupObjectType` of a backup of selected virtual machines.
pub const VM_BACKUP: &str = "VirtualMachine";
/// `spec.backupObjectType` of a namespace backup; older Stork leaves it empty.
pub const NAMESPACE_BACKUP: &str = "All";
/// KubeVirt's group: its `VirtualMachine` resources are the VMs of a VM backup.
pub const KUBEVIRT_GROUP: &str = "kubevirt.io";
/// `spec.namespaces` entry that Stork replaces with every namespace before it starts.
const ALL_NAMESPACES: &str = "*";

/// `group/version/kind` as PXB writes a resource type; Stork writes the core group as
/// "core" (and "" in older releases), both become "" (`/v1/ConfigMap`) so that one type has
/// one name.
fn api_group(group: Option<&str>) -> String {
    match group.unwrap_or("") {
        "core" => String::new(),
        g => g.to_owned(),
    }
}

fn type_name(r: &ObjectInfo) -> String {
    format!(
        "{}/{}/{}",
        api_group(r.group.as_deref()),
        r.version.as_deref().unwrap_or(""),
        r.kind.as_deref().unwrap_or("")
    )
}

/// The type a failed volume's PVC has in `type_name`: Stork leaves that PVC out of the
/// resources, so it is counted there as a failed resource of this type.
const PVC_TYPE: &str = "/v1/PersistentVolumeClaim";

/// Counts of one namespace of a backup, while they are gathered.
#[derive(Default)]
struct NamespaceTally {
    /// Recorded resources (`status.resources`).
    resources: u64,
    volumes: u64,
    failed_volumes: u64,
    /// Recorded resources by `group/version/kind`.
    types: BTreeMap<String, u64>,
    /// The backup's VMs in this namespace.
    vms: usize,
}

/// What a backup's status says of its parts, once: recorded resources, volumes and their
/// outcome, per namespace.
struct Recorded<'a> {
    phase: Phase,
    /// `status.resources` when Stork recorded them in the CR (not `null`, not stripped by
    /// `largeResourceEnabled`).
    resources: Option<Vec<&'a ObjectInfo>>,
    volumes: Vec<&'a ApplicationBackupVolumeInfo>,
    /// Stork has written the volume list (or the backup ended without one).
    volumes_known: bool,
    namespaces: BTreeMap<String, NamespaceTally>,
}

impl Recorded<'_> {
    fn failed_volumes(&self) -> u64 {
        self.volumes
            .iter()
            .filter(|v| is_failed(v.status.as_deref()))
            .count() as u64
    }

    /// Failed resources: none when the backup succeeded; when it partly failed, the PVC of
    /// each failed volume (left out of `resources`; Stork fails no resource on its own, the
    /// resource step fails the whole backup). Unknown otherwise: a failed backup records no
    /// per-resource outcome.
    fn failed_resources(&self, failed_volumes: u64) -> Option<u64> {
        match self.phase {
            Phase::Succeeded => Some(0),
            Phase::Partial => Some(failed_volumes),
            _ => None,
        }
    }
}

/// The backup's size as a measurement: Stork's sum of its volumes' sizes, which it adds up
/// only when the backup ends well. A Portworx volume whose size query failed is written with
/// `totalSize: 0`: it counts with its `actualSize` (the bytes moved) instead, and when a
/// successful volume has neither, the size is unknown.
fn backup_size(
    phase: Phase,
    total: Option<u64>,
    volumes: &[&ApplicationBackupVolumeInfo],
) -> Option<u64> {
    if !phase.ended_well() {
        return None;
    }
    let mut size = total.unwrap_or(0);
    for v in volumes {
        if v.status.as_deref() != Some("Successful") || v.total_size.unwrap_or(0) > 0 {
            continue;
        }
        match v.actual_size.filter(|s| *s > 0) {
            Some(actual) => size = size.saturating_add(actual),
            None => return None,
        }
    }
    Some(size)
}

impl ApplicationBackup {
    /// The backup as the inventory keeps it; its `uid` is the tracker's to set (`CrId`).
    pub fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped<Backup>, MappingError> {
        let meta = &self.metadata;
        let id = Self::cr_id(meta).ok_or(MappingError::NoUid)?;
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut unknown_statuses = Vec::new();
        let mut nulls = Vec::new();
        let stork_status = backup_status(status.status.as_deref());
        let phase = Phase::of_backup(stork_status.as_ref().copied());
        let mut state = stork_status.unwrap_or_else(|e| {
            unknown_statuses.push(e);
            BackupStatus::Invalid
        });
        if meta.deletion_timestamp.is_some() {
            state = BackupStatus::Deleting;
        }

        let namespaces: Vec<String> = spec
            .namespaces
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !n.is_empty() && n != ALL_NAMESPACES)
            .collect();
        let volumes = entries(status.volumes.as_deref(), "status.volumes", &mut nulls);
        let listed = entries(status.resources.as_deref(), "status.resources", &mut nulls);
        let resources = match (status.large_resource_enabled, &status.resources) {
            (Some(true), _) | (_, None) => None,
            (_, Some(_)) => Some(listed),
        };
        let is_vm_backup = spec.backup_object_type.as_deref() == Some(VM_BACKUP);
        let include = entries(
            spec.include_resources.as_deref(),
            "spec.includeResources",
            &mut nulls,
        );
        let mut rec = Recorded {
            phase,
            resources,
            volumes_known: status.volumes.is_some() || phase.ended(),
            volumes,
            namespaces: namespaces
                .iter()
                .map(|n| (n.clone(), NamespaceTally::default()))
                .collect(),
        };
        tally(&mut rec);
        let failed_volumes = rec.failed_volumes();

        let (mut virtual_machines, mut vm_resources) = (Vec::new(), Vec::new());
        let mut namespace_resources = Vec::new();
        if is_vm_backup {
            virtual_machines = vms_of(&mut rec, &include);
            vm_resources = vm_resources_of(&rec, &virtual_machines);
        } else {
            namespace_resources = namespace_resources_of(&rec);
        }
        let volume_series = rec
            .volumes
            .iter()
            .map(|v| Volume {
                volume: v.volume.clone().unwrap_or_default(),
                pvc: v.persistent_volume_claim.clone().unwrap_or_default(),
                pvc_namespace: v.namespace.clone().unwrap_or_default(),
                storage_class: v.storage_class.clone().unwrap_or_default(),
                driver: v.driver_name.clone().unwrap_or_default(),
                status: v
                    .status
                    .as_deref()
                    .map(|s| status_or_invalid(Some(s), &mut unknown_statuses)),
            })
            .collect();
        let from_schedule = annotation(meta, ANNOTATION_SCHEDULE_NAME);
        // A scheduled backup carries its schedule's annotations: a PX-Backup name there is
        // the schedule's, not this backup's.
        let name = match from_schedule {
            Some(_) => meta.name.as_deref(),
            None => annotation(meta, ANNOTATION_BACKUP_NAME).or(meta.name.as_deref()),
        };
        let created_at = status
            .trigger_timestamp
            .as_ref()
            .or(meta.creation_timestamp.as_ref())
            .map(timestamp);
        let backup = Backup {
            uid: id.uid,
            name: name.unwrap_or_default().to_owned(),
            owner: owner(meta, cluster),
            schedule_name: from_schedule.unwrap_or_default().to_owned(),
            namespaces,
            backup_location: spec.backup_location.unwrap_or_default(),
            backup_object_type: match spec.backup_object_type.as_deref() {
                None | Some("") => NAMESPACE_BACKUP.to_owned(),
                Some(t) => t.to_owned(),
            },
            status: state,
            size_bytes: backup_size(phase, status.total_size, &rec.volumes),
            // Stork writes the count with the resource list; 0 before that is no count.
            resource_count: status.resources.as_ref().and(status.resource_count),
            volumes: volume_series,
            created_at,
            completed_at: completion(
                phase,
                status.finish_timestamp.as_ref(),
                status.last_update_timestamp.as_ref(),
                meta.creation_timestamp.as_ref(),
            ),
            failed_resource_count: rec.failed_resources(failed_volumes),
            failed_volume_count: rec.volumes_known.then_some(failed_volumes),
            virtual_machines,
            vm_resources,
            namespace_resources,
        };
        Ok(Mapped {
            object: backup,
            unknown_statuses,
            null_entries: nulls,
        })
    }
}

/// Counts, per namespace, the recorded resources and the volumes.
fn tally(rec: &mut Recorded<'_>) {
    for r in rec.resources.iter().flatten() {
        // Cluster-scoped resources (a PV, a CRD) belong to no namespace.
        let Some(ns) = r.namespace.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let t = rec.namespaces.entry(ns.to_owned()).or_default();
        t.resources += 1;
        *t.types.entry(type_name(r)).or_default() += 1;
    }
    for v in &rec.volumes {
        let Some(ns) = v.namespace.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let t = rec.namespaces.entry(ns.to_owned()).or_default();
        t.volumes += 1;
        t.failed_volumes += u64::from(is_failed(v.status.as_deref()));
    }
}

fn is_vm(kind: Option<&str>) -> bool {
    kind == Some("VirtualMachine")
}

/// The outcome of what a backup took in one namespace, when it is told by what Stork
/// records: while the backup runs, InProgress; when it ended, as it ended, except that a
/// partly failed backup (only volumes fail on their own) failed in a namespace as far as that
/// namespace's volumes failed.
fn outcome_in(phase: Phase, t: &NamespaceTally, resources_recorded: bool) -> Option<BackupStatus> {
    match phase {
        Phase::Running => Some(BackupStatus::InProgress),
        Phase::Succeeded => Some(BackupStatus::Success),
        Phase::Failed => Some(BackupStatus::Failed),
        Phase::Partial if t.failed_volumes == 0 => Some(BackupStatus::Success),
        Phase::Partial if t.failed_volumes < t.volumes || t.resources > 0 => {
            Some(BackupStatus::PartialSuccess)
        }
        // Every volume failed and nothing else of it was recorded: failed, if the resource
        // list is there to say so; unknown when Stork kept it out of the CR.
        Phase::Partial if resources_recorded => Some(BackupStatus::Failed),
        Phase::Partial | Phase::Unknown => None,
    }
}

/// The VMs of a VM backup: the KubeVirt VirtualMachines of its recorded resources, else (not
/// recorded yet, or kept out of the CR by `largeResourceEnabled`) those it names in
/// `spec.includeResources`. Stork records no VM's own outcome: a VM has its backup's,
/// except in a partly failed backup, where a VM alone in its namespace has that namespace's
/// (by its volumes) and one sharing it with others is unknown unless none of the
/// namespace's volumes failed.
fn vms_of(rec: &mut Recorded<'_>, include: &[&ObjectInfo]) -> Vec<crate::model::VirtualMachine> {
    let recorded: Vec<&ObjectInfo> = rec
        .resources
        .iter()
        .flatten()
        .copied()
        .filter(|r| is_vm(r.kind.as_deref()) && r.group.as_deref() == Some(KUBEVIRT_GROUP))
        .collect();
    let chosen: Vec<&ObjectInfo> = if recorded.is_empty() {
        // Stork takes any entry of kind VirtualMachine as a VM (whatever its group).
        include
            .iter()
            .copied()
            .filter(|r| is_vm(r.kind.as_deref()))
            .collect()
    } else {
        recorded
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut vms = Vec::new();
    for r in chosen {
        let (name, namespace) = (
            r.name.clone().unwrap_or_default(),
            r.namespace.clone().unwrap_or_default(),
        );
        if seen.insert((namespace.clone(), name.clone())) {
            rec.namespaces.entry(namespace.clone()).or_default().vms += 1;
            vms.push((namespace, name));
        }
    }
    let resources_recorded = rec.resources.is_some();
    vms.into_iter()
        .map(|(namespace, name)| {
            let t = rec.namespaces.get(&namespace);
            let status = t.and_then(|t| match outcome_in(rec.phase, t, resources_recorded) {
                Some(BackupStatus::Success) => Some(BackupStatus::Success),
                _ if rec.phase == Phase::Partial && t.vms > 1 => None,
                other => other,
            });
            VirtualMachine {
                name,
                namespace,
                // The guest OS is on the VirtualMachine object, not in the backup CR.
                os_name: String::new(),
                status,
            }
        })
        .collect()
}

/// The other recorded resources of a VM backup. Stork does not record which VM a resource
/// was taken for: when its namespace holds one VM of the backup, it is that VM's; otherwise
/// unknown rather than guessed.
fn vm_resources_of(rec: &Recorded<'_>, vms: &[VirtualMachine]) -> Vec<VmResource> {
    rec.resources
        .iter()
        .flatten()
        .filter(|r| !(is_vm(r.kind.as_deref()) && r.group.as_deref() == Some(KUBEVIRT_GROUP)))
        .map(|r| {
            let namespace = r.namespace.clone().unwrap_or_default();
            let mut in_namespace = vms.iter().filter(|vm| vm.namespace == namespace);
            let owner = match (in_namespace.next(), in_namespace.next()) {
                (Some(vm), None) => vec![vm.name.clone()],
                _ => Vec::new(),
            };
            VmResource {
                group: api_group(r.group.as_deref()),
                version: r.version.clone().unwrap_or_default(),
                kind: r.kind.clone().unwrap_or_default(),
                name: r.name.clone().unwrap_or_default(),
                namespace,
                virtual_machines: owner,
            }
        })
        .collect()
}

/// Each namespace of a namespace backup (`spec.namespaces` and those of recorded resources
/// and volumes) with its counts and types. A failed volume's PVC, left out of the resource
/// list by Stork, is one failed resource of type `/v1/PersistentVolumeClaim` there, and is
/// counted among the namespace's resources. Resource counts are absent while the resources
/// are not recorded; failed counts where Stork does not say (see `Recorded`).
fn namespace_resources_of(rec: &Recorded<'_>) -> Vec<NamespaceResources> {
    let recorded = rec.resources.is_some();
    rec.namespaces
        .iter()
        .map(|(namespace, t)| {
            let failed = match rec.phase {
                Phase::Succeeded => Some(0),
                Phase::Partial => Some(t.failed_volumes),
                _ => None,
            };
            let mut types: BTreeMap<String, (u64, Option<u64>)> = t
                .types
                .iter()
                .map(|(name, n)| (name.clone(), (*n, failed.map(|_| 0))))
                .collect();
            if recorded && t.failed_volumes > 0 && rec.phase == Phase::Partial {
                let pvc = types.entry(PVC_TYPE.to_owned()).or_insert((0, Some(0)));
                pvc.0 += t.failed_volumes;
                pvc.1 = Some(pvc.1.unwrap_or(0) + t.failed_volumes);
            }
            let left_out = if rec.phase == Phase::Partial {
                t.failed_volumes
            } else {
                0
            };
            NamespaceResources {
                namespace: namespace.clone(),
                status: outcome_in(rec.phase, t, recorded).map(namespace_status),
                total_resources: recorded.then_some(t.resources + left_out),
                total_volumes: rec.volumes_known.then_some(t.volumes),
                failed_resources: failed,
                failed_volumes: rec.volumes_known.then_some(t.failed_volumes),
                resource_types: if recorded {
                    types
                        .into_iter()
                        .map(|(name, (total, failed))| ResourceType {
                            name,
                            total_resources: Some(total),
                            failed_resources: failed,
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

fn namespace_status(s: BackupStatus) -> NamespaceStatus {
    match s {
        BackupStatus::Success => NamespaceStatus::Success,
        BackupStatus::Failed => NamespaceStatus::Failed,
        BackupStatus::PartialSuccess => NamespaceStatus::PartialSuccess,
        _ => NamespaceStatus::InProgress,
    }
}

impl StorkResource for ApplicationRestore {
    const WATCHED: Watched = Watched::Objects(Kind::Restore);

    /// PX-Backup's annotations on its restore CRs name its restore object: Stork's kdmp
    /// driver labels the restore's volume jobs with them as `restoreobject-name` / `-uid`.
    fn cr_id(meta: &ObjectMeta) -> Option<CrId> {
        Some(CrId {
            uid: non_empty(meta.uid.as_deref())?,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            pxb_uid: non_empty(annotation(meta, ANNOTATION_BACKUP_UID)),
            for_restore: false,
        })
    }

    fn observe(&self, cluster: &ClusterIdentity) -> Result<Observed, MappingError> {
        self.to_object(cluster).map(|m| observed(m, Item::Restore))
    }
}

impl ApplicationRestore {
    /// The restore as the inventory keeps it; its `uid` is the tracker's to set, and its
    /// `backup` is `spec.backupName` until the tracker finds how that backup is named.
    pub fn to_object(&self, cluster: &ClusterIdentity) -> Result<Mapped<Restore>, MappingError> {
        let meta = &self.metadata;
        let id = Self::cr_id(meta).ok_or(MappingError::NoUid)?;
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut unknown_statuses = Vec::new();
        let mut nulls = Vec::new();
        let stork_status = restore_status(status.status.as_deref());
        let phase = Phase::of_restore(stork_status.as_ref().copied());
        let mut state = stork_status.unwrap_or_else(|e| {
            unknown_statuses.push(e);
            RestoreStatus::Invalid
        });
        if meta.deletion_timestamp.is_some() {
            state = RestoreStatus::Deleting;
        }
        let volumes = entries(status.volumes.as_deref(), "status.volumes", &mut nulls);
        let restore = Restore {
            uid: id.uid,
            name: annotation(meta, ANNOTATION_BACKUP_NAME)
                .or(meta.name.as_deref())
                .unwrap_or_default()
                .to_owned(),
            owner: owner(meta, cluster),
            backup: spec.backup_name.unwrap_or_default(),
            status: state,
            // Added up once the volumes are restored, and only then: a measurement when the
            // restore ended well.
            size_bytes: phase.ended_well().then_some(status.total_size.unwrap_or(0)),
            resource_count: phase
                .ended_well()
                .then_some(status.resource_count.unwrap_or(0)),
            volume_count: (status.volumes.is_some() || phase.ended())
                .then_some(volumes.len() as u64),
            created_at: meta.creation_timestamp.as_ref().map(timestamp),
            completed_at: completion(
                phase,
                status.finish_timestamp.as_ref(),
                status.last_update_timestamp.as_ref(),
                meta.creation_timestamp.as_ref(),
            ),
        };
        Ok(Mapped {
            object: restore,
            unknown_statuses,
            null_entries: nulls,
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
    pub fn to_object(&self, cluster: &ClusterIdentity) -> Result<Schedule, MappingError> {
        self.schedule(cluster)
    }

    fn schedule(&self, cluster: &ClusterIdentity) -> Result<Schedule, MappingError> {
        let meta = &self.metadata;
        let suspended = self.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        Ok(Schedule {
            uid: Self::cr_id(meta).ok_or(MappingError::NoUid)?.uid,
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

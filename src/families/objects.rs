//! The families of restores, backup schedules, clusters and backup locations, and of each
//! schedule's last success. These objects have no retention: their series go when they do.

use super::{Family, Generator, KindFamilies, Owned, Value};
use crate::labels;
use crate::model::{elapsed_secs, BackupLocation, Cluster, Restore, Schedule, Timestamp};

pub const RESTORE_IDENTITY: &[&str] =
    &["org_id", "name", "uid", "cluster", "cluster_uid", "backup"];
pub const SCHEDULE_IDENTITY: &[&str] = &["org_id", "name", "uid", "cluster", "cluster_uid"];
pub const CLUSTER_IDENTITY: &[&str] = &["org_id", "name", "uid"];
pub const LAST_SUCCESS_IDENTITY: &[&str] = &[
    "org_id",
    "cluster",
    "cluster_uid",
    "schedule_name",
    "schedule_namespace",
];

pub static RESTORE: KindFamilies<Owned<Restore>> = KindFamilies {
    identity: RESTORE_IDENTITY,
    identity_values: |r| {
        [
            r.owner.org_id.as_str(),
            &r.name,
            &r.uid,
            &r.owner.cluster,
            &r.owner.cluster_uid,
            &r.backup,
        ]
        .into()
    },
    generators: &RESTORE_GENERATORS,
};

static RESTORE_GENERATORS: [Generator<Owned<Restore>>; 5] = [
    Generator {
        family: Family::gauge(
            "pxbackup_restore_status",
            "Restore status as the PXB enum: Invalid 0, Pending 1, InProgress 2, Aborted 3, Failed 4, Deleting 5, Success 6, Retained 7, PartialSuccess 8",
            RESTORE_IDENTITY,
        ),
        generate: |r, s| s.push(&[], Value::Int(r.status.value())),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_restore_size_bytes",
            "Total size restored in bytes",
            RESTORE_IDENTITY,
        ),
        generate: |r, s| s.push_some(&[], r.size_bytes.map(Value::Uint)),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_restore_duration_seconds",
            "Time from the start of the restore to its completion",
            RESTORE_IDENTITY,
        ),
        generate: |r, s| {
            s.push_some(
                &[],
                elapsed_secs(r.created_at, r.completed_at).map(Value::Float),
            );
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_restore_volumes",
            "Number of volumes restored",
            RESTORE_IDENTITY,
        ),
        generate: |r, s| s.push_some(&[], r.volume_count.map(Value::Uint)),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_restore_resources",
            "Number of Kubernetes resources restored",
            RESTORE_IDENTITY,
        ),
        generate: |r, s| s.push_some(&[], r.resource_count.map(Value::Uint)),
    },
];

pub static SCHEDULE: KindFamilies<Owned<Schedule>> = KindFamilies {
    identity: SCHEDULE_IDENTITY,
    identity_values: |sc| {
        [
            sc.owner.org_id.as_str(),
            &sc.name,
            &sc.uid,
            &sc.owner.cluster,
            &sc.owner.cluster_uid,
        ]
        .into()
    },
    generators: &SCHEDULE_GENERATORS,
};

static SCHEDULE_GENERATORS: [Generator<Owned<Schedule>>; 2] = [
    Generator {
        family: Family::gauge(
            "pxbackup_backup_schedule_status",
            "Backup schedule status: Active 0, Suspended 1",
            SCHEDULE_IDENTITY,
        ),
        generate: |sc, s| s.push(&[], Value::Int(sc.status.value())),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_schedule_interval_seconds",
            "Longest time between two runs of a backup schedule's policy, when known",
            SCHEDULE_IDENTITY,
        ),
        generate: |sc, s| s.push_some(&[], sc.interval_seconds.map(Value::Uint)),
    },
];

/// The newest successful completion of a schedule's backups. Keyed by org, cluster, schedule
/// name and namespace, not by the schedule's uid: it is derived from backups, which carry only
/// the schedule's name (and, from the kube source, their namespace, the schedule's).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LastSuccess {
    pub org_id: String,
    pub cluster: String,
    pub cluster_uid: String,
    pub schedule_name: String,
    /// Empty for sources without namespaces.
    pub schedule_namespace: String,
    pub completed_at: Timestamp,
}

pub static SCHEDULE_LAST_SUCCESS: KindFamilies<Owned<LastSuccess>> = KindFamilies {
    identity: LAST_SUCCESS_IDENTITY,
    identity_values: |l| {
        [
            l.org_id.as_str(),
            &l.cluster,
            &l.cluster_uid,
            &l.schedule_name,
            &l.schedule_namespace,
        ]
        .into()
    },
    generators: &SCHEDULE_LAST_SUCCESS_GENERATORS,
};

static SCHEDULE_LAST_SUCCESS_GENERATORS: [Generator<Owned<LastSuccess>>; 1] = [Generator {
    family: Family::gauge(
        "pxbackup_schedule_last_success_timestamp_seconds",
        "Completion time of the newest successful backup of a schedule, kept after that backup is deleted",
        LAST_SUCCESS_IDENTITY,
    ),
    generate: |l, s| s.push(&[], Value::Float(l.completed_at.as_secs_f64())),
    }
];

pub static CLUSTER: KindFamilies<Owned<Cluster>> = KindFamilies {
    identity: CLUSTER_IDENTITY,
    identity_values: |c| [c.org_id.as_str(), &c.name, &c.uid].into(),
    generators: &CLUSTER_GENERATORS,
};

static CLUSTER_GENERATORS: [Generator<Owned<Cluster>>; 1] = [Generator {
    family: Family::gauge(
        "pxbackup_cluster_status",
        "Cluster status as the PXB enum: Invalid 0, Online 1, Offline 2, DeletePending 3, Pending 4, Failed 5, Success 6",
        CLUSTER_IDENTITY,
    ),
    generate: |c, s| s.push(&[], Value::Int(c.status.value())),
    }
];

pub static BACKUP_LOCATION: KindFamilies<Owned<BackupLocation>> = KindFamilies {
    identity: CLUSTER_IDENTITY,
    identity_values: |l| [l.org_id.as_str(), &l.name, &l.uid].into(),
    generators: &BACKUP_LOCATION_GENERATORS,
};

static BACKUP_LOCATION_GENERATORS: [Generator<Owned<BackupLocation>>; 1] = [Generator {
    family: Family::gauge(
        "pxbackup_backup_location_status",
        "Backup location status as the PXB enum: Invalid 0, Valid 1, DeletePending 2, ValidationInProgress 3, ValidationFailed 4, LimitedAvailability 5",
        labels!(CLUSTER_IDENTITY, "type"),
    ),
    generate: |l, s| s.push(&[l.location_type.as_bytes()], Value::Int(l.status.value())),
    }
];

//! The metric catalog: every family this sidecar exports, with its help text and labels.
//! This module is the one place metric names are spelled; `pxbackup-sidecar catalog` prints
//! it so that dashboards and alerts are checked against the code, not a copied list.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Gauge,
    Counter,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// For counters, the name without `_total` (the OpenMetrics family name).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    /// Label names in the order they are written.
    pub labels: &'static [&'static str],
}

/// Identity labels on every per-backup series.
pub const BACKUP_IDENTITY: &[&str] = &[
    "org_id",
    "name",
    "uid",
    "cluster",
    "cluster_uid",
    "schedule_name",
];
pub const RESTORE_IDENTITY: &[&str] =
    &["org_id", "name", "uid", "cluster", "cluster_uid", "backup"];
pub const SCHEDULE_IDENTITY: &[&str] = &["org_id", "name", "uid", "cluster", "cluster_uid"];
pub const CLUSTER_IDENTITY: &[&str] = &["org_id", "name", "uid"];

macro_rules! labels {
    ($identity:ident $(, $extra:literal)*) => {{
        const L: &[&str] = &{
            let mut out = [""; $identity.len() + [$($extra),*].len()];
            let mut i = 0;
            while i < $identity.len() { out[i] = $identity[i]; i += 1; }
            let extra: &[&str] = &[$($extra),*];
            let mut j = 0;
            while j < extra.len() { out[i + j] = extra[j]; j += 1; }
            out
        };
        L
    }};
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        labels,
    }
}

const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        labels,
    }
}

// Backups. The order of this list is the order of a backup's rendered sections.
pub static BACKUP_OBJECT_INFO: Family = gauge(
    "pxbackup_backup_object_info",
    "Information about a backup; status Deleted marks a deleted backup kept for the backfill window, previous_status its last terminal status",
    labels!(BACKUP_IDENTITY, "backup_namespace", "backup_location", "backup_object_type", "status", "previous_status"),
);
pub static BACKUP_VOLUME_INFO: Family = gauge(
    "pxbackup_backup_volume_info",
    "Information about a volume of a backup; status Deleted once the backup is deleted",
    labels!(
        BACKUP_IDENTITY,
        "volume",
        "pvc",
        "pvc_namespace",
        "storage_class",
        "driver",
        "status",
        "previous_status"
    ),
);
pub static BACKUP_STATUS: Family = gauge(
    "pxbackup_backup_status",
    "Backup status as the PXB enum: Invalid 0, Pending 1, InProgress 2, Aborted 3, Failed 4, Deleting 5, Success 6, Captured 7, PartialSuccess 8, DeletePending 9, CloudBackupMissing 10",
    BACKUP_IDENTITY,
);
pub static BACKUP_SIZE_BYTES: Family = gauge(
    "pxbackup_backup_size_bytes",
    "Total size of the backup in bytes",
    BACKUP_IDENTITY,
);
pub static BACKUP_DURATION_SECONDS: Family = gauge(
    "pxbackup_backup_duration_seconds",
    "Time from the start of the backup to its completion",
    BACKUP_IDENTITY,
);
pub static BACKUP_VOLUME_COUNT: Family = gauge(
    "pxbackup_backup_volumes",
    "Number of volumes in the backup",
    BACKUP_IDENTITY,
);
pub static BACKUP_RESOURCE_COUNT: Family = gauge(
    "pxbackup_backup_resources",
    "Number of Kubernetes resources in the backup",
    BACKUP_IDENTITY,
);
pub static BACKUP_CREATED_TIMESTAMP: Family = gauge(
    "pxbackup_backup_created_timestamp_seconds",
    "Unix time the backup started",
    BACKUP_IDENTITY,
);
pub static BACKUP_COMPLETED_TIMESTAMP: Family = gauge(
    "pxbackup_backup_completed_timestamp_seconds",
    "Unix time the backup completed",
    BACKUP_IDENTITY,
);
pub static BACKUP_DELETED_TIMESTAMP: Family = gauge(
    "pxbackup_backup_deleted_timestamp_seconds",
    "Unix time a deleted backup was deleted; present for the backfill window only",
    labels!(BACKUP_IDENTITY, "previous_status"),
);

/// A backup's families, in section order (see `render::BackupSection`).
pub static BACKUP_FAMILIES: [&Family; 10] = [
    &BACKUP_OBJECT_INFO,
    &BACKUP_VOLUME_INFO,
    &BACKUP_STATUS,
    &BACKUP_SIZE_BYTES,
    &BACKUP_DURATION_SECONDS,
    &BACKUP_VOLUME_COUNT,
    &BACKUP_RESOURCE_COUNT,
    &BACKUP_CREATED_TIMESTAMP,
    &BACKUP_COMPLETED_TIMESTAMP,
    &BACKUP_DELETED_TIMESTAMP,
];

pub static RESTORE_STATUS: Family = gauge(
    "pxbackup_restore_status",
    "Restore status as the PXB enum: Invalid 0, Pending 1, InProgress 2, Aborted 3, Failed 4, Deleting 5, Success 6, Retained 7, PartialSuccess 8",
    RESTORE_IDENTITY,
);
pub static RESTORE_SIZE_BYTES: Family = gauge(
    "pxbackup_restore_size_bytes",
    "Total size restored in bytes",
    RESTORE_IDENTITY,
);
pub static RESTORE_DURATION_SECONDS: Family = gauge(
    "pxbackup_restore_duration_seconds",
    "Time from the start of the restore to its completion",
    RESTORE_IDENTITY,
);
pub static RESTORE_VOLUME_COUNT: Family = gauge(
    "pxbackup_restore_volumes",
    "Number of volumes restored",
    RESTORE_IDENTITY,
);
pub static RESTORE_RESOURCE_COUNT: Family = gauge(
    "pxbackup_restore_resources",
    "Number of Kubernetes resources restored",
    RESTORE_IDENTITY,
);
pub static RESTORE_FAMILIES: [&Family; 5] = [
    &RESTORE_STATUS,
    &RESTORE_SIZE_BYTES,
    &RESTORE_DURATION_SECONDS,
    &RESTORE_VOLUME_COUNT,
    &RESTORE_RESOURCE_COUNT,
];

pub static SCHEDULE_STATUS: Family = gauge(
    "pxbackup_backup_schedule_status",
    "Backup schedule status: Active 0, Suspended 1",
    SCHEDULE_IDENTITY,
);
pub static SCHEDULE_INTERVAL: Family = gauge(
    "pxbackup_backup_schedule_interval_seconds",
    "Time between two runs of a backup schedule, when known",
    SCHEDULE_IDENTITY,
);
/// A schedule's families, in section order.
pub static SCHEDULE_FAMILIES: [&Family; 2] = [&SCHEDULE_STATUS, &SCHEDULE_INTERVAL];
pub static SCHEDULE_LAST_SUCCESS: Family = gauge(
    "pxbackup_schedule_last_success_timestamp_seconds",
    "Completion time of the newest successful backup of a schedule, kept after that backup is deleted",
    &["org_id", "cluster", "cluster_uid", "schedule_name"],
);
pub static CLUSTER_STATUS: Family = gauge(
    "pxbackup_cluster_status",
    "Cluster status as the PXB enum: Invalid 0, Online 1, Offline 2, DeletePending 3, Pending 4, Failed 5, Success 6",
    CLUSTER_IDENTITY,
);
pub static BACKUP_LOCATION_STATUS: Family = gauge(
    "pxbackup_backup_location_status",
    "Backup location status as the PXB enum: Invalid 0, Valid 1, DeletePending 2, ValidationInProgress 3, ValidationFailed 4, LimitedAvailability 5",
    labels!(CLUSTER_IDENTITY, "type"),
);

// The sidecar itself.
pub static BUILD_INFO: Family = gauge(
    "pxbackup_sidecar_build_info",
    "Version of the sidecar",
    &["version"],
);
pub static SOURCE_UP: Family = gauge(
    "pxbackup_sidecar_source_up",
    "1 when the source has completed its initial sync and is connected",
    &["source"],
);
pub static EVENTS_APPLIED: Family = counter(
    "pxbackup_sidecar_events_applied",
    "Events applied to the inventory",
    &["source"],
);
pub static EVENTS_IGNORED: Family = counter(
    "pxbackup_sidecar_events_ignored",
    "Events that changed nothing: delete of an unknown uid, repeated delete, stale upsert of a deleted backup",
    &["reason"],
);
pub static INGEST_BATCHES: Family = counter(
    "pxbackup_sidecar_ingest_batches",
    "Batches received on POST /v1/events by result",
    &["result"],
);
pub static OBJECTS: Family = gauge(
    "pxbackup_sidecar_objects",
    "Live objects in the inventory",
    &["kind"],
);
pub static TOMBSTONES_RETAINED: Family = gauge(
    "pxbackup_sidecar_tombstones_retained",
    "Deleted backups kept for the backfill window",
    &[],
);
pub static TOMBSTONES_EXPIRED: Family = counter(
    "pxbackup_sidecar_tombstones_expired",
    "Deleted backups whose backfill window ended",
    &[],
);
pub static JOURNAL_ERRORS: Family = counter(
    "pxbackup_sidecar_journal_errors",
    "Failed writes to the tombstone journal (retried by a full rewrite)",
    &[],
);
pub static JOURNAL_RECORDS_SKIPPED: Family = counter(
    "pxbackup_sidecar_journal_records_skipped",
    "Journal records skipped at start-up because they were truncated or failed their checksum",
    &[],
);
pub static SCRAPE_DURATION: Family = gauge(
    "pxbackup_sidecar_scrape_duration_seconds",
    "Time the previous scrape took to assemble its body",
    &[],
);
pub static SOURCE_OBJECTS_INVALID: Family = counter(
    "pxbackup_sidecar_source_objects_invalid",
    "Objects a source could not read (malformed), skipped",
    &["source"],
);

// Pure1 telemetry.
pub static TELEMETRY_ENABLED: Family = gauge(
    "pxbackup_telemetry_enabled",
    "1 while telemetry runs: enabled by px-backup-telemetry-config and not paused by PX-Backup",
    &[],
);
pub static TELEMETRY_PAUSED: Family = gauge(
    "pxbackup_telemetry_paused",
    "1 while PX-Backup's TELEMETRY_COLLECTION_ENABLED (ConfigMap px-backup-config) pauses every upload",
    &[],
);
pub static TELEMETRY_REGISTERED: Family = gauge(
    "pxbackup_telemetry_registered",
    "1 when the sidecar holds a valid Pure1 client certificate",
    &[],
);
pub static TELEMETRY_CONFIG_VALID: Family = gauge(
    "pxbackup_telemetry_config_valid",
    "0 when the last telemetry configuration read was invalid or unreadable (enabled is obeyed at once; the other keys keep their last valid settings)",
    &[],
);
pub static TELEMETRY_UPLOADS: Family = counter(
    "pxbackup_telemetry_uploads",
    "Telemetry uploads by kind and result (success, failure, dropped: lost to the spool cap or unreadable)",
    &["kind", "result"],
);
pub static TELEMETRY_BUNDLES_DROPPED: Family = counter(
    "pxbackup_telemetry_bundles_dropped",
    "Bundles removed from the spool unsent, by kind and reason (spool_full, unreadable, disabled, paused, identity_changed)",
    &["kind", "reason"],
);
pub static TELEMETRY_LAST_SUCCESS: Family = gauge(
    "pxbackup_telemetry_last_success_timestamp_seconds",
    "Unix time of the last successful upload of each kind",
    &["kind"],
);
pub static TELEMETRY_SPOOL_BYTES: Family = gauge(
    "pxbackup_telemetry_spool_bytes",
    "Bytes of unsent uploads waiting in the spool",
    &[],
);

/// Every family, in exposition order.
pub fn all() -> Vec<&'static Family> {
    let mut out: Vec<&'static Family> = Vec::new();
    out.extend(BACKUP_FAMILIES);
    out.extend(RESTORE_FAMILIES);
    out.extend([
        &SCHEDULE_STATUS,
        &SCHEDULE_INTERVAL,
        &SCHEDULE_LAST_SUCCESS,
        &CLUSTER_STATUS,
        &BACKUP_LOCATION_STATUS,
        &BUILD_INFO,
        &SOURCE_UP,
        &EVENTS_APPLIED,
        &EVENTS_IGNORED,
        &INGEST_BATCHES,
        &OBJECTS,
        &TOMBSTONES_RETAINED,
        &TOMBSTONES_EXPIRED,
        &JOURNAL_ERRORS,
        &JOURNAL_RECORDS_SKIPPED,
        &SCRAPE_DURATION,
        &SOURCE_OBJECTS_INVALID,
        &TELEMETRY_ENABLED,
        &TELEMETRY_PAUSED,
        &TELEMETRY_REGISTERED,
        &TELEMETRY_CONFIG_VALID,
        &TELEMETRY_UPLOADS,
        &TELEMETRY_BUNDLES_DROPPED,
        &TELEMETRY_LAST_SUCCESS,
        &TELEMETRY_SPOOL_BYTES,
    ]);
    out
}

/// One catalog entry as `pxbackup-sidecar catalog` prints it: `name` is the sample name
/// (with `_total` for counters), as PromQL uses it.
#[derive(Serialize)]
pub struct CatalogEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricType,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

pub fn entries() -> Vec<CatalogEntry> {
    all()
        .into_iter()
        .map(|f| CatalogEntry {
            name: match f.kind {
                MetricType::Counter => format!("{}_total", f.name),
                MetricType::Gauge => f.name.to_owned(),
            },
            kind: f.kind,
            help: f.help,
            labels: f.labels,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_never_use_reserved_labels() {
        let all = all();
        let mut names: Vec<_> = all.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for f in all {
            assert!(f.name.starts_with("pxbackup_"), "{}", f.name);
            assert!(!f.help.contains(['\n', '\\', '"']), "{}", f.name);
            for l in f.labels {
                assert!(!matches!(*l, "job" | "instance"), "{} uses {l}", f.name);
            }
        }
    }

    #[test]
    fn label_lists_join_identity_and_extras() {
        assert_eq!(
            BACKUP_DELETED_TIMESTAMP.labels,
            &[
                "org_id",
                "name",
                "uid",
                "cluster",
                "cluster_uid",
                "schedule_name",
                "previous_status"
            ]
        );
        assert_eq!(BACKUP_LOCATION_STATUS.labels.last(), Some(&"type"));
    }
}

//! The sidecar's own families (`pxbackup_sidecar_*`) and telemetry's (`pxbackup_telemetry_*`):
//! described here, their values collected at scrape time from the counters each part keeps.

use super::Family;

// The sidecar itself.
pub static BUILD_INFO: Family = Family::gauge(
    "pxbackup_sidecar_build_info",
    "Version of the sidecar",
    &["version"],
);
pub static SOURCE_UP: Family = Family::gauge(
    "pxbackup_sidecar_source_up",
    "1 when the source has completed its initial sync and is connected",
    &["source"],
);
pub static EVENTS_APPLIED: Family = Family::counter(
    "pxbackup_sidecar_events_applied",
    "Events applied to the inventory",
    &["source"],
);
pub static EVENTS_IGNORED: Family = Family::counter(
    "pxbackup_sidecar_events_ignored",
    "Events that changed nothing: delete of an unknown uid, repeated delete, stale upsert of a deleted backup",
    &["reason"],
);
pub static INGEST_BATCHES: Family = Family::counter(
    "pxbackup_sidecar_ingest_batches",
    "Batches received on POST /v1/events by result",
    &["result"],
);
pub static OBJECTS: Family = Family::gauge(
    "pxbackup_sidecar_objects",
    "Live objects in the inventory",
    &["kind"],
);
pub static TOMBSTONES_RETAINED: Family = Family::gauge(
    "pxbackup_sidecar_tombstones_retained",
    "Deleted backups kept for the backfill window",
    &[],
);
pub static TOMBSTONES_EXPIRED: Family = Family::counter(
    "pxbackup_sidecar_tombstones_expired",
    "Deleted backups whose backfill window ended",
    &[],
);
pub static JOURNAL_ERRORS: Family = Family::counter(
    "pxbackup_sidecar_journal_errors",
    "Failed writes to the tombstone journal (retried by a full rewrite)",
    &[],
);
pub static JOURNAL_RECORDS_SKIPPED: Family = Family::counter(
    "pxbackup_sidecar_journal_records_skipped",
    "Journal records skipped at start-up because they were truncated or failed their checksum",
    &[],
);
pub static SCRAPE_DURATION: Family = Family::gauge(
    "pxbackup_sidecar_scrape_duration_seconds",
    "Time the previous scrape took to assemble its body",
    &[],
);
pub static SOURCE_OBJECTS_INVALID: Family = Family::counter(
    "pxbackup_sidecar_source_objects_invalid",
    "Objects a source could not read (malformed), skipped",
    &["source"],
);

// Pure1 telemetry.
pub static TELEMETRY_ENABLED: Family = Family::gauge(
    "pxbackup_telemetry_enabled",
    "1 while telemetry runs: enabled by px-backup-telemetry-config and not paused by PX-Backup",
    &[],
);
pub static TELEMETRY_PAUSED: Family = Family::gauge(
    "pxbackup_telemetry_paused",
    "1 while PX-Backup's TELEMETRY_COLLECTION_ENABLED (ConfigMap px-backup-config) pauses every upload",
    &[],
);
pub static TELEMETRY_REGISTERED: Family = Family::gauge(
    "pxbackup_telemetry_registered",
    "1 when the sidecar holds a valid Pure1 client certificate",
    &[],
);
pub static TELEMETRY_CONFIG_VALID: Family = Family::gauge(
    "pxbackup_telemetry_config_valid",
    "0 when the last telemetry configuration read was invalid or unreadable (enabled is obeyed at once; the other keys keep their last valid settings)",
    &[],
);
pub static TELEMETRY_UPLOADS: Family = Family::counter(
    "pxbackup_telemetry_uploads",
    "Telemetry uploads by kind and result (success, failure, dropped: lost to the spool cap or unreadable)",
    &["kind", "result"],
);
pub static TELEMETRY_BUNDLES_DROPPED: Family = Family::counter(
    "pxbackup_telemetry_bundles_dropped",
    "Bundles removed from the spool unsent, by kind and reason (spool_full, unreadable, disabled, paused, identity_changed)",
    &["kind", "reason"],
);
pub static TELEMETRY_LAST_SUCCESS: Family = Family::gauge(
    "pxbackup_telemetry_last_success_timestamp_seconds",
    "Unix time of the last successful upload of each kind",
    &["kind"],
);
pub static TELEMETRY_SPOOL_BYTES: Family = Family::gauge(
    "pxbackup_telemetry_spool_bytes",
    "Bytes of unsent uploads waiting in the spool",
    &[],
);

pub static RESOURCE_SERIES_DROPPED: Family = Family::counter(
    "pxbackup_sidecar_resource_series_dropped",
    "Resource series (VM resources, namespace resource types) left out because a backup had more than --max-resource-series-per-backup",
    &[],
);
// The pxb source's own Keycloak session.
pub static PXB_OIDC_LOGINS: Family = Family::counter(
    "pxbackup_sidecar_pxb_oidc_logins",
    "Logins of the pxb source to PX-Backup's Keycloak (password or client-credentials grant) by result: success, refused (an OAuth error such as invalid_grant), failed (no usable answer, or unreadable credential files)",
    &["result"],
);
pub static PXB_OIDC_REFRESHES: Family = Family::counter(
    "pxbackup_sidecar_pxb_oidc_refreshes",
    "Refreshes of the pxb source's PX-Backup token with its refresh token, by result: success, refused (then it logs in again), failed",
    &["result"],
);
pub static PXB_TOKEN_EXPIRY: Family = Family::gauge(
    "pxbackup_sidecar_pxb_token_expiry_timestamp_seconds",
    "Unix time at which the PX-Backup token the pxb source got from Keycloak expires; 0 when it has none",
    &[],
);

pub static BACKFILL_WINDOW: Family = Family::gauge(
    "pxbackup_sidecar_backfill_window_seconds",
    "How long a deleted backup stays exported as a tombstone, and the PX-Backup mode (classic or federated) that set the default",
    &["mode"],
);

/// In exposition order.
pub static ALL: [&Family; 25] = [
    &BACKFILL_WINDOW,
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
    &RESOURCE_SERIES_DROPPED,
    &PXB_OIDC_LOGINS,
    &PXB_OIDC_REFRESHES,
    &PXB_TOKEN_EXPIRY,
    &TELEMETRY_ENABLED,
    &TELEMETRY_PAUSED,
    &TELEMETRY_REGISTERED,
    &TELEMETRY_CONFIG_VALID,
    &TELEMETRY_UPLOADS,
    &TELEMETRY_BUNDLES_DROPPED,
    &TELEMETRY_LAST_SUCCESS,
    &TELEMETRY_SPOOL_BYTES,
];

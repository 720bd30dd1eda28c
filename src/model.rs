//! Domain types: the objects Portworx Backup knows about, their PXB status enums, and the
//! events that sources feed into the inventory.
//!
//! Status names and numeric values follow the PXB 3.0 API so that PXB's own alert rules
//! (`pxbackup_backup_status == 4`) keep working against this exporter.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch. Wall-clock times (deletion, completion) are stored this
/// way so that they survive a restart; see `clock` for how "now" is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }
    pub fn as_millis(self) -> i64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    pub fn saturating_add(self, d: std::time::Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
    /// Parses RFC 3339 with its zone: `2026-11-23T01:00:00Z` or `2026-11-23T03:00:00+02:00`,
    /// the format of both the ingest API and Kubernetes timestamps. A time without a zone is
    /// an error rather than UTC: taking a local time as UTC would shift it silently.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        use time::format_description::well_known::Rfc3339;
        match time::OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => {
                let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
                Ok(Timestamp(i64::try_from(ms).unwrap_or(i64::MAX)))
            }
            Err(_) if has_no_zone(s) => Err(TimestampError::NoZone(s.to_owned())),
            Err(e) => Err(TimestampError::Invalid {
                value: s.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("{0:?} has no time zone: add Z (UTC) or an offset such as +02:00")]
    NoZone(String),
    #[error("{value:?} is not an RFC 3339 time ({reason}); expected e.g. 2026-11-23T01:00:00Z")]
    Invalid { value: String, reason: String },
}

/// A date and a time of day (`2026-11-23T01:00:00`) without `Z` or a numeric offset.
fn has_no_zone(s: &str) -> bool {
    let (Some(date), Some(time_of_day)) = (s.get(..10), s.get(11..)) else {
        return false;
    };
    let is_date = date.bytes().enumerate().all(|(i, b)| {
        if i == 4 || i == 7 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    is_date
        && matches!(s.as_bytes()[10], b'T' | b't')
        && !time_of_day.contains(['Z', 'z', '+', '-'])
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match u64::try_from(self.0) {
            Ok(ms) => {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                write!(f, "{}", humantime::format_rfc3339_millis(t))
            }
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

/// A status value that is not one of the names of its enum.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown {kind} {value:?}; expected one of: {expected}")]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a PXB enum: its names (as PXB spells them) and its numeric values.
macro_rules! pxb_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident = $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
            pub fn value(self) -> i64 {
                match self { $($name::$variant => $value),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $(stringify!($variant) => Ok($name::$variant),)+
                    _ => Err(UnknownStatus {
                        kind: $what,
                        value: s.to_owned(),
                        expected: concat!($(stringify!($variant), " "),+),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pxb_enum!(
    /// `BackupInfo.StatusInfo.Status` of the PXB API.
    BackupStatus, "backup status" {
        Invalid = 0, Pending = 1, InProgress = 2, Aborted = 3, Failed = 4, Deleting = 5,
        Success = 6, Captured = 7, PartialSuccess = 8, DeletePending = 9, CloudBackupMissing = 10,
    }
);

impl Default for BackupStatus {
    /// PXB's zero value.
    fn default() -> Self {
        BackupStatus::Invalid
    }
}

impl BackupStatus {
    /// A status a backup ends in. The last one seen becomes `previous_status` of a tombstone.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BackupStatus::Success
                | BackupStatus::Failed
                | BackupStatus::PartialSuccess
                | BackupStatus::Aborted
                | BackupStatus::CloudBackupMissing
        )
    }
}

pxb_enum!(
    /// `RestoreInfo.StatusInfo.Status` of the PXB API.
    RestoreStatus, "restore status" {
        Invalid = 0, Pending = 1, InProgress = 2, Aborted = 3, Failed = 4, Deleting = 5,
        Success = 6, Retained = 7, PartialSuccess = 8,
    }
);

pxb_enum!(
    /// `NamespaceResource.StatusInfo.Status` of the PXB API: how the backup of one namespace went.
    NamespaceStatus, "namespace status" {
        Invalid = 0, InProgress = 1, Success = 2, Failed = 3, PartialSuccess = 4,
    }
);

pxb_enum!(
    /// Whether a backup schedule runs.
    ScheduleStatus, "schedule status" { Active = 0, Suspended = 1 }
);

pxb_enum!(
    /// `ClusterInfo.StatusInfo.Status` of the PXB API.
    ClusterStatus, "cluster status" {
        Invalid = 0, Online = 1, Offline = 2, DeletePending = 3, Pending = 4, Failed = 5, Success = 6,
    }
);

pxb_enum!(
    /// `BackupLocationInfo.StatusInfo.Status` of the PXB API.
    BackupLocationStatus, "backup location status" {
        Invalid = 0, Valid = 1, DeletePending = 2, ValidationInProgress = 3, ValidationFailed = 4,
        LimitedAvailability = 5,
    }
);

/// The kinds of object the inventory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Backup,
    Restore,
    Schedule,
    Cluster,
    BackupLocation,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Backup,
        Kind::Restore,
        Kind::Schedule,
        Kind::Cluster,
        Kind::BackupLocation,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Restore => "restore",
            Kind::Schedule => "schedule",
            Kind::Cluster => "cluster",
            Kind::BackupLocation => "backup_location",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labels that identify the cluster and org an object belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub org_id: String,
    pub cluster: String,
    pub cluster_uid: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub volume: String,
    pub pvc: String,
    pub pvc_namespace: String,
    pub storage_class: String,
    pub driver: String,
    pub status: Option<BackupStatus>,
}

/// A virtual machine of a VM backup (`BackupInfo.VirtualMachineInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualMachine {
    pub name: String,
    pub namespace: String,
    pub os_name: String,
    pub status: Option<BackupStatus>,
}

/// A Kubernetes resource of a VM backup and the VMs it belongs to
/// (`VirtualMachineResourceInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub virtual_machines: Vec<String>,
}

/// One namespace of a namespace backup: its outcome, its counts and its resource types
/// (`NamespaceResource`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceResources {
    pub namespace: String,
    pub status: Option<NamespaceStatus>,
    pub total_resources: Option<u64>,
    pub total_volumes: Option<u64>,
    pub failed_resources: Option<u64>,
    pub failed_volumes: Option<u64>,
    pub resource_types: Vec<ResourceType>,
}

/// The resources of one type within a namespace (`NamespaceResource.ResourceTypeInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceType {
    /// `group/version/kind` as PXB writes it (`apps/v1/Deployment`; core types have an empty
    /// group: `/v1/ConfigMap` or `v1/ConfigMap`).
    pub name: String,
    pub total_resources: Option<u64>,
    pub failed_resources: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub uid: String,
    pub name: String,
    pub owner: Owner,
    pub schedule_name: String,
    pub namespaces: Vec<String>,
    pub backup_location: String,
    pub backup_object_type: String,
    pub status: BackupStatus,
    pub size_bytes: Option<u64>,
    pub resource_count: Option<u64>,
    pub volumes: Vec<Volume>,
    pub created_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub failed_resource_count: Option<u64>,
    pub failed_volume_count: Option<u64>,
    /// VM backups (`backup_object_type` VirtualMachine): the VMs and their resources.
    pub virtual_machines: Vec<VirtualMachine>,
    pub vm_resources: Vec<VmResource>,
    /// Namespace backups: each namespace with its outcome and resource types.
    pub namespace_resources: Vec<NamespaceResources>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub uid: String,
    pub name: String,
    pub owner: Owner,
    pub backup: String,
    pub status: RestoreStatus,
    pub size_bytes: Option<u64>,
    pub resource_count: Option<u64>,
    pub volume_count: Option<u64>,
    pub created_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub uid: String,
    pub name: String,
    pub owner: Owner,
    pub status: ScheduleStatus,
    /// Time between two runs, when known: "no success within its window" alerts use it.
    pub interval_seconds: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub uid: String,
    pub name: String,
    pub org_id: String,
    pub status: ClusterStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLocation {
    pub uid: String,
    pub name: String,
    pub org_id: String,
    pub location_type: String,
    pub status: BackupLocationStatus,
}

/// Duration between two optional instants, in seconds; absent unless both are known and ordered.
pub fn elapsed_secs(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<f64> {
    match (start, end) {
        (Some(s), Some(e)) if e >= s => Some((e.0 - s.0) as f64 / 1000.0),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Backup(Backup),
    Restore(Restore),
    Schedule(Schedule),
    Cluster(Cluster),
    BackupLocation(BackupLocation),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Backup(_) => Kind::Backup,
            Object::Restore(_) => Kind::Restore,
            Object::Schedule(_) => Kind::Schedule,
            Object::Cluster(_) => Kind::Cluster,
            Object::BackupLocation(_) => Kind::BackupLocation,
        }
    }
    pub fn uid(&self) -> &str {
        match self {
            Object::Backup(o) => &o.uid,
            Object::Restore(o) => &o.uid,
            Object::Schedule(o) => &o.uid,
            Object::Cluster(o) => &o.uid,
            Object::BackupLocation(o) => &o.uid,
        }
    }
}

/// What a source tells the inventory. Sources never touch metrics.
// An event is moved once, from its source into the inventory, which boxes what it keeps:
// boxing here too would add an allocation per event and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Upsert(Object),
    /// `deleted_at` absent means "now".
    Delete {
        kind: Kind,
        uid: String,
        deleted_at: Option<Timestamp>,
    },
}

/// Where events come from; each inventory entry remembers its source so that a re-list of one
/// source can delete what that source no longer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SourceId {
    Demo,
    Ingest,
    Kube,
    Pxb,
}

impl SourceId {
    pub const ALL: [SourceId; 4] = [
        SourceId::Demo,
        SourceId::Ingest,
        SourceId::Kube,
        SourceId::Pxb,
    ];
    pub const COUNT: usize = SourceId::ALL.len();
    pub fn as_str(self) -> &'static str {
        match self {
            SourceId::Demo => "demo",
            SourceId::Ingest => "ingest",
            SourceId::Kube => "kube",
            SourceId::Pxb => "pxb",
        }
    }
}

/// Where a batch of events comes from: a source, and the part of it that one list covers (a
/// watcher's namespace, a PX-Backup organization; empty when a list covers the whole source).
/// A re-list deletes only what its own origin no longer has.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub source: SourceId,
    pub scope: std::sync::Arc<str>,
}

impl Origin {
    /// The whole source.
    pub fn source(source: SourceId) -> Self {
        Origin {
            source,
            scope: std::sync::Arc::from(""),
        }
    }
    /// One part of a source (a namespace, an organization).
    pub fn scoped(source: SourceId, scope: &str) -> Self {
        Origin {
            source,
            scope: std::sync::Arc::from(scope),
        }
    }
    /// The namespace the objects of this origin live in, for the source whose scopes are
    /// namespaces (kube); empty for the others (a pxb scope is an organization).
    pub fn namespace(&self) -> &str {
        match self.source {
            SourceId::Kube => &self.scope,
            SourceId::Demo | SourceId::Ingest | SourceId::Pxb => "",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scope.is_empty() {
            f.write_str(self.source.as_str())
        } else {
            write!(f, "{}/{}", self.source, self.scope)
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SourceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SourceId::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown source {s:?}; expected demo, ingest, kube or pxb"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_and_values_follow_pxb() {
        assert_eq!(BackupStatus::Failed.value(), 4);
        assert_eq!(BackupStatus::CloudBackupMissing.value(), 10);
        assert_eq!("PartialSuccess".parse(), Ok(BackupStatus::PartialSuccess));
        assert_eq!(RestoreStatus::Retained.value(), 7);
        assert_eq!(ClusterStatus::Offline.value(), 2);
        assert_eq!(BackupLocationStatus::LimitedAvailability.value(), 5);
        for s in BackupStatus::ALL {
            assert_eq!(s.as_str().parse::<BackupStatus>(), Ok(*s));
        }
    }

    #[test]
    fn unknown_status_names_the_value() {
        let err = "Sucess".parse::<BackupStatus>().unwrap_err();
        assert!(err.to_string().contains("\"Sucess\""), "{err}");
        assert!(err.to_string().contains("Success"), "{err}");
    }

    #[test]
    fn timestamps_parse_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-11-23T01:00:00Z").unwrap();
        assert_eq!(t, Timestamp::from_secs(1_795_395_600));
        assert_eq!(t.to_string(), "2026-11-23T01:00:00.000Z");
        for same in [
            "2026-11-23T03:00:00+02:00",
            "2026-11-22T20:00:00-05:00",
            "2026-11-23T01:00:00.000Z",
            "2026-11-23t01:00:00z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(same), Ok(t), "{same}");
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-23T01:00:00.250+00:00"),
            Ok(Timestamp(t.0 + 250))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59.5Z"),
            Ok(Timestamp(-500))
        );
    }

    #[test]
    fn a_time_without_a_zone_is_refused() {
        for zoneless in ["2026-11-23T01:00:00", "2026-11-23T01:00:00.5"] {
            let e = Timestamp::parse_rfc3339(zoneless).unwrap_err();
            assert_eq!(e, TimestampError::NoZone(zoneless.into()));
            assert!(e.to_string().contains("no time zone"), "{e}");
        }
        for bad in ["yesterday", "2026-11-23", "2026-13-23T01:00:00Z", ""] {
            let e = Timestamp::parse_rfc3339(bad).unwrap_err();
            assert!(
                matches!(&e, TimestampError::Invalid { value, .. } if value == bad),
                "{bad}: {e:?}"
            );
        }
    }
}

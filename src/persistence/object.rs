//! The journal's own encoding of a `model::Backup` (the `object` of Backup and Tombstone
//! records): `[object version u8][postcard fields of BackupV1]`.
//!
//! The wire structs below are frozen: their fields, order and types never change. Statuses and
//! sources are written as the codes of the tables in this file (PXB's numeric API values for
//! statuses), never as model enums, so renaming or reordering a model type cannot change what
//! is on disk. `encode` writes from borrowed `*Ref` twins (no clones under the inventory lock);
//! `decode` reads into the owned structs. A test freezes the bytes of a fully populated
//! backup, so the twins cannot drift apart.
//!
//! Extending (see the module docs of `persistence`): a field is only ever added at the END of
//! `BackupV1` (never inside a nested struct: elements of a list have no room to grow). A build
//! that does not know it ignores the trailing bytes; a build that does decodes it from the
//! bytes left after `BackupV1` and takes its default when there are none.

use serde::{Deserialize, Serialize, Serializer};

use super::RecordError;
use crate::model::{
    Backup, BackupStatus, NamespaceResources, NamespaceStatus, Owner, ResourceType, Timestamp,
    VirtualMachine, VmResource, Volume,
};

/// The object encoding this build writes.
pub(crate) const OBJECT_V1: u8 = 1;

/// Encodes `b` as the journal keeps it (`object` of Backup and Tombstone records).
pub fn encode_backup(b: &Backup) -> Vec<u8> {
    let mut out = Vec::with_capacity(384);
    out.push(OBJECT_V1);
    // Writing into a Vec cannot fail, and every field has a defined encoding: an error here
    // is a bug, and the prefix written so far still decodes as far as it goes.
    if let Err(e) = postcard::to_io(&BackupRefV1::from(b), &mut out) {
        tracing::error!(error = %e, uid = %b.uid, "backup could not be encoded");
    }
    out
}

/// Decodes what `encode_backup` wrote (by this build or a later one: trailing fields that this
/// build does not know are ignored).
pub fn decode_backup(bytes: &[u8]) -> Result<Backup, RecordError> {
    match bytes.split_first() {
        Some((&OBJECT_V1, rest)) => {
            let (b, _unknown_trailing_fields) = postcard::take_from_bytes::<BackupV1>(rest)?;
            b.into_model()
        }
        Some((&v, _)) => Err(RecordError::UnknownObjectVersion(v)),
        None => Err(RecordError::Truncated),
    }
}

/// Whether this build can decode an object that starts with `bytes` (replay checks this
/// cheaply, without decoding every object).
pub(crate) fn known_object(bytes: &[u8]) -> Result<(), RecordError> {
    match bytes.first() {
        Some(&OBJECT_V1) => Ok(()),
        Some(&v) => Err(RecordError::UnknownObjectVersion(v)),
        None => Err(RecordError::Truncated),
    }
}

// ---- Code tables (frozen) ----

pub(crate) fn backup_status_code(s: BackupStatus) -> u8 {
    match s {
        BackupStatus::Invalid => 0,
        BackupStatus::Pending => 1,
        BackupStatus::InProgress => 2,
        BackupStatus::Aborted => 3,
        BackupStatus::Failed => 4,
        BackupStatus::Deleting => 5,
        BackupStatus::Success => 6,
        BackupStatus::Captured => 7,
        BackupStatus::PartialSuccess => 8,
        BackupStatus::DeletePending => 9,
        BackupStatus::CloudBackupMissing => 10,
    }
}

pub(crate) fn backup_status(code: u8) -> Result<BackupStatus, RecordError> {
    backup_status_of(code).ok_or(RecordError::UnknownCode {
        what: "backup status",
        code,
    })
}

/// The backup status of a code, if the table has one.
#[inline]
pub(crate) fn backup_status_of(code: u8) -> Option<BackupStatus> {
    Some(match code {
        0 => BackupStatus::Invalid,
        1 => BackupStatus::Pending,
        2 => BackupStatus::InProgress,
        3 => BackupStatus::Aborted,
        4 => BackupStatus::Failed,
        5 => BackupStatus::Deleting,
        6 => BackupStatus::Success,
        7 => BackupStatus::Captured,
        8 => BackupStatus::PartialSuccess,
        9 => BackupStatus::DeletePending,
        10 => BackupStatus::CloudBackupMissing,
        _ => return None,
    })
}

fn namespace_status_code(s: NamespaceStatus) -> u8 {
    match s {
        NamespaceStatus::Invalid => 0,
        NamespaceStatus::InProgress => 1,
        NamespaceStatus::Success => 2,
        NamespaceStatus::Failed => 3,
        NamespaceStatus::PartialSuccess => 4,
    }
}

pub(crate) fn namespace_status(code: u8) -> Result<NamespaceStatus, RecordError> {
    namespace_status_of(code).ok_or(RecordError::UnknownCode {
        what: "namespace status",
        code,
    })
}

/// The namespace status of a code, if the table has one.
#[inline]
pub(crate) fn namespace_status_of(code: u8) -> Option<NamespaceStatus> {
    Some(match code {
        0 => NamespaceStatus::Invalid,
        1 => NamespaceStatus::InProgress,
        2 => NamespaceStatus::Success,
        3 => NamespaceStatus::Failed,
        4 => NamespaceStatus::PartialSuccess,
        _ => return None,
    })
}

fn opt<T, U>(
    v: Option<T>,
    f: impl FnOnce(T) -> Result<U, RecordError>,
) -> Result<Option<U>, RecordError> {
    v.map(f).transpose()
}

// ---- Decoding side (owned, frozen) ----

#[derive(Deserialize)]
struct BackupV1 {
    uid: String,
    name: String,
    owner: OwnerV1,
    schedule_name: String,
    namespaces: Vec<String>,
    backup_location: String,
    backup_object_type: String,
    status: u8,
    size_bytes: Option<u64>,
    resource_count: Option<u64>,
    volumes: Vec<VolumeV1>,
    created_at: Option<i64>,
    completed_at: Option<i64>,
    failed_resource_count: Option<u64>,
    failed_volume_count: Option<u64>,
    virtual_machines: Vec<VirtualMachineV1>,
    vm_resources: Vec<VmResourceV1>,
    namespace_resources: Vec<NamespaceResourcesV1>,
}

#[derive(Deserialize)]
struct OwnerV1 {
    org_id: String,
    cluster: String,
    cluster_uid: String,
}

#[derive(Deserialize)]
struct VolumeV1 {
    volume: String,
    pvc: String,
    pvc_namespace: String,
    storage_class: String,
    driver: String,
    status: Option<u8>,
}

#[derive(Deserialize)]
struct VirtualMachineV1 {
    name: String,
    namespace: String,
    os_name: String,
    status: Option<u8>,
}

#[derive(Deserialize)]
struct VmResourceV1 {
    group: String,
    version: String,
    kind: String,
    name: String,
    namespace: String,
    virtual_machines: Vec<String>,
}

#[derive(Deserialize)]
struct NamespaceResourcesV1 {
    namespace: String,
    status: Option<u8>,
    total_resources: Option<u64>,
    total_volumes: Option<u64>,
    failed_resources: Option<u64>,
    failed_volumes: Option<u64>,
    resource_types: Vec<ResourceTypeV1>,
}

#[derive(Deserialize)]
struct ResourceTypeV1 {
    name: String,
    total_resources: Option<u64>,
    failed_resources: Option<u64>,
}

impl BackupV1 {
    fn into_model(self) -> Result<Backup, RecordError> {
        Ok(Backup {
            uid: self.uid,
            name: self.name,
            owner: Owner {
                org_id: self.owner.org_id,
                cluster: self.owner.cluster,
                cluster_uid: self.owner.cluster_uid,
            },
            schedule_name: self.schedule_name,
            namespaces: self.namespaces,
            backup_location: self.backup_location,
            backup_object_type: self.backup_object_type,
            status: backup_status(self.status)?,
            size_bytes: self.size_bytes,
            resource_count: self.resource_count,
            volumes: self
                .volumes
                .into_iter()
                .map(|v| {
                    Ok(Volume {
                        volume: v.volume,
                        pvc: v.pvc,
                        pvc_namespace: v.pvc_namespace,
                        storage_class: v.storage_class,
                        driver: v.driver,
                        status: opt(v.status, backup_status)?,
                    })
                })
                .collect::<Result<_, RecordError>>()?,
            created_at: self.created_at.map(Timestamp),
            completed_at: self.completed_at.map(Timestamp),
            failed_resource_count: self.failed_resource_count,
            failed_volume_count: self.failed_volume_count,
            virtual_machines: self
                .virtual_machines
                .into_iter()
                .map(|v| {
                    Ok(VirtualMachine {
                        name: v.name,
                        namespace: v.namespace,
                        os_name: v.os_name,
                        status: opt(v.status, backup_status)?,
                    })
                })
                .collect::<Result<_, RecordError>>()?,
            vm_resources: self
                .vm_resources
                .into_iter()
                .map(|r| VmResource {
                    group: r.group,
                    version: r.version,
                    kind: r.kind,
                    name: r.name,
                    namespace: r.namespace,
                    virtual_machines: r.virtual_machines,
                })
                .collect(),
            namespace_resources: self
                .namespace_resources
                .into_iter()
                .map(|n| {
                    Ok(NamespaceResources {
                        namespace: n.namespace,
                        status: opt(n.status, namespace_status)?,
                        total_resources: n.total_resources,
                        total_volumes: n.total_volumes,
                        failed_resources: n.failed_resources,
                        failed_volumes: n.failed_volumes,
                        resource_types: n
                            .resource_types
                            .into_iter()
                            .map(|t| ResourceType {
                                name: t.name,
                                total_resources: t.total_resources,
                                failed_resources: t.failed_resources,
                            })
                            .collect(),
                    })
                })
                .collect::<Result<_, RecordError>>()?,
        })
    }
}

// ---- Encoding side: borrowed twins, field for field ----

/// A list of model values written through their wire twin, without collecting them.
struct Seq<'a, T>(&'a [T]);

trait Wire {
    type Ref<'a>: Serialize
    where
        Self: 'a;
    fn wire(&self) -> Self::Ref<'_>;
}

impl<T: Wire> Serialize for Seq<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Wire::wire))
    }
}

#[derive(Serialize)]
struct BackupRefV1<'a> {
    uid: &'a str,
    name: &'a str,
    owner: OwnerRefV1<'a>,
    schedule_name: &'a str,
    namespaces: &'a [String],
    backup_location: &'a str,
    backup_object_type: &'a str,
    status: u8,
    size_bytes: Option<u64>,
    resource_count: Option<u64>,
    volumes: Seq<'a, Volume>,
    created_at: Option<i64>,
    completed_at: Option<i64>,
    failed_resource_count: Option<u64>,
    failed_volume_count: Option<u64>,
    virtual_machines: Seq<'a, VirtualMachine>,
    vm_resources: Seq<'a, VmResource>,
    namespace_resources: Seq<'a, NamespaceResources>,
}

impl<'a> From<&'a Backup> for BackupRefV1<'a> {
    fn from(b: &'a Backup) -> Self {
        BackupRefV1 {
            uid: &b.uid,
            name: &b.name,
            owner: OwnerRefV1 {
                org_id: &b.owner.org_id,
                cluster: &b.owner.cluster,
                cluster_uid: &b.owner.cluster_uid,
            },
            schedule_name: &b.schedule_name,
            namespaces: &b.namespaces,
            backup_location: &b.backup_location,
            backup_object_type: &b.backup_object_type,
            status: backup_status_code(b.status),
            size_bytes: b.size_bytes,
            resource_count: b.resource_count,
            volumes: Seq(&b.volumes),
            created_at: b.created_at.map(|t| t.0),
            completed_at: b.completed_at.map(|t| t.0),
            failed_resource_count: b.failed_resource_count,
            failed_volume_count: b.failed_volume_count,
            virtual_machines: Seq(&b.virtual_machines),
            vm_resources: Seq(&b.vm_resources),
            namespace_resources: Seq(&b.namespace_resources),
        }
    }
}

#[derive(Serialize)]
struct OwnerRefV1<'a> {
    org_id: &'a str,
    cluster: &'a str,
    cluster_uid: &'a str,
}

#[derive(Serialize)]
struct VolumeRefV1<'a> {
    volume: &'a str,
    pvc: &'a str,
    pvc_namespace: &'a str,
    storage_class: &'a str,
    driver: &'a str,
    status: Option<u8>,
}

impl Wire for Volume {
    type Ref<'a> = VolumeRefV1<'a>;
    fn wire(&self) -> VolumeRefV1<'_> {
        VolumeRefV1 {
            volume: &self.volume,
            pvc: &self.pvc,
            pvc_namespace: &self.pvc_namespace,
            storage_class: &self.storage_class,
            driver: &self.driver,
            status: self.status.map(backup_status_code),
        }
    }
}

#[derive(Serialize)]
struct VirtualMachineRefV1<'a> {
    name: &'a str,
    namespace: &'a str,
    os_name: &'a str,
    status: Option<u8>,
}

impl Wire for VirtualMachine {
    type Ref<'a> = VirtualMachineRefV1<'a>;
    fn wire(&self) -> VirtualMachineRefV1<'_> {
        VirtualMachineRefV1 {
            name: &self.name,
            namespace: &self.namespace,
            os_name: &self.os_name,
            status: self.status.map(backup_status_code),
        }
    }
}

#[derive(Serialize)]
struct VmResourceRefV1<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
    name: &'a str,
    namespace: &'a str,
    virtual_machines: &'a [String],
}

impl Wire for VmResource {
    type Ref<'a> = VmResourceRefV1<'a>;
    fn wire(&self) -> VmResourceRefV1<'_> {
        VmResourceRefV1 {
            group: &self.group,
            version: &self.version,
            kind: &self.kind,
            name: &self.name,
            namespace: &self.namespace,
            virtual_machines: &self.virtual_machines,
        }
    }
}

#[derive(Serialize)]
struct NamespaceResourcesRefV1<'a> {
    namespace: &'a str,
    status: Option<u8>,
    total_resources: Option<u64>,
    total_volumes: Option<u64>,
    failed_resources: Option<u64>,
    failed_volumes: Option<u64>,
    resource_types: Seq<'a, ResourceType>,
}

impl Wire for NamespaceResources {
    type Ref<'a> = NamespaceResourcesRefV1<'a>;
    fn wire(&self) -> NamespaceResourcesRefV1<'_> {
        NamespaceResourcesRefV1 {
            namespace: &self.namespace,
            status: self.status.map(namespace_status_code),
            total_resources: self.total_resources,
            total_volumes: self.total_volumes,
            failed_resources: self.failed_resources,
            failed_volumes: self.failed_volumes,
            resource_types: Seq(&self.resource_types),
        }
    }
}

#[derive(Serialize)]
struct ResourceTypeRefV1<'a> {
    name: &'a str,
    total_resources: Option<u64>,
    failed_resources: Option<u64>,
}

impl Wire for ResourceType {
    type Ref<'a> = ResourceTypeRefV1<'a>;
    fn wire(&self) -> ResourceTypeRefV1<'_> {
        ResourceTypeRefV1 {
            name: &self.name,
            total_resources: self.total_resources,
            failed_resources: self.failed_resources,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every field set, none at its default: a field the twins disagree on shows.
    pub(crate) fn full_backup() -> Backup {
        Backup {
            uid: "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f".into(),
            name: "nightly-shop-2026-11-23".into(),
            owner: Owner {
                org_id: "default".into(),
                cluster: "prod-east".into(),
                cluster_uid: "8ac0adc1-5d67-4c29-b4b0-aa52525d790d".into(),
            },
            schedule_name: "nightly".into(),
            namespaces: vec!["shop".into(), "db".into()],
            backup_location: "s3-east".into(),
            backup_object_type: "VirtualMachine".into(),
            status: BackupStatus::PartialSuccess,
            size_bytes: Some(1 << 33),
            resource_count: Some(17),
            volumes: vec![Volume {
                volume: "pvc-1".into(),
                pvc: "data-0".into(),
                pvc_namespace: "shop".into(),
                storage_class: "px-csi-db".into(),
                driver: "pxd".into(),
                status: Some(BackupStatus::Failed),
            }],
            created_at: Some(Timestamp(1_795_395_600_000)),
            completed_at: Some(Timestamp(-5)),
            failed_resource_count: Some(2),
            failed_volume_count: Some(1),
            virtual_machines: vec![VirtualMachine {
                name: "vm1".into(),
                namespace: "vms".into(),
                os_name: "fedora".into(),
                status: Some(BackupStatus::Success),
            }],
            vm_resources: vec![VmResource {
                group: "kubevirt.io".into(),
                version: "v1".into(),
                kind: "VirtualMachine".into(),
                name: "vm1".into(),
                namespace: "vms".into(),
                virtual_machines: vec!["vm1".into()],
            }],
            namespace_resources: vec![NamespaceResources {
                namespace: "shop".into(),
                status: Some(NamespaceStatus::PartialSuccess),
                total_resources: Some(10),
                total_volumes: Some(2),
                failed_resources: Some(1),
                failed_volumes: Some(0),
                resource_types: vec![ResourceType {
                    name: "apps/v1/Deployment".into(),
                    total_resources: Some(3),
                    failed_resources: Some(1),
                }],
            }],
        }
    }

    /// The bytes of `full_backup()` in object format 1. This never changes: a failure means
    /// the on-disk format changed, which breaks every journal already written.
    pub(crate) const FULL_BACKUP_V1: &str =
        "012435663063316432652d336134622d346335642d386536662d37613862396330643165\
        3266176e696768746c792d73686f702d323032362d31312d32330764656661756c740970\
        726f642d656173742438616330616463312d356436372d346332392d623462302d616135\
        323532356437393064076e696768746c79020473686f700264620773332d656173740e56\
        69727475616c4d616368696e6508018080808020011101057076632d3106646174612d30\
        0473686f700970782d6373692d64620370786401040180fad5dec0680109010201010103\
        766d3103766d73066665646f72610106010b6b756265766972742e696f0276310e566972\
        7475616c4d616368696e6503766d3103766d730103766d31010473686f700104010a0102\
        010101000112617070732f76312f4465706c6f796d656e7401030101";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn backup_round_trips_with_every_field() {
        let b = full_backup();
        assert_eq!(decode_backup(&encode_backup(&b)).unwrap(), b);
        assert_eq!(
            decode_backup(&encode_backup(&Backup::default())).unwrap(),
            Backup::default()
        );
    }

    #[test]
    fn object_format_1_is_frozen() {
        assert_eq!(hex(&encode_backup(&full_backup())), FULL_BACKUP_V1);
    }

    #[test]
    fn fields_appended_by_a_later_build_are_ignored() {
        let mut bytes = encode_backup(&full_backup());
        bytes.extend_from_slice(&[0x05, b'e', b'x', b't', b'r', b'a', 0x01, 0x2a]);
        assert_eq!(decode_backup(&bytes).unwrap(), full_backup());
    }

    #[test]
    fn unknown_object_version_and_codes_are_errors() {
        let mut bytes = encode_backup(&full_backup());
        bytes[0] = 2;
        assert!(matches!(
            decode_backup(&bytes),
            Err(RecordError::UnknownObjectVersion(2))
        ));
        assert!(matches!(decode_backup(&[]), Err(RecordError::Truncated)));
        assert!(matches!(
            backup_status(11),
            Err(RecordError::UnknownCode { code: 11, .. })
        ));
        for s in BackupStatus::ALL {
            assert_eq!(backup_status(backup_status_code(*s)).unwrap(), *s);
            assert_eq!(i64::from(backup_status_code(*s)), s.value(), "PXB's values");
        }
        for s in NamespaceStatus::ALL {
            assert_eq!(namespace_status(namespace_status_code(*s)).unwrap(), *s);
        }
    }
}

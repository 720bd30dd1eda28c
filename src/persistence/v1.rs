//! Reader of journal format 1 (magic `PXBJRNL1`, the previous release): frames
//! `[len u32 LE][crc32(payload) u32 LE][payload]`, the payload a postcard `Record` enum without
//! a version. The types below are that layout, frozen here: they are the only description of
//! format 1 left once the old journal module is gone.
//!
//! Format 1 has no way to find a frame after damage: reading stops at the first frame that is
//! incomplete or fails its checksum, as the previous release did.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::frame::{Window, MAGIC_LEN};
use super::object::encode_backup;
use super::record::{Record, ScheduleKey};
use super::{io_error, JournalError};
use crate::model::{Backup, BackupStatus, Origin, Owner, SourceId, Timestamp, Volume};

/// Format 1's limit: a larger length can only be damage.
const MAX_RECORD: usize = 16 << 20;
const HEADER: usize = 8;

/// A backup status, written by name (the PXB names).
struct StatusV1(BackupStatus);

impl<'de> Deserialize<'de> for StatusV1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <&str>::deserialize(d)?;
        let s = match name {
            "Invalid" => BackupStatus::Invalid,
            "Pending" => BackupStatus::Pending,
            "InProgress" => BackupStatus::InProgress,
            "Aborted" => BackupStatus::Aborted,
            "Failed" => BackupStatus::Failed,
            "Deleting" => BackupStatus::Deleting,
            "Success" => BackupStatus::Success,
            "Captured" => BackupStatus::Captured,
            "PartialSuccess" => BackupStatus::PartialSuccess,
            "DeletePending" => BackupStatus::DeletePending,
            "CloudBackupMissing" => BackupStatus::CloudBackupMissing,
            other => {
                return Err(serde::de::Error::custom(format_args!(
                    "unknown backup status {other:?}"
                )))
            }
        };
        Ok(StatusV1(s))
    }
}

/// `SourceId` as format 1 wrote it (variant index; `Pxb` was added last, by the release that
/// froze the format).
#[derive(Deserialize)]
enum SourceV1 {
    Demo,
    Ingest,
    Kube,
    Pxb,
}

impl SourceV1 {
    fn origin(self) -> Origin {
        // Format 1 has no scope: a re-list covers the whole source.
        Origin::source(match self {
            SourceV1::Demo => SourceId::Demo,
            SourceV1::Ingest => SourceId::Ingest,
            SourceV1::Kube => SourceId::Kube,
            SourceV1::Pxb => SourceId::Pxb,
        })
    }
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
    status: Option<StatusV1>,
}

/// `Timestamp` is a newtype: postcard writes it as its `i64`.
#[derive(Deserialize)]
struct BackupV1 {
    uid: String,
    name: String,
    owner: OwnerV1,
    schedule_name: String,
    namespaces: Vec<String>,
    backup_location: String,
    backup_object_type: String,
    status: StatusV1,
    size_bytes: Option<u64>,
    resource_count: Option<u64>,
    volumes: Vec<VolumeV1>,
    created_at: Option<i64>,
    completed_at: Option<i64>,
}

impl From<BackupV1> for Backup {
    fn from(b: BackupV1) -> Backup {
        Backup {
            uid: b.uid,
            name: b.name,
            owner: Owner {
                org_id: b.owner.org_id,
                cluster: b.owner.cluster,
                cluster_uid: b.owner.cluster_uid,
            },
            schedule_name: b.schedule_name,
            namespaces: b.namespaces,
            backup_location: b.backup_location,
            backup_object_type: b.backup_object_type,
            status: b.status.0,
            size_bytes: b.size_bytes,
            resource_count: b.resource_count,
            volumes: b
                .volumes
                .into_iter()
                .map(|v| Volume {
                    volume: v.volume,
                    pvc: v.pvc,
                    pvc_namespace: v.pvc_namespace,
                    storage_class: v.storage_class,
                    driver: v.driver,
                    status: v.status.map(|s| s.0),
                })
                .collect(),
            created_at: b.created_at.map(Timestamp),
            completed_at: b.completed_at.map(Timestamp),
            // Fields format 1 did not record start empty.
            ..Backup::default()
        }
    }
}

#[derive(Deserialize)]
struct KeyV1 {
    org_id: String,
    cluster: String,
    cluster_uid: String,
    schedule_name: String,
}

impl From<KeyV1> for ScheduleKey {
    fn from(k: KeyV1) -> Self {
        ScheduleKey {
            org_id: k.org_id,
            cluster: k.cluster,
            cluster_uid: k.cluster_uid,
            schedule_name: k.schedule_name,
            // Format 1 kept no namespace.
            schedule_namespace: String::new(),
        }
    }
}

/// Format 1's records, variants in their original order (postcard writes the index).
#[derive(Deserialize)]
enum RecordV1 {
    Tombstone {
        source: SourceV1,
        backup: BackupV1,
        previous: StatusV1,
        deleted_at: i64,
    },
    Forget {
        uid: String,
    },
    LastSuccess {
        key: KeyV1,
        completed_at: i64,
    },
    ForgetLastSuccess {
        key: KeyV1,
    },
    Backup {
        source: SourceV1,
        backup: BackupV1,
        last_terminal: Option<StatusV1>,
    },
}

impl From<RecordV1> for Record {
    fn from(r: RecordV1) -> Record {
        match r {
            RecordV1::Tombstone {
                source,
                backup,
                previous,
                deleted_at,
            } => {
                let backup = Backup::from(backup);
                Record::Tombstone {
                    object: encode_backup(&backup).into(),
                    uid: backup.uid,
                    origin: source.origin(),
                    previous: previous.0,
                    deleted_at: Timestamp(deleted_at),
                }
            }
            RecordV1::Backup {
                source,
                backup,
                last_terminal,
            } => {
                let backup = Backup::from(backup);
                Record::Backup {
                    object: encode_backup(&backup).into(),
                    uid: backup.uid,
                    origin: source.origin(),
                    previous: last_terminal.map(|s| s.0),
                }
            }
            RecordV1::Forget { uid } => Record::Forget { uid },
            RecordV1::LastSuccess { key, completed_at } => Record::LastSuccess {
                key: key.into(),
                completed_at: Timestamp(completed_at),
            },
            RecordV1::ForgetLastSuccess { key } => Record::ForgetLastSuccess { key: key.into() },
        }
    }
}

/// What a format 1 file held beyond its records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct V1Outcome {
    /// Frames that passed their checksum but did not decode (offset of each).
    pub undecodable: Vec<u64>,
    /// Where reading stopped before the end of the file, and why.
    pub stopped_at: Option<(u64, &'static str)>,
    /// Whether the bytes after `stopped_at` are only an incomplete last frame (a torn write),
    /// as opposed to damage with more of the file after it.
    pub torn_tail: bool,
}

/// Reads the format 1 file `file` of `len` bytes (its magic already checked), calling
/// `record` for every record in file order, streaming.
pub(crate) fn read(
    file: &File,
    path: &Path,
    len: u64,
    mut record: impl FnMut(Record) -> Result<(), JournalError>,
) -> Result<V1Outcome, JournalError> {
    let mut window = Window::new(file, len);
    let mut out = V1Outcome::default();
    let mut pos = MAGIC_LEN;
    while pos < len {
        let Some(h) = window
            .get(pos, HEADER)
            .map_err(io_error(path, pos, "read"))?
        else {
            out.stopped_at = Some((pos, "incomplete frame header"));
            out.torn_tail = true;
            break;
        };
        let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if size > MAX_RECORD {
            out.stopped_at = Some((pos, "frame length over the limit"));
            break;
        }
        let end = pos + (HEADER + size) as u64;
        let Some(payload) = window
            .get(pos + HEADER as u64, size)
            .map_err(io_error(path, pos, "read"))?
        else {
            out.stopped_at = Some((pos, "incomplete frame"));
            out.torn_tail = true;
            break;
        };
        if crc32fast::hash(payload) != crc {
            out.stopped_at = Some((pos, "checksum mismatch"));
            // A bad last frame is what a torn append leaves; more bytes after it are damage.
            out.torn_tail = end == len;
            break;
        }
        match postcard::take_from_bytes::<RecordV1>(payload) {
            Ok((r, _)) => record(r.into())?,
            Err(e) => {
                tracing::error!(offset = pos, error = %e, "format 1 journal record passed its checksum but does not decode; skipped");
                out.undecodable.push(pos);
            }
        }
        pos = end;
    }
    Ok(out)
}

//! Versioned records: the payload of a format 2 frame is
//! `[record version u8][record type u8][postcard fields of that type's wire struct]`.
//!
//! Record version 1 wire structs (frozen; sources and statuses as the codes of `object`):
//!
//! | type | name              | fields                                                         |
//! |------|-------------------|----------------------------------------------------------------|
//! | 1    | Backup            | uid, source, scope, previous: Option<status>, object: bytes    |
//! | 2    | Tombstone         | uid, source, scope, previous: status, deleted_at: i64, object  |
//! | 3    | Forget            | uid                                                            |
//! | 4    | LastSuccess       | org_id, cluster, cluster_uid, schedule_name, completed_at: i64 |
//! | 5    | ForgetLastSuccess | org_id, cluster, cluster_uid, schedule_name                    |
//!
//! Added at the end of types 4 and 5: `schedule_namespace` (a string), written only when not
//! empty; a record without it (an older build's, or a source without namespaces) has an empty
//! one, so those records are byte for byte what they were.
//!
//! A record whose version or type this build does not know, or whose fields it cannot decode,
//! is returned as an error: replay skips it, counts it and keeps its frame verbatim.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::frame::{self, TooLarge};
use super::object::{self, backup_status, backup_status_code};
use crate::model::{BackupStatus, Origin, SourceId, Timestamp};

/// The record version this build writes (and the only one it reads, so far).
pub(crate) const RECORD_V1: u8 = 1;

const BACKUP: u8 = 1;
const TOMBSTONE: u8 = 2;
const FORGET: u8 = 3;
const LAST_SUCCESS: u8 = 4;
const FORGET_LAST_SUCCESS: u8 = 5;

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of {size} bytes is over the journal's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("record version {version} (type {kind}) is newer than this build reads")]
    UnknownVersion { version: u8, kind: u8 },
    #[error("record type {kind} (version {version}) is unknown to this build")]
    UnknownType { version: u8, kind: u8 },
    #[error("backup object version {0} is newer than this build reads")]
    UnknownObjectVersion(u8),
    #[error("unknown {what} code {code}")]
    UnknownCode { what: &'static str, code: u8 },
    #[error("record is truncated")]
    Truncated,
    #[error("a string of the record is not UTF-8")]
    NotUtf8,
    #[error("record fields do not decode: {0}")]
    Malformed(#[from] postcard::Error),
}

impl From<TooLarge> for RecordError {
    fn from(t: TooLarge) -> Self {
        RecordError::TooLarge {
            size: t.0,
            limit: frame::MAX_PAYLOAD,
        }
    }
}

/// Schedules are identified in the last-success series by these labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScheduleKey {
    pub org_id: String,
    pub cluster: String,
    pub cluster_uid: String,
    pub schedule_name: String,
    /// The schedule's namespace (schedule names are unique per namespace); empty for sources
    /// without namespaces.
    pub schedule_namespace: String,
}

/// A record as replay yields it, in file order. Later records supersede earlier ones of the
/// same uid (or schedule key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A live backup as last seen; `object` is `encode_backup`'s encoding.
    Backup {
        uid: String,
        origin: Origin,
        previous: Option<BackupStatus>,
        /// Shared, so that the inventory can keep it for compactions without another copy.
        object: Arc<[u8]>,
    },
    /// A deleted backup, kept for the backfill window.
    Tombstone {
        uid: String,
        origin: Origin,
        previous: BackupStatus,
        deleted_at: Timestamp,
        object: Arc<[u8]>,
    },
    /// The backup or tombstone of this uid is gone.
    Forget {
        uid: String,
    },
    LastSuccess {
        key: ScheduleKey,
        completed_at: Timestamp,
    },
    ForgetLastSuccess {
        key: ScheduleKey,
    },
}

/// A record to append, borrowed from the caller's state.
#[derive(Clone, Copy, Debug)]
pub enum RecordRef<'a> {
    Backup {
        uid: &'a str,
        origin: &'a Origin,
        previous: Option<BackupStatus>,
        object: &'a [u8],
    },
    Tombstone {
        uid: &'a str,
        origin: &'a Origin,
        previous: BackupStatus,
        deleted_at: Timestamp,
        object: &'a [u8],
    },
    Forget {
        uid: &'a str,
    },
    LastSuccess {
        key: &'a ScheduleKey,
        completed_at: Timestamp,
    },
    ForgetLastSuccess {
        key: &'a ScheduleKey,
    },
}

/// A record handed to `Journal::compact`: owned, so the writer can encode it after the
/// caller's lock is released, and cheap to take (uid and object are reference-counted).
#[derive(Clone, Debug)]
pub enum OwnedRecordRef {
    Backup {
        uid: Arc<str>,
        origin: Origin,
        previous: Option<BackupStatus>,
        object: Arc<[u8]>,
    },
    Tombstone {
        uid: Arc<str>,
        origin: Origin,
        previous: BackupStatus,
        deleted_at: Timestamp,
        object: Arc<[u8]>,
    },
    Forget {
        uid: Arc<str>,
    },
    LastSuccess {
        key: ScheduleKey,
        completed_at: Timestamp,
    },
    ForgetLastSuccess {
        key: ScheduleKey,
    },
}

impl OwnedRecordRef {
    pub fn as_record_ref(&self) -> RecordRef<'_> {
        match self {
            OwnedRecordRef::Backup {
                uid,
                origin,
                previous,
                object,
            } => RecordRef::Backup {
                uid,
                origin,
                previous: *previous,
                object,
            },
            OwnedRecordRef::Tombstone {
                uid,
                origin,
                previous,
                deleted_at,
                object,
            } => RecordRef::Tombstone {
                uid,
                origin,
                previous: *previous,
                deleted_at: *deleted_at,
                object,
            },
            OwnedRecordRef::Forget { uid } => RecordRef::Forget { uid },
            OwnedRecordRef::LastSuccess { key, completed_at } => RecordRef::LastSuccess {
                key,
                completed_at: *completed_at,
            },
            OwnedRecordRef::ForgetLastSuccess { key } => RecordRef::ForgetLastSuccess { key },
        }
    }
}

impl Record {
    /// The backup uid whose state this record sets (a uid's state is its last record's), or
    /// `None` for a last-success record.
    pub fn backup_uid(&self) -> Option<&str> {
        match self {
            Record::Backup { uid, .. } | Record::Tombstone { uid, .. } | Record::Forget { uid } => {
                Some(uid)
            }
            Record::LastSuccess { .. } | Record::ForgetLastSuccess { .. } => None,
        }
    }

    /// The borrowed twin, to encode a replayed record again.
    pub fn as_record_ref(&self) -> RecordRef<'_> {
        match self {
            Record::Backup {
                uid,
                origin,
                previous,
                object,
            } => RecordRef::Backup {
                uid,
                origin,
                previous: *previous,
                object,
            },
            Record::Tombstone {
                uid,
                origin,
                previous,
                deleted_at,
                object,
            } => RecordRef::Tombstone {
                uid,
                origin,
                previous: *previous,
                deleted_at: *deleted_at,
                object,
            },
            Record::Forget { uid } => RecordRef::Forget { uid },
            Record::LastSuccess { key, completed_at } => RecordRef::LastSuccess {
                key,
                completed_at: *completed_at,
            },
            Record::ForgetLastSuccess { key } => RecordRef::ForgetLastSuccess { key },
        }
    }
}

impl RecordRef<'_> {
    /// What the record is about, for error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            RecordRef::Backup { uid, .. } => format!("backup {uid}"),
            RecordRef::Tombstone { uid, .. } => format!("tombstone {uid}"),
            RecordRef::Forget { uid } => format!("forget {uid}"),
            RecordRef::LastSuccess { key, .. } | RecordRef::ForgetLastSuccess { key } => {
                format!("last success of schedule {}", key.schedule_name)
            }
        }
    }
}

// ---- Codes (frozen) ----

fn source_code(s: SourceId) -> u8 {
    match s {
        SourceId::Demo => 0,
        SourceId::Ingest => 1,
        SourceId::Kube => 2,
        SourceId::Pxb => 3,
    }
}

fn source(code: u8) -> Result<SourceId, RecordError> {
    Ok(match code {
        0 => SourceId::Demo,
        1 => SourceId::Ingest,
        2 => SourceId::Kube,
        3 => SourceId::Pxb,
        _ => {
            return Err(RecordError::UnknownCode {
                what: "source",
                code,
            })
        }
    })
}

// ---- Wire structs, record version 1 (frozen) ----

fn bytes<S: Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    // As a byte string (one copy), not element by element; postcard encodes both alike.
    s.serialize_bytes(b)
}

#[derive(Serialize, Deserialize)]
struct BackupV1<'a> {
    uid: &'a str,
    source: u8,
    scope: &'a str,
    previous: Option<u8>,
    #[serde(serialize_with = "bytes")]
    object: &'a [u8],
}

#[derive(Serialize, Deserialize)]
struct TombstoneV1<'a> {
    uid: &'a str,
    source: u8,
    scope: &'a str,
    previous: u8,
    deleted_at: i64,
    #[serde(serialize_with = "bytes")]
    object: &'a [u8],
}

#[derive(Serialize, Deserialize)]
struct ForgetV1<'a> {
    uid: &'a str,
}

#[derive(Serialize, Deserialize)]
struct KeyV1<'a> {
    org_id: &'a str,
    cluster: &'a str,
    cluster_uid: &'a str,
    schedule_name: &'a str,
}

#[derive(Serialize, Deserialize)]
struct LastSuccessV1<'a> {
    #[serde(borrow)]
    key: KeyV1<'a>,
    completed_at: i64,
}

impl<'a> From<&'a ScheduleKey> for KeyV1<'a> {
    fn from(k: &'a ScheduleKey) -> Self {
        KeyV1 {
            org_id: &k.org_id,
            cluster: &k.cluster,
            cluster_uid: &k.cluster_uid,
            schedule_name: &k.schedule_name,
        }
    }
}

impl KeyV1<'_> {
    fn to_key(&self, schedule_namespace: &str) -> ScheduleKey {
        ScheduleKey {
            org_id: self.org_id.to_owned(),
            cluster: self.cluster.to_owned(),
            cluster_uid: self.cluster_uid.to_owned(),
            schedule_name: self.schedule_name.to_owned(),
            schedule_namespace: schedule_namespace.to_owned(),
        }
    }
}

/// The schedule namespace after a key's record, when there is one (see the module docs).
fn write_schedule_namespace(key: &ScheduleKey, out: &mut Vec<u8>) -> Result<(), RecordError> {
    if !key.schedule_namespace.is_empty() {
        postcard::to_io(key.schedule_namespace.as_str(), out)?;
    }
    Ok(())
}

/// The schedule namespace in the bytes after a key's record: empty when there are none.
fn read_schedule_namespace(rest: &[u8]) -> Result<&str, RecordError> {
    if rest.is_empty() {
        return Ok("");
    }
    let (namespace, _later_fields) = postcard::take_from_bytes::<&str>(rest)?;
    Ok(namespace)
}

/// Appends `record` as one frame to `buf`; on `Err` (over the size limit) `buf` is unchanged.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, record: &RecordRef<'_>) -> Result<(), RecordError> {
    frame::push_frame(buf, |p| {
        let (kind, fields): (u8, &dyn erased::Fields) = match record {
            RecordRef::Backup {
                uid,
                origin,
                previous,
                object,
            } => (
                BACKUP,
                &BackupV1 {
                    uid,
                    source: source_code(origin.source),
                    scope: &origin.scope,
                    previous: previous.map(backup_status_code),
                    object,
                },
            ),
            RecordRef::Tombstone {
                uid,
                origin,
                previous,
                deleted_at,
                object,
            } => (
                TOMBSTONE,
                &TombstoneV1 {
                    uid,
                    source: source_code(origin.source),
                    scope: &origin.scope,
                    previous: backup_status_code(*previous),
                    deleted_at: deleted_at.0,
                    object,
                },
            ),
            RecordRef::Forget { uid } => (FORGET, &ForgetV1 { uid }),
            RecordRef::LastSuccess { key, completed_at } => (
                LAST_SUCCESS,
                &LastSuccessV1 {
                    key: (*key).into(),
                    completed_at: completed_at.0,
                },
            ),
            RecordRef::ForgetLastSuccess { key } => (
                FORGET_LAST_SUCCESS,
                &KeyV1::from(*key) as &dyn erased::Fields,
            ),
        };
        p.push(RECORD_V1);
        p.push(kind);
        fields.write(p)?;
        match record {
            RecordRef::LastSuccess { key, .. } | RecordRef::ForgetLastSuccess { key } => {
                write_schedule_namespace(key, p)
            }
            _ => Ok(()),
        }
    })
}

/// Lets the match above pick a wire struct per type and encode it in one place.
mod erased {
    use super::RecordError;

    pub(super) trait Fields {
        fn write(&self, out: &mut Vec<u8>) -> Result<(), RecordError>;
    }

    impl<T: serde::Serialize> Fields for T {
        fn write(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
            postcard::to_io(self, out)?;
            Ok(())
        }
    }
}

/// Shares one `Arc<str>` per distinct scope among replayed records.
#[derive(Default)]
pub(crate) struct Scopes(HashSet<Arc<str>>);

impl Scopes {
    fn origin(&mut self, source: SourceId, scope: &str) -> Origin {
        let scope = match self.0.get(scope) {
            Some(s) => Arc::clone(s),
            None => {
                let s: Arc<str> = Arc::from(scope);
                self.0.insert(Arc::clone(&s));
                s
            }
        };
        Origin { source, scope }
    }
}

/// Decodes a frame's payload. Trailing bytes after the known fields (added by a later build)
/// are ignored.
pub(crate) fn decode(payload: &[u8], scopes: &mut Scopes) -> Result<Record, RecordError> {
    let [version, kind, fields @ ..] = payload else {
        return Err(RecordError::Truncated);
    };
    let (version, kind) = (*version, *kind);
    if version != RECORD_V1 {
        return Err(RecordError::UnknownVersion { version, kind });
    }
    fn take<'a, T: Deserialize<'a>>(fields: &'a [u8]) -> Result<T, RecordError> {
        let (t, _later_fields) = postcard::take_from_bytes(fields)?;
        Ok(t)
    }
    fn take_with_rest<'a, T: Deserialize<'a>>(
        fields: &'a [u8],
    ) -> Result<(T, &'a [u8]), RecordError> {
        Ok(postcard::take_from_bytes(fields)?)
    }
    Ok(match kind {
        BACKUP => {
            let r: BackupV1 = take(fields)?;
            object::known_object(r.object)?;
            Record::Backup {
                uid: r.uid.to_owned(),
                origin: scopes.origin(source(r.source)?, r.scope),
                previous: r.previous.map(backup_status).transpose()?,
                object: Arc::from(r.object),
            }
        }
        TOMBSTONE => {
            let r: TombstoneV1 = take(fields)?;
            object::known_object(r.object)?;
            Record::Tombstone {
                uid: r.uid.to_owned(),
                origin: scopes.origin(source(r.source)?, r.scope),
                previous: backup_status(r.previous)?,
                deleted_at: Timestamp(r.deleted_at),
                object: Arc::from(r.object),
            }
        }
        FORGET => Record::Forget {
            uid: take::<ForgetV1>(fields)?.uid.to_owned(),
        },
        LAST_SUCCESS => {
            let (r, rest): (LastSuccessV1, _) = take_with_rest(fields)?;
            Record::LastSuccess {
                key: r.key.to_key(read_schedule_namespace(rest)?),
                completed_at: Timestamp(r.completed_at),
            }
        }
        FORGET_LAST_SUCCESS => {
            let (k, rest): (KeyV1, _) = take_with_rest(fields)?;
            Record::ForgetLastSuccess {
                key: k.to_key(read_schedule_namespace(rest)?),
            }
        }
        _ => return Err(RecordError::UnknownType { version, kind }),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::persistence::frame::HEADER_LEN;
    use crate::persistence::object::encode_backup;
    use crate::persistence::object::tests::full_backup;

    pub(crate) fn key() -> ScheduleKey {
        ScheduleKey {
            org_id: "default".into(),
            cluster: "prod-east".into(),
            cluster_uid: "8ac0adc1".into(),
            schedule_name: "nightly".into(),
            schedule_namespace: String::new(),
        }
    }

    fn payload(r: &RecordRef<'_>) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_frame(&mut buf, r).unwrap();
        buf.split_off(HEADER_LEN)
    }

    fn round_trip(r: &RecordRef<'_>) -> Record {
        decode(&payload(r), &mut Scopes::default()).unwrap()
    }

    #[test]
    fn every_record_type_round_trips() {
        let object = encode_backup(&full_backup());
        let origin = Origin::scoped(SourceId::Kube, "team-a");
        let k = key();
        assert_eq!(
            round_trip(&RecordRef::Backup {
                uid: "u1",
                origin: &origin,
                previous: Some(BackupStatus::Failed),
                object: &object,
            }),
            Record::Backup {
                uid: "u1".into(),
                origin: origin.clone(),
                previous: Some(BackupStatus::Failed),
                object: object.clone().into(),
            }
        );
        assert_eq!(
            round_trip(&RecordRef::Tombstone {
                uid: "u2",
                origin: &origin,
                previous: BackupStatus::Aborted,
                deleted_at: Timestamp(-7),
                object: &object,
            }),
            Record::Tombstone {
                uid: "u2".into(),
                origin: origin.clone(),
                previous: BackupStatus::Aborted,
                deleted_at: Timestamp(-7),
                object: object.clone().into(),
            }
        );
        assert_eq!(
            round_trip(&RecordRef::Forget { uid: "u3" }),
            Record::Forget { uid: "u3".into() }
        );
        assert_eq!(
            round_trip(&RecordRef::LastSuccess {
                key: &k,
                completed_at: Timestamp(99),
            }),
            Record::LastSuccess {
                key: k.clone(),
                completed_at: Timestamp(99),
            }
        );
        assert_eq!(
            round_trip(&RecordRef::ForgetLastSuccess { key: &k }),
            Record::ForgetLastSuccess { key: k.clone() }
        );
    }

    #[test]
    fn a_schedule_namespace_follows_the_key_and_its_absence_reads_as_empty() {
        let k = ScheduleKey {
            schedule_namespace: "shop".into(),
            ..key()
        };
        let with = payload(&RecordRef::ForgetLastSuccess { key: &k });
        assert_eq!(
            decode(&with, &mut Scopes::default()).unwrap(),
            Record::ForgetLastSuccess { key: k.clone() }
        );
        let last = RecordRef::LastSuccess {
            key: &k,
            completed_at: Timestamp(99),
        };
        assert_eq!(
            round_trip(&last),
            Record::LastSuccess {
                key: k.clone(),
                completed_at: Timestamp(99),
            }
        );
        // Without one, the bytes are those of before; with one, the same and the string after.
        let without = payload(&RecordRef::ForgetLastSuccess { key: &key() });
        assert_eq!(with[..without.len()], without[..]);
        assert_eq!(with[without.len()..], [4, b's', b'h', b'o', b'p']);
        // A later build's field after it is ignored.
        let mut later = payload(&last);
        later.extend_from_slice(&[2, b'x', b'y']);
        assert_eq!(
            round_trip(&last),
            decode(&later, &mut Scopes::default()).unwrap()
        );
    }

    #[test]
    fn record_version_1_is_frozen() {
        let origin = Origin::scoped(SourceId::Pxb, "org");
        let p = payload(&RecordRef::Tombstone {
            uid: "u",
            origin: &origin,
            previous: BackupStatus::Success,
            deleted_at: Timestamp(1000),
            object: &[1, 2],
        });
        // version, type, "u", source 3, "org", status 6, zigzag varint 1000, object bytes.
        assert_eq!(
            p,
            [1, 2, 1, b'u', 3, 3, b'o', b'r', b'g', 6, 0xd0, 0x0f, 2, 1, 2]
        );
        let p = payload(&RecordRef::Forget { uid: "ab" });
        assert_eq!(p, [1, 3, 2, b'a', b'b']);
    }

    #[test]
    fn trailing_fields_of_a_later_build_are_ignored() {
        let mut p = payload(&RecordRef::Forget { uid: "ab" });
        p.extend_from_slice(&[9, 9, 9]);
        assert_eq!(
            decode(&p, &mut Scopes::default()).unwrap(),
            Record::Forget { uid: "ab".into() }
        );
    }

    #[test]
    fn unknown_versions_types_and_codes_are_errors_not_records() {
        let mut scopes = Scopes::default();
        let mut p = payload(&RecordRef::Forget { uid: "ab" });
        p[0] = 2;
        assert_eq!(
            decode(&p, &mut scopes),
            Err(RecordError::UnknownVersion {
                version: 2,
                kind: FORGET
            })
        );
        p[0] = 1;
        p[1] = 77;
        assert_eq!(
            decode(&p, &mut scopes),
            Err(RecordError::UnknownType {
                version: 1,
                kind: 77
            })
        );
        let origin = Origin::source(SourceId::Demo);
        let mut p = payload(&RecordRef::Backup {
            uid: "u",
            origin: &origin,
            previous: None,
            object: &[2, 0],
        });
        assert_eq!(
            decode(&p, &mut scopes),
            Err(RecordError::UnknownObjectVersion(2))
        );
        // [version, type, uid len, 'u', source, scope len, previous, object len, object..]
        p[8] = 1;
        assert!(decode(&p, &mut scopes).is_ok());
        let mut q = p.clone();
        q[4] = 9;
        assert!(matches!(
            decode(&q, &mut scopes),
            Err(RecordError::UnknownCode { what: "source", .. })
        ));
        assert_eq!(decode(&[1], &mut scopes), Err(RecordError::Truncated));
    }

    #[test]
    fn scopes_are_shared_between_records() {
        let mut scopes = Scopes::default();
        let a = scopes.origin(SourceId::Kube, "ns");
        let b = scopes.origin(SourceId::Kube, "ns");
        assert!(Arc::ptr_eq(&a.scope, &b.scope));
    }
}

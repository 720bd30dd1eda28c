//! Renders one object's series to bytes when the object changes (the kube-state-metrics
//! `MetricsStore` approach): a scrape then only concatenates pre-rendered sections.
//!
//! An object's bytes are split into sections, one per family of its kind (in catalog order),
//! so that a scrape can write every object's section of a family under that family's header.

use std::sync::Arc;

use super::catalog::{self, Family};
use super::text::{write_labels, write_sample, Value};
use crate::model::{
    elapsed_secs, Backup, BackupLocation, BackupStatus, Cluster, Restore, Schedule, Timestamp,
};

/// The most families one kind has (a backup's).
pub const MAX_SECTIONS: usize = catalog::BACKUP_FAMILIES.len();

/// One object's series, ready to be served.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    bytes: Arc<[u8]>,
    /// `ends[i]` is the end offset of section `i`; unused sections repeat the last end.
    ends: [u32; MAX_SECTIONS],
}

impl Rendered {
    pub fn section(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Builds a `Rendered` section by section.
struct Sections {
    buf: Vec<u8>,
    ends: [u32; MAX_SECTIONS],
    next: usize,
}

impl Sections {
    fn new() -> Self {
        Sections {
            buf: Vec::with_capacity(1024),
            ends: [0; MAX_SECTIONS],
            next: 0,
        }
    }
    fn end_section(&mut self) {
        // Objects stay far below 4 GiB of text; saturate rather than wrap if one ever did not.
        self.ends[self.next] = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.next += 1;
    }
    fn finish(mut self) -> Rendered {
        while self.next < MAX_SECTIONS {
            self.end_section();
        }
        Rendered {
            bytes: Arc::from(self.buf),
            ends: self.ends,
        }
    }
}

fn identity(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_labels(&mut out, pairs, true);
    out
}

fn backup_identity(b: &Backup) -> Vec<u8> {
    identity(&[
        ("org_id", &b.owner.org_id),
        ("name", &b.name),
        ("uid", &b.uid),
        ("cluster", &b.owner.cluster),
        ("cluster_uid", &b.owner.cluster_uid),
        ("schedule_name", &b.schedule_name),
    ])
}

fn info_sections(s: &mut Sections, id: &[u8], b: &Backup, status: &str, previous: &str) {
    let namespaces = b.namespaces.join(",");
    write_sample(
        &mut s.buf,
        &catalog::BACKUP_OBJECT_INFO,
        id,
        &[
            ("backup_namespace", &namespaces),
            ("backup_location", &b.backup_location),
            ("backup_object_type", &b.backup_object_type),
            ("status", status),
            ("previous_status", previous),
        ],
        Value::Int(1),
    );
    s.end_section();
    for v in &b.volumes {
        let volume_status = match (status, v.status) {
            ("Deleted", _) | (_, None) => status,
            (_, Some(vs)) => vs.as_str(),
        };
        write_sample(
            &mut s.buf,
            &catalog::BACKUP_VOLUME_INFO,
            id,
            &[
                ("volume", &v.volume),
                ("pvc", &v.pvc),
                ("pvc_namespace", &v.pvc_namespace),
                ("storage_class", &v.storage_class),
                ("driver", &v.driver),
                ("status", volume_status),
                ("previous_status", previous),
            ],
            Value::Int(1),
        );
    }
    s.end_section();
}

fn optional(s: &mut Sections, family: &Family, id: &[u8], value: Option<Value>) {
    if let Some(v) = value {
        write_sample(&mut s.buf, family, id, &[], v);
    }
    s.end_section();
}

/// A live backup. `last_terminal` is the last terminal status seen before this one; it shows
/// as `previous_status` while the backup is in a non-terminal state after finishing
/// (Deleting, DeletePending).
pub fn backup(b: &Backup, last_terminal: Option<BackupStatus>) -> Rendered {
    let id = backup_identity(b);
    let previous = match last_terminal {
        Some(p) if !b.status.is_terminal() => p.as_str(),
        _ => "",
    };
    let mut s = Sections::new();
    info_sections(&mut s, &id, b, b.status.as_str(), previous);
    optional(
        &mut s,
        &catalog::BACKUP_STATUS,
        &id,
        Some(Value::Int(b.status.value())),
    );
    optional(
        &mut s,
        &catalog::BACKUP_SIZE_BYTES,
        &id,
        b.size_bytes.map(Value::Uint),
    );
    optional(
        &mut s,
        &catalog::BACKUP_DURATION_SECONDS,
        &id,
        elapsed_secs(b.created_at, b.completed_at).map(Value::Float),
    );
    optional(
        &mut s,
        &catalog::BACKUP_VOLUME_COUNT,
        &id,
        Some(Value::Uint(b.volumes.len() as u64)),
    );
    optional(
        &mut s,
        &catalog::BACKUP_RESOURCE_COUNT,
        &id,
        b.resource_count.map(Value::Uint),
    );
    optional(
        &mut s,
        &catalog::BACKUP_CREATED_TIMESTAMP,
        &id,
        b.created_at.map(|t| Value::Float(t.as_secs_f64())),
    );
    optional(
        &mut s,
        &catalog::BACKUP_COMPLETED_TIMESTAMP,
        &id,
        b.completed_at.map(|t| Value::Float(t.as_secs_f64())),
    );
    s.finish()
}

/// A deleted backup kept for the backfill window: only its info series (status="Deleted") and
/// its deletion time. Numeric gauges end at deletion.
pub fn tombstone(b: &Backup, previous: BackupStatus, deleted_at: Timestamp) -> Rendered {
    let id = backup_identity(b);
    let mut s = Sections::new();
    info_sections(&mut s, &id, b, "Deleted", previous.as_str());
    for _ in 2..MAX_SECTIONS - 1 {
        s.end_section();
    }
    write_sample(
        &mut s.buf,
        &catalog::BACKUP_DELETED_TIMESTAMP,
        &id,
        &[("previous_status", previous.as_str())],
        Value::Float(deleted_at.as_secs_f64()),
    );
    s.end_section();
    s.finish()
}

pub fn restore(r: &Restore) -> Rendered {
    let id = identity(&[
        ("org_id", &r.owner.org_id),
        ("name", &r.name),
        ("uid", &r.uid),
        ("cluster", &r.owner.cluster),
        ("cluster_uid", &r.owner.cluster_uid),
        ("backup", &r.backup),
    ]);
    let mut s = Sections::new();
    optional(
        &mut s,
        &catalog::RESTORE_STATUS,
        &id,
        Some(Value::Int(r.status.value())),
    );
    optional(
        &mut s,
        &catalog::RESTORE_SIZE_BYTES,
        &id,
        r.size_bytes.map(Value::Uint),
    );
    optional(
        &mut s,
        &catalog::RESTORE_DURATION_SECONDS,
        &id,
        elapsed_secs(r.created_at, r.completed_at).map(Value::Float),
    );
    optional(
        &mut s,
        &catalog::RESTORE_VOLUME_COUNT,
        &id,
        r.volume_count.map(Value::Uint),
    );
    optional(
        &mut s,
        &catalog::RESTORE_RESOURCE_COUNT,
        &id,
        r.resource_count.map(Value::Uint),
    );
    s.finish()
}

fn single(family: &Family, pairs: &[(&str, &str)], value: Value) -> Rendered {
    let mut s = Sections::new();
    write_sample(&mut s.buf, family, &[], pairs, value);
    s.end_section();
    s.finish()
}

pub fn schedule(sc: &Schedule) -> Rendered {
    let id = identity(&[
        ("org_id", &sc.owner.org_id),
        ("name", &sc.name),
        ("uid", &sc.uid),
        ("cluster", &sc.owner.cluster),
        ("cluster_uid", &sc.owner.cluster_uid),
    ]);
    let mut s = Sections::new();
    optional(
        &mut s,
        &catalog::SCHEDULE_STATUS,
        &id,
        Some(Value::Int(sc.status.value())),
    );
    optional(
        &mut s,
        &catalog::SCHEDULE_INTERVAL,
        &id,
        sc.interval_seconds.map(Value::Uint),
    );
    s.finish()
}

pub fn cluster(c: &Cluster) -> Rendered {
    single(
        &catalog::CLUSTER_STATUS,
        &[("org_id", &c.org_id), ("name", &c.name), ("uid", &c.uid)],
        Value::Int(c.status.value()),
    )
}

pub fn backup_location(l: &BackupLocation) -> Rendered {
    single(
        &catalog::BACKUP_LOCATION_STATUS,
        &[
            ("org_id", &l.org_id),
            ("name", &l.name),
            ("uid", &l.uid),
            ("type", &l.location_type),
        ],
        Value::Int(l.status.value()),
    )
}

pub fn schedule_last_success(
    org_id: &str,
    cluster: &str,
    cluster_uid: &str,
    schedule_name: &str,
    completed_at: Timestamp,
) -> Rendered {
    single(
        &catalog::SCHEDULE_LAST_SUCCESS,
        &[
            ("org_id", org_id),
            ("cluster", cluster),
            ("cluster_uid", cluster_uid),
            ("schedule_name", schedule_name),
        ],
        Value::Float(completed_at.as_secs_f64()),
    )
}

//! The families of a backup. PX-Backup 3.0's six backup information families come first: a
//! deleted backup keeps every one of its series there with `status="Deleted"` and
//! `previous_status` for the backfill window. Its status and numeric gauges exist while it is
//! live, its deletion time once it is deleted.
//!
//! Counts are sample values of their own gauges, never label values: a label that changes
//! with every run would start a new series each time.

use std::borrow::Cow;
use std::cell::OnceCell;

use super::{Escape, Family, Generator, KindFamilies, LabelValues, Rows, Samples, Value};
use crate::labels;
use crate::model::{elapsed_secs, Backup, BackupStatus, Timestamp};
use crate::persistence::{
    BackupView, Head, List, NamespaceResourcesView, Next, Parts, ResourceTypeView, Summary, Times,
    VolumeView,
};

/// Labels that identify a backup, first on every one of its series.
pub const IDENTITY: &[&str] = &[
    "org_id",
    "name",
    "uid",
    "cluster",
    "cluster_uid",
    "schedule_name",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupState {
    /// `previous` is what `previous_status` becomes if the backup is deleted now (the
    /// inventory keeps it up to date); while live it shows only once the backup has finished
    /// and moved on to a non-terminal status (Deleting, DeletePending).
    Live { previous: Option<BackupStatus> },
    /// Kept for the backfill window after `deleted_at`.
    Deleted {
        previous: BackupStatus,
        deleted_at: Timestamp,
    },
}

/// The rows of backups: a stored backup read in place, with its state.
pub struct Backups;

impl Rows for Backups {
    type Row<'a> = BackupRow<'a>;
}

/// A backup as it is exported: its stored encoding, read in place a section at a time as far
/// as a family needs it (its identity and summary at once: nearly every family needs them),
/// and its state.
pub struct BackupRow<'a> {
    pub state: BackupState,
    head: Head<'a>,
    summary: Summary<'a>,
    after_summary: Next<'a, List<'a, VolumeView<'a>>>,
    volumes: OnceCell<(List<'a, VolumeView<'a>>, Next<'a, Times>)>,
    times: OnceCell<(Times, Next<'a, Parts<'a>>)>,
    parts: OnceCell<Parts<'a>>,
}

/// How a stored backup's strings are written: checked once, when it is stored, so that
/// rendering it (once per family in a plain-text scrape) never looks at them again. Only a
/// backup that `BackupView::parse_checked` accepts is rendered.
pub fn escape_of(view: &BackupView<'_>) -> Escape {
    let mut escape = Escape::Verbatim;
    view.strings(|s| {
        if super::text::needs_escaping(s) {
            escape = Escape::Check;
        }
    });
    escape
}

const DELETED: &[u8] = b"Deleted";

fn text(s: &'static str) -> &'static [u8] {
    s.as_bytes()
}

impl<'a> BackupRow<'a> {
    /// `object` must be what `BackupView::parse_checked` accepted (stored bytes never change):
    /// what does not decode reads as empty from where it breaks.
    pub fn new(object: &'a [u8], state: BackupState) -> Self {
        let (head, after_head) = Head::read(object);
        let (summary, after_summary) = after_head.read();
        BackupRow {
            state,
            head,
            summary,
            after_summary,
            volumes: OnceCell::new(),
            times: OnceCell::new(),
            parts: OnceCell::new(),
        }
    }

    // Each later section is read once, at the first field a family needs from it, after the
    // sections before it.
    fn volumes_section(&self) -> &(List<'a, VolumeView<'a>>, Next<'a, Times>) {
        self.volumes.get_or_init(|| self.after_summary.read())
    }
    fn times_section(&self) -> &(Times, Next<'a, Parts<'a>>) {
        self.times.get_or_init(|| self.volumes_section().1.read())
    }

    fn summary(&self) -> &Summary<'a> {
        &self.summary
    }
    fn volumes(&self) -> &List<'a, VolumeView<'a>> {
        &self.volumes_section().0
    }
    fn times(&self) -> &Times {
        &self.times_section().0
    }
    fn parts(&self) -> &Parts<'a> {
        self.parts.get_or_init(|| self.times_section().1.read().0)
    }

    fn live(&self) -> bool {
        matches!(self.state, BackupState::Live { .. })
    }

    /// `status` of the backup's own info series.
    fn status(&self) -> &'static [u8] {
        match self.state {
            BackupState::Live { .. } => text(self.summary().status.as_str()),
            BackupState::Deleted { .. } => DELETED,
        }
    }

    /// `status` of a part's info series (a volume, a VM, a namespace): its own while the
    /// backup is live (the backup's when the part has none), Deleted once the backup is.
    fn part_status(&self, own: Option<&'static str>) -> &'static [u8] {
        match self.state {
            BackupState::Live { .. } => text(own.unwrap_or(self.summary().status.as_str())),
            BackupState::Deleted { .. } => DELETED,
        }
    }

    /// `previous_status`, one value for every info series of the backup so that joins on it
    /// agree.
    fn previous(&self) -> &'static [u8] {
        match self.state {
            BackupState::Live { previous: Some(p) }
                if p.is_terminal() && !self.summary().status.is_terminal() =>
            {
                text(p.as_str())
            }
            BackupState::Live { .. } => b"",
            BackupState::Deleted { previous, .. } => text(previous.as_str()),
        }
    }

    /// The namespaces of the backup as one label value: PX-Backup's alert rules template
    /// `backup_namespace`; a backup of several namespaces joins them with commas.
    fn namespaces(&self) -> Cow<'a, [u8]> {
        let namespaces = self.summary().namespaces;
        match namespaces.single() {
            Some(one) => Cow::Borrowed(one),
            None => Cow::Owned(namespaces.iter().collect::<Vec<_>>().join(&b',')),
        }
    }
}

fn identity<'r>(r: &'r BackupRow<'_>) -> LabelValues<'r> {
    let b = &r.head;
    LabelValues::from([
        b.org_id,
        b.name,
        b.uid,
        b.cluster,
        b.cluster_uid,
        b.schedule_name,
    ])
}

fn uint(v: Option<u64>) -> Option<Value> {
    v.map(Value::Uint)
}

/// A gauge of a live backup.
fn live<'a>(
    s: &mut Samples<'_>,
    r: &BackupRow<'a>,
    value: impl FnOnce(&BackupRow<'a>) -> Option<Value>,
) {
    if r.live() {
        s.push_some(&[], value(r));
    }
}

pub const DELETED_TIMESTAMP_LABELS: &[&str] = labels!(IDENTITY, "previous_status");

pub static FAMILIES: KindFamilies<Backups> = KindFamilies {
    identity: IDENTITY,
    identity_values: identity,
    generators: &BACKUP_GENERATORS,
};

static BACKUP_GENERATORS: [Generator<Backups>; 22] = [
    // The six backup information families.
    Generator {
        family: Family::gauge(
            "pxbackup_backup_object_info",
            "Information about a backup; status Deleted marks a deleted backup kept for the backfill window, previous_status its last terminal status",
            labels!(IDENTITY, "backup_namespace", "backup_location", "backup_object_type", "status", "previous_status"),
        ),
        generate: |r, s| {
            let b = r.summary();
            s.push(
                &[
                    &r.namespaces(),
                    b.backup_location,
                    b.backup_object_type,
                    r.status(),
                    r.previous(),
                ],
                Value::Int(1),
            );
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_volume_info",
            "Information about a volume of a backup; status Deleted once the backup is deleted",
            labels!(IDENTITY, "volume", "pvc", "pvc_namespace", "storage_class", "driver", "status", "previous_status"),
        ),
        generate: |r, s| {
            for v in r.volumes() {
                s.push(
                    &[
                        v.volume,
                        v.pvc,
                        v.pvc_namespace,
                        v.storage_class,
                        v.driver,
                        r.part_status(v.status.map(BackupStatus::as_str)),
                        r.previous(),
                    ],
                    Value::Int(1),
                );
            }
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_virtual_machine_info",
            "A virtual machine in a VM backup; status Deleted once the backup is deleted",
            labels!(IDENTITY, "virtual_machine", "virtual_machine_namespace", "os_name", "status", "previous_status"),
        ),
        generate: |r, s| {
            for vm in &r.parts().virtual_machines {
                s.push(
                    &[
                        vm.name,
                        vm.namespace,
                        vm.os_name,
                        r.part_status(vm.status.map(BackupStatus::as_str)),
                        r.previous(),
                    ],
                    Value::Int(1),
                );
            }
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_virtual_machine_resource_info",
            "A Kubernetes resource in a VM backup and the VMs it belongs to (comma-separated); status Deleted once the backup is deleted",
            labels!(IDENTITY, "resource_group", "resource_version", "resource_kind", "resource_name", "resource_namespace", "virtual_machine", "status", "previous_status"),
        ),
        generate: |r, s| {
            for res in &r.parts().vm_resources {
                let vms = res.virtual_machines.iter().collect::<Vec<_>>().join(&b',');
                s.push(
                    &[
                        res.group,
                        res.version,
                        res.kind,
                        res.name,
                        res.namespace,
                        &vms,
                        r.status(),
                        r.previous(),
                    ],
                    Value::Int(1),
                );
            }
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_resource_info",
            "A namespace in a backup with how its backup went; status Deleted once the backup is deleted",
            labels!(IDENTITY, "backup_namespace", "status", "previous_status"),
        ),
        generate: |r, s| {
            for ns in &r.parts().namespace_resources {
                s.push(
                    &[
                        ns.namespace,
                        r.part_status(ns.status.map(|st| st.as_str())),
                        r.previous(),
                    ],
                    Value::Int(1),
                );
            }
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_resource_type_info",
            "A resource type (group/version/kind) backed up in a namespace; status is the namespace's, Deleted once the backup is deleted",
            labels!(IDENTITY, "backup_namespace", "resource_type", "status", "previous_status"),
        ),
        generate: |r, s| {
            for ns in &r.parts().namespace_resources {
                let status = r.part_status(ns.status.map(|st| st.as_str()));
                for t in &ns.resource_types {
                    s.push(&[ns.namespace, t.name, status, r.previous()], Value::Int(1));
                }
            }
        },
    },
    // Live backups.
    Generator {
        family: Family::gauge(
            "pxbackup_backup_status",
            "Backup status as the PXB enum: Invalid 0, Pending 1, InProgress 2, Aborted 3, Failed 4, Deleting 5, Success 6, Captured 7, PartialSuccess 8, DeletePending 9, CloudBackupMissing 10",
            labels!(IDENTITY, "backup_namespace"),
        ),
        generate: |r, s| {
            if r.live() {
                s.push(&[&r.namespaces()], Value::Int(r.summary().status.value()));
            }
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_size_bytes",
            "Total size of the backup in bytes",
            IDENTITY,
        ),
        generate: |r, s| live(s, r, |b| uint(b.summary().size_bytes)),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_duration_seconds",
            "Time from the start of the backup to its completion",
            IDENTITY,
        ),
        generate: |r, s| {
            live(s, r, |b| {
                let t = b.times();
                elapsed_secs(t.created_at, t.completed_at).map(Value::Float)
            });
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_volumes",
            "Number of volumes in the backup",
            IDENTITY,
        ),
        generate: |r, s| live(s, r, |b| Some(Value::Uint(b.volumes().len() as u64))),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_resources",
            "Number of Kubernetes resources in the backup",
            IDENTITY,
        ),
        generate: |r, s| live(s, r, |b| uint(b.summary().resource_count)),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_failed_resources",
            "Number of Kubernetes resources of the backup that failed",
            IDENTITY,
        ),
        generate: |r, s| live(s, r, |b| uint(b.times().failed_resource_count)),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_failed_volumes",
            "Number of volumes of the backup that failed",
            IDENTITY,
        ),
        generate: |r, s| live(s, r, |b| uint(b.times().failed_volume_count)),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_created_timestamp_seconds",
            "Unix time the backup started",
            IDENTITY,
        ),
        generate: |r, s| {
            live(s, r, |b| b.times().created_at.map(|t| Value::Float(t.as_secs_f64())));
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_backup_completed_timestamp_seconds",
            "Unix time the backup completed",
            IDENTITY,
        ),
        generate: |r, s| {
            live(s, r, |b| b.times().completed_at.map(|t| Value::Float(t.as_secs_f64())));
        },
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_resources",
            "Number of Kubernetes resources backed up in a namespace",
            labels!(IDENTITY, "backup_namespace"),
        ),
        generate: |r, s| per_namespace(r, s, |ns| ns.total_resources),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_failed_resources",
            "Number of Kubernetes resources of a namespace whose backup failed",
            labels!(IDENTITY, "backup_namespace"),
        ),
        generate: |r, s| per_namespace(r, s, |ns| ns.failed_resources),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_volumes",
            "Number of volumes backed up in a namespace",
            labels!(IDENTITY, "backup_namespace"),
        ),
        generate: |r, s| per_namespace(r, s, |ns| ns.total_volumes),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_failed_volumes",
            "Number of volumes of a namespace whose backup failed",
            labels!(IDENTITY, "backup_namespace"),
        ),
        generate: |r, s| per_namespace(r, s, |ns| ns.failed_volumes),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_resource_type_resources",
            "Number of resources of one type (group/version/kind) backed up in a namespace",
            labels!(IDENTITY, "backup_namespace", "resource_type"),
        ),
        generate: |r, s| per_resource_type(r, s, |t| t.total_resources),
    },
    Generator {
        family: Family::gauge(
            "pxbackup_namespace_resource_type_failed_resources",
            "Number of resources of one type (group/version/kind) in a namespace whose backup failed; exported only when above zero",
            labels!(IDENTITY, "backup_namespace", "resource_type"),
        ),
        // Only the failed types: a namespace has many types and few fail, and a query
        // for failures then walks only those.
        generate: |r, s| per_resource_type(r, s, |t| t.failed_resources.filter(|n| *n > 0)),
    },
    // Deleted backups.
    Generator {
        family: Family::gauge(
            "pxbackup_backup_deleted_timestamp_seconds",
            "Unix time a deleted backup was deleted; present for the backfill window only",
            DELETED_TIMESTAMP_LABELS,
        ),
        generate: |r, s| {
            if let BackupState::Deleted {
                previous,
                deleted_at,
            } = r.state
            {
                s.push(
                    &[text(previous.as_str())],
                    Value::Float(deleted_at.as_secs_f64()),
                );
            }
        },
    },
];

fn per_namespace(
    r: &BackupRow<'_>,
    s: &mut Samples<'_>,
    count: fn(&NamespaceResourcesView<'_>) -> Option<u64>,
) {
    if !r.live() {
        return;
    }
    for ns in &r.parts().namespace_resources {
        s.push_some(&[ns.namespace], uint(count(&ns)));
    }
}

fn per_resource_type(
    r: &BackupRow<'_>,
    s: &mut Samples<'_>,
    count: fn(&ResourceTypeView<'_>) -> Option<u64>,
) {
    if !r.live() {
        return;
    }
    for ns in &r.parts().namespace_resources {
        for t in &ns.resource_types {
            s.push_some(&[ns.namespace, t.name], uint(count(&t)));
        }
    }
}

/// How many series a backup's resource lists make in the two per-resource families (VM
/// resources, namespace resource types): what `--max-resource-series-per-backup` bounds.
pub fn resource_series(b: &Backup) -> usize {
    b.vm_resources.len()
        + b.namespace_resources
            .iter()
            .map(|ns| ns.resource_types.len())
            .sum::<usize>()
}

/// Cuts a backup's resource lists to at most `max` series (VM resources first, then resource
/// types namespace by namespace, in the order the source gave them). Returns how many series
/// were cut.
pub fn cap_resource_series(b: &mut Backup, max: usize) -> usize {
    let before = resource_series(b);
    if before <= max {
        return 0;
    }
    let mut room = max;
    b.vm_resources.truncate(room);
    room -= b.vm_resources.len();
    for ns in &mut b.namespace_resources {
        ns.resource_types.truncate(room);
        room -= ns.resource_types.len();
    }
    before - resource_series(b)
}

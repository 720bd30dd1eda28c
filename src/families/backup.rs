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
    BackupView, Head, List, NamespaceResourcesView, Parts, ResourceTypeView, Sections, Summary,
    Times, Totals, VolumeView,
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

/// A backup as it is exported: its stored encoding, each section read in place as a family
/// first needs it, and its state.
pub struct BackupRow<'a> {
    pub state: BackupState,
    object: &'a [u8],
    sections: Sections,
    /// Read at most once (several labels of a series come from it); the other sections are
    /// small and read where a family needs them, as a rule once.
    summary: OnceCell<Summary<'a>>,
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

/// The identity labels that are a backup's own, by position in `IDENTITY`: its name and uid,
/// one after the other. The others (org, cluster, cluster uid, schedule) it shares with the
/// other backups of its schedule.
const OWN: std::ops::RangeInclusive<usize> = 1..=2;

/// The identity labels a backup shares with the other backups of its schedule, written as
/// they surround its own two: its identity text is `before`, its name, `",uid="`, its uid,
/// then `after`. The inventory keeps one per distinct value, so a plain-text scrape writes a
/// backup's identity in five copies instead of assembling six labels, for a pointer per
/// backup.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SharedIdentity {
    /// `before`, the text between name and uid, then `after`.
    text: Box<[u8]>,
    before: usize,
    between: usize,
}

/// The text between a kind's identity label values (every family of backups starts with
/// the same labels; the first one says it).
fn identity_between() -> &'static [Box<[u8]>] {
    BACKUP_GENERATORS
        .first()
        .map_or(&[][..], |g| &g.family.series_text().between)
}

impl SharedIdentity {
    /// The shared identity of a stored backup (what `BackupView::parse_checked` accepted),
    /// its values written as `escape` says.
    pub fn of(view: &BackupView<'_>, escape: Escape) -> SharedIdentity {
        let values = identity_values(&view.head);
        let values = values.as_slice();
        // The text before label k, for k >= 1.
        let between = identity_between();
        let before_label = |k: usize| between.get(k - 1).map_or(&[][..], |b| &b[..]);
        let mut text = Vec::with_capacity(128);
        for (i, value) in values.iter().enumerate().take(*OWN.start()) {
            super::text::write_label_value(&mut text, value, escape);
            text.extend_from_slice(before_label(i + 1));
        }
        let before = text.len();
        text.extend_from_slice(before_label(*OWN.end()));
        let mid = text.len();
        for (i, value) in values.iter().enumerate().skip(*OWN.end() + 1) {
            text.extend_from_slice(before_label(i));
            super::text::write_label_value(&mut text, value, escape);
        }
        SharedIdentity {
            text: text.into_boxed_slice(),
            before,
            between: mid,
        }
    }

    /// Writes the identity labels of `row` (whose shared identity this is).
    #[inline]
    fn write(&self, row: &BackupRow<'_>, escape: Escape, out: &mut Vec<u8>) {
        let (uid, name) = row.sections.own(row.object);
        let text = &self.text[..];
        out.extend_from_slice(text.get(..self.before).unwrap_or_default());
        super::text::write_label_value(out, name, escape);
        out.extend_from_slice(text.get(self.before..self.between).unwrap_or_default());
        super::text::write_label_value(out, uid, escape);
        out.extend_from_slice(text.get(self.between..).unwrap_or_default());
    }
}

/// How a stored backup is written into the exposition, worked out once as it is stored.
#[derive(Clone, Debug)]
pub struct BackupText {
    pub escape: Escape,
    pub sections: Sections,
    pub shared: std::sync::Arc<SharedIdentity>,
}

impl BackupRow<'_> {
    /// Appends the row's series of family `family` alone (a plain-text scrape writes a family
    /// at a time), its identity written from `text`.
    pub fn render_family(&self, family: usize, text: &BackupText, out: &mut Vec<u8>) {
        debug_assert_eq!(self.sections, text.sections);
        let write = |out: &mut Vec<u8>| text.shared.write(self, text.escape, out);
        FAMILIES.render_family_with(self, family, text.escape, &write, out);
    }
}

const DELETED: &[u8] = b"Deleted";

fn text(s: &'static str) -> &'static [u8] {
    s.as_bytes()
}

impl<'a> BackupRow<'a> {
    /// `object` must be what `BackupView::parse_checked` accepted (stored bytes never change):
    /// what does not decode reads as empty from where it breaks.
    pub fn new(object: &'a [u8], state: BackupState) -> Self {
        let sections = BackupView::parse(object)
            .map(|v| v.sections)
            .unwrap_or_default();
        BackupRow::with_sections(object, state, sections)
    }

    /// `new`, where the sections of `object` start known already.
    pub fn with_sections(object: &'a [u8], state: BackupState, sections: Sections) -> Self {
        BackupRow {
            state,
            object,
            sections,
            summary: OnceCell::new(),
        }
    }

    fn head(&self) -> Head<'a> {
        self.sections.head(self.object)
    }
    fn summary(&self) -> &Summary<'a> {
        self.summary
            .get_or_init(|| self.sections.summary(self.object))
    }
    fn totals(&self) -> Totals {
        self.sections.totals(self.object)
    }
    fn volumes(&self) -> List<'a, VolumeView<'a>> {
        self.sections.volumes(self.object)
    }
    fn times(&self) -> Times {
        self.sections.times(self.object)
    }
    fn parts(&self) -> Parts<'a> {
        self.sections.parts(self.object)
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
    identity_values(&r.head())
}

fn identity_values<'r>(b: &Head<'r>) -> LabelValues<'r> {
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
        generate: |r, s| live(s, r, |b| uint(b.totals().size_bytes)),
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
        generate: |r, s| live(s, r, |b| uint(b.totals().resource_count)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        NamespaceResources, Owner, ResourceType, VirtualMachine, VmResource, Volume,
    };
    use crate::persistence::encode_backup;

    /// A backup with a series in every family; with `odd`, what the formats escape in every
    /// string.
    fn rich(i: usize, odd: bool) -> Backup {
        let s = |s: &str| {
            if odd {
                format!("{s}-{i}\"\\\n☃")
            } else {
                format!("{s}-{i}")
            }
        };
        Backup {
            uid: s("uid"),
            name: s("name"),
            owner: Owner {
                org_id: s("org"),
                cluster: s("cluster"),
                cluster_uid: s("cluster-uid"),
            },
            schedule_name: s("schedule"),
            namespaces: vec![s("ns"), "plain".into()],
            backup_location: s("s3"),
            backup_object_type: "VirtualMachine".into(),
            status: BackupStatus::PartialSuccess,
            size_bytes: Some(7),
            resource_count: Some(3),
            volumes: vec![Volume {
                volume: s("pvc"),
                status: Some(BackupStatus::Failed),
                ..Default::default()
            }],
            created_at: Some(Timestamp::from_secs(100)),
            completed_at: Some(Timestamp(160_500)),
            failed_resource_count: Some(1),
            failed_volume_count: Some(0),
            virtual_machines: vec![VirtualMachine {
                name: s("vm"),
                ..Default::default()
            }],
            vm_resources: vec![VmResource {
                name: s("res"),
                virtual_machines: vec![s("vm"), s("vm2")],
                ..Default::default()
            }],
            namespace_resources: vec![NamespaceResources {
                namespace: s("ns"),
                total_resources: Some(4),
                failed_resources: Some(1),
                total_volumes: Some(1),
                failed_volumes: Some(0),
                resource_types: vec![ResourceType {
                    name: s("apps/v1/Deployment"),
                    total_resources: Some(2),
                    failed_resources: Some(1),
                }],
                ..Default::default()
            }],
        }
    }

    /// The shared identity writes what the family description writes, escaped or not, for
    /// every family, live and deleted.
    #[test]
    fn shared_identities_write_the_described_identity() {
        for (i, b) in [rich(0, false), rich(1, true), rich(2, true)]
            .into_iter()
            .enumerate()
        {
            let object = encode_backup(&b);
            let view = BackupView::parse_checked(&object).expect("decodes");
            let escape = escape_of(&view);
            assert_eq!(escape == Escape::Verbatim, i == 0);
            let text = BackupText {
                escape,
                sections: view.sections,
                shared: std::sync::Arc::new(SharedIdentity::of(&view, escape)),
            };
            for state in [
                BackupState::Live { previous: None },
                BackupState::Deleted {
                    previous: BackupStatus::Success,
                    deleted_at: Timestamp::from_secs(1),
                },
            ] {
                let row = BackupRow::with_sections(&object, state, view.sections);
                let mut families_with_series = 0;
                for f in 0..FAMILIES.len() {
                    let (mut described, mut shared) = (Vec::new(), Vec::new());
                    FAMILIES.render_family(&row, f, escape, &mut described);
                    row.render_family(f, &text, &mut shared);
                    assert_eq!(
                        String::from_utf8_lossy(&shared),
                        String::from_utf8_lossy(&described),
                        "family {f}"
                    );
                    families_with_series += usize::from(!shared.is_empty());
                }
                let expected = if matches!(state, BackupState::Live { .. }) {
                    21
                } else {
                    7
                };
                assert_eq!(families_with_series, expected, "{state:?}");
            }
        }
    }
}

//! The demo fleet: a seeded synthetic Portworx Backup installation, so that the sidecar serves
//! real metrics with no cluster. It goes through the same event path as every other source.
//!
//! Several orgs, clusters (one Offline), backup locations (one ValidationFailed), schedules
//! (one Suspended), a history of finished backups (Success, Failed, PartialSuccess, ...) of
//! which some are already deleted (tombstones), restores, and on every tick backups that move
//! Pending -> InProgress -> a terminal status, new backups, and deletions of old ones.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use crate::model::{
    Backup, BackupLocation, BackupLocationStatus, BackupStatus, Cluster, ClusterStatus, Event,
    Kind, NamespaceResources, NamespaceStatus, Object, Origin, Owner, ResourceType, Restore,
    RestoreStatus, Schedule, ScheduleStatus, SourceId, Timestamp, VirtualMachine, VmResource,
    Volume,
};
use crate::sources::SourceContext;

/// Live (not deleted) backups kept per schedule; older ones are deleted, as a retention
/// policy would.
const KEEP_PER_SCHEDULE: usize = 6;
const MINUTE: i64 = 60_000;

struct DemoSchedule {
    schedule: Schedule,
    namespaces: Vec<String>,
    /// VM backups of these virtual machines (name, OS); namespace backups when empty.
    vms: &'static [(&'static str, &'static str)],
    location: String,
    /// Minutes between runs in the made-up history.
    every_minutes: i64,
    live: VecDeque<String>,
}

struct Running {
    backup: Backup,
    ticks_left: u32,
}

pub struct DemoFleet {
    rng: fastrand::Rng,
    clusters: Vec<Cluster>,
    schedules: Vec<DemoSchedule>,
    running: Vec<Running>,
    restores: Vec<(Restore, u32)>,
    serial: u64,
}

/// Resource types of a namespace backup, as PX-Backup names them (group/version/kind).
const RESOURCE_TYPES: [&str; 5] = [
    "apps/v1/Deployment",
    "/v1/ConfigMap",
    "/v1/Secret",
    "/v1/Service",
    "/v1/PersistentVolumeClaim",
];

/// The VMs of a VM backup and their resources (the VM itself, its data volume and its claim).
fn vm_parts(vms: &[(&str, &str)], namespace: &str) -> (Vec<VirtualMachine>, Vec<VmResource>) {
    let machines = vms
        .iter()
        .map(|(name, os)| VirtualMachine {
            name: (*name).to_owned(),
            namespace: namespace.to_owned(),
            os_name: (*os).to_owned(),
            status: None,
        })
        .collect();
    let resources = vms
        .iter()
        .flat_map(|(name, _)| {
            [
                ("kubevirt.io", "v1", "VirtualMachine", name.to_string()),
                (
                    "cdi.kubevirt.io",
                    "v1beta1",
                    "DataVolume",
                    format!("{name}-rootdisk"),
                ),
                (
                    "",
                    "v1",
                    "PersistentVolumeClaim",
                    format!("{name}-rootdisk"),
                ),
            ]
            .into_iter()
            .map(move |(group, version, kind, resource)| VmResource {
                group: group.to_owned(),
                version: version.to_owned(),
                kind: kind.to_owned(),
                name: resource,
                namespace: namespace.to_owned(),
                virtual_machines: vec![(*name).to_owned()],
            })
        })
        .collect();
    (machines, resources)
}

/// A random (version 4 shaped) UUID from `rng`, so that a seed gives the same fleet.
pub fn uuid(rng: &mut fastrand::Rng) -> String {
    let a = rng.u64(..);
    let b = rng.u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn owner_of(c: &Cluster) -> Owner {
    Owner {
        org_id: c.org_id.clone(),
        cluster: c.name.clone(),
        cluster_uid: c.uid.clone(),
    }
}

impl DemoFleet {
    pub fn new(seed: u64) -> DemoFleet {
        let mut rng = fastrand::Rng::with_seed(seed);
        let clusters: Vec<Cluster> = [
            ("default", "prod-east", ClusterStatus::Online),
            ("default", "prod-west", ClusterStatus::Online),
            ("finance", "finance-main", ClusterStatus::Online),
            ("retail", "retail-edge", ClusterStatus::Offline),
        ]
        .into_iter()
        .map(|(org, name, status)| Cluster {
            uid: uuid(&mut rng),
            name: name.into(),
            org_id: org.into(),
            status,
        })
        .collect();
        let locations = ["s3-east", "azure-finance", "nfs-retail"];
        type Plan = (
            usize,
            &'static str,
            i64,
            &'static [&'static str],
            &'static [(&'static str, &'static str)],
        );
        let plans: [Plan; 8] = [
            (0, "nightly", 24 * 60, &["shop", "payments"], &[]),
            (0, "hourly", 60, &["shop"], &[]),
            (1, "nightly", 24 * 60, &["catalog"], &[]),
            (1, "every-15m", 15, &["sessions"], &[]),
            (2, "ledger-4h", 4 * 60, &["ledger", "billing"], &[]),
            (2, "hourly", 60, &["reports"], &[]),
            (3, "weekly", 7 * 24 * 60, &["pos"], &[]),
            (
                1,
                "vms-nightly",
                24 * 60,
                &["vm-prod"],
                &[
                    ("erp-db", "rhel9"),
                    ("erp-app", "ubuntu2204"),
                    ("jump", "windows2022"),
                ],
            ),
        ];
        let schedules = plans
            .into_iter()
            .map(|(ci, name, every_minutes, namespaces, vms)| {
                let c = &clusters[ci];
                let suspended = c.status == ClusterStatus::Offline;
                DemoSchedule {
                    schedule: Schedule {
                        uid: uuid(&mut rng),
                        name: format!("{name}-{}", c.name),
                        owner: owner_of(c),
                        status: if suspended {
                            ScheduleStatus::Suspended
                        } else {
                            ScheduleStatus::Active
                        },
                        interval_seconds: u64::try_from(every_minutes * 60).ok(),
                    },
                    namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
                    vms,
                    location: locations[ci.min(2)].into(),
                    every_minutes,
                    live: VecDeque::new(),
                }
            })
            .collect();
        DemoFleet {
            rng,
            clusters,
            schedules,
            running: Vec::new(),
            restores: Vec::new(),
            serial: 0,
        }
    }

    fn locations(&self) -> Vec<BackupLocation> {
        [
            ("default", "s3-east", "s3", BackupLocationStatus::Valid),
            (
                "default",
                "gcs-archive",
                "google",
                BackupLocationStatus::LimitedAvailability,
            ),
            (
                "finance",
                "azure-finance",
                "azure",
                BackupLocationStatus::Valid,
            ),
            (
                "retail",
                "nfs-retail",
                "nfs",
                BackupLocationStatus::ValidationFailed,
            ),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (org, name, t, status))| BackupLocation {
            uid: format!("5e1a0c4e-0000-4000-8000-00000000000{i}"),
            name: name.into(),
            org_id: org.into(),
            location_type: t.into(),
            status,
        })
        .collect()
    }

    fn terminal(&mut self) -> BackupStatus {
        match self.rng.u32(0..100) {
            0..=74 => BackupStatus::Success,
            75..=84 => BackupStatus::PartialSuccess,
            85..=94 => BackupStatus::Failed,
            95..=97 => BackupStatus::Aborted,
            _ => BackupStatus::CloudBackupMissing,
        }
    }

    fn new_backup(&mut self, si: usize, created_at: Timestamp) -> Backup {
        self.serial += 1;
        let uid = uuid(&mut self.rng);
        let s = &self.schedules[si];
        let name = format!("{}-{:05}", s.schedule.name, self.serial);
        let namespaces = s.namespaces.clone();
        let owner = s.schedule.owner.clone();
        let location = s.location.clone();
        let schedule_name = s.schedule.name.clone();
        let volumes = (0..self.rng.usize(1..=3))
            .map(|i| Volume {
                volume: format!("pvc-{}", &uuid(&mut self.rng)[..13]),
                pvc: format!("data-{i}"),
                pvc_namespace: namespaces[i % namespaces.len()].clone(),
                storage_class: "px-csi-db".into(),
                driver: "pxd".into(),
                status: None,
            })
            .collect();
        let vms = s.vms;
        let (virtual_machines, vm_resources) = vm_parts(vms, &namespaces[0]);
        Backup {
            uid,
            name,
            owner,
            schedule_name,
            namespace_resources: if vms.is_empty() {
                namespaces
                    .iter()
                    .map(|ns| NamespaceResources {
                        namespace: ns.clone(),
                        status: Some(NamespaceStatus::InProgress),
                        ..NamespaceResources::default()
                    })
                    .collect()
            } else {
                Vec::new()
            },
            namespaces,
            backup_location: location,
            backup_object_type: if vms.is_empty() {
                "All"
            } else {
                "VirtualMachine"
            }
            .into(),
            virtual_machines,
            vm_resources,
            status: BackupStatus::Pending,
            size_bytes: None,
            resource_count: None,
            volumes,
            created_at: Some(created_at),
            completed_at: None,
            ..Backup::default()
        }
    }

    fn finish(&mut self, b: &mut Backup, status: BackupStatus, completed_at: Timestamp) {
        b.status = status;
        b.completed_at = Some(completed_at);
        b.size_bytes = Some(self.rng.u64(100 << 20..50 << 30));
        b.resource_count = Some(self.rng.u64(5..400));
        for v in &mut b.volumes {
            v.status = Some(status);
        }
        let failed = matches!(status, BackupStatus::Failed | BackupStatus::Aborted);
        let partial = status == BackupStatus::PartialSuccess;
        b.failed_volume_count = Some(if failed { b.volumes.len() as u64 } else { 0 });
        b.failed_resource_count = Some(0);
        for vm in &mut b.virtual_machines {
            vm.status = Some(status);
        }
        if partial {
            if let Some(vm) = b.virtual_machines.last_mut() {
                vm.status = Some(BackupStatus::Failed);
            }
        }
        let mut failed_resources = 0;
        let n = b.namespace_resources.len();
        for (i, ns) in b.namespace_resources.iter_mut().enumerate() {
            let total: u64 = self.rng.u64(5..60);
            let ns_failed = if failed {
                total
            } else if partial && i + 1 == n {
                self.rng.u64(1..5)
            } else {
                0
            };
            failed_resources += ns_failed;
            ns.status = Some(match (ns_failed, failed) {
                (0, _) => NamespaceStatus::Success,
                (_, true) => NamespaceStatus::Failed,
                _ => NamespaceStatus::PartialSuccess,
            });
            ns.total_resources = Some(total);
            ns.failed_resources = Some(ns_failed);
            ns.total_volumes = Some(self.rng.u64(0..4));
            ns.failed_volumes = Some(if failed {
                ns.total_volumes.unwrap_or(0)
            } else {
                0
            });
            let mut left = total;
            ns.resource_types = RESOURCE_TYPES
                .iter()
                .enumerate()
                .map(|(k, gvk)| {
                    let count = if k + 1 == RESOURCE_TYPES.len() {
                        left
                    } else {
                        self.rng.u64(0..=left / 2)
                    };
                    left -= count;
                    ResourceType {
                        name: (*gvk).to_owned(),
                        total_resources: Some(count),
                        failed_resources: Some(if k == 0 { ns_failed.min(count) } else { 0 }),
                    }
                })
                .collect();
        }
        if failed_resources > 0 {
            b.failed_resource_count = Some(failed_resources);
        }
    }

    /// Deletes the schedule's oldest backups beyond what it keeps.
    fn prune(&mut self, si: usize, deleted_at: Timestamp, out: &mut Vec<Event>) {
        while self.schedules[si].live.len() > KEEP_PER_SCHEDULE {
            if let Some(uid) = self.schedules[si].live.pop_front() {
                out.push(Event::Delete {
                    kind: Kind::Backup,
                    uid,
                    deleted_at: Some(deleted_at),
                });
            }
        }
    }

    /// The fleet as it stands at start: everything up to `now`.
    pub fn initial(&mut self, now: Timestamp) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        out.extend(
            self.clusters
                .iter()
                .cloned()
                .map(|c| Event::Upsert(Object::Cluster(c))),
        );
        out.extend(
            self.locations()
                .into_iter()
                .map(|l| Event::Upsert(Object::BackupLocation(l))),
        );
        for si in 0..self.schedules.len() {
            let s = &self.schedules[si];
            out.push(Event::Upsert(Object::Schedule(s.schedule.clone())));
            // Two more runs than are kept, so that the oldest two are deleted (tombstones),
            // recently enough to be inside even a federated 1 h window.
            let runs = KEEP_PER_SCHEDULE as i64 + 2;
            let every = s.every_minutes.min(20);
            for k in (1..=runs).rev() {
                let started = Timestamp(now.0 - k * every * MINUTE);
                let mut b = self.new_backup(si, started);
                // Every outcome the dashboards and alerts show is there from the start: one
                // schedule's latest run failed, and one kept backup's cloud copy is missing.
                let status = match (si, k) {
                    (5, 1) => BackupStatus::Failed,
                    (1, 2) => BackupStatus::CloudBackupMissing,
                    _ => self.terminal(),
                };
                let took = self.rng.i64(1..=every.max(2) - 1) * MINUTE / 2;
                self.finish(&mut b, status, Timestamp(started.0 + took));
                self.schedules[si].live.push_back(b.uid.clone());
                out.push(Event::Upsert(Object::Backup(b)));
            }
            self.prune(si, Timestamp(now.0 - 5 * MINUTE), &mut out);
        }
        // A backup in flight on each online cluster's first schedule.
        for si in [0, 2, 4] {
            let mut b = self.new_backup(si, now);
            b.status = BackupStatus::InProgress;
            out.push(Event::Upsert(Object::Backup(b.clone())));
            self.running.push(Running {
                backup: b,
                ticks_left: 3,
            });
        }
        for (i, status) in [
            RestoreStatus::Success,
            RestoreStatus::Failed,
            RestoreStatus::InProgress,
        ]
        .into_iter()
        .enumerate()
        {
            let r = self.new_restore(i, status, now);
            out.push(Event::Upsert(Object::Restore(r.clone())));
            if status == RestoreStatus::InProgress {
                self.restores.push((r, 4));
            }
        }
        out
    }

    fn new_restore(&mut self, ci: usize, status: RestoreStatus, now: Timestamp) -> Restore {
        let c = &self.clusters[ci % self.clusters.len()];
        let finished = status != RestoreStatus::InProgress;
        Restore {
            uid: uuid(&mut self.rng),
            name: format!("restore-{}-{}", c.name, self.rng.u32(1000..9999)),
            owner: owner_of(c),
            backup: format!("nightly-{}-00001", c.name),
            status,
            size_bytes: finished.then(|| self.rng.u64(1 << 20..20 << 30)),
            resource_count: finished.then(|| self.rng.u64(5..300)),
            volume_count: Some(self.rng.u64(1..4)),
            created_at: Some(Timestamp(now.0 - 20 * MINUTE)),
            completed_at: finished.then_some(Timestamp(now.0 - 12 * MINUTE)),
        }
    }

    /// One step of fleet life.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        let mut still_running = Vec::new();
        for mut run in std::mem::take(&mut self.running) {
            run.ticks_left = run.ticks_left.saturating_sub(1);
            match (run.backup.status, run.ticks_left) {
                (BackupStatus::Pending, _) => run.backup.status = BackupStatus::InProgress,
                (_, 0) => {
                    let status = self.terminal();
                    let mut b = run.backup;
                    self.finish(&mut b, status, now);
                    if let Some(si) = self
                        .schedules
                        .iter()
                        .position(|s| s.schedule.name == b.schedule_name)
                    {
                        self.schedules[si].live.push_back(b.uid.clone());
                        out.push(Event::Upsert(Object::Backup(b)));
                        self.prune(si, now, &mut out);
                    }
                    continue;
                }
                _ => {}
            }
            out.push(Event::Upsert(Object::Backup(run.backup.clone())));
            still_running.push(run);
        }
        self.running = still_running;
        // A new run now and then on an active schedule.
        if self.running.len() < 4 && self.rng.u32(0..3) == 0 {
            let active: Vec<usize> = (0..self.schedules.len())
                .filter(|i| self.schedules[*i].schedule.status == ScheduleStatus::Active)
                .collect();
            if !active.is_empty() {
                let si = active[self.rng.usize(..active.len())];
                let b = self.new_backup(si, now);
                out.push(Event::Upsert(Object::Backup(b.clone())));
                let ticks_left = self.rng.u32(2..6);
                self.running.push(Running {
                    backup: b,
                    ticks_left,
                });
            }
        }
        for (r, ticks) in &mut self.restores {
            *ticks = ticks.saturating_sub(1);
            if *ticks == 0 && r.status == RestoreStatus::InProgress {
                r.status = RestoreStatus::Success;
                r.completed_at = Some(now);
                r.size_bytes = Some(3 << 30);
                r.resource_count = Some(57);
                out.push(Event::Upsert(Object::Restore(r.clone())));
            }
        }
        out
    }
}

/// The uids each kind's upserts name.
fn uids_by_kind(events: &[Event]) -> Vec<(Kind, std::collections::HashSet<String>)> {
    Kind::ALL
        .into_iter()
        .map(|kind| {
            let uids = events
                .iter()
                .filter_map(|e| match e {
                    Event::Upsert(o) if o.kind() == kind => Some(o.uid().to_owned()),
                    _ => None,
                })
                .collect();
            (kind, uids)
        })
        .collect()
}

/// Feeds the demo fleet into the inventory every `interval` until `shutdown`.
pub async fn run(
    ctx: SourceContext,
    seed: u64,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut fleet = DemoFleet::new(seed);
    let clock = ctx.inventory.clock().clone();
    let origin = Origin::source(SourceId::Demo);
    let apply = |events| ctx.inventory.apply_off_runtime(origin.clone(), events);
    let initial = fleet.initial(clock.now());
    let listed = uids_by_kind(&initial);
    if let Err(e) = apply(initial).await {
        tracing::error!(error = %e, "the demo fleet could not be applied");
    }
    // Like a re-list: what a previous run left in the journal and this fleet does not have is
    // gone.
    let inventory = ctx.inventory.clone();
    let resync_origin = origin.clone();
    let resynced = tokio::task::spawn_blocking(move || {
        for (kind, uids) in listed {
            if let Err(e) = inventory.resync(&resync_origin, kind, &uids) {
                tracing::error!(error = %e, "the demo fleet's re-list is not journaled");
            }
        }
    })
    .await;
    if let Err(e) = resynced {
        tracing::error!(error = %e, "the demo fleet could not be re-listed");
    }
    ctx.status.mark_synced(SourceId::Demo);
    tracing::info!(seed, "demo fleet started");
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = apply(fleet.tick(clock.now())).await {
                    tracing::error!(error = %e, "a demo tick could not be applied");
                }
            }
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_fleet() {
        let now = Timestamp::from_secs(1_795_395_600);
        assert_eq!(
            DemoFleet::new(7).initial(now),
            DemoFleet::new(7).initial(now)
        );
        assert_ne!(
            DemoFleet::new(7).initial(now),
            DemoFleet::new(8).initial(now)
        );
    }

    #[test]
    fn initial_fleet_covers_every_kind_and_deletes_some_backups() {
        let now = Timestamp::from_secs(1_795_395_600);
        let events = DemoFleet::new(42).initial(now);
        for kind in Kind::ALL {
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::Upsert(o) if o.kind() == kind)),
                "{kind}"
            );
        }
        let deletes = events
            .iter()
            .filter(|e| matches!(e, Event::Delete { .. }))
            .count();
        assert!(deletes >= 7, "{deletes}");
    }

    #[test]
    fn every_outcome_is_there_from_the_start() {
        let now = Timestamp::from_secs(1_795_395_600);
        let backups: Vec<Backup> = DemoFleet::new(42)
            .initial(now)
            .into_iter()
            .filter_map(|e| match e {
                Event::Upsert(Object::Backup(b)) => Some(b),
                _ => None,
            })
            .collect();
        for status in [
            BackupStatus::Success,
            BackupStatus::Failed,
            BackupStatus::PartialSuccess,
            BackupStatus::CloudBackupMissing,
            BackupStatus::InProgress,
        ] {
            assert!(backups.iter().any(|b| b.status == status), "{status}");
        }
        assert!(backups.iter().any(|b| !b.virtual_machines.is_empty()));
        assert!(backups.iter().any(|b| !b.namespace_resources.is_empty()));
    }
}

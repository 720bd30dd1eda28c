//! PX-Backup's objects -> inventory objects (the table is in `docs/pxb-source.md`).
//!
//! Pure functions: no I/O, no logging. A status value the enum does not know comes back with
//! the object (which carries Invalid there) for the source to log with the object's org and
//! name. Lists whose order PX-Backup may not keep from one answer to the next (VMs, resources,
//! namespaces' resource types, volumes) are sorted, so that an unchanged backup maps to an
//! equal object and the inventory renders and journals nothing for it. A backup's
//! `namespaces` keep PX-Backup's order: that list is what the backup was asked to cover, and
//! `backup_namespace` shows it as PX-Backup does.

use std::collections::HashMap;

use super::wire::{
    self, BackupLocationObject, BackupObject, BackupScheduleObject, ClusterObject, LocationType,
    ObjectRef, ObjectType, OrganizationObject, ProtoEnum, RestoreObject, SchedulePolicyObject,
    WireEnum,
};
use crate::model::{
    Backup, BackupLocation, Cluster, NamespaceResources, Owner, ResourceType, Restore, Schedule,
    ScheduleStatus, UnknownStatus, VirtualMachine, VmResource, Volume,
};

/// An object that cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("it has no metadata.uid")]
    NoUid,
}

/// An inventory object and the status values that were not understood (exported as Invalid).
#[derive(Debug, PartialEq)]
pub struct Mapped<T> {
    pub object: T,
    pub unknown_statuses: Vec<UnknownStatus>,
}

/// Cluster name -> uid within one organization, for objects whose `cluster_ref` has no uid.
#[derive(Debug, Default, Clone)]
pub struct ClusterIndex(HashMap<String, String>);

impl ClusterIndex {
    pub fn insert(&mut self, name: &str, uid: &str) {
        if !name.is_empty() && !uid.is_empty() {
            self.0.insert(name.to_owned(), uid.to_owned());
        }
    }
    fn uid_of(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

/// Schedule policy -> interval, by uid and by name, within one organization.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PolicyIntervals {
    by_uid: HashMap<String, Option<u64>>,
    by_name: HashMap<String, Option<u64>>,
}

impl PolicyIntervals {
    pub fn from_policies<'a>(policies: impl IntoIterator<Item = &'a SchedulePolicyObject>) -> Self {
        let mut out = PolicyIntervals::default();
        for p in policies {
            let interval = super::schedule_policy::interval_seconds(&p.info);
            if !p.metadata.uid.is_empty() {
                out.by_uid.insert(p.metadata.uid.clone(), interval);
            }
            if !p.metadata.name.is_empty() {
                out.by_name.insert(p.metadata.name.clone(), interval);
            }
        }
        out
    }

    /// The interval of the policy a schedule names: by its reference's uid, else by name
    /// (the reference's, else the deprecated `schedule_policy` string).
    fn lookup(&self, policy_ref: Option<&ObjectRef>, legacy_name: &str) -> Option<u64> {
        let (uid, name) = policy_ref.map_or(("", ""), |r| (r.uid.as_str(), r.name.as_str()));
        if let Some(i) = self.by_uid.get(uid) {
            return *i;
        }
        let name = if name.is_empty() { legacy_name } else { name };
        self.by_name.get(name).copied().flatten()
    }
}

/// What a mapping needs beyond the object: the organization polled, and that organization's
/// clusters and schedule policies as listed in the same poll.
pub struct Context<'a> {
    pub org: &'a str,
    pub clusters: &'a ClusterIndex,
    pub intervals: &'a PolicyIntervals,
}

impl Context<'_> {
    /// `cluster_ref` names the cluster (PX-Backup 2.x and later); the plain `cluster` name is
    /// the fallback, and the cluster list gives the uid when the reference has none.
    fn owner(&self, org_id: String, cluster_ref: Option<ObjectRef>, cluster: String) -> Owner {
        let (name, uid) = match cluster_ref {
            Some(r) if !r.name.is_empty() => (r.name, r.uid),
            Some(r) => (cluster, r.uid),
            None => (cluster, String::new()),
        };
        let cluster_uid = if uid.is_empty() {
            self.clusters.uid_of(&name).to_owned()
        } else {
            uid
        };
        Owner {
            org_id: self.org_id(org_id),
            cluster: name,
            cluster_uid,
        }
    }

    fn org_id(&self, org_id: String) -> String {
        if org_id.is_empty() {
            self.org.to_owned()
        } else {
            org_id
        }
    }
}

/// Collects the status values that an enum does not know.
#[derive(Default)]
struct Statuses(Vec<UnknownStatus>);

impl Statuses {
    fn take<E: ProtoEnum>(&mut self, value: WireEnum<E>) -> E {
        match value {
            WireEnum::Known(e) => e,
            WireEnum::Unknown(v) => {
                self.0.push(UnknownStatus {
                    kind: E::KIND,
                    value: v,
                    expected: E::EXPECTED,
                });
                E::zero()
            }
        }
    }
}

fn uid(metadata: &wire::Metadata) -> Result<(), MappingError> {
    if metadata.uid.is_empty() {
        Err(MappingError::NoUid)
    } else {
        Ok(())
    }
}

fn created_at(m: &wire::Metadata) -> Option<crate::model::Timestamp> {
    m.create_time.0.or_else(|| {
        (m.create_time_in_sec > 0).then(|| crate::model::Timestamp::from_secs(m.create_time_in_sec))
    })
}

/// The name of the ref, else the deprecated plain name.
fn ref_name(r: Option<wire::NameRef>, legacy: String) -> String {
    match r {
        Some(r) if !r.name.is_empty() => r.name,
        _ => legacy,
    }
}

/// `backup_object_type`: All or VirtualMachine. Backups made before PX-Backup had VM backups
/// carry no type (Invalid, 0); they back up namespaces, so they count as All.
fn object_type(t: Option<wire::BackupObjectType>) -> String {
    match t.map(|t| t.kind) {
        None | Some(WireEnum::Known(ObjectType::Invalid)) => ObjectType::All.as_str().to_owned(),
        Some(WireEnum::Known(k)) => k.as_str().to_owned(),
        Some(WireEnum::Unknown(v)) => v,
    }
}

pub fn backup(w: BackupObject, ctx: &Context<'_>) -> Result<Mapped<Backup>, MappingError> {
    uid(&w.metadata)?;
    let mut st = Statuses::default();
    let created_at = created_at(&w.metadata);
    let (m, info) = (w.metadata, w.info);
    let status = st.take(info.status.unwrap_or_default().status);
    let mut volumes: Vec<Volume> = info
        .volumes
        .into_iter()
        .map(|v| Volume {
            volume: v.name,
            pvc: v.pvc,
            pvc_namespace: v.namespace,
            storage_class: v.storage_class,
            driver: v.driver_name,
            status: v.status.map(|s| st.take(s.status)),
        })
        .collect();
    volumes.sort_by(|a, b| {
        (&a.pvc_namespace, &a.pvc, &a.volume).cmp(&(&b.pvc_namespace, &b.pvc, &b.volume))
    });
    let mut virtual_machines: Vec<VirtualMachine> = info
        .virtual_machines
        .into_iter()
        .map(|vm| VirtualMachine {
            name: vm.name,
            namespace: vm.namespace,
            os_name: vm.os_name,
            status: vm.status.map(|s| st.take(s.status)),
        })
        .collect();
    virtual_machines.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    virtual_machines.dedup();
    let vm_resources = vm_resources(
        info.vm_resources
            .map(|r| r.vms)
            .unwrap_or_default()
            .into_iter()
            .chain(info.virtual_machine_resources),
    );
    let namespace_resources = namespace_resources(
        info.namespace_resources
            .map(|n| n.namespaces)
            .unwrap_or_default(),
        &mut st,
    );
    let backup = Backup {
        owner: ctx.owner(m.org_id, info.cluster_ref, info.cluster),
        uid: m.uid,
        name: m.name,
        schedule_name: info.backup_schedule.map(|s| s.name).unwrap_or_default(),
        namespaces: info.namespaces,
        backup_location: ref_name(info.backup_location_ref, info.backup_location),
        backup_object_type: object_type(info.backup_object_type),
        status,
        size_bytes: info.total_size,
        resource_count: info.resource_count,
        volumes,
        created_at,
        completed_at: info
            .completion_time_info
            .and_then(|c| c.total_completion_time.0),
        failed_resource_count: info.failed_resource_count,
        failed_volume_count: info.failed_vol_count,
        virtual_machines,
        vm_resources,
        namespace_resources,
    };
    Ok(Mapped {
        object: backup,
        unknown_statuses: st.0,
    })
}

/// VM resources from `vm_resources.vms` (PX-Backup 3.0) and the deprecated
/// `virtual_machine_resources`: a resource listed in both is one resource, belonging to every
/// VM either names.
fn vm_resources(all: impl Iterator<Item = wire::VirtualMachineResourceInfo>) -> Vec<VmResource> {
    let mut out: Vec<VmResource> = all
        .map(|r| VmResource {
            group: r.resource.group,
            version: r.resource.version,
            kind: r.resource.kind,
            name: r.resource.name,
            namespace: r.resource.namespace,
            virtual_machines: r.virtual_machine_names,
        })
        .collect();
    fn key(r: &VmResource) -> (&str, &str, &str, &str, &str) {
        (
            r.namespace.as_str(),
            r.group.as_str(),
            r.version.as_str(),
            r.kind.as_str(),
            r.name.as_str(),
        )
    }
    out.sort_by(|a, b| key(a).cmp(&key(b)));
    out.dedup_by(|later, kept| {
        let same = key(later) == key(kept);
        if same {
            kept.virtual_machines.append(&mut later.virtual_machines);
        }
        same
    });
    for r in &mut out {
        r.virtual_machines.sort();
        r.virtual_machines.dedup();
    }
    out
}

fn namespace_resources(
    all: Vec<wire::NamespaceResource>,
    st: &mut Statuses,
) -> Vec<NamespaceResources> {
    let mut out: Vec<NamespaceResources> = all
        .into_iter()
        .map(|n| {
            let metrics = n.metrics;
            let mut resource_types: Vec<ResourceType> = n
                .resource_types
                .into_iter()
                .map(|t| ResourceType {
                    name: t.name,
                    total_resources: t.metrics.as_ref().map(|m| m.total_resources),
                    failed_resources: t.metrics.as_ref().map(|m| m.total_failed_resources),
                })
                .collect();
            resource_types.sort_by(|a, b| a.name.cmp(&b.name));
            NamespaceResources {
                namespace: n.name,
                status: n.status.map(|s| st.take(s.status)),
                total_resources: metrics.as_ref().map(|m| m.total_resources),
                total_volumes: metrics.as_ref().map(|m| m.total_volumes),
                failed_resources: metrics.as_ref().map(|m| m.total_failed_resources),
                failed_volumes: metrics.as_ref().map(|m| m.total_failed_volumes),
                resource_types,
            }
        })
        .collect();
    out.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    out
}

/// Restores carry no completion time in PX-Backup's API: `completed_at` stays empty (and so
/// does the restore's duration).
pub fn restore(w: RestoreObject, ctx: &Context<'_>) -> Result<Mapped<Restore>, MappingError> {
    uid(&w.metadata)?;
    let mut st = Statuses::default();
    let created_at = created_at(&w.metadata);
    let (m, info) = (w.metadata, w.info);
    let restore = Restore {
        owner: ctx.owner(m.org_id, info.cluster_ref, info.cluster),
        uid: m.uid,
        name: m.name,
        backup: ref_name(info.backup_ref, info.backup),
        status: st.take(info.status.unwrap_or_default().status),
        size_bytes: info.total_size,
        resource_count: info.resource_count,
        volume_count: info.volumes.map(|c| c.0),
        created_at,
        completed_at: None,
    };
    Ok(Mapped {
        object: restore,
        unknown_statuses: st.0,
    })
}

pub fn schedule(
    w: BackupScheduleObject,
    ctx: &Context<'_>,
) -> Result<Mapped<Schedule>, MappingError> {
    uid(&w.metadata)?;
    let (m, info) = (w.metadata, w.info);
    let interval_seconds = ctx
        .intervals
        .lookup(info.schedule_policy_ref.as_ref(), &info.schedule_policy);
    let schedule = Schedule {
        owner: ctx.owner(m.org_id, info.cluster_ref, info.cluster),
        uid: m.uid,
        name: m.name,
        status: if info.suspend {
            ScheduleStatus::Suspended
        } else {
            ScheduleStatus::Active
        },
        interval_seconds,
    };
    Ok(Mapped {
        object: schedule,
        unknown_statuses: Vec::new(),
    })
}

pub fn cluster(w: ClusterObject, ctx: &Context<'_>) -> Result<Mapped<Cluster>, MappingError> {
    uid(&w.metadata)?;
    let mut st = Statuses::default();
    let cluster = Cluster {
        status: st.take(w.info.status.unwrap_or_default().status),
        org_id: ctx.org_id(w.metadata.org_id),
        uid: w.metadata.uid,
        name: w.metadata.name,
    };
    Ok(Mapped {
        object: cluster,
        unknown_statuses: st.0,
    })
}

pub fn backup_location(
    w: BackupLocationObject,
    ctx: &Context<'_>,
) -> Result<Mapped<BackupLocation>, MappingError> {
    uid(&w.metadata)?;
    let mut st = Statuses::default();
    let location_type = match w.info.kind {
        WireEnum::Known(LocationType::Invalid) => String::new(),
        WireEnum::Known(t) => t.as_str().to_owned(),
        WireEnum::Unknown(v) => v,
    };
    let location = BackupLocation {
        status: st.take(w.info.status.unwrap_or_default().status),
        org_id: ctx.org_id(w.metadata.org_id),
        uid: w.metadata.uid,
        name: w.metadata.name,
        location_type,
    };
    Ok(Mapped {
        object: location,
        unknown_statuses: st.0,
    })
}

/// The id an organization goes by in the API's paths: its name (`default` for PX-Backup's
/// default organization).
pub fn organization_id(w: &OrganizationObject) -> Option<&str> {
    Some(w.metadata.name.as_str()).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackupStatus, NamespaceStatus, Timestamp};
    use crate::sources::pxb::wire::{decode_page, Listed};

    fn decode<T: Listed>(json: &str) -> T {
        let mut page = decode_page::<T>(json.as_bytes()).expect("a page");
        let item = page.items.remove(0);
        assert_eq!(item.problem, None);
        item.object
    }

    fn ctx<'a>(clusters: &'a ClusterIndex, intervals: &'a PolicyIntervals) -> Context<'a> {
        Context {
            org: "default",
            clusters,
            intervals,
        }
    }

    const VM_BACKUP: &str = r#"{"backups":[{"metadata":{"name":"vm-nightly","uid":"b-vm",
        "org_id":"default","create_time":"2026-11-23T01:00:00Z"},
      "backup_info":{"cluster_ref":{"name":"prod-east"},"namespaces":["vms"],
        "status":{"status":"PartialSuccess"},"backup_object_type":{"type":"VirtualMachine"},
        "backup_location_ref":{"name":"s3-east","uid":"bl-1"},
        "backup_schedule":{"name":"nightly","uid":"s-1"},
        "completion_time_info":{"total_completion_time":"2026-11-23T01:04:10Z"},
        "failed_resource_count":"2","failed_vol_count":1,"total_size":"4096",
        "virtual_machines":[
          {"name":"web","namespace":"vms","os_name":"rhel9","status":{"status":"Success"}},
          {"name":"db","namespace":"vms","os_name":"ubuntu","status":{"status":4}}],
        "vm_resources":{"vms":[
          {"resource_info":{"name":"web","namespace":"vms","group":"kubevirt.io","version":"v1","kind":"VirtualMachine"},"virtual_machine_names":["web"]},
          {"name":"shared-cm","namespace":"vms","version":"v1","kind":"ConfigMap","virtual_machine_names":["web"]}]},
        "virtual_machine_resources":[
          {"resource_info":{"name":"shared-cm","namespace":"vms","version":"v1","kind":"ConfigMap"},"virtual_machine_names":["db","web"]}]
      }}]}"#;

    #[test]
    fn a_vm_backup_maps_vms_and_their_resources() {
        let mut clusters = ClusterIndex::default();
        clusters.insert("prod-east", "c-uid-1");
        let intervals = PolicyIntervals::default();
        let m = backup(decode(VM_BACKUP), &ctx(&clusters, &intervals)).unwrap();
        assert!(m.unknown_statuses.is_empty());
        let b = m.object;
        assert_eq!(b.owner.cluster_uid, "c-uid-1", "looked up by name");
        assert_eq!(b.backup_object_type, "VirtualMachine");
        assert_eq!(b.status, BackupStatus::PartialSuccess);
        assert_eq!(b.schedule_name, "nightly");
        assert_eq!(b.backup_location, "s3-east");
        assert_eq!(
            (b.failed_resource_count, b.failed_volume_count),
            (Some(2), Some(1))
        );
        assert_eq!(b.completed_at, Some(Timestamp::from_secs(1_795_395_850)));
        assert_eq!(
            b.virtual_machines
                .iter()
                .map(|v| (v.name.as_str(), v.status))
                .collect::<Vec<_>>(),
            vec![
                ("db", Some(BackupStatus::Failed)),
                ("web", Some(BackupStatus::Success))
            ],
            "sorted by name"
        );
        assert_eq!(b.vm_resources.len(), 2, "{:?}", b.vm_resources);
        let cm = b
            .vm_resources
            .iter()
            .find(|r| r.kind == "ConfigMap")
            .unwrap();
        assert_eq!(
            cm.virtual_machines,
            vec!["db", "web"],
            "merged from both lists"
        );
        let vm = b
            .vm_resources
            .iter()
            .find(|r| r.kind == "VirtualMachine")
            .unwrap();
        assert_eq!(
            (vm.group.as_str(), vm.name.as_str()),
            ("kubevirt.io", "web")
        );
    }

    #[test]
    fn equal_input_in_another_order_maps_to_an_equal_backup() {
        let clusters = ClusterIndex::default();
        let intervals = PolicyIntervals::default();
        let a = backup(decode(VM_BACKUP), &ctx(&clusters, &intervals)).unwrap();
        let reordered = VM_BACKUP
            .replace(
                r#"{"name":"web","namespace":"vms","os_name":"rhel9","status":{"status":"Success"}},
          {"name":"db","namespace":"vms","os_name":"ubuntu","status":{"status":4}}"#,
                r#"{"name":"db","namespace":"vms","os_name":"ubuntu","status":{"status":"Failed"}},
          {"name":"web","namespace":"vms","os_name":"rhel9","status":{"status":6}}"#,
            )
            .replace(r#"["db","web"]"#, r#"["web","db"]"#);
        assert_ne!(reordered, VM_BACKUP);
        let b = backup(decode(&reordered), &ctx(&clusters, &intervals)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_namespace_backup_maps_its_namespace_resources() {
        let json = r#"{"backups":[{"metadata":{"name":"ns","uid":"b-ns"},"backup_info":{
            "cluster":"prod-east","cluster_ref":{"name":"prod-east","uid":"c-1"},
            "namespaces":["shop","crm"],"status":{"status":"Success"},
            "namespace_resources":{"namespaces":[
              {"name":"shop","status":{"status":"PartialSuccess"},
               "metrics":{"total_resources":12,"total_volumes":2,"total_failed_resources":1},
               "resource_types":[
                 {"name":"apps/v1/Deployment","metrics":{"total_resources":2},"chunks":[{"id":1,"resource_names":["a","b"]}]},
                 {"name":"/v1/ConfigMap","metrics":{"total_resources":10,"total_failed_resources":1}}]},
              {"name":"crm","status":{"status":2}}]}}}]}"#;
        let clusters = ClusterIndex::default();
        let intervals = PolicyIntervals::default();
        let b = backup(decode(json), &ctx(&clusters, &intervals))
            .unwrap()
            .object;
        assert_eq!(b.owner.org_id, "default", "the org polled");
        assert_eq!(b.owner.cluster_uid, "c-1");
        assert_eq!(b.backup_object_type, "All", "no type: a namespace backup");
        assert_eq!(b.namespaces, vec!["shop", "crm"], "PX-Backup's order");
        let names: Vec<&str> = b
            .namespace_resources
            .iter()
            .map(|n| n.namespace.as_str())
            .collect();
        assert_eq!(names, vec!["crm", "shop"]);
        let crm = &b.namespace_resources[0];
        assert_eq!(crm.status, Some(NamespaceStatus::Success));
        assert_eq!(crm.total_resources, None, "no metrics sent");
        let shop = &b.namespace_resources[1];
        assert_eq!(shop.status, Some(NamespaceStatus::PartialSuccess));
        assert_eq!(
            (
                shop.total_resources,
                shop.total_volumes,
                shop.failed_resources,
                shop.failed_volumes
            ),
            (Some(12), Some(2), Some(1), Some(0))
        );
        assert_eq!(shop.resource_types[0].name, "/v1/ConfigMap");
        assert_eq!(shop.resource_types[0].failed_resources, Some(1));
        assert_eq!(shop.resource_types[1].total_resources, Some(2));
    }

    #[test]
    fn unknown_statuses_are_invalid_and_reported() {
        let json = r#"{"backups":[{"metadata":{"uid":"u"},"backup_info":{"status":{"status":"Exploded"},
            "volumes":[{"name":"v","status":{"status":99}}]}}]}"#;
        let clusters = ClusterIndex::default();
        let intervals = PolicyIntervals::default();
        let m = backup(decode(json), &ctx(&clusters, &intervals)).unwrap();
        assert_eq!(m.object.status, BackupStatus::Invalid);
        assert_eq!(m.object.volumes[0].status, Some(BackupStatus::Invalid));
        let values: Vec<&str> = m
            .unknown_statuses
            .iter()
            .map(|u| u.value.as_str())
            .collect();
        assert_eq!(values, vec!["Exploded", "99"]);
        assert!(m.unknown_statuses[0].to_string().contains("backup status"));
    }

    #[test]
    fn no_uid_is_unmappable() {
        let clusters = ClusterIndex::default();
        let intervals = PolicyIntervals::default();
        let err = backup(
            decode(r#"{"backups":[{"metadata":{"name":"x"}}]}"#),
            &ctx(&clusters, &intervals),
        )
        .unwrap_err();
        assert_eq!(err, MappingError::NoUid);
    }

    #[test]
    fn schedules_take_suspension_and_their_policy_interval() {
        let policies: Vec<SchedulePolicyObject> = [
            r#"{"schedule_policies":[{"metadata":{"name":"every-15","uid":"p-1"},"schedule_policy_info":{"interval":{"minutes":"15"}}}]}"#,
            r#"{"schedule_policies":[{"name":"daily","uid":"p-2","daily":{"time":"1:00AM"}}]}"#,
        ]
        .iter()
        .map(|j| decode(j))
        .collect();
        let intervals = PolicyIntervals::from_policies(&policies);
        let clusters = ClusterIndex::default();
        let c = ctx(&clusters, &intervals);
        let s = schedule(
            decode(r#"{"backup_schedules":[{"metadata":{"name":"s","uid":"s-1"},"backup_schedule_info":{"suspend":true,"schedule_policy_ref":{"name":"every-15","uid":"p-1"},"cluster_ref":{"name":"c","uid":"c-1"}}}]}"#),
            &c,
        )
        .unwrap()
        .object;
        assert_eq!(s.status, ScheduleStatus::Suspended);
        assert_eq!(s.interval_seconds, Some(900));
        assert_eq!(s.owner.cluster_uid, "c-1");
        let s = schedule(
            decode(r#"{"backupSchedules":[{"name":"t","uid":"s-2","schedulePolicy":"daily"}]}"#),
            &c,
        )
        .unwrap()
        .object;
        assert_eq!(s.status, ScheduleStatus::Active);
        assert_eq!(s.interval_seconds, Some(86_400), "by the deprecated name");
        let s = schedule(
            decode(r#"{"backup_schedules":[{"name":"u","uid":"s-3","schedule_policy_ref":{"name":"gone"}}]}"#),
            &c,
        )
        .unwrap()
        .object;
        assert_eq!(s.interval_seconds, None);
    }

    #[test]
    fn restores_clusters_and_locations() {
        let clusters = ClusterIndex::default();
        let intervals = PolicyIntervals::default();
        let c = ctx(&clusters, &intervals);
        let r = restore(
            decode(r#"{"restores":[{"metadata":{"name":"r","uid":"r-1"},"restore_info":{"backup_ref":{"name":"nightly-1"},"status":{"status":"Retained"},"volumes":[{},{}],"total_size":"10"}}]}"#),
            &c,
        )
        .unwrap()
        .object;
        assert_eq!(r.backup, "nightly-1");
        assert_eq!(r.status, crate::model::RestoreStatus::Retained);
        assert_eq!((r.volume_count, r.size_bytes), (Some(2), Some(10)));
        let cl = cluster(
            decode(r#"{"clusters":[{"metadata":{"name":"prod","uid":"c-1","org_id":"default"},"clusterInfo":{"status":{"status":2}}}]}"#),
            &c,
        )
        .unwrap()
        .object;
        assert_eq!(cl.status, crate::model::ClusterStatus::Offline);
        let bl = backup_location(
            decode(r#"{"backup_locations":[{"metadata":{"name":"s3","uid":"bl-1"},"backup_location_info":{"type":"S3","status":{"status":"LimitedAvailability"}}}]}"#),
            &c,
        )
        .unwrap()
        .object;
        assert_eq!(bl.location_type, "S3");
        assert_eq!(
            bl.status,
            crate::model::BackupLocationStatus::LimitedAvailability
        );
        assert_eq!(bl.org_id, "default");
    }
}

//! What one poll of PX-Backup costs the sidecar at 100,000 backups, without the network:
//! decoding the pages (grpc-gateway JSON as PX-Backup 3.0 writes it, detailed resources
//! included) and mapping them to inventory objects; then applying an unchanged poll to an
//! inventory that already holds them (which must render and journal nothing). Printed as a
//! Markdown table; best of several runs (the machine is shared).
//!
//!     cargo bench --bench pxb_poll              # 100,000 backups, pages of 1,000
//!     cargo bench --bench pxb_poll -- --quick   # 10,000

use std::alloc::System;
use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use pxbackup_sidecar::clock::Clock;
use pxbackup_sidecar::inventory::{Inventory, Options};
use pxbackup_sidecar::model::{Event, Kind, Object, Origin, SourceId};
use pxbackup_sidecar::sources::demo::uuid;
use pxbackup_sidecar::sources::pxb::mapping::{self, ClusterIndex, Context, PolicyIntervals};
use pxbackup_sidecar::sources::pxb::wire::{decode_page, BackupObject};
use serde_json::{json, Value};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DAY: Duration = Duration::from_secs(24 * 3600);
const PAGE: usize = 1000;

/// One backup as PX-Backup's gateway writes it: metadata with labels and ownership, volumes,
/// the resource list of a detailed enumeration, and for one backup in ten a VM backup's VMs
/// and resources, for the others namespace resources with their types.
fn backup_json(i: usize, rng: &mut fastrand::Rng, clusters: &[(String, String)]) -> Value {
    let (cluster, cluster_uid) = &clusters[i % clusters.len()];
    let schedule = format!("daily-{cluster}-{}", i % 50);
    let ns = format!("app-{}", i % 30);
    let created = 1_795_395_600 - (i as i64) * 60;
    let vm = i % 10 == 0;
    let resources: Vec<Value> = (0..12)
        .map(|r| {
            json!({"name": format!("res-{r}"), "namespace": ns, "group": "apps",
                        "kind": "Deployment", "version": "v1"})
        })
        .collect();
    let mut info = json!({
        "cluster": cluster,
        "cluster_ref": {"name": cluster, "uid": cluster_uid},
        "namespaces": [ns],
        "label_selectors": {"app": "web"},
        "status": {"status": "Success", "reason": "Backup completed successfully"},
        "resources": resources,
        "volumes": [{
            "name": format!("pvc-{}", uuid(rng)), "namespace": ns, "pvc": format!("data-{}", i % 3),
            "backup_id": format!("s3-backups/{}", uuid(rng)), "status": {"status": "Success"},
            "driver_name": "pxd", "zones": ["zone-a"], "options": {"k": "v"},
            "total_size": rng.u64(1 << 20..1 << 40).to_string(),
            "actual_size": rng.u64(1 << 20..1 << 30).to_string(),
            "storage_class": "px-csi-db", "pvc_id": uuid(rng), "provisioner": "pxd.portworx.com",
            "backup_mode": {"type": "Incremental"}
        }],
        "backup_path": format!("{cluster}/{ns}/{}", uuid(rng)),
        "stage": "Final",
        "backup_schedule": {"name": schedule, "uid": uuid(rng)},
        "cr_name": format!("{schedule}-{i}"),
        "total_size": rng.u64(1 << 20..1 << 40).to_string(),
        "resource_count": rng.u64(1..500).to_string(),
        "stork_version": "25.3.0",
        "backup_location_ref": {"name": format!("s3-backups-{}", i % 4), "uid": uuid(rng)},
        "backup_type": {"type": "Normal"},
        "cr_uid": uuid(rng),
        "backup_object_type": {"type": if vm { "VirtualMachine" } else { "All" }},
        "completion_time_info": {
            "volumes_completion_time": "2026-11-23T01:03:00Z",
            "resources_completion_time": "2026-11-23T01:04:00Z",
            "total_completion_time": format!("2026-11-23T01:0{}:10Z", i % 10),
        },
        "failed_resource_count": "0",
        "failed_vol_count": "0",
    });
    if vm {
        info["virtual_machines"] = json!([
            {"name": format!("vm-{i}"), "namespace": ns, "os_name": "rhel9", "status": {"status": "Success"}}
        ]);
        info["vm_resources"] = json!({"vms": [
            {"resource_info": {"name": format!("vm-{i}"), "namespace": ns, "group": "kubevirt.io",
                               "version": "v1", "kind": "VirtualMachine"},
             "virtual_machine_names": [format!("vm-{i}")]},
            {"resource_info": {"name": format!("vm-{i}-disk"), "namespace": ns, "group": "",
                               "version": "v1", "kind": "PersistentVolumeClaim"},
             "virtual_machine_names": [format!("vm-{i}")]}
        ]});
    } else {
        info["namespace_resources"] = json!({"namespaces": [{
            "name": ns, "status": {"status": "Success"},
            "metrics": {"total_resources": 12, "total_volumes": 1},
            "resource_types": [
                {"name": "apps/v1/Deployment", "metrics": {"total_resources": 4},
                 "chunks": [{"id": 1, "resource_names": ["a", "b", "c", "d"], "total_resources": 4}]},
                {"name": "/v1/ConfigMap", "metrics": {"total_resources": 8}}
            ]
        }]});
    }
    json!({
        "metadata": {
            "name": format!("{schedule}-2026-11-23-{i:06}"), "uid": uuid(rng), "org_id": "default",
            "create_time": format!("2026-11-23T01:00:{:02}Z", i % 60),
            "last_update_time": "2026-11-23T01:05:00Z",
            "labels": {"schedule": schedule},
            "create_time_in_sec": created.to_string(),
            "ownership": {"owner": "admin", "groups": [{"id": "*", "access": "Admin"}],
                          "public": {"type": "Read"}},
            "last_update_time_in_sec": (created + 300).to_string(),
        },
        "backup_info": info,
    })
}

fn pages(backups: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(7);
    let clusters: Vec<(String, String)> = (0..20)
        .map(|i| (format!("prod-cluster-{i:02}"), uuid(&mut rng)))
        .collect();
    (0..backups)
        .collect::<Vec<_>>()
        .chunks(PAGE)
        .map(|chunk| {
            let items: Vec<Value> = chunk
                .iter()
                .map(|i| backup_json(*i, &mut rng, &clusters))
                .collect();
            let last = chunk.last().is_some_and(|i| i + 1 == backups);
            let mut page = json!({"backups": items, "total_count": backups.to_string()});
            if last {
                page["complete"] = json!(true);
            }
            serde_json::to_vec(&page).expect("page")
        })
        .collect()
}

/// What the poller does with the pages of one enumeration: decode, map, collect the uids.
fn decode_and_map(pages: &[Vec<u8>]) -> (Vec<Vec<Event>>, HashSet<String>) {
    let clusters = ClusterIndex::default();
    let intervals = PolicyIntervals::default();
    let ctx = Context {
        org: "default",
        clusters: &clusters,
        intervals: &intervals,
    };
    let mut listed = HashSet::new();
    let batches = pages
        .iter()
        .map(|body| {
            let page = decode_page::<BackupObject>(body).expect("a page");
            page.items
                .into_iter()
                .map(|item| {
                    assert!(item.problem.is_none(), "{:?}", item.problem);
                    listed.insert(item.object.metadata.uid.clone());
                    let m = mapping::backup(item.object, &ctx).expect("mapped");
                    Event::Upsert(Object::Backup(m.object))
                })
                .collect()
        })
        .collect();
    (batches, listed)
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.expect("at least one run"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 10_000 } else { 100_000 };
    let runs = if quick { 5 } else { 3 };
    let pages = pages(n);
    let json_bytes: usize = pages.iter().map(Vec::len).sum();

    // Baseline: only parsing the same bytes into serde_json's generic tree.
    let (generic, _) = best(runs, || {
        for p in &pages {
            black_box(serde_json::from_slice::<Value>(p).expect("json"));
        }
    });

    let (ours, (batches, listed)) = best(runs, || decode_and_map(&pages));
    let one_run = {
        // Allocations of one run alone (the best-of loop above ran several).
        let region_one = Region::new(GLOBAL);
        let out = decode_and_map(&pages);
        let stats = region_one.change();
        drop(out);
        stats
    };
    assert_eq!(listed.len(), n);

    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("tombstones.journal");
    let (inv, _) =
        Inventory::open(Clock::System, Options::with_backfill(DAY), dir.path()).expect("journal");
    let origin = Origin::scoped(SourceId::Pxb, "default");
    let t = Instant::now();
    for batch in batches.iter().cloned() {
        inv.apply(&origin, batch).expect("apply");
    }
    let first_apply = t.elapsed();
    let journal_after_first = std::fs::metadata(&journal).map_or(0, |m| m.len());

    // The unchanged poll: every page applied again, then the resync of a complete listing.
    // (The events are those a poll decodes; cloned beforehand so that only applying counts.)
    let again = batches.clone();
    let region = Region::new(GLOBAL);
    let t = Instant::now();
    for batch in again {
        inv.apply(&origin, batch).expect("apply");
    }
    let gone = inv.resync(&origin, Kind::Backup, &listed).expect("resync");
    let unchanged_apply = t.elapsed();
    let apply_stats = region.change();
    let journal_written = std::fs::metadata(&journal).map_or(0, |m| m.len()) - journal_after_first;
    assert_eq!(gone, 0);
    assert_eq!(journal_written, 0, "an unchanged poll wrote to the journal");

    let per_backup = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("| {n} backups, {} pages of {PAGE}, {:.0} MB of JSON | time | per backup | allocations | bytes allocated |", pages.len(), json_bytes as f64 / 1e6);
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| serde_json::Value parse only (baseline) | {} | {:.2} µs | | |",
        ms(generic),
        per_backup(generic)
    );
    println!(
        "| decode + map (pxb source) | {} | {:.2} µs | {} ({:.1} per backup) | {:.0} MB |",
        ms(ours),
        per_backup(ours),
        one_run.allocations,
        one_run.allocations as f64 / n as f64,
        one_run.bytes_allocated as f64 / 1e6
    );
    println!(
        "| first apply (render + journal) | {} | {:.2} µs | | |",
        ms(first_apply),
        per_backup(first_apply)
    );
    println!(
        "| unchanged poll applied (+ resync) | {} | {:.2} µs | {} ({:.1} per backup) | {:.0} MB; journal +{journal_written} B |",
        ms(unchanged_apply),
        per_backup(unchanged_apply),
        apply_stats.allocations,
        apply_stats.allocations as f64 / n as f64,
        apply_stats.bytes_allocated as f64 / 1e6
    );
}

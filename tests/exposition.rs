//! Golden exposition in both formats, parity of escaping with prometheus-client, and
//! `promtool check metrics` on the text format.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use pxbackup_sidecar::clock::Clock;
use pxbackup_sidecar::exposition::{self, Format};
use pxbackup_sidecar::inventory::Inventory;
use pxbackup_sidecar::model::*;
use pxbackup_sidecar::telemetry::metrics::TelemetryMetrics;

fn owner() -> Owner {
    Owner {
        org_id: "default".into(),
        cluster: "prod-east".into(),
        cluster_uid: "3e0f5c2a-1b7d-4e8f-9a6b-2c4d6e8f0a1b".into(),
    }
}

fn backup(uid: &str, name: &str, status: BackupStatus) -> Backup {
    Backup {
        uid: uid.into(),
        name: name.into(),
        owner: owner(),
        schedule_name: "nightly".into(),
        namespaces: vec!["shop".into(), "payments".into()],
        backup_location: "s3-east".into(),
        backup_object_type: "All".into(),
        status,
        size_bytes: Some(1_073_741_824),
        resource_count: Some(42),
        volumes: vec![Volume {
            volume: "pvc-1a2b".into(),
            pvc: "data".into(),
            pvc_namespace: "shop".into(),
            storage_class: "px-csi".into(),
            driver: "pxd".into(),
            status: Some(status),
        }],
        created_at: Some(Timestamp::from_secs(common::T0_SECS - 3600)),
        completed_at: status
            .is_terminal()
            .then(|| Timestamp::from_secs(common::T0_SECS - 3350)),
        ..Backup::default()
    }
}

/// A small fleet with one of everything, a tombstone and a hostile name.
fn fleet() -> Inventory {
    let inv = Inventory::in_memory(
        Clock::tokio_anchored(Timestamp::from_secs(common::T0_SECS)),
        Duration::from_secs(24 * 3600),
    );
    let hostile = "we\"ird\\name\nline ☃";
    let events = vec![
        Event::Upsert(Object::Cluster(Cluster {
            uid: owner().cluster_uid,
            name: "prod-east".into(),
            org_id: "default".into(),
            status: ClusterStatus::Online,
        })),
        Event::Upsert(Object::BackupLocation(BackupLocation {
            uid: "loc-1".into(),
            name: "s3-east".into(),
            org_id: "default".into(),
            location_type: "s3".into(),
            status: BackupLocationStatus::Valid,
        })),
        Event::Upsert(Object::Schedule(Schedule {
            uid: "sched-1".into(),
            name: "nightly".into(),
            owner: owner(),
            status: ScheduleStatus::Active,
            interval_seconds: Some(86_400),
        })),
        Event::Upsert(Object::Backup(backup(
            "b-ok",
            "nightly-1",
            BackupStatus::Success,
        ))),
        Event::Upsert(Object::Backup(backup(
            "b-hostile",
            hostile,
            BackupStatus::PartialSuccess,
        ))),
        Event::Upsert(Object::Backup(backup(
            "b-gone",
            "nightly-0",
            BackupStatus::Failed,
        ))),
        Event::Upsert(Object::Backup(Backup {
            backup_object_type: "VirtualMachine".into(),
            virtual_machines: vec![VirtualMachine {
                name: "erp-db".into(),
                namespace: "vms".into(),
                os_name: "rhel9".into(),
                status: Some(BackupStatus::Success),
            }],
            vm_resources: vec![VmResource {
                group: "kubevirt.io".into(),
                version: "v1".into(),
                kind: "VirtualMachine".into(),
                name: "erp-db".into(),
                namespace: "vms".into(),
                virtual_machines: vec!["erp-db".into()],
            }],
            failed_resource_count: Some(0),
            failed_volume_count: Some(0),
            ..backup("b-vm", "vms-1", BackupStatus::Success)
        })),
        Event::Upsert(Object::Backup(Backup {
            namespace_resources: vec![NamespaceResources {
                namespace: "shop".into(),
                status: Some(NamespaceStatus::PartialSuccess),
                total_resources: Some(12),
                total_volumes: Some(1),
                failed_resources: Some(2),
                failed_volumes: Some(0),
                resource_types: vec![ResourceType {
                    name: "apps/v1/Deployment".into(),
                    total_resources: Some(3),
                    failed_resources: Some(1),
                }],
            }],
            ..backup("b-ns", "nightly-ns", BackupStatus::PartialSuccess)
        })),
        Event::Upsert(Object::Backup(Backup {
            backup_object_type: "VirtualMachine".into(),
            virtual_machines: vec![VirtualMachine {
                name: "old-vm".into(),
                namespace: "vms".into(),
                os_name: "windows2022".into(),
                status: Some(BackupStatus::Failed),
            }],
            ..backup("b-vm-gone", "vms-0", BackupStatus::Failed)
        })),
        Event::Delete {
            kind: Kind::Backup,
            uid: "b-vm-gone".into(),
            deleted_at: Some(Timestamp::from_secs(common::T0_SECS - 120)),
        },
        Event::Delete {
            kind: Kind::Backup,
            uid: "b-gone".into(),
            deleted_at: Some(Timestamp::from_secs(common::T0_SECS - 60)),
        },
        Event::Upsert(Object::Restore(Restore {
            uid: "r-1".into(),
            name: "restore-1".into(),
            owner: owner(),
            backup: "nightly-1".into(),
            status: RestoreStatus::Success,
            size_bytes: Some(2048),
            resource_count: Some(40),
            volume_count: Some(1),
            created_at: Some(Timestamp::from_secs(common::T0_SECS - 600)),
            completed_at: Some(Timestamp::from_secs(common::T0_SECS - 300)),
        })),
    ];
    inv.apply(&Origin::source(SourceId::Ingest), events)
        .unwrap();
    inv
}

/// The plain text of the fleet, written from the entries (a plain-text scrape); the text of
/// the gzip body (inflated from the stored segments) is the same.
fn render(format: Format) -> String {
    let inv = fleet();
    let telemetry = TelemetryMetrics::default();
    let inflated = exposition::encode(&inv.snapshot(), format, &[&telemetry]);
    let written = exposition::encode_text(inv.text_snapshot(), format, &[&telemetry]);
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&inflated),
        "plain text written from the entries = the gzip body's text"
    );
    String::from_utf8(written).unwrap()
}

/// Compares with `tests/golden/NAME`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden file at line {}:\n expected: {:?}\n   actual: {:?}",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn golden_text_format() {
    golden("scrape.txt", &render(Format::Text));
}

#[tokio::test(start_paused = true)]
async fn golden_openmetrics_format() {
    let om = render(Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE pxbackup_telemetry_uploads counter\n"));
    assert!(
        om.contains("\npxbackup_telemetry_uploads_total{kind=\"health\",result=\"success\"} 0\n")
    );
    golden("scrape.om.txt", &om);
}

#[tokio::test(start_paused = true)]
async fn headers_once_per_family() {
    let text = render(Format::Text);
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert_eq!(text.matches(&format!("{line}\n")).count(), 1, "{line}");
    }
}

/// The hostile backup's series, encoded by prometheus-client 0.25.2 (which escapes label
/// values), must appear byte for byte in our output.
#[tokio::test(start_paused = true)]
async fn escaping_matches_prometheus_client() {
    let b = backup(
        "b-hostile",
        "we\"ird\\name\nline ☃",
        BackupStatus::PartialSuccess,
    );
    let identity = vec![
        ("org_id".to_owned(), b.owner.org_id.clone()),
        ("name".to_owned(), b.name.clone()),
        ("uid".to_owned(), b.uid.clone()),
        ("cluster".to_owned(), b.owner.cluster.clone()),
        ("cluster_uid".to_owned(), b.owner.cluster_uid.clone()),
        ("schedule_name".to_owned(), b.schedule_name.clone()),
    ];
    let mut info_labels = identity.clone();
    info_labels.extend([
        ("backup_namespace".to_owned(), "shop,payments".to_owned()),
        ("backup_location".to_owned(), "s3-east".to_owned()),
        ("backup_object_type".to_owned(), "All".to_owned()),
        ("status".to_owned(), "PartialSuccess".to_owned()),
        ("previous_status".to_owned(), String::new()),
    ]);
    let mut registry = Registry::default();
    let info = Family::<Vec<(String, String)>, Gauge>::default();
    let status = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register("pxbackup_backup_object_info", "x", info.clone());
    registry.register("pxbackup_backup_status", "x", status.clone());
    info.get_or_create(&info_labels).set(1);
    let mut status_labels = identity.clone();
    status_labels.push(("backup_namespace".to_owned(), "shop,payments".to_owned()));
    status.get_or_create(&status_labels).set(8);
    let mut theirs = String::new();
    encode(&mut theirs, &registry).unwrap();

    let ours = render(Format::OpenMetrics);
    let their_samples: Vec<&str> = theirs.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(their_samples.len(), 2, "{theirs}");
    for line in their_samples {
        assert!(
            ours.lines().any(|l| l == line),
            "prometheus-client wrote\n{line}\nwhich we do not"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn promtool_check_metrics_is_clean() {
    let text = render(Format::Text);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (apt-get install prometheus; .ci/run does it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool's lint wants counters to end in _total and info gauges... it exits 0 only when
    // the text parses and every lint passes.
    assert!(out.status.success(), "promtool check metrics:\n{report}");
}

/// The background refresher gives way to a scrape from its request until its body is gone:
/// the body, not the handler, holds the scrape as in flight.
#[tokio::test]
async fn a_scrape_is_in_flight_until_its_body_is_dropped() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let inventory = std::sync::Arc::new(fleet());
    let router = exposition::server::metrics_router(exposition::server::MetricsContext {
        inventory: inventory.clone(),
        sources: Default::default(),
        collectors: Vec::new(),
        scrape_duration: Default::default(),
    });
    for encoding in ["gzip", "identity"] {
        let request = axum::http::Request::get("/metrics")
            .header("accept-encoding", encoding)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            inventory.scrapes_in_flight(),
            1,
            "{encoding}: response not sent yet"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty());
        assert_eq!(inventory.scrapes_in_flight(), 0, "{encoding}: body sent");
    }
    // A scraper that goes away before reading anything ends the scrape too.
    let request = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(inventory.scrapes_in_flight(), 1);
    drop(response);
    assert_eq!(inventory.scrapes_in_flight(), 0);
}

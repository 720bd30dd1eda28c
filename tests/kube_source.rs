//! The kube source end to end: the real binary, pointed by a kubeconfig at an in-process fake
//! API server (tests/fake_apiserver) that speaks the list/watch protocol, observed through
//! its scraped /metrics. The CRs are those of tests/fixtures/kube, shaped as Stork and
//! PX-Backup write them (see its README), and patches of them that stand for other paths of
//! Stork's code.

mod common;
mod fake_apiserver;

use std::time::{Duration, Instant};

use common::{client, samples, Sidecar};
use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};

const KUBE_SYSTEM_UID: &str = "8f1e2d3c-4b5a-4968-8776-655443322110";
const BACKUPS: &str = "applicationbackups";
const RESTORES: &str = "applicationrestores";
const SCHEDULES: &str = "applicationbackupschedules";
const POLICIES: &str = "schedulepolicies";
const NAMESPACED_POLICIES: &str = "namespacedschedulepolicies";
/// Watches of a sidecar watching all namespaces: backups, restores, schedules, namespaced
/// schedule policies and (cluster-scoped) schedule policies.
const WATCHES: usize = 5;

/// uid of backup-pending.json (no PXB annotations: the CR's uid).
const PENDING_UID: &str = "5a0c9e6e-1f7d-4c4e-9d55-2a3b4c5d6e01";
/// PXB uid annotation of backup-in-progress.json / backup-successful.json, PX-Backup's manual
/// backup `shop-2026-11-23`: its CR is `px-admin/shop-2026-11-23-9b1c4d2`.
const SUCCESSFUL_UID: &str = "9b1c4d2e-0000-4000-8000-00000000b001";
const SUCCESSFUL_NS: &str = "px-admin";
const SUCCESSFUL_CR: &str = "shop-2026-11-23-9b1c4d2";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/kube/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A copy of backup-pending.json with another name, uid and Stork status.
fn backup(name: &str, uid: &str, status: &str) -> Value {
    let mut b = fixture("backup-pending.json");
    b["metadata"]["name"] = json!(name);
    b["metadata"]["uid"] = json!(uid);
    b["status"]["status"] = json!(status);
    b
}

fn has_label(line: &str, key: &str, value: &str) -> bool {
    let pair = format!("{key}=\"{value}\"");
    line.contains(&format!("{{{pair}")) || line.contains(&format!(",{pair}"))
}

/// Value of the sample of `family` that carries every one of `labels`.
/// The labels of the object_info series of a Successful backup's tombstone.
fn deleted_after_success(uid: &str) -> [(&'static str, &str); 3] {
    [
        ("uid", uid),
        ("status", "Deleted"),
        ("previous_status", "Success"),
    ]
}

fn value(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, family)
        .into_iter()
        .find(|l| labels.iter().all(|(k, v)| has_label(l, k, v)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

struct Setup {
    server: FakeApiServer,
    sidecar: Sidecar,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// A fake API server prepared by `prepare`, and a sidecar watching it.
async fn start(prepare: impl FnOnce(&FakeApiServer), extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FakeApiServer::start(KUBE_SYSTEM_UID).await;
    prepare(&server);
    let kubeconfig = server.write_kubeconfig(dir.path());
    let state = dir.path().join("state");
    let mut args = vec![
        "--source",
        "kube",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8 path"),
        "--cluster-name",
        "test-cluster",
        "--state-dir",
        state.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::spawn(&args, dir.path());
    let args = args.into_iter().map(str::to_owned).collect();
    Setup {
        server,
        sidecar,
        args,
        dir,
    }
}

impl Setup {
    /// Stops the sidecar (SIGTERM) and starts it again with the same state dir.
    fn restart(&mut self) {
        let status = self.sidecar.terminate();
        assert!(status.success(), "{status}:\n{}", self.sidecar.log());
        self.start_again();
    }

    fn start_again(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.sidecar = Sidecar::spawn(&args, self.dir.path());
    }

    /// Scrapes until `ok` holds (30 s at most) and returns that scrape.
    async fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.sidecar.scrape().await;
            if ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "waited 30 s for: {what}\n--- last scrape:\n{text}\n--- sidecar log:\n{}",
                self.sidecar.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn until_value(&self, family: &str, labels: &[(&str, &str)], want: f64) -> String {
        self.until(&format!("{family}{labels:?} == {want}"), |t| {
            value(t, family, labels) == Some(want)
        })
        .await
    }

    async fn wait_server(&self, what: &str, ok: impl Fn(&FakeApiServer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(&self.server) {
            assert!(
                Instant::now() < deadline,
                "waited 30 s for: {what}\n{}",
                self.sidecar.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn source_up(text: &str) -> Option<f64> {
    value(text, "pxbackup_sidecar_source_up", &[("source", "kube")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_lifecycle_from_pending_to_deleted_tombstone() {
    let mut s = start(|_| {}, &[]).await;
    s.sidecar.ready().await;

    // PX-Backup creates the CR; Stork has not reconciled it yet: Go's zero values.
    let mut cr = fixture("backup-in-progress.json");
    cr["status"] = fixture("backup-pending.json")["status"].clone();
    s.server.put(BACKUPS, cr);
    let uid = [("uid", SUCCESSFUL_UID)];
    let text = s.until_value("pxbackup_backup_status", &uid, 1.0).await;
    let status_line = samples(&text, "pxbackup_backup_status")
        .into_iter()
        .find(|l| has_label(l, "uid", SUCCESSFUL_UID))
        .expect("status line");
    for (k, v) in [
        ("cluster", "test-cluster"),
        ("cluster_uid", KUBE_SYSTEM_UID),
        ("org_id", "default"),
        ("name", "shop-2026-11-23"),
    ] {
        assert!(has_label(status_line, k, v), "{k}: {status_line}");
    }

    // The volume stage: zeros everywhere Stork has not measured anything yet.
    s.server.put(BACKUPS, fixture("backup-in-progress.json"));
    let text = s.until_value("pxbackup_backup_status", &uid, 2.0).await;
    for family in [
        "pxbackup_backup_size_bytes",
        "pxbackup_backup_resources",
        "pxbackup_backup_failed_resources",
        "pxbackup_backup_duration_seconds",
    ] {
        assert_eq!(
            value(&text, family, &uid),
            None,
            "{family} before completion"
        );
    }
    assert_eq!(
        value(&text, "pxbackup_backup_failed_volumes", &uid),
        Some(0.0)
    );

    s.server.bookmark();

    s.server.put(BACKUPS, fixture("backup-successful.json"));
    let text = s.until_value("pxbackup_backup_status", &uid, 6.0).await;
    assert_eq!(
        value(&text, "pxbackup_backup_size_bytes", &uid),
        Some(1_073_742_848.0)
    );
    assert_eq!(value(&text, "pxbackup_backup_resources", &uid), Some(7.0));
    assert_eq!(
        value(&text, "pxbackup_backup_failed_resources", &uid),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "pxbackup_backup_duration_seconds", &uid),
        Some(250.0)
    );
    assert_eq!(
        source_up(&text),
        Some(1.0),
        "the bookmark disturbed nothing"
    );

    // Stork's finalizer keeps the CR while it cleans up: Deleting first, then gone.
    let mut cr = fixture("backup-successful.json");
    let deleted_at = now_rfc3339();
    cr["metadata"]["deletionTimestamp"] = json!(deleted_at);
    s.server.put(BACKUPS, cr);
    s.until_value("pxbackup_backup_status", &uid, 5.0).await;
    s.server.delete(BACKUPS, SUCCESSFUL_NS, SUCCESSFUL_CR);
    let tomb = deleted_after_success(SUCCESSFUL_UID);
    let text = s
        .until_value("pxbackup_backup_object_info", &tomb, 1.0)
        .await;
    let deleted_secs = humantime::parse_rfc3339(&deleted_at)
        .expect("rfc3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as f64;
    assert_eq!(
        value(
            &text,
            "pxbackup_backup_deleted_timestamp_seconds",
            &[("uid", SUCCESSFUL_UID), ("previous_status", "Success")]
        ),
        Some(deleted_secs),
        "the deletionTimestamp is the deletion time"
    );
    assert_eq!(
        value(&text, "pxbackup_backup_status", &uid),
        None,
        "numeric series go"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_watch_resumes_without_a_relist_and_bookmarks_change_nothing() {
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-successful.json"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let uid = [("uid", SUCCESSFUL_UID)];
    let before = s.until_value("pxbackup_backup_status", &uid, 6.0).await;
    s.wait_server("every watch open", |srv| srv.open_watches() == WATCHES)
        .await;
    let lists = s.server.lists();

    for _ in 0..3 {
        s.server.bookmark();
    }
    s.server.drop_watches();
    s.wait_server("the watches resumed", |srv| srv.open_watches() == WATCHES)
        .await;
    s.server.bookmark();
    s.server.put(
        BACKUPS,
        backup(
            "after-resume",
            "11111111-0000-4000-8000-000000000001",
            "InProgress",
        ),
    );
    let text = s
        .until_value(
            "pxbackup_backup_status",
            &[("uid", "11111111-0000-4000-8000-000000000001")],
            2.0,
        )
        .await;
    assert_eq!(
        s.server.lists(),
        lists,
        "resumed from its resourceVersion, not re-listed"
    );
    assert_eq!(source_up(&text), Some(1.0));
    for family in [
        "pxbackup_backup_object_info",
        "pxbackup_backup_volume_info",
        "pxbackup_backup_size_bytes",
    ] {
        let old: Vec<&str> = samples(&before, family);
        let new: Vec<&str> = samples(&text, family)
            .into_iter()
            .filter(|l| has_label(l, "uid", SUCCESSFUL_UID))
            .collect();
        assert_eq!(old, new, "{family} of the untouched backup");
    }
}

async fn lost_delete_is_found_by_the_relist(gone_as_http: bool) {
    let other_uid = "22222222-0000-4000-8000-000000000002";
    let mut s = start(
        |srv| {
            srv.set_gone_as_http(gone_as_http);
            srv.put(BACKUPS, fixture("backup-successful.json"));
            srv.put(BACKUPS, backup("other", other_uid, "Successful"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    s.until_value("pxbackup_backup_status", &[("uid", SUCCESSFUL_UID)], 6.0)
        .await;
    s.until_value("pxbackup_backup_status", &[("uid", other_uid)], 6.0)
        .await;
    s.wait_server("every watch open", |srv| srv.open_watches() == WATCHES)
        .await;
    let lists = s.server.lists();

    s.server
        .delete_while_disconnected(BACKUPS, SUCCESSFUL_NS, SUCCESSFUL_CR);
    let tomb = deleted_after_success(SUCCESSFUL_UID);
    let text = s
        .until_value("pxbackup_backup_object_info", &tomb, 1.0)
        .await;
    assert_eq!(
        value(&text, "pxbackup_backup_status", &[("uid", SUCCESSFUL_UID)]),
        None
    );
    assert_eq!(
        value(&text, "pxbackup_backup_status", &[("uid", other_uid)]),
        Some(6.0),
        "what was re-listed stays"
    );
    assert!(value(
        &text,
        "pxbackup_backup_deleted_timestamp_seconds",
        &[("uid", SUCCESSFUL_UID)]
    )
    .is_some());
    assert!(s.server.lists() > lists, "410 Gone forced a re-list");
    s.until("source up again", |t| source_up(t) == Some(1.0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_as_an_error_event_relists_and_tombstones_the_lost_delete() {
    lost_delete_is_found_by_the_relist(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_as_http_410_relists_and_tombstones_the_lost_delete() {
    lost_delete_is_found_by_the_relist(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_status_is_invalid_and_malformed_objects_are_skipped_and_counted() {
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-malformed.json"));
            srv.put(BACKUPS, fixture("backup-pending.json"));
        },
        &[],
    )
    .await;
    // The initial list holds a malformed object and still completes.
    s.sidecar.ready().await;
    let invalid = |t: &str| {
        value(
            t,
            "pxbackup_sidecar_source_objects_invalid_total",
            &[("source", "kube")],
        )
    };
    let text = s
        .until_value("pxbackup_backup_status", &[("uid", PENDING_UID)], 1.0)
        .await;
    assert_eq!(invalid(&text), Some(1.0));

    s.server.put(BACKUPS, fixture("backup-unknown-status.json"));
    let unknown_uid = [("uid", "7d8e9fa0-1b2c-4d3e-8f40-5a6b7c8d9e03")];
    s.until_value("pxbackup_backup_status", &unknown_uid, 0.0)
        .await;
    let log = s.sidecar.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("Teleporting")
            && l.contains("shop-future-stork")),
        "a warning names the value and the object:\n{log}"
    );

    // A malformed update of a watched object, then a good object: the watch goes on.
    let mut broken = fixture("backup-malformed.json");
    broken["status"]["resourceCount"] = json!("many");
    s.server.put(BACKUPS, broken);
    s.server.put(
        BACKUPS,
        backup(
            "after-broken",
            "33333333-0000-4000-8000-000000000003",
            "Failed",
        ),
    );
    let text = s
        .until_value(
            "pxbackup_backup_status",
            &[("uid", "33333333-0000-4000-8000-000000000003")],
            4.0,
        )
        .await;
    assert_eq!(invalid(&text), Some(2.0));
    assert!(
        !text.contains("e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a04"),
        "the malformed backup is not exported"
    );
    let log = s.sidecar.log();
    assert!(
        log.contains("shop-broken"),
        "the malformed object is named:\n{log}"
    );
    assert_eq!(source_up(&text), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_take_the_source_down_until_it_recovers() {
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-pending.json"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let cluster = [("uid", KUBE_SYSTEM_UID), ("name", "test-cluster")];
    let text = s
        .until_value("pxbackup_cluster_status", &cluster, 1.0)
        .await;
    assert_eq!(source_up(&text), Some(1.0));

    s.server.set_failing(true);
    let text = s.until("source_up 0", |t| source_up(t) == Some(0.0)).await;
    assert_eq!(
        value(&text, "pxbackup_cluster_status", &cluster),
        Some(2.0),
        "Offline"
    );
    assert!(s.server.failed_requests() > 0);
    assert_eq!(
        value(&text, "pxbackup_backup_status", &[("uid", PENDING_UID)]),
        Some(1.0),
        "objects stay while the API is unreachable"
    );

    s.server.set_failing(false);
    s.until("source_up 1", |t| source_up(t) == Some(1.0)).await;
    s.until_value("pxbackup_cluster_status", &cluster, 1.0)
        .await;
    let mut cr = fixture("backup-pending.json");
    cr["status"]["status"] = json!("InProgress");
    s.server.put(BACKUPS, cr);
    s.until_value("pxbackup_backup_status", &[("uid", PENDING_UID)], 2.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_list() {
    let mut s = start(|srv| srv.set_failing(true), &[]).await;
    s.wait_server("the sidecar asked", |srv| srv.failed_requests() >= 2)
        .await;
    let r = client()
        .get(format!("{}/readyz", s.sidecar.metrics_url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503, "no list yet");
    let text = s.sidecar.scrape().await;
    assert_eq!(source_up(&text), Some(0.0));
    s.server.set_failing(false);
    s.sidecar.ready().await;
    let text = s.until("source_up 1", |t| source_up(t) == Some(1.0)).await;
    assert_eq!(
        value(
            &text,
            "pxbackup_cluster_status",
            &[("uid", KUBE_SYSTEM_UID)]
        ),
        Some(1.0)
    );
}

/// PX-Backup's restore of `shop-2026-11-23`: its CR and PX-Backup's uid of it.
const RESTORE_NS: &str = "shop-restored";
const RESTORE_CR: &str = "shop-restore-1-2c3d4e5";
const RESTORE_UID: &str = "4d5e6f70-0000-4000-8000-0000000000a5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_schedules_and_the_cluster_appear() {
    let mut s = start(
        |srv| {
            srv.put(RESTORES, fixture("restore-successful.json"));
            srv.put(SCHEDULES, fixture("schedule-suspended.json"));
            // The copy of the backup PX-Backup made for that restore, in its namespace.
            srv.put(BACKUPS, fixture("backup-restore-copy.json"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let restore = [("uid", RESTORE_UID)];
    let text = s
        .until_value("pxbackup_restore_status", &restore, 6.0)
        .await;
    let line = samples(&text, "pxbackup_restore_status")
        .into_iter()
        .find(|l| has_label(l, "uid", RESTORE_UID))
        .expect("restore line");
    for (k, v) in [
        ("name", "shop-restore-1"),
        // As the backup's own series name it (PX-Backup's name, not the CR's).
        ("backup", "shop-2026-11-23"),
        ("cluster_uid", KUBE_SYSTEM_UID),
    ] {
        assert!(has_label(line, k, v), "{k}: {line}");
    }
    assert_eq!(
        value(&text, "pxbackup_restore_volumes", &restore),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "pxbackup_restore_duration_seconds", &restore),
        Some(150.0)
    );
    assert!(
        samples(&text, "pxbackup_backup_object_info").is_empty(),
        "the copy made for the restore is no backup of this cluster:\n{text}"
    );
    let schedule = [("name", "nightly-shop"), ("org_id", "default")];
    assert_eq!(
        value(&text, "pxbackup_backup_schedule_status", &schedule),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "pxbackup_cluster_status",
            &[("uid", KUBE_SYSTEM_UID), ("name", "test-cluster")]
        ),
        Some(1.0)
    );

    let mut sched = s.server.get(SCHEDULES, "shop", "nightly-shop");
    sched["spec"]["suspend"] = json!(false);
    s.server.put(SCHEDULES, sched);
    s.until_value("pxbackup_backup_schedule_status", &schedule, 0.0)
        .await;

    // PX-Backup removes its copy: no tombstone, and the restore keeps naming its backup.
    s.server
        .delete(BACKUPS, RESTORE_NS, "shop-2026-11-23-9b1c4d2");
    let mut r = s.server.get(RESTORES, RESTORE_NS, RESTORE_CR);
    r["status"]["status"] = json!("Retained");
    s.server.put(RESTORES, r);
    let text = s
        .until_value("pxbackup_restore_status", &restore, 7.0)
        .await;
    assert!(
        samples(&text, "pxbackup_backup_object_info").is_empty(),
        "no tombstone:\n{text}"
    );
    let line = samples(&text, "pxbackup_restore_status")
        .into_iter()
        .find(|l| has_label(l, "uid", RESTORE_UID))
        .expect("restore line");
    assert!(has_label(line, "backup", "shop-2026-11-23"), "{line}");
    s.server.delete(RESTORES, RESTORE_NS, RESTORE_CR);
    s.until("the restore is gone", |t| {
        value(t, "pxbackup_restore_status", &restore).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_watchers_see_only_their_namespaces_and_relist_independently() {
    let (a, b, c) = (
        "44444444-0000-4000-8000-00000000000a",
        "44444444-0000-4000-8000-00000000000b",
        "44444444-0000-4000-8000-00000000000c",
    );
    let mut s = start(
        |srv| {
            for (ns, uid) in [("shop", a), ("team-b", b), ("elsewhere", c)] {
                let mut cr = backup(&format!("in-{ns}"), uid, "Successful");
                cr["metadata"]["namespace"] = json!(ns);
                srv.put(BACKUPS, cr);
            }
        },
        &["--namespaces", "shop,team-b"],
    )
    .await;
    s.sidecar.ready().await;
    s.until_value("pxbackup_backup_status", &[("uid", a)], 6.0)
        .await;
    let text = s
        .until_value("pxbackup_backup_status", &[("uid", b)], 6.0)
        .await;
    assert!(
        !text.contains(c),
        "a namespace not asked for is not watched"
    );
    // Four namespaced resources in each of two namespaces, and the cluster's policies.
    s.wait_server("nine watches open", |srv| srv.open_watches() == 9)
        .await;

    s.server
        .delete_while_disconnected(BACKUPS, "shop", "in-shop");
    let tomb = deleted_after_success(a);
    let text = s
        .until_value("pxbackup_backup_object_info", &tomb, 1.0)
        .await;
    assert_eq!(
        value(&text, "pxbackup_backup_status", &[("uid", b)]),
        Some(6.0),
        "team-b's backup survives shop's re-list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_kubeconfig_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-kubeconfig");
    let mut sidecar = Sidecar::spawn(
        &[
            "--source",
            "kube",
            "--kubeconfig",
            missing.to_str().expect("utf-8 path"),
        ],
        dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = sidecar.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            sidecar.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(64), "{}", sidecar.log());
    assert!(
        sidecar.log().contains("no-such-kubeconfig"),
        "{}",
        sidecar.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_watchers_and_exits_cleanly() {
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-pending.json"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    s.wait_server("every watch open", |srv| srv.open_watches() == WATCHES)
        .await;
    let status = s.sidecar.terminate();
    assert!(status.success(), "{status}:\n{}", s.sidecar.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_backup_stays_visible_across_a_restart() {
    let other_uid = "55555555-0000-4000-8000-000000000005";
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-successful.json"));
            srv.put(BACKUPS, backup("still-here", other_uid, "Successful"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    s.until_value("pxbackup_backup_status", &[("uid", SUCCESSFUL_UID)], 6.0)
        .await;
    s.server.delete(BACKUPS, SUCCESSFUL_NS, SUCCESSFUL_CR);
    let tomb = deleted_after_success(SUCCESSFUL_UID);
    let before = s
        .until_value("pxbackup_backup_object_info", &tomb, 1.0)
        .await;

    s.restart();
    s.sidecar.ready().await;
    let after = s
        .until_value("pxbackup_backup_status", &[("uid", other_uid)], 6.0)
        .await;
    assert_eq!(
        value(&after, "pxbackup_backup_object_info", &tomb),
        Some(1.0),
        "the tombstone came back"
    );
    assert_eq!(
        value(
            &after,
            "pxbackup_backup_deleted_timestamp_seconds",
            &[("uid", SUCCESSFUL_UID)]
        ),
        value(
            &before,
            "pxbackup_backup_deleted_timestamp_seconds",
            &[("uid", SUCCESSFUL_UID)]
        ),
        "with its original deletion time"
    );
    assert_eq!(
        value(&after, "pxbackup_backup_status", &[("uid", SUCCESSFUL_UID)]),
        None
    );
}

#[tokio::test]
async fn a_backup_deleted_while_the_sidecar_was_down_is_tombstoned() {
    let other_uid = "55555555-0000-4000-8000-000000000006";
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-successful.json"));
            srv.put(BACKUPS, backup("still-here", other_uid, "Successful"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    s.until_value("pxbackup_backup_status", &[("uid", SUCCESSFUL_UID)], 6.0)
        .await;
    // Killed hard; the backup is deleted before the sidecar comes back.
    s.sidecar.kill9();
    s.server.delete(BACKUPS, SUCCESSFUL_NS, SUCCESSFUL_CR);
    s.start_again();
    s.sidecar.ready().await;
    let tomb = deleted_after_success(SUCCESSFUL_UID);
    let after = s
        .until_value("pxbackup_backup_object_info", &tomb, 1.0)
        .await;
    assert_eq!(
        value(&after, "pxbackup_backup_status", &[("uid", SUCCESSFUL_UID)]),
        None
    );
    assert_eq!(
        value(&after, "pxbackup_backup_status", &[("uid", other_uid)]),
        Some(6.0)
    );
}

/// The object_info series of `uid` that says it was deleted, if any.
fn tombstoned(text: &str, uid: &str) -> bool {
    samples(text, "pxbackup_backup_object_info")
        .into_iter()
        .any(|l| has_label(l, "uid", uid) && has_label(l, "status", "Deleted"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_lists_survive_an_expired_continue_token() {
    let uids: Vec<String> = (0..5)
        .map(|i| format!("66666666-0000-4000-8000-00000000000{i}"))
        .collect();
    let mut s = start(
        |srv| {
            srv.set_page_size(Some(2));
            for (i, uid) in uids.iter().enumerate() {
                srv.put(BACKUPS, backup(&format!("paged-{i}"), uid, "Successful"));
            }
            // The first list's second page: 410 Expired, so the watcher lists again.
            srv.expire_next_continue();
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let mut text = String::new();
    for uid in &uids {
        text = s
            .until_value("pxbackup_backup_status", &[("uid", uid)], 6.0)
            .await;
    }
    assert_eq!(s.server.continues_expired(), 1);
    assert!(
        !samples(&text, "pxbackup_backup_object_info")
            .iter()
            .any(|l| has_label(l, "status", "Deleted")),
        "a list cut short by 410 deletes nothing:\n{text}"
    );
    s.wait_server("every watch open", |srv| srv.open_watches() == WATCHES)
        .await;

    // A lost delete found by a paginated re-list, itself cut short once more.
    s.server.expire_next_continue();
    s.server
        .delete_while_disconnected(BACKUPS, "shop", "paged-3");
    let text = s
        .until_value(
            "pxbackup_backup_object_info",
            &deleted_after_success(&uids[3]),
            1.0,
        )
        .await;
    assert_eq!(s.server.continues_expired(), 2);
    for (i, uid) in uids.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert_eq!(
            value(&text, "pxbackup_backup_status", &[("uid", uid)]),
            Some(6.0),
            "paged-{i}"
        );
        assert!(!tombstoned(&text, uid), "paged-{i}");
    }
}

/// Starts with `--namespaces shop,team-b` and a Successful backup in each, then restarts
/// with the backups of `last` listed only after everything else.
async fn restart_with_two_namespaces(last: &str) {
    let first = if last == "shop" { "team-b" } else { "shop" };
    let uid_in = |ns: &str| {
        if ns == "shop" {
            "77777777-0000-4000-8000-00000000000a"
        } else {
            "77777777-0000-4000-8000-00000000000b"
        }
    };
    let mut s = start(
        |srv| {
            for ns in ["shop", "team-b"] {
                let mut cr = backup(&format!("in-{ns}"), uid_in(ns), "Successful");
                cr["metadata"]["namespace"] = json!(ns);
                srv.put(BACKUPS, cr);
            }
        },
        &["--namespaces", "shop,team-b"],
    )
    .await;
    s.sidecar.ready().await;
    for ns in ["shop", "team-b"] {
        s.until_value("pxbackup_backup_status", &[("uid", uid_in(ns))], 6.0)
            .await;
    }
    s.restart_holding(BACKUPS, last).await;
    s.wait_server(&format!("{first}'s backups listed and watched"), |srv| {
        srv.open_watches_on(BACKUPS, Some(first)) == 1
    })
    .await;
    // The journal alone shows both backups: only a change that follows first's list (on the
    // same watch, so the source takes it in after that list) says the list was taken in.
    let text = s.after_list_of(first).await;
    for ns in ["shop", "team-b"] {
        assert!(
            !tombstoned(&text, uid_in(ns)),
            "{ns}'s backup tombstoned while {last} was still listing:\n{text}"
        );
        assert_eq!(
            value(&text, "pxbackup_backup_status", &[("uid", uid_in(ns))]),
            Some(6.0),
            "{ns}"
        );
    }

    s.server.release_lists(BACKUPS, Some(last));
    s.sidecar.ready().await;
    s.wait_server("every watch open", |srv| srv.open_watches() == 9)
        .await;
    // Both lists taken in: the deferred deletions, had there been any, are done.
    let text = s.after_list_of(last).await;
    for ns in ["shop", "team-b"] {
        assert!(!tombstoned(&text, uid_in(ns)), "{ns}:\n{text}");
        assert_eq!(
            value(&text, "pxbackup_backup_status", &[("uid", uid_in(ns))]),
            Some(6.0)
        );
    }
}

impl Setup {
    /// Puts a new backup in `namespace` once its backups' watch is open and waits until it is
    /// exported: the source handles each watcher's list before that watcher's later events,
    /// so the scrape returned shows what the list did (a deletion it made would be in it).
    async fn after_list_of(&self, namespace: &str) -> String {
        let marker = format!("marker-{namespace}");
        let uid = format!("{}-0000-4000-8000-00000000abcd", &"0123456789abcdef"[..8]);
        let uid = if namespace == "shop" {
            uid
        } else {
            uid.replace("abcd", "abce")
        };
        let mut cr = backup(&marker, &uid, "InProgress");
        cr["metadata"]["namespace"] = json!(namespace);
        self.server.put(BACKUPS, cr);
        self.until_value("pxbackup_backup_status", &[("uid", &uid)], 2.0)
            .await
    }

    /// Stops the sidecar (SIGTERM) and starts it again, the lists of `plural` in `namespace`
    /// held back until `release_lists`.
    async fn restart_holding(&mut self, plural: &str, namespace: &str) {
        let status = self.sidecar.terminate();
        assert!(status.success(), "{status}:\n{}", self.sidecar.log());
        self.server.hold_lists(plural, Some(namespace));
        self.start_again();
        self.wait_server("the held list was asked for", |srv| {
            srv.waiting_lists() == 1
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_two_namespaces_tombstones_nothing_when_team_b_lists_last() {
    restart_with_two_namespaces("team-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_two_namespaces_tombstones_nothing_when_shop_lists_last() {
    restart_with_two_namespaces("shop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_deleted_in_one_namespace_while_down_is_tombstoned_once_every_namespace_listed() {
    let (kept, gone, other) = (
        "88888888-0000-4000-8000-00000000000a",
        "88888888-0000-4000-8000-00000000000b",
        "88888888-0000-4000-8000-00000000000c",
    );
    let mut s = start(
        |srv| {
            for (ns, name, uid) in [
                ("shop", "kept", kept),
                ("shop", "gone", gone),
                ("team-b", "other", other),
            ] {
                let mut cr = backup(name, uid, "Successful");
                cr["metadata"]["namespace"] = json!(ns);
                srv.put(BACKUPS, cr);
            }
        },
        &["--namespaces", "shop,team-b"],
    )
    .await;
    s.sidecar.ready().await;
    for uid in [kept, gone, other] {
        s.until_value("pxbackup_backup_status", &[("uid", uid)], 6.0)
            .await;
    }
    // Deleted while the sidecar is down; team-b lists last after the restart.
    s.sidecar.terminate();
    s.server.delete(BACKUPS, "shop", "gone");
    s.server.hold_lists(BACKUPS, Some("team-b"));
    s.start_again();
    s.wait_server("team-b's list waits, shop's is watched", |srv| {
        srv.waiting_lists() == 1 && srv.open_watches_on(BACKUPS, Some("shop")) == 1
    })
    .await;
    let text = s.after_list_of("shop").await;
    assert!(
        !tombstoned(&text, gone),
        "not before every namespace has listed"
    );
    s.server.release_lists(BACKUPS, Some("team-b"));
    let text = s
        .until_value(
            "pxbackup_backup_object_info",
            &deleted_after_success(gone),
            1.0,
        )
        .await;
    for uid in [kept, other] {
        assert_eq!(
            value(&text, "pxbackup_backup_status", &[("uid", uid)]),
            Some(6.0)
        );
    }
}

fn schedule(ns: &str, name: &str, uid: &str, policy: &str) -> Value {
    let mut cr = fixture("schedule-suspended.json");
    cr["metadata"]["namespace"] = json!(ns);
    cr["metadata"]["name"] = json!(name);
    cr["metadata"]["uid"] = json!(uid);
    cr["spec"]["suspend"] = json!(false);
    cr["spec"]["schedulePolicyName"] = json!(policy);
    cr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_intervals_come_from_their_policies_and_follow_changes() {
    let (in_shop, in_crm) = (
        "99999999-0000-4000-8000-00000000000a",
        "99999999-0000-4000-8000-00000000000b",
    );
    let mut s = start(
        |srv| {
            // Both name "backup-policy": weekly for the cluster, daily in shop.
            srv.put(POLICIES, fixture("schedulepolicy-weekly.json"));
            srv.put(
                NAMESPACED_POLICIES,
                fixture("namespacedschedulepolicy-daily.json"),
            );
            srv.put(
                SCHEDULES,
                schedule("shop", "shop-nightly", in_shop, "backup-policy"),
            );
            srv.put(
                SCHEDULES,
                schedule("crm", "crm-weekly", in_crm, "backup-policy"),
            );
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let interval = "pxbackup_backup_schedule_interval_seconds";
    s.until_value(interval, &[("uid", in_shop)], 86_400.0).await;
    s.until_value(interval, &[("uid", in_crm)], 604_800.0).await;

    // The cluster policy becomes an interval policy: the crm schedule follows.
    let mut policy = s.server.get(POLICIES, "", "backup-policy");
    policy["policy"] = json!({"interval": {"intervalMinutes": 90, "retain": 5}});
    s.server.put(POLICIES, policy.clone());
    s.until_value(interval, &[("uid", in_crm)], 5_400.0).await;

    // The namespaced policy goes: shop's schedule falls back to the cluster policy.
    s.server
        .delete(NAMESPACED_POLICIES, "shop", "backup-policy");
    s.until_value(interval, &[("uid", in_shop)], 5_400.0).await;

    // Monthly on the 31st runs in seven months only: 61 days at the longest.
    policy["policy"] = json!({"monthly": {"date": 31, "time": "2:00AM"}});
    s.server.put(POLICIES, policy.clone());
    s.until_value(interval, &[("uid", in_shop)], 61.0 * 86_400.0)
        .await;

    // A policy Stork refuses: its schedules get no interval (the alert's default window).
    policy["policy"] = json!({"daily": {"time": "25:00"}});
    s.server.put(POLICIES, policy);
    let text = s
        .until("no interval", |t| {
            value(t, interval, &[("uid", in_crm)]).is_none()
        })
        .await;
    assert!(value(&text, interval, &[("uid", in_shop)]).is_none());
    assert!(
        s.sidecar.log().contains(r#"daily.time "25:00""#),
        "the refused field is named:\n{}",
        s.sidecar.log()
    );
    assert_eq!(
        value(&text, "pxbackup_backup_schedule_status", &[("uid", in_crm)]),
        Some(0.0),
        "the schedule itself stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_and_namespace_backups_carry_their_resources() {
    let (vm_uid, ns_uid) = (
        "5f6a7b8c-0000-4000-8000-0000000000c7",
        "7e8f9a0b-b2c3-4d4e-9f50-6b7c8d9e0f08",
    );
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-vm.json"));
            srv.put(BACKUPS, fixture("backup-partial-success.json"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    s.until_value("pxbackup_backup_status", &[("uid", vm_uid)], 8.0)
        .await;
    let text = s
        .until_value("pxbackup_backup_status", &[("uid", ns_uid)], 8.0)
        .await;
    let info = samples(&text, "pxbackup_backup_object_info");
    assert!(
        info.iter()
            .any(|l| has_label(l, "uid", vm_uid)
                && has_label(l, "backup_object_type", "VirtualMachine")),
        "{info:?}"
    );
    let vm_status = |vm: &str| {
        samples(&text, "pxbackup_virtual_machine_info")
            .into_iter()
            .find(|l| has_label(l, "virtual_machine", vm))
            .map(str::to_owned)
    };
    let web = vm_status("web-vm").expect("web-vm");
    assert!(
        has_label(&web, "status", "Success"),
        "no volume of its namespace failed: {web}"
    );
    // Which of the two VMs of vms-lab lost its disk is not recorded: they carry the backup's.
    let lab = vm_status("lab-2").expect("lab-2");
    assert!(has_label(&lab, "status", "PartialSuccess"), "{lab}");
    // Failed resources come from the failed volumes (their PVCs left out of the list).
    for uid in [vm_uid, ns_uid] {
        assert_eq!(
            value(&text, "pxbackup_backup_failed_resources", &[("uid", uid)]),
            Some(1.0),
            "{uid}"
        );
        assert_eq!(
            value(&text, "pxbackup_backup_failed_volumes", &[("uid", uid)]),
            Some(1.0),
            "{uid}"
        );
    }
    let db = [("uid", ns_uid), ("backup_namespace", "shop-db")];
    assert_eq!(
        value(&text, "pxbackup_namespace_failed_resources", &db),
        Some(1.0)
    );
    assert_eq!(value(&text, "pxbackup_namespace_resources", &db), Some(2.0));
    let db_info = samples(&text, "pxbackup_namespace_resource_info")
        .into_iter()
        .find(|l| has_label(l, "uid", ns_uid) && has_label(l, "backup_namespace", "shop-db"))
        .expect("shop-db");
    assert!(has_label(db_info, "status", "PartialSuccess"), "{db_info}");
    assert_eq!(
        value(
            &text,
            "pxbackup_sidecar_source_objects_invalid_total",
            &[("source", "kube")]
        ),
        Some(0.0),
        "Stork's resources and VM fields read as they are written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_volume_entry_is_skipped_and_counted_not_the_backup() {
    let mut s = start(|_| {}, &[]).await;
    s.sidecar.ready().await;
    // `status.volumes` is `[]*ApplicationBackupVolumeInfo`: a nil pointer is written `null`.
    let mut cr = fixture("backup-successful.json");
    cr["status"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .insert(1, json!(null));
    s.server.put(BACKUPS, cr);
    let uid = [("uid", SUCCESSFUL_UID)];
    let text = s.until_value("pxbackup_backup_status", &uid, 6.0).await;
    assert_eq!(value(&text, "pxbackup_backup_volumes", &uid), Some(2.0));
    assert_eq!(
        value(
            &text,
            "pxbackup_sidecar_source_objects_invalid_total",
            &[("source", "kube")]
        ),
        Some(1.0)
    );
    let log = s.sidecar.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("status.volumes[1] is null")
            && l.contains(SUCCESSFUL_CR)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_without_finish_timestamp_has_a_duration() {
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, fixture("backup-failed-pre-exec-rule.json"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let uid = [("uid", "a1b2c3d4-0000-4000-8000-0000000000f1")];
    let text = s.until_value("pxbackup_backup_status", &uid, 4.0).await;
    assert_eq!(
        value(&text, "pxbackup_backup_duration_seconds", &uid),
        Some(7.0)
    );
    assert_eq!(value(&text, "pxbackup_backup_size_bytes", &uid), None);
    assert_eq!(value(&text, "pxbackup_backup_failed_resources", &uid), None);
}

/// The uids of the backups exported, live or tombstoned.
fn backup_uids(text: &str) -> Vec<String> {
    let mut uids: Vec<String> = samples(text, "pxbackup_backup_object_info")
        .into_iter()
        .filter_map(|l| {
            let rest = &l[l.find("uid=\"")? + 5..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect();
    uids.sort();
    uids.dedup();
    uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_of_a_schedule_carrying_pxb_annotations_stay_distinct() {
    let first = "e2f3a4b5-0000-4000-8000-0000000000e6";
    let second = "e2f3a4b5-0000-4000-8000-0000000000e7";
    let mut s = start(
        |srv| {
            srv.put(SCHEDULES, fixture("schedule-with-pxb-annotations.json"));
            srv.put(BACKUPS, fixture("backup-from-schedule.json"));
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    s.until_value("pxbackup_backup_status", &[("uid", first)], 6.0)
        .await;
    // The schedule's next run: the same copied annotations.
    let mut next = fixture("backup-from-schedule.json");
    next["metadata"]["name"] = json!("shop-daily-daily-2026-11-23-010000");
    next["metadata"]["uid"] = json!(second);
    next["status"] = fixture("backup-pending.json")["status"].clone();
    s.server.put(BACKUPS, next);
    let text = s
        .until_value("pxbackup_backup_status", &[("uid", second)], 1.0)
        .await;
    assert_eq!(backup_uids(&text), [first, second], "two runs, two backups");
    let line = samples(&text, "pxbackup_backup_status")
        .into_iter()
        .find(|l| has_label(l, "uid", first))
        .expect("first");
    assert!(
        has_label(line, "name", "shop-daily-daily-2026-11-22-010000")
            && has_label(line, "schedule_name", "shop-daily"),
        "{line}"
    );
    // Stork's retention deletes the older one: only it becomes a tombstone.
    s.server
        .delete(BACKUPS, "shop", "shop-daily-daily-2026-11-22-010000");
    let text = s
        .until_value(
            "pxbackup_backup_object_info",
            &deleted_after_success(first),
            1.0,
        )
        .await;
    assert_eq!(
        value(&text, "pxbackup_backup_status", &[("uid", second)]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_annotation_that_arrives_late_tombstones_nothing_even_across_a_restart() {
    let cr_uid = "0b6f2a51-7c1e-4e0c-8d2f-9a8b7c6d5e02";
    // PX-Backup's backup, first seen before its annotations are on it.
    let mut early = fixture("backup-successful.json");
    early["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("annotations");
    let mut s = start(
        |srv| {
            srv.put(BACKUPS, early);
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let by_cr = [("uid", cr_uid)];
    s.until_value("pxbackup_backup_status", &by_cr, 6.0).await;
    s.server.put(BACKUPS, fixture("backup-successful.json"));
    // The name follows the annotation; the identity stays.
    let text = s
        .until("the new name", |t| {
            samples(t, "pxbackup_backup_status")
                .iter()
                .any(|l| has_label(l, "uid", cr_uid) && has_label(l, "name", "shop-2026-11-23"))
        })
        .await;
    assert_eq!(backup_uids(&text), [cr_uid]);

    s.restart();
    s.sidecar.ready().await;
    // A change after the restart's list shows the list was taken in.
    let mut cr = fixture("backup-successful.json");
    cr["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
    s.server.put(BACKUPS, cr);
    let text = s.until_value("pxbackup_backup_status", &by_cr, 5.0).await;
    assert_eq!(
        backup_uids(&text),
        [cr_uid],
        "still one backup, not tombstoned:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_named_schedules_in_two_namespaces_keep_their_own_last_success() {
    let in_ns = |name: &str, ns: &str, uid: &str| {
        let mut cr = fixture(name);
        cr["metadata"]["namespace"] = json!(ns);
        cr["metadata"]["uid"] = json!(uid);
        cr
    };
    let mut s = start(
        |srv| {
            for (ns, n) in [("shop", "1"), ("crm", "2")] {
                srv.put(
                    SCHEDULES,
                    in_ns(
                        "schedule-with-pxb-annotations.json",
                        ns,
                        &format!("5c5c5c5c-0000-4000-8000-00000000000{n}"),
                    ),
                );
                srv.put(
                    BACKUPS,
                    in_ns(
                        "backup-from-schedule.json",
                        ns,
                        &format!("b5b5b5b5-0000-4000-8000-00000000000{n}"),
                    ),
                );
            }
        },
        &[],
    )
    .await;
    s.sidecar.ready().await;
    let last = "pxbackup_schedule_last_success_timestamp_seconds";
    let of = |ns: &'static str| [("schedule_name", "shop-daily"), ("schedule_namespace", ns)];
    // finishTimestamp of backup-from-schedule.json.
    let done = 1_795_309_380.0;
    s.until_value(last, &of("shop"), done).await;
    s.until_value(last, &of("crm"), done).await;

    s.server.delete(SCHEDULES, "crm", "shop-daily");
    let text = s
        .until("crm's last success forgotten", |t| {
            value(t, last, &of("crm")).is_none()
        })
        .await;
    assert_eq!(value(&text, last, &of("shop")), Some(done), "shop's stays");
}

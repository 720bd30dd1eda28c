//! The PX-Backup source against an in-process fake of PX-Backup's REST gateway
//! (tests/fake_pxb): the real binary scraped through /metrics, and the poller driven one poll
//! at a time for the decoder's variants.

mod common;
mod fake_pxb;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{samples, Sidecar};
use fake_pxb::{Failure, FakePxb};
use pxbackup_sidecar::clock::Clock;
use pxbackup_sidecar::config::PxbSettings;
use pxbackup_sidecar::exposition::{self, Format};
use pxbackup_sidecar::inventory::{Inventory, Options};
use pxbackup_sidecar::model::{BackupStatus, Kind, SourceId};
use pxbackup_sidecar::sources::pxb::{PollReport, Poller, PxbClient};
use pxbackup_sidecar::sources::{SourceContext, SourceStatus};
use serde_json::{json, Value};

const ORG: &str = "default";
const CLUSTER_UID: &str = "3e0f7a52-0c1d-4bd4-9b8e-7c1f0c5a0001";
const DAY: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------------------------------------
// PX-Backup objects as the gateway writes them

/// How an object is written: enums as names or numbers, 64-bit integers as strings or
/// numbers, embedded messages nested or flattened.
#[derive(Clone, Copy, Debug)]
struct Encoding {
    enum_numbers: bool,
    int64_strings: bool,
    flat: bool,
}

const NAMES: Encoding = Encoding {
    enum_numbers: false,
    int64_strings: true,
    flat: false,
};

impl Encoding {
    fn status(&self, name: &str) -> Value {
        if self.enum_numbers {
            match name.parse::<BackupStatus>() {
                Ok(s) => json!(s.value()),
                Err(_) => json!(name),
            }
        } else {
            json!(name)
        }
    }
    fn u64(&self, n: u64) -> Value {
        if self.int64_strings {
            json!(n.to_string())
        } else {
            json!(n)
        }
    }
    /// `metadata` + `info_key` nested, or flattened into one object.
    fn object(&self, metadata: Value, info_key: &str, info: Value) -> Value {
        if self.flat {
            let mut out = metadata.as_object().cloned().unwrap_or_default();
            out.extend(info.as_object().cloned().unwrap_or_default());
            Value::Object(out)
        } else {
            json!({"metadata": metadata, info_key: info})
        }
    }
}

fn metadata(name: &str, uid: &str, enc: Encoding) -> Value {
    json!({"name": name, "uid": uid, "org_id": ORG, "create_time": "2026-11-23T01:00:00Z",
           "create_time_in_sec": enc.u64(1_795_395_600),
           "labels": {"app": "shop"}, "ownership": {"owner": "admin"}})
}

fn backup_with(name: &str, uid: &str, status: &str, enc: Encoding) -> Value {
    let info = json!({
        "cluster": "prod-east",
        "cluster_ref": {"name": "prod-east", "uid": CLUSTER_UID},
        "namespaces": ["shop"],
        "status": {"status": enc.status(status), "reason": ""},
        "volumes": [{"name": format!("pvc-{uid}"), "namespace": "shop", "pvc": "data",
                     "status": {"status": enc.status(status)}, "driver_name": "pxd",
                     "storage_class": "px-csi", "total_size": enc.u64(1024),
                     "zones": ["a"], "options": {"x": "y"}}],
        "backup_schedule": {"name": "nightly", "uid": "sched-1"},
        "total_size": enc.u64(1_073_741_824),
        "resource_count": enc.u64(42),
        "backup_location_ref": {"name": "s3-east", "uid": "bl-1"},
        "backup_object_type": {"type": if enc.enum_numbers { json!(1) } else { json!("All") }},
        "completion_time_info": {"total_completion_time": "2026-11-23T01:04:10Z"},
        "resources": [{"name": "web", "namespace": "shop", "kind": "Deployment"}],
        "stage": if enc.enum_numbers { json!(6) } else { json!("Final") },
    });
    enc.object(metadata(name, uid, enc), "backup_info", info)
}

fn backup(name: &str, uid: &str, status: &str) -> Value {
    backup_with(name, uid, status, NAMES)
}

fn cluster(name: &str, uid: &str, status: &str) -> Value {
    json!({"metadata": {"name": name, "uid": uid, "org_id": ORG},
           "clusterInfo": {"status": {"status": status}, "kubeconfig": "never-read"}})
}

fn location(name: &str, uid: &str) -> Value {
    json!({"metadata": {"name": name, "uid": uid, "org_id": ORG},
           "backup_location_info": {"type": "S3", "status": {"status": "Valid"},
                                    "path": "bucket", "encryptionkey": "never-read"}})
}

fn schedule(name: &str, uid: &str, suspend: bool) -> Value {
    json!({"metadata": {"name": name, "uid": uid, "org_id": ORG},
           "backup_schedule_info": {"suspend": suspend,
               "cluster_ref": {"name": "prod-east", "uid": CLUSTER_UID},
               "schedule_policy_ref": {"name": "daily-1am", "uid": "pol-1"}}})
}

fn policy() -> Value {
    json!({"metadata": {"name": "daily-1am", "uid": "pol-1", "org_id": ORG},
           "schedule_policy_info": {"daily": {"time": "1:00AM", "retain": "7"}}})
}

fn restore(name: &str, uid: &str, status: &str) -> Value {
    json!({"metadata": metadata(name, uid, NAMES),
           "restore_info": {"backup_ref": {"name": "nightly-0", "uid": "b-0"},
               "cluster_ref": {"name": "prod-east", "uid": CLUSTER_UID},
               "status": {"status": status}, "total_size": "2048", "resource_count": "7",
               "volumes": [{"pvc": "data"}]}})
}

/// A fleet: a cluster, a backup location, a schedule and its policy, a restore and `n`
/// successful backups `nightly-<i>` with uid `b-<i>`.
fn populate(fake: &FakePxb, n: usize) {
    fake.put(ORG, "cluster", cluster("prod-east", CLUSTER_UID, "Online"));
    fake.put(ORG, "backuplocation", location("s3-east", "bl-1"));
    fake.put(ORG, "schedulepolicy", policy());
    fake.put(ORG, "backupschedule", schedule("nightly", "sched-1", false));
    fake.put(ORG, "restore", restore("restore-1", "r-1", "Success"));
    for i in 0..n {
        fake.put(
            ORG,
            "backup",
            backup(&format!("nightly-{i}"), &format!("b-{i}"), "Success"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reading scrapes

fn has_label(line: &str, key: &str, value: &str) -> bool {
    let pair = format!("{key}=\"{value}\"");
    line.contains(&format!("{{{pair}")) || line.contains(&format!(",{pair}"))
}

fn lines<'a>(text: &'a str, family: &str, labels: &[(&str, &str)]) -> Vec<&'a str> {
    samples(text, family)
        .into_iter()
        .filter(|l| labels.iter().all(|(k, v)| has_label(l, k, v)))
        .collect()
}

fn value(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    lines(text, family, labels)
        .first()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn source_up(text: &str) -> Option<f64> {
    value(text, "pxbackup_sidecar_source_up", &[("source", "pxb")])
}

/// Live backups (object_info series not Deleted).
fn live_backups(text: &str) -> usize {
    samples(text, "pxbackup_backup_object_info")
        .into_iter()
        .filter(|l| !has_label(l, "status", "Deleted"))
        .count()
}

fn tombstone(text: &str, uid: &str) -> Option<String> {
    lines(
        text,
        "pxbackup_backup_object_info",
        &[("uid", uid), ("status", "Deleted")],
    )
    .first()
    .map(|l| (*l).to_owned())
}

// ---------------------------------------------------------------------------------------------
// The real binary

struct Setup {
    fake: FakePxb,
    sidecar: Sidecar,
    dir: tempfile::TempDir,
}

fn token_path(dir: &Path) -> std::path::PathBuf {
    dir.join("token")
}

/// Writes the token the way kubelet updates a Secret volume: a new file renamed over the old.
fn write_token(dir: &Path, token: &str) {
    let tmp = dir.join("token.tmp");
    std::fs::write(&tmp, format!("{token}\n")).expect("write token");
    std::fs::rename(&tmp, token_path(dir)).expect("rename token");
}

async fn start(prepare: impl FnOnce(&FakePxb), extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakePxb::start().await;
    prepare(&fake);
    write_token(dir.path(), "token-one");
    let state = dir.path().join("state");
    let token = token_path(dir.path());
    let mut args = vec![
        "--source",
        "pxb",
        "--pxb-url",
        fake.url.as_str(),
        "--pxb-token-file",
        token.to_str().expect("utf-8 path"),
        "--pxb-poll-interval",
        "150ms",
        "--pxb-page-size",
        "10",
        "--state-dir",
        state.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::spawn(&args, dir.path());
    Setup { fake, sidecar, dir }
}

impl Setup {
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
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the sidecar has started `n` more polls (it lists organizations first).
    async fn polls(&self, n: usize) {
        let start = self.fake.count("/v1/organization");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.fake.count("/v1/organization") < start + n + 1 {
            assert!(
                Instant::now() < deadline,
                "no {n} polls in 30 s:\n{}",
                self.sidecar.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn journal_len(&self) -> u64 {
        std::fs::metadata(self.dir.path().join("state").join("tombstones.journal"))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_every_kind_page_by_page_and_tombstones_a_deleted_backup() {
    let mut s = start(|f| populate(f, 25), &[]).await;
    s.sidecar.ready().await;
    let text = s.sidecar.scrape().await;
    assert_eq!(live_backups(&text), 25, "{text}");
    assert_eq!(source_up(&text), Some(1.0));

    // Three pages of ten, each with the token and the detailed resources.
    let pages: Vec<String> = s
        .fake
        .requests_to("/v1/backup/default")
        .iter()
        .take(3)
        .map(|r| {
            assert_eq!(r.authorization.as_deref(), Some("Bearer token-one"));
            assert_eq!(r.query["enumerate_options.max_objects"], "10");
            assert_eq!(
                r.query["enumerate_options.include_detailed_resources"],
                "true"
            );
            r.query["enumerate_options.object_index"].clone()
        })
        .collect();
    assert_eq!(pages, ["0", "10", "20"]);

    let b7 = [("uid", "b-7")];
    let info = lines(&text, "pxbackup_backup_object_info", &b7);
    assert_eq!(info.len(), 1, "{info:?}");
    for (k, v) in [
        ("org_id", ORG),
        ("name", "nightly-7"),
        ("cluster", "prod-east"),
        ("cluster_uid", CLUSTER_UID),
        ("schedule_name", "nightly"),
        ("backup_location", "s3-east"),
        ("backup_object_type", "All"),
        ("status", "Success"),
    ] {
        assert!(has_label(info[0], k, v), "{k}={v}: {}", info[0]);
    }
    assert_eq!(value(&text, "pxbackup_backup_status", &b7), Some(6.0));
    assert_eq!(
        value(&text, "pxbackup_backup_size_bytes", &b7),
        Some(1_073_741_824.0)
    );
    assert_eq!(value(&text, "pxbackup_backup_resources", &b7), Some(42.0));
    assert_eq!(
        value(&text, "pxbackup_backup_duration_seconds", &b7),
        Some(250.0)
    );
    let vol = lines(&text, "pxbackup_backup_volume_info", &b7);
    assert!(has_label(vol[0], "pvc", "data") && has_label(vol[0], "driver", "pxd"));
    assert_eq!(
        value(
            &text,
            "pxbackup_restore_status",
            &[("uid", "r-1"), ("backup", "nightly-0")]
        ),
        Some(6.0)
    );
    assert_eq!(
        value(&text, "pxbackup_restore_volumes", &[("uid", "r-1")]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "pxbackup_cluster_status", &[("uid", CLUSTER_UID)]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "pxbackup_backup_location_status",
            &[("uid", "bl-1"), ("type", "S3")]
        ),
        Some(1.0)
    );
    let sched = [("uid", "sched-1"), ("cluster_uid", CLUSTER_UID)];
    assert_eq!(
        value(&text, "pxbackup_backup_schedule_status", &sched),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "pxbackup_backup_schedule_interval_seconds", &sched),
        Some(86_400.0)
    );
    assert!(value(
        &text,
        "pxbackup_schedule_last_success_timestamp_seconds",
        &[("schedule_name", "nightly")]
    )
    .is_some());

    // Unchanged polls write nothing to the journal.
    s.polls(1).await;
    let journal = s.journal_len();
    assert!(journal > 0);
    s.polls(3).await;
    assert_eq!(
        s.journal_len(),
        journal,
        "an unchanged poll wrote to the journal"
    );

    // A backup deleted in PX-Backup becomes a tombstone; a status change shows.
    s.fake.delete(ORG, "backup", "b-7");
    s.fake
        .put(ORG, "backupschedule", schedule("nightly", "sched-1", true));
    let text = s
        .until("b-7 tombstoned", |t| tombstone(t, "b-7").is_some())
        .await;
    let line = tombstone(&text, "b-7").unwrap_or_default();
    assert!(has_label(&line, "previous_status", "Success"), "{line}");
    assert!(value(
        &text,
        "pxbackup_backup_deleted_timestamp_seconds",
        &[("uid", "b-7"), ("previous_status", "Success")]
    )
    .is_some());
    assert_eq!(value(&text, "pxbackup_backup_status", &b7), None);
    assert_eq!(live_backups(&text), 24);
    s.until("schedule suspended", |t| {
        value(t, "pxbackup_backup_schedule_status", &[("uid", "sched-1")]) == Some(1.0)
    })
    .await;

    // It survives a restart (kill -9) with its deletion time.
    let deleted_at = value(
        &text,
        "pxbackup_backup_deleted_timestamp_seconds",
        &[("uid", "b-7")],
    );
    s.sidecar.kill9();
    let token = token_path(s.dir.path());
    let state = s.dir.path().join("state");
    let args = [
        "--source",
        "pxb",
        "--pxb-url",
        s.fake.url.as_str(),
        "--pxb-token-file",
        token.to_str().unwrap_or_default(),
        "--pxb-poll-interval",
        "150ms",
        "--state-dir",
        state.to_str().unwrap_or_default(),
    ];
    s.sidecar = Sidecar::spawn(&args, s.dir.path());
    s.sidecar.ready().await;
    let text = s.sidecar.scrape().await;
    assert_eq!(
        value(
            &text,
            "pxbackup_backup_deleted_timestamp_seconds",
            &[("uid", "b-7")]
        ),
        deleted_at
    );
    assert_eq!(live_backups(&text), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_page_deletes_nothing_and_takes_the_source_down() {
    let s = start(|f| populate(f, 25), &[]).await;
    let mut s = s;
    s.sidecar.ready().await;
    s.fake.fail(Some(Failure::at("backup", 10, 500)));
    // b-3 is on the first page (which still answers), b-17 on the last (never reached).
    s.fake.delete(ORG, "backup", "b-3");
    s.fake.delete(ORG, "backup", "b-17");
    s.until("source down", |t| source_up(t) == Some(0.0)).await;
    s.polls(3).await;
    let text = s.sidecar.scrape().await;
    assert_eq!(source_up(&text), Some(0.0));
    assert_eq!(live_backups(&text), 25, "a failed poll deleted something");
    assert!(tombstone(&text, "b-3").is_none() && tombstone(&text, "b-17").is_none());
    let log = s.sidecar.log();
    assert!(
        log.contains("HTTP 500") && log.contains("datastore unavailable"),
        "{log}"
    );

    s.fake.fail(None);
    let text = s
        .until("recovered", |t| {
            source_up(t) == Some(1.0) && tombstone(t, "b-3").is_some()
        })
        .await;
    assert!(tombstone(&text, "b-17").is_some());
    assert_eq!(live_backups(&text), 23);
    assert!(s.sidecar.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_is_read_again() {
    let s = start(
        |f| {
            populate(f, 3);
            f.require_token(Some("token-one"));
        },
        &[],
    )
    .await;
    let mut s = s;
    s.sidecar.ready().await;

    // PX-Backup now wants another token: 401, the file is re-read (still the old token), and
    // the source goes down with a line naming the URL.
    s.fake.require_token(Some("token-two"));
    s.fake.delete(ORG, "backup", "b-1");
    s.until("source down", |t| source_up(t) == Some(0.0)).await;
    let log = s.sidecar.log();
    assert!(log.contains("refused the bearer token"), "{log}");
    assert!(log.contains(&format!("{}/v1/", s.fake.url)), "{log}");
    assert!(
        !log.contains("token-one") && !log.contains("token-two"),
        "{log}"
    );
    let text = s.sidecar.scrape().await;
    assert!(
        tombstone(&text, "b-1").is_none(),
        "refused polls delete nothing"
    );

    // The Secret is rotated: the next poll reads the new token and works.
    write_token(s.dir.path(), "token-two");
    let text = s
        .until("up again", |t| {
            source_up(t) == Some(1.0) && tombstone(t, "b-1").is_some()
        })
        .await;
    assert_eq!(live_backups(&text), 2);
    let last = s.fake.requests().pop().expect("a request");
    assert_eq!(last.authorization.as_deref(), Some("Bearer token-two"));
    assert!(!s.sidecar.log().contains("token-two"));
    assert!(s.sidecar.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_complete_poll() {
    let s = start(
        |f| {
            populate(f, 3);
            f.fail(Some(Failure::at("restore", 0, 503)));
        },
        &[],
    )
    .await;
    s.polls(2).await;
    let r = common::client()
        .get(format!("{}/readyz", s.sidecar.metrics_url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
    let text = s.sidecar.scrape().await;
    assert_eq!(source_up(&text), Some(0.0));
    // What was listed before the failure is exported already.
    assert_eq!(live_backups(&text), 3);
    s.fake.fail(None);
    let mut sidecar = s.sidecar;
    sidecar.ready().await;
    assert_eq!(source_up(&sidecar.scrape().await), Some(1.0));
}

#[tokio::test]
async fn bad_pxb_flags_exit_64_naming_the_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, needle) in [
        (
            vec![
                "--source",
                "pxb",
                "--pxb-token-file",
                "/nonexistent/pxb-token",
            ],
            "/nonexistent/pxb-token",
        ),
        (
            vec!["--source", "pxb", "--pxb-page-size", "lots"],
            "\"lots\"",
        ),
        (
            vec!["--source", "pxb", "--pxb-url", "px-backup:10001"],
            "px-backup:10001",
        ),
    ] {
        let out = std::process::Command::new(common::bin())
            .arg("run")
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .env("HOME", dir.path())
            .output()
            .expect("run the binary");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// The poller, one poll at a time

struct InProcess {
    fake: FakePxb,
    source: SourceContext,
    poller: Poller,
    client: PxbClient,
    _dir: tempfile::TempDir,
    journal: std::path::PathBuf,
}

async fn in_process(page_size: u64, tweak: impl FnOnce(&mut PxbSettings)) -> InProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inventory, _) =
        Inventory::open(Clock::System, Options::with_backfill(DAY), dir.path()).expect("journal");
    let source = SourceContext {
        inventory: Arc::new(inventory),
        status: Arc::new(SourceStatus::new(&[SourceId::Pxb])),
    };
    let fake = FakePxb::start().await;
    let mut settings = PxbSettings {
        url: fake.url.clone(),
        page_size,
        ..PxbSettings::default()
    };
    tweak(&mut settings);
    let client = PxbClient::new(&settings).expect("client");
    InProcess {
        journal: dir.path().join("tombstones.journal"),
        poller: Poller::new(source.clone(), settings),
        fake,
        source,
        client,
        _dir: dir,
    }
}

/// `in_process` reading its bearer token from a file that holds `token` (the file's path is
/// returned, to rotate it).
async fn in_process_with_token(token: &str) -> (tempfile::TempDir, std::path::PathBuf, InProcess) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("token");
    std::fs::write(&path, token).expect("token");
    let for_settings = path.clone();
    let p = in_process(100, move |s| s.token_file = Some(for_settings)).await;
    (dir, path, p)
}

impl InProcess {
    async fn poll(&mut self) -> PollReport {
        self.poller.poll(&mut self.client).await
    }
    fn scrape(&self) -> String {
        let body = exposition::encode(&self.source.inventory.snapshot(), Format::Text, &[]);
        String::from_utf8(body).expect("utf-8 scrape")
    }
    fn up(&self) -> bool {
        self.source.status.is_up(SourceId::Pxb)
    }
    fn ready(&self) -> bool {
        self.source.status.not_synced().is_empty()
    }
    fn invalid(&self) -> u64 {
        self.source.status.invalid_objects(SourceId::Pxb)
    }
    fn journal_len(&self) -> u64 {
        std::fs::metadata(&self.journal).map_or(0, |m| m.len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_numbers_string_integers_and_flattened_objects_export_alike() {
    let mut p = in_process(2, |_| {}).await;
    let encodings = [
        NAMES,
        Encoding {
            enum_numbers: true,
            int64_strings: true,
            flat: false,
        },
        Encoding {
            enum_numbers: true,
            int64_strings: false,
            flat: true,
        },
        Encoding {
            enum_numbers: false,
            int64_strings: false,
            flat: true,
        },
    ];
    for (i, enc) in encodings.iter().enumerate() {
        p.fake.put(
            ORG,
            "backup",
            backup_with(&format!("b{i}"), &format!("u{i}"), "PartialSuccess", *enc),
        );
    }
    let report = p.poll().await;
    assert!(report.complete, "{report:?}");
    assert_eq!(report.listed[0], 4);
    let text = p.scrape();
    let info: Vec<String> = (0..4)
        .map(|i| {
            let uid = format!("u{i}");
            let l = lines(&text, "pxbackup_backup_object_info", &[("uid", &uid)]);
            assert_eq!(l.len(), 1, "{uid}: {text}");
            let expected_name = format!("name=\"b{i}\"");
            l[0].replace(&expected_name, "name=\"b\"")
                .replace(&format!("uid=\"{uid}\""), "uid=\"u\"")
        })
        .collect();
    assert!(info.iter().all(|l| *l == info[0]), "{info:#?}");
    assert!(
        has_label(&info[0], "status", "PartialSuccess"),
        "{}",
        info[0]
    );
    assert!(has_label(&info[0], "backup_object_type", "All"));
    for i in 0..4 {
        let uid = format!("u{i}");
        assert_eq!(
            value(&text, "pxbackup_backup_size_bytes", &[("uid", &uid)]),
            Some(1_073_741_824.0),
            "{uid}"
        );
        assert_eq!(
            value(&text, "pxbackup_backup_status", &[("uid", &uid)]),
            Some(8.0)
        );
        assert_eq!(
            value(
                &text,
                "pxbackup_backup_created_timestamp_seconds",
                &[("uid", &uid)]
            ),
            Some(1_795_395_600.0)
        );
    }
    assert_eq!(p.invalid(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_backup_and_a_namespace_backup() {
    let mut p = in_process(100, |_| {}).await;
    p.fake
        .put(ORG, "cluster", cluster("prod-east", CLUSTER_UID, "Online"));
    // A VM backup whose cluster_ref carries no uid: found by the cluster's name.
    p.fake.put(
        ORG,
        "backup",
        json!({"metadata": metadata("vm-nightly", "b-vm", NAMES),
          "backup_info": {"cluster_ref": {"name": "prod-east"}, "namespaces": ["vms"],
            "status": {"status": "Success"}, "backup_object_type": {"type": "VirtualMachine"},
            "failed_resource_count": "0", "failed_vol_count": "0",
            "virtual_machines": [
              {"name": "web", "namespace": "vms", "os_name": "rhel9", "status": {"status": "Success"}},
              {"name": "db", "namespace": "vms", "os_name": "ubuntu", "status": {"status": "Success"}}],
            "vm_resources": {"vms": [
              {"resource_info": {"name": "web", "namespace": "vms", "group": "kubevirt.io",
                                 "version": "v1", "kind": "VirtualMachine"},
               "virtual_machine_names": ["web"]}]},
            "volumes": [{"name": "pvc-web", "namespace": "vms", "pvc": "web-disk",
                         "virtual_machine_name": "web", "status": {"status": "Success"}}]}}),
    );
    p.fake.put(
        ORG,
        "backup",
        json!({"metadata": metadata("ns-nightly", "b-ns", NAMES),
          "backup_info": {"cluster_ref": {"name": "prod-east", "uid": CLUSTER_UID},
            "namespaces": ["shop", "crm"], "status": {"status": "PartialSuccess"},
            "backup_object_type": {"type": "All"}, "failed_resource_count": "3",
            "namespace_resources": {"namespaces": [
              {"name": "shop", "status": {"status": "PartialSuccess"},
               "metrics": {"total_resources": 12, "total_volumes": 2, "total_failed_resources": 3},
               "resource_types": [{"name": "apps/v1/Deployment", "metrics": {"total_resources": 2},
                                   "chunks": [{"id": 1, "resource_names": ["a", "b"]}]}]},
              {"name": "crm", "status": {"status": "Success"}}]}}}),
    );
    let report = p.poll().await;
    assert!(report.complete, "{report:?}");
    let text = p.scrape();
    let vm = lines(&text, "pxbackup_backup_object_info", &[("uid", "b-vm")]);
    assert!(
        has_label(vm[0], "backup_object_type", "VirtualMachine"),
        "{}",
        vm[0]
    );
    assert!(has_label(vm[0], "cluster_uid", CLUSTER_UID), "{}", vm[0]);
    let ns = lines(&text, "pxbackup_backup_object_info", &[("uid", "b-ns")]);
    assert!(has_label(ns[0], "backup_object_type", "All"), "{}", ns[0]);
    assert!(has_label(ns[0], "status", "PartialSuccess"), "{}", ns[0]);
    // The VM and namespace-resource information families, from the API's fields.
    let vms = lines(&text, "pxbackup_virtual_machine_info", &[("uid", "b-vm")]);
    assert_eq!(vms.len(), 2, "{text}");
    assert!(vms.iter().any(|l| has_label(l, "virtual_machine", "web")
        && has_label(l, "os_name", "rhel9")
        && has_label(l, "virtual_machine_namespace", "vms")
        && has_label(l, "status", "Success")));
    let res = lines(
        &text,
        "pxbackup_virtual_machine_resource_info",
        &[("uid", "b-vm")],
    );
    assert_eq!(res.len(), 1, "{text}");
    assert!(
        has_label(res[0], "resource_kind", "VirtualMachine")
            && has_label(res[0], "virtual_machine", "web"),
        "{}",
        res[0]
    );
    let namespaces = lines(
        &text,
        "pxbackup_namespace_resource_info",
        &[("uid", "b-ns")],
    );
    assert_eq!(namespaces.len(), 2, "{text}");
    assert!(namespaces
        .iter()
        .any(|l| has_label(l, "backup_namespace", "shop")
            && has_label(l, "status", "PartialSuccess")));
    let types = lines(
        &text,
        "pxbackup_namespace_resource_type_info",
        &[("uid", "b-ns")],
    );
    assert_eq!(types.len(), 1, "{text}");
    assert!(
        has_label(types[0], "resource_type", "apps/v1/Deployment"),
        "{}",
        types[0]
    );
    let failed = lines(
        &text,
        "pxbackup_namespace_failed_resources",
        &[("uid", "b-ns")],
    );
    assert!(
        failed
            .iter()
            .any(|l| has_label(l, "backup_namespace", "shop") && l.ends_with(" 3")),
        "{failed:?}"
    );
    let status = lines(&text, "pxbackup_backup_status", &[("uid", "b-ns")]);
    assert!(
        has_label(status[0], "backup_namespace", "shop,crm"),
        "{}",
        status[0]
    );
    // The inventory holds both; the cluster puts its uid in telemetry's list.
    let summary = p.source.inventory.summary();
    assert_eq!(summary.objects["backup"], 2);
    assert_eq!(summary.backups_by_status["Success"], 1);
    assert_eq!(summary.backups_by_status["PartialSuccess"], 1);
    assert!(summary.cluster_uids.contains(CLUSTER_UID));
    // Equal input is an equal object: the next poll changes nothing.
    let journal = p.journal_len();
    p.poll().await;
    assert_eq!(p.journal_len(), journal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_statuses_are_invalid_and_unmappable_objects_are_skipped_counted_and_kept() {
    let mut p = in_process(100, |_| {}).await;
    populate(&p.fake, 3);
    assert!(p.poll().await.complete);
    // b-1 turns malformed (its last good state stays, it is not deleted); b-2's status is one
    // this version does not know; an object without a uid and a non-object come along.
    let mut b1 = backup("nightly-1", "b-1", "Success");
    b1["backup_info"]["total_size"] = json!("a lot");
    p.fake.put(ORG, "backup", b1);
    p.fake
        .put(ORG, "backup", backup("nightly-2", "b-2", "Vaporized"));
    p.fake
        .put(ORG, "backup", json!({"metadata": {"name": "no-uid"}}));
    p.fake.put(ORG, "backup", json!("garbage"));
    let report = p.poll().await;
    assert!(
        report.complete,
        "skipped objects never stop a poll: {report:?}"
    );
    assert_eq!(report.skipped, 3, "{report:?}");
    assert_eq!(
        report.deferred, 0,
        "objects without a uid count towards the total"
    );
    assert_eq!(p.invalid(), 3);
    let text = p.scrape();
    assert_eq!(live_backups(&text), 3, "{text}");
    assert!(tombstone(&text, "b-1").is_none());
    assert_eq!(
        value(&text, "pxbackup_backup_size_bytes", &[("uid", "b-1")]),
        Some(1_073_741_824.0),
        "b-1 keeps its last good state"
    );
    assert_eq!(
        value(&text, "pxbackup_backup_status", &[("uid", "b-2")]),
        Some(0.0)
    );
    assert_eq!(
        lines(
            &text,
            "pxbackup_backup_object_info",
            &[("uid", "b-2"), ("status", "Invalid")]
        )
        .len(),
        1
    );
    // Counted at every poll, as long as it stays unmappable.
    p.poll().await;
    assert_eq!(p.invalid(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_poll_upserts_and_writes_nothing() {
    let mut p = in_process(7, |_| {}).await;
    populate(&p.fake, 30);
    let first = p.poll().await;
    assert!(first.complete && p.up() && p.ready(), "{first:?}");
    assert_eq!(first.upserted, [30, 1, 1, 1, 1]);
    let journal = p.journal_len();
    let applied = p.source.inventory.stats().applied[SourceId::Pxb as usize]
        .load(std::sync::atomic::Ordering::Relaxed);
    let second = p.poll().await;
    assert!(second.complete);
    assert_eq!(second.listed, [30, 1, 1, 1, 1]);
    // Restores, schedules, clusters and locations are not sent again; backups are, and the
    // inventory finds them equal.
    assert_eq!(second.upserted, [30, 0, 0, 0, 0]);
    assert_eq!(second.deleted, 0);
    assert_eq!(
        p.journal_len(),
        journal,
        "an unchanged poll wrote to the journal"
    );
    let applied_after = p.source.inventory.stats().applied[SourceId::Pxb as usize]
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(applied_after - applied, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_while_paging_defers_deletions_to_the_next_poll() {
    let mut p = in_process(10, |_| {}).await;
    populate(&p.fake, 25);
    assert!(p.poll().await.complete);
    // b-0 is deleted just before the second page is read: everything shifts by one and b-10
    // (first of page two) is never listed. It must not be tombstoned.
    p.fake.delete_first_while_paging("backup", 10);
    let report = p.poll().await;
    assert!(report.complete, "{report:?}");
    assert_eq!(report.deferred, 1, "{report:?}");
    assert_eq!(report.deleted, 0);
    let text = p.scrape();
    assert_eq!(live_backups(&text), 25);
    // The next poll pages a still list: b-0 is tombstoned, b-10 is live.
    let report = p.poll().await;
    assert_eq!((report.deferred, report.deleted), (0, 1), "{report:?}");
    let text = p.scrape();
    assert!(tombstone(&text, "b-0").is_some());
    assert!(tombstone(&text, "b-10").is_none());
    assert_eq!(live_backups(&text), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_never_holds_still_still_sees_its_deletions() {
    let mut p = in_process(10, |_| {}).await;
    populate(&p.fake, 25);
    assert!(p.poll().await.complete);
    // Every poll, the oldest-listed backup goes while the second page is asked for: it was
    // listed on the first page, and the next one is missed. b-0 goes in poll 2, is first
    // absent in poll 3, and absent twice running in poll 4, which deletes it. No miss (b-10,
    // b-11, b-12) is ever tombstoned.
    let mut deleted = Vec::new();
    for _ in 0..3 {
        p.fake.delete_first_while_paging("backup", 10);
        let report = p.poll().await;
        assert!(report.complete && report.deferred == 1, "{report:?}");
        deleted.push(report.deleted);
    }
    assert_eq!(deleted, [0, 0, 1]);
    let text = p.scrape();
    assert!(
        tombstone(&text, "b-0").is_some(),
        "b-0 deleted two polls late"
    );
    for live in ["b-1", "b-2", "b-10", "b-11", "b-12"] {
        assert!(
            tombstone(&text, live).is_none(),
            "{live} falsely tombstoned"
        );
    }
    // A poll that holds still deletes the others at once.
    let report = p.poll().await;
    assert_eq!((report.deferred, report.deleted), (0, 2), "{report:?}");
    assert!(tombstone(&p.scrape(), "b-2").is_some());
    assert_eq!(live_backups(&p.scrape()), 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_false_with_nothing_more_to_page_is_cut_short() {
    let mut p = in_process(10, |_| {}).await;
    populate(&p.fake, 25);
    assert!(p.poll().await.complete);
    p.fake.delete(ORG, "backup", "b-24");
    p.fake.cut_short(Some("backup"));
    let report = p.poll().await;
    assert!(!report.complete);
    assert!(report.failures[0].contains("no more to page"), "{report:?}");
    assert!(!p.up());
    assert!(tombstone(&p.scrape(), "b-24").is_none());
    p.fake.cut_short(None);
    assert!(p.poll().await.complete);
    assert!(p.up());
    assert!(tombstone(&p.scrape(), "b-24").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_not_complete_and_without_a_total_deletes_nothing() {
    // An organization with no objects has no total_count (grpc-gateway leaves zeros out), so
    // an empty page that is not complete says nothing about whether the backups are gone:
    // taken as the end, a broken answer would tombstone every backup of the organization.
    let mut p = in_process(10, |_| {}).await;
    populate(&p.fake, 25);
    assert!(p.poll().await.complete && p.up());
    // `"complete": false` written out, then left out as grpc-gateway's default marshaler does.
    for said in [true, false] {
        p.fake.empty_incomplete(Some(("backup", said)));
        let report = p.poll().await;
        assert!(!report.complete, "complete: false said: {said}; {report:?}");
        assert!(report.failures[0].contains("no more to page"), "{report:?}");
        assert!(!p.up(), "source still up, complete: false said: {said}");
        let text = p.scrape();
        assert_eq!(live_backups(&text), 25, "{text}");
        assert!(tombstone(&text, "b-0").is_none());
    }
    p.fake.empty_incomplete(None);
    p.fake.delete(ORG, "backup", "b-24");
    assert!(p.poll().await.complete && p.up());
    let text = p.scrape();
    assert!(tombstone(&text, "b-24").is_some());
    assert_eq!(live_backups(&text), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_does_not_parse_or_times_out_fails_the_poll() {
    let mut p = in_process(100, |s| s.request_timeout = Duration::from_millis(300)).await;
    populate(&p.fake, 3);
    assert!(p.poll().await.complete);
    p.fake.delete(ORG, "backup", "b-0");
    p.fake.hang(Some(("backup", Duration::from_secs(2))));
    let started = Instant::now();
    let report = p.poll().await;
    assert!(started.elapsed() < Duration::from_secs(2), "no timeout");
    assert!(!report.complete && !p.up());
    assert!(
        report.failures[0].contains("no complete answer within"),
        "{report:?}"
    );
    assert!(tombstone(&p.scrape(), "b-0").is_none());
    p.fake.hang(None);

    // JSON that does not parse, or whose total has the wrong shape.
    p.fake
        .raw(Some(("backup", r#"{"backups":[{"metadata":{"uid":"b-0""#)));
    let report = p.poll().await;
    assert!(!report.complete, "{report:?}");
    assert!(report.failures[0].contains("does not parse"), "{report:?}");
    p.fake
        .raw(Some(("backup", r#"{"backups":[],"total_count":"many"}"#)));
    let report = p.poll().await;
    assert!(report.failures[0].contains("total_count"), "{report:?}");
    assert!(tombstone(&p.scrape(), "b-0").is_none());
    p.fake.raw(None);
    assert!(p.poll().await.complete);
    assert!(tombstone(&p.scrape(), "b-0").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_after_a_reread_is_a_clear_failure() {
    let (_dir, token, mut p) = in_process_with_token("old-secret-token").await;
    populate(&p.fake, 1);
    p.fake.require_token(Some("new-secret-token"));
    let report = p.poll().await;
    assert!(!report.complete);
    assert!(
        report.failures[0].contains("refused the bearer token"),
        "{report:?}"
    );
    assert!(report.failures[0].contains(&p.fake.url), "{report:?}");
    assert!(!report.failures[0].contains("secret-token"), "{report:?}");
    // Every refused call was tried twice: once, then after re-reading the file.
    let orgs = p.fake.requests_to("/v1/organization");
    assert_eq!(orgs.len(), 2);
    std::fs::write(&token, "new-secret-token").expect("token");
    assert!(p.poll().await.complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_treated_like_a_401() {
    let (_dir, token, mut p) = in_process_with_token("old-secret-token").await;
    populate(&p.fake, 2);
    p.fake.require_token(Some("old-secret-token"));
    assert!(p.poll().await.complete);
    // PX-Backup now forbids the token the file holds.
    p.fake.refuse_with(403);
    p.fake.require_token(Some("new-secret-token"));
    p.fake.delete(ORG, "backup", "b-0");
    p.fake.clear_requests();
    let report = p.poll().await;
    assert!(!report.complete && !p.up(), "{report:?}");
    let failure = &report.failures[0];
    assert!(
        failure.contains("refused the bearer token (HTTP 403)"),
        "{report:?}"
    );
    assert!(failure.contains(&p.fake.url), "{report:?}");
    assert!(!failure.contains("secret-token"), "{report:?}");
    // Asked once, then once more after the token file was re-read; no more.
    let statuses: Vec<u16> = p
        .fake
        .requests_to("/v1/organization")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [403, 403]);
    assert!(
        tombstone(&p.scrape(), "b-0").is_none(),
        "a refused poll deleted"
    );
    std::fs::write(&token, "new-secret-token").expect("token");
    assert!(p.poll().await.complete && p.up());
    assert!(tombstone(&p.scrape(), "b-0").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_are_polled_apart() {
    let mut p = in_process(100, |_| {}).await;
    populate(&p.fake, 2);
    p.fake.put(
        "finance",
        "backup",
        json!({"metadata": {"name": "ledger", "uid": "f-1", "org_id": "finance"},
               "backup_info": {"status": {"status": "Success"}}}),
    );
    p.fake.add_org("empty");
    let report = p.poll().await;
    assert_eq!((report.complete, report.orgs), (true, 3), "{report:?}");
    let text = p.scrape();
    assert_eq!(
        lines(
            &text,
            "pxbackup_backup_object_info",
            &[("org_id", "finance")]
        )
        .len(),
        1
    );
    // A failure in one organization deletes nothing in it, and the others are polled.
    p.fake
        .fail(Some(Failure::at("backup", 0, 500).in_org("finance")));
    p.fake.delete("finance", "backup", "f-1");
    p.fake.delete(ORG, "backup", "b-0");
    let report = p.poll().await;
    assert!(!report.complete && !p.up());
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(
        report.failures[0].contains("organization finance"),
        "{report:?}"
    );
    let text = p.scrape();
    assert!(tombstone(&text, "f-1").is_none());
    assert!(
        tombstone(&text, "b-0").is_some(),
        "default was listed completely"
    );
    p.fake.fail(None);
    let report = p.poll().await;
    assert!(report.complete);
    assert!(tombstone(&p.scrape(), "f-1").is_some());
    // An organization PX-Backup no longer lists was deleted with what it held.
    p.fake.put(
        "finance",
        "backup",
        json!({"metadata": {"name": "ledger-2", "uid": "f-2", "org_id": "finance"},
               "backup_info": {"status": {"status": "Failed"}}}),
    );
    p.poll().await;
    p.fake.remove_org("finance");
    let report = p.poll().await;
    assert_eq!(report.orgs, 2);
    let line = tombstone(&p.scrape(), "f-2").expect("f-2 tombstoned");
    assert!(has_label(&line, "previous_status", "Failed"), "{line}");
    assert_eq!(live_backups(&p.scrape()), 1);

    // --pxb-orgs restricts the poll to the organizations named.
    let mut only = in_process(100, |s| s.orgs = vec!["default".into()]).await;
    populate(&only.fake, 1);
    only.fake.add_org("other");
    assert_eq!(only.poll().await.orgs, 1);
    assert_eq!(only.fake.count("/v1/organization"), 0);
    assert_eq!(only.fake.count("/v1/backup/other"), 0);
}

/// An organization deleted while the sidecar was down: the journal brings its backups back,
/// and the first organization list that lacks it deletes them (no other poll would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_deleted_while_down_is_deleted_at_the_first_poll() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakePxb::start().await;
    populate(&fake, 2);
    fake.put(
        "finance",
        "backup",
        json!({"metadata": {"name": "ledger", "uid": "f-1", "org_id": "finance"},
               "backup_info": {"status": {"status": "PartialSuccess"}}}),
    );
    let settings = PxbSettings {
        url: fake.url.clone(),
        page_size: 100,
        ..PxbSettings::default()
    };
    let run = |dir: &Path| {
        let (inventory, _) =
            Inventory::open(Clock::System, Options::with_backfill(DAY), dir).expect("journal");
        let source = SourceContext {
            inventory: Arc::new(inventory),
            status: Arc::new(SourceStatus::new(&[SourceId::Pxb])),
        };
        let client = PxbClient::new(&settings).expect("client");
        (
            Poller::new(source.clone(), settings.clone()),
            client,
            source,
        )
    };
    let scrape = |source: &SourceContext| {
        let body = exposition::encode(&source.inventory.snapshot(), Format::Text, &[]);
        String::from_utf8(body).expect("utf-8 scrape")
    };

    let (mut poller, mut client, source) = run(dir.path());
    assert!(poller.poll(&mut client).await.complete);
    assert_eq!(live_backups(&scrape(&source)), 3);
    drop((poller, client, source));

    // While the sidecar is down, finance goes, with its backups.
    fake.remove_org("finance");
    let (mut poller, mut client, source) = run(dir.path());
    assert_eq!(
        live_backups(&scrape(&source)),
        3,
        "the journal brings all back"
    );
    let report = poller.poll(&mut client).await;
    assert!(report.complete, "{report:?}");
    let text = scrape(&source);
    let line = tombstone(&text, "f-1").expect("f-1 tombstoned");
    assert!(
        has_label(&line, "previous_status", "PartialSuccess"),
        "{line}"
    );
    assert_eq!(live_backups(&text), 2, "default's backups stay");
    assert_eq!(report.deleted, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_totals_or_paging_are_complete_lists() {
    // PX-Backup before 3.0: clusters, locations and schedules come in one answer, without
    // total_count or complete, whatever the paging asked.
    let mut p = in_process(1, |_| {}).await;
    populate(&p.fake, 3);
    p.fake
        .put(ORG, "cluster", cluster("prod-west", "c-west", "Offline"));
    p.fake.legacy(true);
    let report = p.poll().await;
    assert!(report.complete, "{report:?}");
    assert_eq!(report.listed, [3, 1, 1, 2, 1]);
    // The repeated answer ended the enumeration.
    assert_eq!(p.fake.count("/v1/cluster/default"), 2);
    p.fake.delete(ORG, "cluster", "c-west");
    p.fake.delete(ORG, "backup", "b-2");
    let report = p.poll().await;
    assert_eq!(report.deleted, 2, "{report:?}");
    assert_eq!(
        value(&p.scrape(), "pxbackup_cluster_status", &[("uid", "c-west")]),
        None
    );
    // An empty one-piece answer (no schedules left) is an empty list, not a cut-short one.
    p.fake.delete(ORG, "backupschedule", "sched-1");
    let report = p.poll().await;
    assert!(report.complete && p.up(), "{report:?}");
    assert_eq!(report.listed[Kind::Schedule.index()], 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    let (fake, ca_pem) = FakePxb::start_tls().await;
    populate(&fake, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let source = SourceContext {
        inventory: Arc::new(Inventory::in_memory(Clock::System, DAY)),
        status: Arc::new(SourceStatus::new(&[SourceId::Pxb])),
    };
    // Without the CA the certificate is not trusted: the poll fails, nothing is listed.
    let plain = PxbSettings {
        url: fake.url.clone(),
        ..PxbSettings::default()
    };
    let mut client = PxbClient::new(&plain).expect("client");
    let report = Poller::new(source.clone(), plain.clone())
        .poll(&mut client)
        .await;
    assert!(!report.complete, "{report:?}");
    assert!(report.failures[0].contains(&fake.url), "{report:?}");
    // With it, through the real binary's configuration path.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &ca_pem).expect("CA file");
    let mut sidecar = Sidecar::spawn(
        &[
            "--source",
            "pxb",
            "--pxb-url",
            fake.url.as_str(),
            "--pxb-ca-file",
            ca.to_str().expect("utf-8 path"),
            "--pxb-poll-interval",
            "200ms",
        ],
        dir.path(),
    );
    sidecar.ready().await;
    let text = sidecar.scrape().await;
    assert_eq!(live_backups(&text), 2, "{text}");
    assert_eq!(source_up(&text), Some(1.0));
}

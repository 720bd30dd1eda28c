//! Pure1 telemetry end to end: the real binary, a real HTTPS peer with mTLS (tests/pure1_peer),
//! the configuration from a polled file or from a (fake) Kubernetes API server.

mod common;
mod fake_kube;
mod pure1_peer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{samples, Sidecar};
use pure1_peer::{Peer, Recorded};

const APPLIANCE: &str = "org-7f3e-telemetry-test";

/// Polls `check` every 100 ms until it returns Some, or panics after `secs` with `what`.
async fn until<T>(what: &str, secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Value of one sample (exact line prefix up to the value).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn uploads(text: &str, kind: &str, result: &str) -> f64 {
    value(
        text,
        &format!("pxbackup_telemetry_uploads_total{{kind=\"{kind}\",result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

struct Fixture {
    tmp: tempfile::TempDir,
    peer: Peer,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_peer(Peer::start().await)
    }
    fn with_peer(peer: Peer) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("ca.pem"), &peer.ca_pem).unwrap();
        std::fs::create_dir_all(tmp.path().join("state")).unwrap();
        Fixture { tmp, peer }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    /// Written atomically (temp + rename), like kubelet, so a poll never sees half a file.
    fn configure(&self, pairs: &[(&str, &str)]) {
        let text: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}: \"{v}\"\n"))
            .collect();
        let tmp = self.path("telemetry.conf.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path("telemetry.conf")).unwrap();
    }
    fn spawn(&self, extra: &[&str]) -> Sidecar {
        let (cfg, state, ca) = (
            self.path("telemetry.conf"),
            self.path("state"),
            self.path("ca.pem"),
        );
        let mut args = vec![
            "--source",
            "demo",
            "--state-dir",
            state.to_str().unwrap(),
            "--telemetry-config-file",
            cfg.to_str().unwrap(),
            "--telemetry-endpoint",
            &self.peer.url,
            "--telemetry-ca-file",
            ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Sidecar::spawn(&args, self.tmp.path())
    }
}

impl Fixture {
    /// The sidecar with its configuration from the fake API server's ConfigMap (`sources`
    /// and any other flags first).
    fn spawn_api(&self, kube: &fake_kube::FakeKube, extra: &[&str]) -> Sidecar {
        let (kc, state, ca) = (
            self.path("kubeconfig"),
            self.path("state"),
            self.path("ca.pem"),
        );
        kube.kubeconfig(&kc);
        let mut args = extra.to_vec();
        args.extend_from_slice(&[
            "--state-dir",
            state.to_str().unwrap(),
            "--telemetry-configmap",
            "pxb/px-backup-telemetry-config",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--telemetry-endpoint",
            &self.peer.url,
            "--telemetry-ca-file",
            ca.to_str().unwrap(),
        ]);
        Sidecar::spawn(&args, self.tmp.path())
    }
}

fn enabled(intervals: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("enabled", "true"),
        ("appliance-id", APPLIANCE),
        ("health-interval", intervals),
        ("logs-interval", intervals),
        ("clusters-interval", intervals),
    ]
}

fn all_bodies(reqs: &[Recorded]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in reqs {
        out.extend_from_slice(&r.raw);
        out.extend_from_slice(&r.body);
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Lines of every accepted logs bundle, for one file name.
fn log_lines(peer: &Peer, file_suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in peer.accepted("logs") {
        for f in r.json()["files"].as_array().cloned().unwrap_or_default() {
            if f["path"].as_str().unwrap_or("").ends_with(file_suffix) {
                for l in f["lines"].as_array().cloned().unwrap_or_default() {
                    out.push(l.as_str().unwrap_or("").to_owned());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn disabled_by_default_nothing_reaches_the_peer() {
    let fx = Fixture::new().await;
    let mut s = fx.spawn(&[]); // no config file at all
    s.ready().await;
    let text = s.scrape().await;
    assert_eq!(value(&text, "pxbackup_telemetry_enabled"), Some(0.0));
    assert_eq!(value(&text, "pxbackup_telemetry_config_valid"), Some(1.0));
    fx.configure(&[
        ("enabled", "false"),
        ("appliance-id", APPLIANCE),
        ("health-interval", "1s"),
    ]);
    // Give the 1 s poll several chances to (wrongly) act on the file.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        assert!(fx.peer.requests().is_empty(), "{:?}", fx.peer.paths());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = s.scrape().await;
    assert_eq!(value(&text, "pxbackup_telemetry_enabled"), Some(0.0));
    assert_eq!(value(&text, "pxbackup_telemetry_registered"), Some(0.0));
    assert_eq!(uploads(&text, "health", "success"), 0.0);
}

#[tokio::test]
async fn enable_registers_uploads_all_kinds_then_disable_stops() {
    let fx = Fixture::new().await;
    fx.configure(&[("enabled", "false")]);
    let mut s = fx.spawn(&[]);
    s.ready().await;
    fx.configure(&enabled("1s"));
    let peer = &fx.peer;
    until("one accepted upload of each kind", 30, async || {
        ["health", "logs", "clusters"]
            .iter()
            .all(|k| !peer.accepted(k).is_empty())
            .then_some(())
    })
    .await;
    let paths = peer.paths();
    assert_eq!(
        &paths[..2],
        ["/auth/1.0/ping", "/auth/1.0/register"],
        "{paths:?}"
    );
    for r in peer.requests() {
        assert_eq!(r.header("product-name"), "px-backup");
        assert_eq!(r.header("appliance-id"), APPLIANCE);
        assert!(!r.header("component-sn").is_empty());
        assert_eq!(r.header("product-version"), env!("CARGO_PKG_VERSION"));
        if r.path.starts_with("/telemetry/") {
            assert!(r.client_cert, "upload without the client certificate");
            assert_eq!(r.header("content-encoding"), "gzip");
            assert!(r
                .header("idempotency-key")
                .contains(r.path.rsplit('/').next().unwrap()));
        }
    }

    let text = s.scrape().await;
    let clusters = peer.accepted("clusters").last().unwrap().json();
    let uploaded: BTreeSet<String> = clusters["cluster_uids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let in_metrics: BTreeSet<String> = samples(&text, "pxbackup_cluster_status")
        .iter()
        .filter_map(|l| {
            l.split("uid=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert!(!in_metrics.is_empty());
    assert_eq!(uploaded, in_metrics, "cluster UUIDs uploaded vs. exported");
    let health = peer.accepted("health").last().unwrap().json();
    assert!(
        health["inventory"]["objects"]["backup"].as_u64().unwrap() > 0,
        "{health}"
    );
    assert!(!health["inventory"]["backups_by_status"]
        .as_object()
        .unwrap()
        .is_empty());
    assert!(health["metrics"].as_array().unwrap().iter().any(|m| m
        .as_str()
        .unwrap()
        .starts_with("pxbackup_telemetry_enabled 1")));
    assert_eq!(health["sources"][0]["source"], "demo");
    let own = log_lines(peer, "sidecar.log");
    assert!(own.iter().any(|l| l.contains("serving metrics")), "{own:?}");
    write_examples(peer);

    let text = until("uploads counted in /metrics", 10, async || {
        let t = s.scrape().await;
        (uploads(&t, "clusters", "success") >= 1.0).then_some(t)
    })
    .await;
    assert_eq!(value(&text, "pxbackup_telemetry_enabled"), Some(1.0));
    assert_eq!(value(&text, "pxbackup_telemetry_registered"), Some(1.0));
    assert!(
        value(
            &text,
            "pxbackup_telemetry_last_success_timestamp_seconds{kind=\"health\"}"
        )
        .unwrap()
            > 1.7e9
    );

    fx.configure(&[("enabled", "false"), ("appliance-id", APPLIANCE)]);
    until("enabled 0", 10, async || {
        (value(&s.scrape().await, "pxbackup_telemetry_enabled") == Some(0.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // an upload in flight may finish
    let after_disable = peer.requests().len();
    tokio::time::sleep(Duration::from_secs(4)).await; // four upload intervals
    assert_eq!(
        peer.requests().len(),
        after_disable,
        "uploads after disable: {:?}",
        &peer.paths()[after_disable..]
    );

    // Re-enabling reuses the registration: uploads, no second register call.
    let before = peer.accepted("health").len();
    fx.configure(&enabled("1s"));
    until("uploads again after re-enable", 20, async || {
        (peer.accepted("health").len() > before).then_some(())
    })
    .await;
    assert_eq!(peer.count("/auth/1.0/register"), 1);
}

/// Pretty JSON of one bundle of each kind, for docs/telemetry.md.
fn write_examples(peer: &Peer) {
    for kind in ["health", "logs", "clusters"] {
        write_example(kind, &peer.accepted(kind).last().cloned().unwrap());
    }
}

fn write_example(name: &str, r: &Recorded) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("telemetry-examples");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = format!("POST {}\n", r.path);
    for (k, v) in &r.headers {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push('\n');
    text.push_str(&serde_json::to_string_pretty(&r.json()).unwrap());
    std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
}

#[tokio::test]
async fn a_bad_value_keeps_the_last_good_config() {
    let fx = Fixture::new().await;
    fx.configure(&enabled("1s"));
    let mut s = fx.spawn(&[]);
    s.ready().await;
    let peer = &fx.peer;
    until("two health uploads", 30, async || {
        (peer.accepted("health").len() >= 2).then_some(())
    })
    .await;
    let mut bad = enabled("1s");
    bad[2] = ("health-interval", "soon");
    fx.configure(&bad);
    until("config_valid 0", 10, async || {
        (value(&s.scrape().await, "pxbackup_telemetry_config_valid") == Some(0.0)).then_some(())
    })
    .await;
    // Had "soon" fallen back to the 10 m default, no further health bundle would come.
    let n = peer.accepted("health").len();
    until("health uploads at the old 1 s interval", 15, async || {
        (peer.accepted("health").len() >= n + 3).then_some(())
    })
    .await;
    assert_eq!(
        value(&s.scrape().await, "pxbackup_telemetry_enabled"),
        Some(1.0)
    );
    let log = s.log();
    assert!(
        log.contains("health-interval") && log.contains("soon"),
        "the error names key and value:\n{log}"
    );
    // Fixed again: valid again; an unknown key is only a warning.
    let mut fixed = enabled("1s");
    fixed.push(("colour", "blue"));
    fx.configure(&fixed);
    until("config_valid 1", 10, async || {
        (value(&s.scrape().await, "pxbackup_telemetry_config_valid") == Some(1.0)).then_some(())
    })
    .await;
    until("the unknown key warned about", 10, async || {
        s.log()
            .contains("unknown telemetry configuration key ignored key=colour")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_outage_is_ridden_out_and_every_bundle_arrives_once() {
    let fx = Fixture::new().await;
    let peer = &fx.peer;
    peer.fail_uploads(Some(503));
    fx.configure(&enabled("1s"));
    let mut s = fx.spawn(&[]);
    s.ready().await;
    until("failures counted and bundles spooled", 30, async || {
        let t = s.scrape().await;
        let failures: f64 = ["health", "logs", "clusters"]
            .iter()
            .map(|k| uploads(&t, k, "failure"))
            .sum();
        (failures >= 3.0 && value(&t, "pxbackup_telemetry_spool_bytes").unwrap_or(0.0) > 0.0)
            .then_some(())
    })
    .await;
    // Backoff: far fewer attempts than a tight retry loop would make.
    let failed = peer.requests().iter().filter(|r| r.status == 503).count();
    assert!(failed < 40, "{failed} attempts during the outage");
    // Long intervals from now on, so that the set of bundles is finite: the spooled ones
    // plus the round the restarted upload loop makes at once.
    fx.configure(&enabled("1h"));
    peer.fail_uploads(None);
    until("the spool drained", 60, async || {
        (value(&s.scrape().await, "pxbackup_telemetry_spool_bytes") == Some(0.0)).then_some(())
    })
    .await;
    let reqs = peer.requests();
    let attempted: BTreeSet<&str> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/telemetry/"))
        .map(|r| r.header("idempotency-key"))
        .collect();
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reqs
        .iter()
        .filter(|r| r.path.starts_with("/telemetry/") && r.status == 200)
    {
        *accepted.entry(r.header("idempotency-key")).or_default() += 1;
    }
    assert!(
        accepted.values().all(|n| *n == 1),
        "a bundle accepted twice: {accepted:?}"
    );
    let accepted_keys: BTreeSet<&str> = accepted.keys().copied().collect();
    assert_eq!(
        attempted, accepted_keys,
        "every bundle tried during the outage arrived"
    );
    // Same key across retries, and each retried body identical.
    let retried = reqs
        .iter()
        .filter(|r| r.status == 503)
        .map(|r| r.header("idempotency-key"))
        .collect::<BTreeSet<_>>();
    assert!(!retried.is_empty());
    for key in retried {
        let bodies: BTreeSet<&Vec<u8>> = reqs
            .iter()
            .filter(|r| r.header("idempotency-key") == key)
            .map(|r| &r.body)
            .collect();
        assert_eq!(bodies.len(), 1, "bundle {key} changed between retries");
    }
}

#[tokio::test]
async fn a_full_spool_drops_and_counts() {
    let fx = Fixture::new().await;
    fx.peer.fail_uploads(Some(503));
    let mut cfg = enabled("1s");
    cfg.push(("spool-max-bytes", "2048"));
    fx.configure(&cfg);
    let mut s = fx.spawn(&[]);
    s.ready().await;
    let t = until("a dropped bundle counted", 40, async || {
        let t = s.scrape().await;
        let dropped: f64 = ["health", "logs", "clusters"]
            .iter()
            .map(|k| uploads(&t, k, "dropped"))
            .sum();
        (dropped >= 1.0).then_some(t)
    })
    .await;
    assert!(value(&t, "pxbackup_telemetry_spool_bytes").unwrap() <= 2048.0);
    assert!(s.log().contains("dropped"), "the drop is logged");
}

#[tokio::test]
async fn secrets_in_log_lines_never_reach_the_peer() {
    let fx = Fixture::new().await;
    let log = fx.path("px-backup.log");
    let secrets = [
        "abc.def.ghi",
        "hunter2",
        "AKIAIOSFODNN7EXAMPLE",
        "MHcCAQEEIBkgk3Zfg0Yp",
        "wJalrXUtnFEMIK7MDENGbPxRfiCY",
    ];
    std::fs::write(
        &log,
        "2026-11-23T01:00:00Z backup nightly-42 finished; Authorization: Bearer abc.def.ghi\n\
         2026-11-23T01:00:01Z s3 login password=hunter2 access AKIAIOSFODNN7EXAMPLE secret_key=wJalrXUtnFEMIK7MDENGbPxRfiCY\n\
         2026-11-23T01:00:02Z loaded key\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkgk3Zfg0Yp\n-----END EC PRIVATE KEY-----\n\
         2026-11-23T01:00:03Z restore shop-restore-9 done\n",
    )
    .unwrap();
    fx.configure(&enabled("1s"));
    let mut s = fx.spawn(&["--telemetry-log-path", log.to_str().unwrap()]);
    s.ready().await;
    let peer = &fx.peer;
    let lines = until("the planted lines uploaded", 30, async || {
        let l = log_lines(peer, "px-backup.log");
        (l.len() >= 4).then_some(l)
    })
    .await;
    let bytes = all_bodies(&peer.requests());
    for secret in secrets {
        assert!(
            !contains(&bytes, secret),
            "{secret} reached the peer: {lines:?}"
        );
    }
    assert!(
        lines[0].starts_with("2026-11-23T01:00:00Z backup nightly-42 finished; Authorization: "),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("s3 login password=")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("restore shop-restore-9 done")),
        "{lines:?}"
    );
    let planted = peer
        .accepted("logs")
        .into_iter()
        .find(|r| contains(&r.body, "px-backup.log"))
        .unwrap();
    write_example("logs-redacted", &planted);
    drop(s);
}

#[tokio::test]
async fn a_restart_reuses_the_registration_and_the_log_cursor() {
    let fx = Fixture::new().await;
    let log = fx.path("app.log");
    std::fs::write(&log, "line-a1\nline-a2\n").unwrap();
    fx.configure(&enabled("1s"));
    let peer = &fx.peer;
    {
        let mut s = fx.spawn(&["--telemetry-log-path", log.to_str().unwrap()]);
        s.ready().await;
        until("first lines uploaded", 30, async || {
            (log_lines(peer, "app.log").len() >= 2).then_some(())
        })
        .await;
        assert!(s.terminate().success());
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, b"line-b1\n").unwrap();
    let mut s = fx.spawn(&["--telemetry-log-path", log.to_str().unwrap()]);
    s.ready().await;
    until("the new line uploaded", 30, async || {
        log_lines(peer, "app.log")
            .contains(&"line-b1".to_owned())
            .then_some(())
    })
    .await;
    // A few more rounds to give a duplicate the chance to show.
    let n = peer.accepted("health").len();
    until("two more rounds", 20, async || {
        (peer.accepted("health").len() >= n + 2).then_some(())
    })
    .await;
    assert_eq!(
        log_lines(peer, "app.log"),
        vec!["line-a1", "line-a2", "line-b1"]
    );
    assert_eq!(
        peer.count("/auth/1.0/register"),
        1,
        "registered again after a restart"
    );
    let own = log_lines(peer, "sidecar.log");
    let unique: BTreeSet<&String> = own.iter().collect();
    assert_eq!(unique.len(), own.len(), "own log lines sent twice");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(fx.path("state/telemetry/client.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn the_configmap_over_the_kube_api_turns_telemetry_on_and_the_cert_lands_in_the_secret() {
    use fake_kube::{FakeKube, KUBE_SYSTEM_UID};
    let fx = Fixture::new().await;
    let data = BTreeMap::from([("enabled".to_owned(), "false".to_owned())]);
    let kube = FakeKube::start("pxb", "px-backup-telemetry-config", Some(data)).await;
    let state = fx.path("state");
    let peer = &fx.peer;
    {
        let mut s = fx.spawn_api(&kube, &["--source", "demo"]);
        s.ready().await;
        until("the ConfigMap watch", 20, async || {
            (kube.state.watches.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
        })
        .await;
        assert_eq!(
            value(&s.scrape().await, "pxbackup_telemetry_enabled"),
            Some(0.0)
        );
        assert!(peer.requests().is_empty());

        kube.patch_configmap(&[
            ("enabled", "true"),
            ("health-interval", "1s"),
            ("logs-interval", "1s"),
            ("clusters-interval", "1s"),
        ]);
        until("uploads of each kind", 30, async || {
            ["health", "logs", "clusters"]
                .iter()
                .all(|k| !peer.accepted(k).is_empty())
                .then_some(())
        })
        .await;
        // appliance-id defaults to the kube-system namespace UID.
        assert!(peer
            .requests()
            .iter()
            .all(|r| r.header("appliance-id") == KUBE_SYSTEM_UID));
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(kube.secret("pure-telemetry-certs").expect("the Secret"))
                .unwrap();
        let data = secret.data.unwrap();
        let cert = String::from_utf8(data["cert"].0.clone()).unwrap();
        let key = String::from_utf8(data["private_key"].0.clone()).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.contains("PRIVATE KEY-----"));
        // In kube mode the key lives in the Secret only, never in the state dir or a log.
        assert!(!state.join("telemetry/client.key").exists());
        let key_body = key.lines().nth(1).unwrap();
        assert!(!s.log().contains(key_body));
        assert!(!contains(&all_bodies(&peer.requests()), key_body));

        kube.patch_configmap(&[("enabled", "false")]);
        until("enabled 0 after the patch", 10, async || {
            (value(&s.scrape().await, "pxbackup_telemetry_enabled") == Some(0.0)).then_some(())
        })
        .await;
        assert!(s.terminate().success());
    }
    // A new pod (same Secret, empty state dir) reuses the registration.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    kube.patch_configmap(&[("enabled", "true")]);
    let mut s = fx.spawn_api(&kube, &["--source", "demo"]);
    s.ready().await;
    let n = peer.accepted("health").len();
    until("uploads from the new pod", 30, async || {
        (peer.accepted("health").len() > n).then_some(())
    })
    .await;
    assert_eq!(
        peer.count("/auth/1.0/register"),
        1,
        "registered again although the Secret holds a certificate"
    );
    // Deleting the ConfigMap turns telemetry off.
    kube.delete_configmap();
    until("enabled 0 after the delete", 10, async || {
        (value(&s.scrape().await, "pxbackup_telemetry_enabled") == Some(0.0)).then_some(())
    })
    .await;
    let reqs = kube.state.requests.lock().unwrap().clone();
    let applies = reqs
        .iter()
        .filter(|r| r.starts_with("PATCH /api/v1/namespaces/pxb/secrets/pure-telemetry-certs"))
        .count();
    assert_eq!(applies, 1, "{reqs:?}");
}

#[tokio::test]
async fn a_dir_endpoint_writes_bundles_without_registration() {
    let fx = Fixture::new().await;
    let out = fx.path("air-gap");
    let endpoint = format!("dir://{}", out.display());
    let mut cfg = enabled("1s");
    cfg.push(("endpoint", &endpoint));
    fx.configure(&cfg);
    let mut s = fx.spawn(&[]);
    s.ready().await;
    let kinds = until("a file of each kind", 30, async || {
        let names: Vec<String> = std::fs::read_dir(&out)
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json.gz"))
            .collect();
        let kinds: BTreeSet<String> = names
            .iter()
            .filter_map(|n| n.split('-').nth(1).map(str::to_owned))
            .collect();
        (kinds.len() == 3).then_some(names)
    })
    .await;
    for name in kinds {
        let gz = std::fs::read(out.join(&name)).unwrap();
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            format!("{}.json.gz", v["bundle_id"].as_str().unwrap()),
            name
        );
        assert_eq!(v["appliance_id"], APPLIANCE);
    }
    assert!(fx.peer.requests().is_empty(), "{:?}", fx.peer.paths());
    let text = until("the upload counted", 10, async || {
        let t = s.scrape().await;
        (uploads(&t, "clusters", "success") >= 1.0).then_some(t)
    })
    .await;
    assert_eq!(value(&text, "pxbackup_telemetry_registered"), Some(0.0));
}

#[tokio::test]
async fn the_certificate_is_renewed_30_days_before_it_expires() {
    // Valid for 30 days and 3 seconds: each certificate is due for renewal 3 s after issue.
    let lifetime = Duration::from_secs(30 * 24 * 3600 + 3);
    let fx = Fixture::with_peer(Peer::start_with(Some(lifetime)).await);
    fx.configure(&enabled("1s"));
    let mut s = fx.spawn(&[]);
    s.ready().await;
    let peer = &fx.peer;
    let crt = fx.path("state/telemetry/client.crt");
    let first = until("the first certificate stored", 20, async || {
        std::fs::read_to_string(&crt).ok()
    })
    .await;
    let started = Instant::now();
    until("a renewed certificate stored", 30, async || {
        std::fs::read_to_string(&crt)
            .ok()
            .filter(|c| *c != first)
            .map(|_| ())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "renewed before it was due"
    );
    let renewed_at = peer.requests().len();
    until("uploads after the renewal", 20, async || {
        peer.requests()[renewed_at..]
            .iter()
            .any(|r| r.path == "/telemetry/1.0/health" && r.status == 200)
            .then_some(())
    })
    .await;
    // Paced by the certificate's life, not a tight loop; and uploads never failed meanwhile.
    let secs = started.elapsed().as_secs() + 3;
    assert!(
        peer.count("/auth/1.0/register") as u64 <= secs / 3 + 2,
        "{:?}",
        peer.paths()
    );
    assert!(
        peer.requests().iter().all(|r| r.status == 200),
        "a request failed around the renewal"
    );
}

#[tokio::test]
async fn a_refused_certificate_leads_to_a_new_registration() {
    let fx = Fixture::new().await;
    let peer = &fx.peer;
    peer.fail_uploads(Some(401)); // as if Pure1 had revoked every certificate it issued
    fx.configure(&enabled("1s"));
    let mut s = fx.spawn(&[]);
    s.ready().await;
    until("a second registration", 40, async || {
        (peer.count("/auth/1.0/register") >= 2).then_some(())
    })
    .await;
    let refused = peer.requests().iter().filter(|r| r.status == 401).count();
    assert!(refused >= 3, "registered again after {refused} refusals");
    peer.fail_uploads(None);
    until("uploads accepted again", 40, async || {
        (!peer.accepted("clusters").is_empty()).then_some(())
    })
    .await;
    until("registered 1", 10, async || {
        (value(&s.scrape().await, "pxbackup_telemetry_registered") == Some(1.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_http_proxy_key_routes_every_request_through_the_proxy() {
    let fx = Fixture::new().await;
    let proxy = pure1_peer::ConnectProxy::start().await;
    let mut cfg = enabled("1s");
    cfg.push(("http-proxy", &proxy.url));
    fx.configure(&cfg);
    let mut s = fx.spawn(&[]);
    s.ready().await;
    let peer = &fx.peer;
    until("uploads through the proxy", 30, async || {
        (!peer.accepted("clusters").is_empty()).then_some(())
    })
    .await;
    let peer_addr = peer.url.trim_start_matches("https://").to_owned();
    let targets = proxy.targets.lock().unwrap().clone();
    assert!(
        !targets.is_empty() && targets.iter().all(|t| *t == peer_addr),
        "{targets:?}"
    );
    drop(s);
}

/// Bundles removed from the spool unsent for `reason`, all kinds.
fn dropped(text: &str, reason: &str) -> f64 {
    ["health", "logs", "clusters"]
        .iter()
        .filter_map(|k| {
            value(
                text,
                &format!(
                    "pxbackup_telemetry_bundles_dropped_total{{kind=\"{k}\",reason=\"{reason}\"}}"
                ),
            )
        })
        .sum()
}

fn telemetry_requests(peer: &Peer) -> usize {
    peer.paths()
        .iter()
        .filter(|p| p.starts_with("/telemetry/"))
        .count()
}

fn spool_files(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("telemetry/spool"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json.gz"))
                .collect()
        })
        .unwrap_or_default()
}

/// Telemetry is on and bundles flow; then the peer fails so that bundles wait in the spool;
/// `switch_off` runs; the peer works again. Checks that telemetry is off at once, that the
/// spool was emptied (counted under `reason`), and that nothing but the one bundle that may
/// have been on the wire reaches the peer afterwards.
async fn switch_off_with_a_full_spool(
    s: &Sidecar,
    peer: &Peer,
    state: &Path,
    reason: &str,
    switch_off: impl FnOnce(),
) {
    let before = peer.accepted("health").len();
    until("uploads flowing", 30, async || {
        (peer.accepted("health").len() > before).then_some(())
    })
    .await;
    peer.fail_uploads(Some(503));
    until("bundles waiting in the spool", 30, async || {
        let t = s.scrape().await;
        (value(&t, "pxbackup_telemetry_spool_bytes").unwrap_or(0.0) > 0.0
            && spool_files(state).len() >= 2)
            .then_some(())
    })
    .await;
    let dropped_before = dropped(&s.scrape().await, reason);
    switch_off();
    until("enabled 0", 10, async || {
        (value(&s.scrape().await, "pxbackup_telemetry_enabled") == Some(0.0)).then_some(())
    })
    .await;
    let at_switch = telemetry_requests(peer);
    peer.fail_uploads(None);
    let t = until("the spool emptied and counted", 10, async || {
        let t = s.scrape().await;
        (value(&t, "pxbackup_telemetry_spool_bytes") == Some(0.0)
            && dropped(&t, reason) >= dropped_before + 2.0)
            .then_some(t)
    })
    .await;
    assert!(spool_files(state).is_empty(), "{:?}", spool_files(state));
    assert_eq!(value(&t, "pxbackup_telemetry_enabled"), Some(0.0));
    tokio::time::sleep(Duration::from_secs(4)).await; // four upload intervals
    let after = telemetry_requests(peer);
    assert!(
        after <= at_switch + 1,
        "uploads after the switch-off: {:?}",
        &peer.paths()[..]
    );
    assert!(spool_files(state).is_empty());
}

#[tokio::test]
async fn switching_off_wins_over_a_typo_any_case_and_a_deleted_file() {
    let fx = Fixture::new().await;
    fx.configure(&enabled("1s"));
    let mut s = fx.spawn(&[]);
    s.ready().await;
    let (peer, state) = (&fx.peer, fx.path("state"));

    // enabled: "false" together with a typo in another key: off at once.
    switch_off_with_a_full_spool(&s, peer, &state, "disabled", || {
        let mut off = enabled("1s");
        off[0] = ("enabled", "false");
        off[3] = ("logs-interval", "2 minutes please");
        fx.configure(&off);
    })
    .await;
    let t = s.scrape().await;
    assert_eq!(value(&t, "pxbackup_telemetry_config_valid"), Some(0.0));
    assert_eq!(
        uploads(&t, "health", "dropped"),
        0.0,
        "a switch-off is no loss"
    );
    assert!(s.log().contains("2 minutes please"));

    // "False" (any case) is false.
    fx.configure(&enabled("1s"));
    switch_off_with_a_full_spool(&s, peer, &state, "disabled", || {
        let mut off = enabled("1s");
        off[0] = ("enabled", "False");
        fx.configure(&off);
    })
    .await;
    assert_eq!(
        value(&s.scrape().await, "pxbackup_telemetry_config_valid"),
        Some(1.0)
    );

    // The configuration deleted.
    fx.configure(&enabled("1s"));
    switch_off_with_a_full_spool(&s, peer, &state, "disabled", || {
        std::fs::remove_file(fx.path("telemetry.conf")).unwrap();
    })
    .await;
    assert_eq!(peer.count("/auth/1.0/register"), 1);
}

#[tokio::test]
async fn the_pause_key_and_a_deleted_configmap_over_the_api() {
    use fake_kube::{FakeKube, KUBE_SYSTEM_UID, PAUSE_CM};
    let fx = Fixture::new().await;
    let data = BTreeMap::from(
        [
            ("enabled", "true"),
            ("health-interval", "1s"),
            ("logs-interval", "1s"),
            ("clusters-interval", "1s"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let kube = FakeKube::start("pxb", "px-backup-telemetry-config", Some(data)).await;
    // PX-Backup's ConfigMap exists, collection on; an unrelated key besides.
    kube.patch_named(
        PAUSE_CM,
        &[("TELEMETRY_COLLECTION_ENABLED", "true"), ("OTHER", "x")],
    );
    // The first two reads of the cluster identity fail: the default appliance id comes
    // anyway, from the lookup's retries.
    kube.state
        .namespace_failures
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let state = fx.path("state");
    let mut s = fx.spawn_api(&kube, &["--source", "demo"]);
    s.ready().await;
    let peer = &fx.peer;

    switch_off_with_a_full_spool(&s, peer, &state, "paused", || {
        kube.patch_named(PAUSE_CM, &[("TELEMETRY_COLLECTION_ENABLED", "false")]);
    })
    .await;
    let t = s.scrape().await;
    assert_eq!(value(&t, "pxbackup_telemetry_paused"), Some(1.0));
    assert_eq!(value(&t, "pxbackup_telemetry_config_valid"), Some(1.0));
    assert!(peer
        .requests()
        .iter()
        .all(|r| r.header("appliance-id") == KUBE_SYSTEM_UID));
    assert_eq!(kube.namespace_gets(), 3, "two failures, then one answer");

    // Resumed by PX-Backup: uploads again; then the telemetry ConfigMap deleted.
    kube.patch_named(PAUSE_CM, &[("TELEMETRY_COLLECTION_ENABLED", "true")]);
    switch_off_with_a_full_spool(&s, peer, &state, "disabled", || kube.delete_configmap()).await;
    assert_eq!(
        value(&s.scrape().await, "pxbackup_telemetry_paused"),
        Some(0.0)
    );
}

/// With the kube source and telemetry in API mode in one process, one client reads the
/// cluster identity once for both.
#[tokio::test]
async fn one_kube_system_lookup_serves_the_kube_source_and_telemetry() {
    use fake_kube::{FakeKube, KUBE_SYSTEM_UID};
    let fx = Fixture::new().await;
    let data = BTreeMap::from(
        [("enabled", "true"), ("health-interval", "1s")].map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let kube = FakeKube::start("pxb", "px-backup-telemetry-config", Some(data)).await;
    kube.state
        .namespace_failures
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let mut s = fx.spawn_api(&kube, &["--source", "kube", "--cluster-name", "prod-east"]);
    s.ready().await;
    let peer = &fx.peer;
    until("a health upload", 30, async || {
        (!peer.accepted("health").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        peer.accepted("health")[0].header("appliance-id"),
        KUBE_SYSTEM_UID
    );
    let log = s.log();
    assert!(
        log.contains(&format!("cluster_uid={KUBE_SYSTEM_UID}")),
        "the kube source has the same identity:\n{log}"
    );
    assert_eq!(
        kube.namespace_gets(),
        2,
        "one failure, then one answer for both"
    );
}

fn preview(args: &[&str], cwd: &Path) -> std::process::Output {
    std::process::Command::new(common::bin())
        .args(["telemetry", "preview"])
        .args(args)
        .env_remove("KUBECONFIG")
        .current_dir(cwd)
        .output()
        .expect("run the preview")
}

#[tokio::test]
async fn the_preview_prints_the_next_bundles_and_sends_nothing() {
    let fx = Fixture::new().await;
    let log = fx.path("px-backup.log");
    std::fs::write(
        &log,
        "2026-11-23T01:00:00Z backup nightly-42 finished; Authorization: Bearer abc.def.ghi\n\
         2026-11-23T01:00:01Z azure AccountKey=CANARYa1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ0123==;EndpointSuffix=core.windows.net\n",
    )
    .unwrap();
    // Telemetry is off: the preview is for reading before switching it on.
    let mut cfg = enabled("1s");
    cfg[0] = ("enabled", "false");
    fx.configure(&cfg);
    let (state, conf, ca) = (
        fx.path("state"),
        fx.path("telemetry.conf"),
        fx.path("ca.pem"),
    );
    let args = [
        "--source",
        "demo",
        "--state-dir",
        state.to_str().unwrap(),
        "--telemetry-config-file",
        conf.to_str().unwrap(),
        "--telemetry-endpoint",
        &fx.peer.url,
        "--telemetry-ca-file",
        ca.to_str().unwrap(),
        "--telemetry-log-path",
        log.to_str().unwrap(),
    ];
    let out = preview(&args, fx.tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("pretty JSON on stdout");
    assert!(stdout.starts_with("[\n  {\n"), "pretty: {stdout}");
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["health", "logs", "clusters"]);
    let (health, logs, clusters) = (&v[0], &v[1], &v[2]);
    assert_eq!(health["appliance_id"], APPLIANCE);
    assert!(health["inventory"]["objects"]["backup"].as_u64().unwrap() > 0);
    assert!(!clusters["cluster_uids"].as_array().unwrap().is_empty());
    let lines: Vec<&str> = logs["files"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with("Authorization: Bearer [REDACTED]"),
        "{lines:?}"
    );
    for secret in ["abc.def.ghi", "CANARYa1B2"] {
        assert!(!stdout.contains(secret), "{secret} in the preview");
    }
    assert!(stderr.contains("nothing was sent"), "{stderr}");
    assert!(stderr.contains("disabled"), "{stderr}");
    // Nothing sent, nothing registered, nothing of the state written.
    assert!(fx.peer.requests().is_empty(), "{:?}", fx.peer.paths());
    assert!(
        !state.join("telemetry").exists(),
        "the preview wrote into the state dir"
    );

    // A run afterwards sends the same log lines (the preview did not move the cursors).
    fx.configure(&enabled("1s"));
    let mut s = fx.spawn(&["--telemetry-log-path", log.to_str().unwrap()]);
    s.ready().await;
    let peer = &fx.peer;
    let sent = until("the planted lines uploaded", 30, async || {
        let l = log_lines(peer, "px-backup.log");
        (l.len() >= 2).then_some(l)
    })
    .await;
    assert_eq!(sent, lines);

    // Without an appliance id in file mode the preview names what is missing.
    fx.configure(&[("enabled", "true")]);
    let out = preview(&args, fx.tmp.path());
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("appliance-id"));
}

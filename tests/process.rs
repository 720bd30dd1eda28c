//! The real binary, spawned: the demo on its defaults, content negotiation and gzip, SIGTERM,
//! configuration errors (exit 64), kill -9 and restart, a torn journal, push ingest.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{backup_line, client, samples, Sidecar};

fn family_names() -> Vec<String> {
    pxbackup_sidecar::families::catalog()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[tokio::test]
async fn demo_serves_every_family_and_deleted_tombstones_at_once() {
    let logs = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "demo"], logs.path());
    let started = Instant::now();
    sc.ready().await;
    let text = sc.scrape().await;
    // Families with nothing to say until telemetry has uploaded once.
    let empty_until_telemetry = ["pxbackup_telemetry_last_success_timestamp_seconds"];
    for name in family_names() {
        if empty_until_telemetry.contains(&name.as_str()) {
            assert!(
                text.contains(&format!("# TYPE {name} gauge")),
                "{name} header"
            );
            continue;
        }
        assert!(!samples(&text, &name).is_empty(), "no sample of {name}");
    }
    let tombstones: Vec<&str> = samples(&text, "pxbackup_backup_object_info")
        .into_iter()
        .filter(|l| l.contains(r#"status="Deleted",previous_status=""#))
        .collect();
    assert!(!tombstones.is_empty(), "no Deleted tombstone in the demo");
    assert!(tombstones
        .iter()
        .all(|l| !l.contains(r#"previous_status="""#)));
    assert!(started.elapsed() < Duration::from_secs(30));

    // The whole live scrape passes promtool's parser and lint.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scrape.txt");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", path.display()))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn negotiates_format_and_gzip() {
    let logs = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "demo"], logs.path());
    sc.ready().await;
    let url = format!("{}/metrics", sc.metrics_url);

    let r = client().get(&url).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!r.text().await.unwrap().contains("# EOF"));

    let r = client()
        .get(&url)
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));

    let r = client()
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let zipped = r.bytes().await.unwrap();
    let mut body = String::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_string(&mut body)
        .expect("a complete gzip stream");
    assert!(body.contains("pxbackup_backup_status{"));
    assert!(
        zipped.len() * 5 < body.len(),
        "{} vs {}",
        zipped.len(),
        body.len()
    );

    let r = client()
        .get(format!("{}/healthz", sc.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sigterm_exits_zero() {
    let logs = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "demo"], logs.path());
    sc.ready().await;
    let status = sc.terminate();
    assert_eq!(status.code(), Some(0), "{}", sc.log());
    assert!(sc.log().contains("SIGTERM"));
}

fn run_expecting_failure(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(common::bin())
        .arg("run")
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_exit_64_naming_the_value() {
    let (code, err) = run_expecting_failure(&["--backfill-hours", "a-day"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("\"a-day\""), "{err}");

    let (code, err) = run_expecting_failure(&["--sourc", "demo"]);
    assert_eq!(code, Some(64), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let state = file.join("state");
    let (code, err) = run_expecting_failure(&["--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("not-a-dir"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(common::bin())
        .args(["run", "--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}

/// `lines`, owned and sorted.
fn sorted<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = lines.into_iter().map(str::to_owned).collect();
    v.sort();
    v
}

fn deleted_lines(text: &str) -> Vec<String> {
    sorted(samples(text, "pxbackup_backup_deleted_timestamp_seconds"))
}

#[tokio::test]
async fn tombstones_survive_kill_9_and_a_torn_journal_is_reported() {
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let args = ["--source", "ingest", "--state-dir", state_dir];

    let mut sc = Sidecar::spawn(&args, logs.path());
    sc.ready().await;
    let batch: Vec<String> = (0..3)
        .map(|i| backup_line(&format!("uid-{i}"), &format!("nightly-{i}"), "Success"))
        .collect();
    assert_eq!(sc.push(&batch.join("\n")).await.0, 200);
    let two_hours_ago =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(7200));
    let deletes = format!(
        "{}\n{}",
        serde_json::json!({"type": "backup", "op": "delete", "uid": "uid-0", "deleted_at": two_hours_ago.to_string()}),
        r#"{"type":"backup","op":"delete","uid":"uid-1"}"#
    );
    let (status, answer) = sc.push(&deletes).await;
    assert_eq!(status, 200, "{answer}");
    let before = deleted_lines(&sc.scrape().await);
    assert_eq!(before.len(), 2, "{before:?}");
    sc.kill9();

    let mut sc = Sidecar::spawn(&args, logs.path());
    sc.ready().await;
    let after = deleted_lines(&sc.scrape().await);
    assert_eq!(
        after, before,
        "tombstones did not come back with their deletion times"
    );
    let text = sc.scrape().await;
    assert!(
        text.contains(r#"uid="uid-1""#)
            && text.contains(r#"status="Deleted",previous_status="Success""#)
    );
    assert!(text.contains("pxbackup_sidecar_journal_records_skipped_total 0"));

    // uid-2 came back live from the journal. Delete it, then tear that record in half.
    assert!(sc.scrape().await.contains(r#"uid="uid-2""#));
    assert_eq!(
        sc.push(r#"{"type":"backup","op":"delete","uid":"uid-2"}"#)
            .await
            .0,
        200
    );
    sc.kill9();
    let journal = state.path().join("tombstones.journal");
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let mut sc = Sidecar::spawn(&args, logs.path());
    sc.ready().await;
    let text = sc.scrape().await;
    assert!(
        text.contains("pxbackup_sidecar_journal_records_skipped_total 1"),
        "{}",
        sc.log()
    );
    assert!(
        text.contains(r#"uid="uid-1""#),
        "the good records before the tear are kept"
    );
    // The torn record was the deletion: uid-2's last durable state is live.
    let info = samples(&text, "pxbackup_backup_object_info");
    assert!(
        info.iter()
            .any(|l| l.contains(r#"uid="uid-2""#) && l.contains(r#"status="Success""#)),
        "{info:?}"
    );
    assert!(sc.log().contains("torn tail cut off"), "{}", sc.log());
}

/// The backups' series, in order, without the sidecar's own.
fn backup_series(text: &str) -> Vec<String> {
    sorted(
        text.lines()
            .filter(|l| l.starts_with("pxbackup_") && !l.starts_with("pxbackup_sidecar_")),
    )
}

#[tokio::test]
async fn a_graceful_restart_sends_the_series_cache_instead_of_rendering_again() {
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let args = [
        "--source",
        "ingest",
        "--state-dir",
        state.path().to_str().unwrap(),
    ];
    let mut sc = Sidecar::spawn(&args, logs.path());
    sc.ready().await;
    // 200 backups: three groups of 64 and a short one; every fourth deleted.
    let batch: Vec<String> = (0..200)
        .map(|i| backup_line(&format!("uid-{i:03}"), &format!("nightly-{i}"), "Success"))
        .collect();
    assert_eq!(sc.push(&batch.join("\n")).await.0, 200);
    let deletes: Vec<String> = (0..200)
        .step_by(4)
        .map(|i| format!(r#"{{"type":"backup","op":"delete","uid":"uid-{i:03}"}}"#))
        .collect();
    assert_eq!(sc.push(&deletes.join("\n")).await.0, 200);
    let before = backup_series(&sc.scrape_gzip().await);
    assert!(
        backup_series(&sc.scrape().await) == before,
        "plain text (written from the backups) = the gzip body's text (the stored segments)"
    );
    let tombstones = before
        .iter()
        .filter(|l| l.starts_with("pxbackup_backup_deleted_timestamp_seconds"))
        .count();
    assert_eq!(tombstones, 50);
    let status = sc.terminate();
    assert!(status.success(), "{status}");
    assert!(state.path().join("series.cache").exists(), "{}", sc.log());

    let mut sc = Sidecar::spawn(&args, logs.path());
    sc.ready().await;
    let after = backup_series(&sc.scrape_gzip().await);
    assert!(after == before, "the series after the restart differ");
    assert!(backup_series(&sc.scrape().await) == before);
    let log = sc.log();
    assert!(
        log.lines()
            .any(|l| l.contains("series cache loaded") && l.contains("groups=4 of=4")),
        "{log}"
    );
}

#[tokio::test]
async fn ingest_batches_are_all_or_nothing() {
    let logs = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "ingest"], logs.path());
    sc.ready().await;
    let good = backup_line("a", "nightly-a", "Success");
    let bad = backup_line("b", "nightly-b", "Sucess");
    let (status, answer) = sc.push(&format!("{good}\n{bad}\n")).await;
    assert_eq!(status, 400);
    assert_eq!(answer["line"], 2);
    assert!(
        answer["error"].as_str().unwrap().contains("\"Sucess\""),
        "{answer}"
    );
    let text = sc.scrape().await;
    assert!(
        samples(&text, "pxbackup_backup_status").is_empty(),
        "part of a bad batch was applied"
    );
    assert!(text.contains(r#"pxbackup_sidecar_ingest_batches_total{result="rejected"} 1"#));

    let (status, answer) = sc.push(&good).await;
    assert_eq!((status, answer["applied"].as_u64()), (200, Some(1)));
    assert_eq!(
        samples(&sc.scrape().await, "pxbackup_backup_status").len(),
        1
    );
}

#[tokio::test]
async fn ingest_token_is_enforced() {
    let logs = tempfile::tempdir().unwrap();
    let token = logs.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let mut sc = Sidecar::spawn(
        &[
            "--source",
            "ingest",
            "--ingest-token-file",
            token.to_str().unwrap(),
        ],
        logs.path(),
    );
    sc.ready().await;
    let url = format!("{}/v1/events", sc.ingest_url);
    let line = backup_line("a", "n", "Success");
    let r = client().post(&url).body(line.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth("wrong")
        .body(line.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth("s3cret-token")
        .body(line)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !sc.log().contains("s3cret-token"),
        "the token reached a log line"
    );

    // A client that announces 10 MB and sends none of it is answered 401 at once: the token
    // is checked before the body is read.
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer wrong\r\n\
              Content-Length: 10000000\r\n\r\n",
        )
        .unwrap();
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(answer, "HTTP/1.1 401");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn ingest_connections_beyond_the_cap_are_closed_at_once() {
    let cap = pxbackup_sidecar::sources::ingest::Limits::default().unauthenticated_connections;
    let logs = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "ingest"], logs.path());
    sc.ready().await;
    let addr = sc.ingest_url.trim_start_matches("http://").to_owned();
    // `cap` idle connections (no request sent, so no token presented) take every place of a
    // connection not yet authenticated; the next ones are closed by the sidecar at once, well
    // before the 10 s an idle connection is otherwise given.
    let idle = tokio::task::spawn_blocking(move || {
        use std::io::ErrorKind;
        let quiet = |conn: &mut std::net::TcpStream| {
            conn.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            // Neither a byte nor the end: still open, waiting for a request.
            conn.read(&mut [0u8; 1])
                .is_err_and(|e| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
        };
        let idle: Vec<std::net::TcpStream> = (0..cap)
            .map(|_| std::net::TcpStream::connect(&addr).unwrap())
            .collect();
        for _ in 0..3 {
            let mut extra = std::net::TcpStream::connect(&addr).unwrap();
            extra
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let started = Instant::now();
            let closed = match extra.read(&mut [0u8; 1]) {
                Ok(0) => true,
                Err(e) => e.kind() == ErrorKind::ConnectionReset,
                Ok(_) => false,
            };
            assert!(
                closed && started.elapsed() < Duration::from_secs(2),
                "a connection beyond the cap of {cap} was kept open"
            );
        }
        let mut first = idle.into_iter();
        let mut kept = first.next().unwrap();
        assert!(
            quiet(&mut kept),
            "an idle connection within the cap was closed"
        );
        (kept, first.collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let url = format!("{}/v1/events", sc.ingest_url);
    let line = backup_line("a", "nightly-a", "Success");
    assert!(
        client().post(&url).body(line.clone()).send().await.is_err(),
        "a request got through a full listener"
    );
    // Once one of them closes, a producer gets through (the sidecar notices the close
    // asynchronously, hence the short wait).
    let (kept, others) = idle;
    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client().post(&url).body(line.clone()).send().await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(others);
    assert!(
        sc.log().contains("every connection place is taken"),
        "the cap was not said in the log:\n{}",
        sc.log()
    );
}

/// A tmpfs of a few megabytes on a fresh directory, unmounted when dropped: a disk that can
/// be filled up. `Err` (why) where this process may not mount (not root, no CAP_SYS_ADMIN).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

/// This process's effective uid, from `/proc/self/status` (`Uid: real effective ...`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_batch_the_journal_cannot_take_is_refused_and_a_retry_makes_it_durable() {
    let disk = match SmallDisk::mount("2m") {
        Ok(disk) => disk,
        // CI runs as root: there a mount that fails is a broken test environment, and a
        // skip would pass without the full-disk case ever having run.
        Err(reason) if effective_uid() == Some(0) => {
            panic!("running as root, yet no tmpfs could be mounted ({reason}); the full-disk case must run here (it needs CAP_SYS_ADMIN)")
        }
        Err(reason) => {
            let uid = effective_uid().map_or_else(|| "unknown".to_owned(), |u| u.to_string());
            eprintln!(
                "SKIPPED: not root (uid {uid}), so no tmpfs to fill ({reason}); the full-disk case is not run"
            );
            return;
        }
    };
    let logs = tempfile::tempdir().unwrap();
    let state = disk.dir.path().join("state");
    let args = ["--source", "ingest", "--state-dir", state.to_str().unwrap()];
    let mut sc = Sidecar::spawn(&args, logs.path());
    sc.ready().await;
    let n = 200;
    let upserts: Vec<String> = (0..n)
        .map(|i| backup_line(&format!("uid-{i}"), &format!("nightly-{i}"), "Success"))
        .collect();
    assert_eq!(sc.push(&upserts.join("\n")).await.0, 200);

    let filler = disk.fill();
    let deletes: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"type":"backup","op":"delete","uid":"uid-{i}"}}"#))
        .collect();
    let deletes = deletes.join("\n");
    for _ in 0..2 {
        let r = client()
            .post(format!("{}/v1/events", sc.ingest_url))
            .body(deletes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "not durable: the producer must retry");
        assert!(r.headers().contains_key("retry-after"));
        let answer: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let reason = answer["error"].as_str().unwrap();
        assert!(
            reason.contains("journal") && reason.contains("space"),
            "{reason}"
        );
    }
    let text = sc.scrape().await;
    assert!(text.contains(r#"pxbackup_sidecar_ingest_batches_total{result="not_durable"} 2"#));

    // Space is back: the producer's retry is applied again (nothing changes: every delete is
    // already applied) and makes the whole state durable.
    std::fs::remove_file(filler).unwrap();
    let (status, answer) = sc.push(&deletes).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ignored"].as_u64(), Some(n), "{answer}");
    let before = deleted_lines(&sc.scrape().await);
    assert_eq!(before.len(), n as usize);

    sc.kill9();
    let mut sc = Sidecar::spawn(&args, logs.path());
    sc.ready().await;
    assert_eq!(
        deleted_lines(&sc.scrape().await),
        before,
        "every acknowledged delete survived kill -9"
    );
    sc.kill9();
}

/// What the sidecar runs with is visible: the backfill window and its mode as a gauge, and
/// in the start-up line (text and JSON) with the sources.
#[tokio::test]
async fn the_backfill_window_and_mode_in_force_are_exported_and_logged() {
    let logs = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, u64, &str); 4] = [
        (&[], "classic", 86_400, "1day"),
        (&["--federated"], "federated", 3_600, "1h"),
        (&["--backfill-hours", "5"], "classic", 18_000, "5h"),
        (
            &["--federated", "--backfill-hours", "5"],
            "federated",
            18_000,
            "5h",
        ),
    ];
    // All at once: each waits for readiness on its own ports.
    let mut running = Vec::new();
    for (extra, mode, seconds, window) in cases {
        for format in ["text", "json"] {
            let mut args = vec!["--source", "demo,ingest", "--log-format", format];
            args.extend_from_slice(extra);
            let sc = Sidecar::spawn(&args, logs.path());
            running.push((sc, format, extra, mode, seconds, window));
        }
    }
    for (mut sc, format, extra, mode, seconds, window) in running {
        sc.ready().await;
        let text = sc.scrape().await;
        let gauge = samples(&text, "pxbackup_sidecar_backfill_window_seconds");
        assert_eq!(
            gauge,
            [format!(
                r#"pxbackup_sidecar_backfill_window_seconds{{mode="{mode}"}} {seconds}"#
            )],
            "{extra:?}"
        );
        let log = sc.log();
        let line = log
            .lines()
            .find(|l| l.contains("serving metrics"))
            .unwrap_or_else(|| panic!("no start-up line ({extra:?}, {format}):\n{log}"));
        if format == "text" {
            for field in [
                "sources=[Demo, Ingest]".to_owned(),
                format!(r#"mode="{mode}""#),
                format!("backfill_window={window}"),
            ] {
                assert!(line.contains(&field), "{field} ({extra:?}): {line}");
            }
        } else {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["sources"], "[Demo, Ingest]", "{extra:?}: {line}");
            assert_eq!(v["mode"], mode, "{extra:?}: {line}");
            assert_eq!(v["backfill_window"], window, "{extra:?}: {line}");
        }
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let logs = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "demo", "--log-format", "json"], logs.path());
    sc.ready().await;
    assert_eq!(sc.terminate().code(), Some(0));
    let log = sc.log();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(log.contains(r#""message":"serving metrics""#), "{log}");
}

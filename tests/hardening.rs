//! The real binary against hostile or careless neighbours: clients that ask for `/metrics` and
//! never read, a second sidecar on the same state dir, ingest clients without a token that keep
//! hammering, a rotated ingest token, and rejected values that would flood or forge log lines.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{backup_line, client, samples, Sidecar};
use tokio::io::AsyncWriteExt;

/// The chart's default memory limit (`resources.limits.memory: 384Mi`).
const CHART_MEMORY_LIMIT: u64 = 384 * 1024 * 1024;

/// Resident memory of `pid`, from /proc.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Polls `check` every 50 ms until it returns Some, or panics after `secs` with `what`.
async fn until<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` backups pushed through ingest in batches of 1,000.
async fn push_backups(sc: &Sidecar, n: usize) {
    for start in (0..n).step_by(1000) {
        let batch: Vec<String> = (start..(start + 1000).min(n))
            .map(|i| {
                backup_line(
                    &format!("uid-{i:05}"),
                    &format!("nightly-{i:05}"),
                    "Success",
                )
            })
            .collect();
        let (status, answer) = sc.push(&batch.join("\n")).await;
        assert_eq!(status, 200, "{answer}");
    }
}

/// A connection that sends `GET /metrics` and never reads what comes back, with a receive
/// buffer of 4 KB (what the attack used).
async fn stalled_scrape(addr: std::net::SocketAddr, gzip: bool) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: sidecar\r\n{encoding}\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    stream
}

/// 520 connections that asked for `/metrics` (most plain text, the expensive kind; some gzip)
/// and never read, against 5,000 backups: a fresh gzip scrape and a fresh plain scrape each
/// still complete, whole, within 10 s, and the process stays under the chart's memory limit
/// the whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_metrics_cannot_take_scrapes_or_the_pod_down() {
    const BACKUPS: usize = 5_000;
    const STALLED: usize = 520;
    let logs = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "ingest"], logs.path());
    sc.ready().await;
    push_backups(&sc, BACKUPS).await;
    let whole = sc.scrape().await;
    assert_eq!(
        samples(&whole, "pxbackup_backup_object_info").len(),
        BACKUPS
    );

    let pid = sc.child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_bytes(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let addr: std::net::SocketAddr = sc
        .metrics_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        stalled.push(stalled_scrape(addr, i % 4 == 3).await);
    }
    // Time for every one of them to be read and answered as far as it goes.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let fresh = client()
        .get(format!("{}/metrics", sc.metrics_url))
        .header("Accept-Encoding", "gzip")
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let gzip = match fresh {
        Ok(r) => {
            assert_eq!(r.status(), 200);
            r.bytes().await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let gzip_took = started.elapsed();
    let gzip = gzip.unwrap_or_else(|e| panic!("fresh gzip scrape failed after {gzip_took:?}: {e}"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut text)
        .expect("a whole gzip body");
    assert_eq!(samples(&text, "pxbackup_backup_object_info").len(), BACKUPS);

    let started = Instant::now();
    let plain = match client()
        .get(format!("{}/metrics", sc.metrics_url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) => {
            assert_eq!(r.status(), 200);
            r.text().await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let plain_took = started.elapsed();
    let plain =
        plain.unwrap_or_else(|e| panic!("fresh plain scrape failed after {plain_took:?}: {e}"));
    assert_eq!(
        samples(&plain, "pxbackup_backup_object_info").len(),
        BACKUPS
    );
    assert!(
        gzip_took < Duration::from_secs(10),
        "gzip took {gzip_took:?}"
    );
    assert!(
        plain_took < Duration::from_secs(10),
        "plain took {plain_took:?}"
    );
    // The liveness probe's endpoint answers throughout.
    let health = client()
        .get(format!("{}/healthz", sc.metrics_url))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{STALLED} stalled scrapes: fresh gzip {gzip_took:?}, fresh plain {plain_took:?}, peak RSS {} MiB",
        peak >> 20
    );
    assert!(
        peak > 0 && peak < CHART_MEMORY_LIMIT,
        "peak RSS {} MiB (limit {} MiB)",
        peak >> 20,
        CHART_MEMORY_LIMIT >> 20
    );
    drop(stalled);
}

/// Waits for the child to exit, at most `secs`.
async fn exit_status(sc: &mut Sidecar, secs: u64) -> std::process::ExitStatus {
    until("the process to exit", secs, || {
        sc.child.try_wait().ok().flatten()
    })
    .await
}

/// A second sidecar on a state dir that one already runs on exits 64 naming the holder's pid,
/// before it touches anything there; the first keeps serving.
#[tokio::test]
async fn a_second_sidecar_on_the_same_state_dir_exits_64_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let state_arg = state.to_str().unwrap();
    let mut first = Sidecar::spawn(
        &["--source", "ingest", "--state-dir", state_arg],
        tmp.path(),
    );
    first.ready().await;
    let (status, _) = first
        .push(&backup_line("u-1", "nightly-1", "Success"))
        .await;
    assert_eq!(status, 200);
    let journal = std::fs::read(state.join("tombstones.journal")).unwrap();

    let mut second = Sidecar::spawn(
        &["--source", "ingest", "--state-dir", state_arg],
        tmp.path(),
    );
    let status = exit_status(&mut second, 20).await;
    assert_eq!(status.code(), Some(64), "{}", second.log());
    let log = second.log();
    assert!(
        log.contains(&format!("pid {}", first.child.id())),
        "the holder's pid is not named: {log}"
    );
    assert_eq!(
        std::fs::read(state.join("tombstones.journal")).unwrap(),
        journal,
        "the second process touched the journal"
    );
    let (status, _) = first
        .push(&backup_line("u-2", "nightly-2", "Success"))
        .await;
    assert_eq!(status, 200, "the first one keeps working");
    assert!(first.terminate().success());
    // Once the first is gone, a new one starts on the dir and finds both backups.
    let mut third = Sidecar::spawn(
        &["--source", "ingest", "--state-dir", state_arg],
        tmp.path(),
    );
    third.ready().await;
    let text = third.scrape().await;
    assert_eq!(samples(&text, "pxbackup_backup_object_info").len(), 2);
}

fn token_file(dir: &Path, token: &str) -> std::path::PathBuf {
    let path = dir.join("token");
    // As kubelet updates a Secret volume: a new file renamed over the old one.
    let tmp = dir.join("token.new");
    std::fs::write(&tmp, format!("{token}\n")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

async fn push_with(sc: &Sidecar, authorization: Option<&str>, body: &str) -> u16 {
    let mut req = client()
        .post(format!("{}/v1/events", sc.ingest_url))
        .body(body.to_owned());
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    req.send().await.expect("push").status().as_u16()
}

/// 64 clients without a token, keeping their connections alive and sending again as soon as
/// they are answered, do not keep a producer with the valid token out: at least 90% of its
/// batches are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_token_do_not_keep_a_producer_out() {
    let tmp = tempfile::tempdir().unwrap();
    let token = token_file(tmp.path(), "s3cret-producer");
    let mut sc = Sidecar::spawn(
        &[
            "--source",
            "ingest",
            "--ingest-token-file",
            token.to_str().unwrap(),
        ],
        tmp.path(),
    );
    sc.ready().await;
    let url = format!("{}/v1/events", sc.ingest_url);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut hammer = Vec::new();
    for _ in 0..64 {
        let (url, stop, refused) = (url.clone(), stop.clone(), refused.clone());
        hammer.push(tokio::spawn(async move {
            // One client each: its own keep-alive connection.
            let c = client();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.post(&url).body("{}").send().await {
                    Ok(r) if r.status() == 401 => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(r) => panic!("a request without a token got {}", r.status()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        }));
    }
    // The hammering is under way: every client refused a few times at least.
    until("the first refusals", 30, || {
        (refused.load(std::sync::atomic::Ordering::Relaxed) > 4 * 64).then_some(())
    })
    .await;
    let producer = client();
    let mut through = 0;
    const BATCHES: usize = 20;
    for i in 0..BATCHES {
        let sent = producer
            .post(&url)
            .header("Authorization", "Bearer s3cret-producer")
            .body(backup_line(
                &format!("p-{i}"),
                &format!("nightly-{i}"),
                "Success",
            ))
            // Generous for a loaded machine: kept out, a batch fails at once (its connection
            // closed on arrival), not after a wait.
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            through += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hammer {
        h.await.unwrap();
    }
    assert!(
        through * 10 >= BATCHES * 9,
        "{through} of {BATCHES} batches got through"
    );
}

/// The ingest token file is read again when it changes (as a rotated Secret volume does): the
/// new token works and the old one is refused, without a restart. The scheme is
/// case-insensitive (RFC 7235).
#[tokio::test]
async fn a_rotated_ingest_token_is_taken_up_and_the_scheme_is_case_insensitive() {
    let tmp = tempfile::tempdir().unwrap();
    let token = token_file(tmp.path(), "first-token");
    let mut sc = Sidecar::spawn(
        &[
            "--source",
            "ingest",
            "--ingest-token-file",
            token.to_str().unwrap(),
        ],
        tmp.path(),
    );
    sc.ready().await;
    let line = backup_line("u-1", "nightly-1", "Success");
    assert_eq!(push_with(&sc, Some("Bearer first-token"), &line).await, 200);
    assert_eq!(push_with(&sc, Some("bearer first-token"), &line).await, 200);
    assert_eq!(push_with(&sc, Some("BEARER first-token"), &line).await, 200);
    assert_eq!(push_with(&sc, Some("Basic first-token"), &line).await, 401);
    token_file(tmp.path(), "second-token");
    assert_eq!(
        push_with(&sc, Some("Bearer second-token"), &line).await,
        200
    );
    assert_eq!(push_with(&sc, Some("Bearer first-token"), &line).await, 401);
    assert!(!sc.log().contains("second-token"), "a token in the log");
}

/// Every line of the process's log: none may be longer than `max` bytes, none may start with
/// `forged`.
fn assert_log_clean(log: &str, max: usize, forged: &str) {
    for line in log.lines() {
        assert!(
            line.len() <= max,
            "a log line of {} bytes: {}...",
            line.len(),
            &line[..200]
        );
        assert!(!line.starts_with(forged), "a forged log line: {line}");
    }
}

/// A rejected value is echoed up to a bound, in the answer and in the log, and a newline in it
/// never starts a new log line.
#[tokio::test]
async fn rejected_ingest_values_are_echoed_bounded_and_on_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "ingest"], tmp.path());
    sc.ready().await;
    let huge = "A".repeat(5 << 20);
    let line = backup_line("u-1", "nightly-1", &huge);
    let status = client()
        .post(format!("{}/v1/events", sc.ingest_url))
        .body(line)
        .send()
        .await
        .expect("push");
    assert_eq!(status.status(), 400);
    let answer = status.text().await.unwrap();
    assert!(answer.len() < 2048, "a {}-byte answer", answer.len());
    assert!(
        answer.contains("AAAA") && answer.contains("..."),
        "{answer}"
    );

    // A field name and a status with a newline and a forged log line after it.
    let forged = "2026-11-23T01:00:00.000000Z ERROR forged";
    let field = serde_json::json!({"type": "backup", "op": "upsert", "uid": "u-2",
        format!("x\n{forged}: field"): 1});
    let status = backup_line("u-3", "nightly-3", &format!("Nope\n{forged}: status"));
    for body in [field.to_string(), status] {
        let (code, answer) = sc.push(&body).await;
        assert_eq!(code, 400, "{answer}");
    }
    let log = until("three rejections in the log", 10, || {
        let log = sc.log();
        (log.matches("ingest batch rejected").count() >= 3).then_some(log)
    })
    .await;
    assert_log_clean(&log, 4096, forged);
}

/// An invalid telemetry configuration value with newlines (a key's file in a mounted
/// directory) is logged on one line, bounded.
#[tokio::test]
async fn an_invalid_telemetry_value_cannot_forge_log_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("telemetry");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("enabled"), "false").unwrap();
    let forged = "2026-11-23T01:00:00.000000Z ERROR forged";
    std::fs::write(
        config.join("health-interval"),
        format!(
            "soon\n{forged}: one\n{forged}: two\n{}",
            "B".repeat(1 << 16)
        ),
    )
    .unwrap();
    let mut sc = Sidecar::spawn(
        &[
            "--source",
            "ingest",
            "--telemetry-config-file",
            config.to_str().unwrap(),
        ],
        tmp.path(),
    );
    sc.ready().await;
    let log = until("the invalid value in the log", 10, || {
        let log = sc.log();
        log.contains("invalid telemetry configuration value")
            .then_some(log)
    })
    .await;
    assert_log_clean(&log, 4096, forged);
}

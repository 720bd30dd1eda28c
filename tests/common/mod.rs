//! Helpers shared by the integration tests: fixtures, a spawned sidecar, free ports, HTTP.
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const T0_SECS: i64 = 1_795_395_600; // 2026-11-23T01:00:00Z

/// Label values that break naive exporters: quotes, backslashes, newlines, unicode, empty, 10 KB.
pub fn hostile_values() -> Vec<(&'static str, String)> {
    vec![
        ("quote", r#"we"ird"#.to_owned()),
        ("backslash", r"C:\backups\nightly\".to_owned()),
        ("newline", "line one\nline two".to_owned()),
        ("unicode", "sauvegarde-été-☃-数据".to_owned()),
        ("empty", String::new()),
        ("long", "x".repeat(10 * 1024)),
        ("mixed", "a\\\"b\"\\\n\\n".to_owned()),
    ]
}

/// A port on 127.0.0.1 that is free now and that no other call in this process hands out.
/// Taken below the kernel's ephemeral range: a port from `bind(0)` is free only until the
/// next outgoing connection (a test's own HTTP client) takes it as its source port, which
/// made a sidecar fail now and then with "Address already in use".
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768)
        .max(LOWEST + 1_000);
    let span = ephemeral_start - LOWEST;
    // Each test process starts somewhere else in the span: two binaries rarely run at once,
    // but nothing forbids it.
    let _ = NEXT.compare_exchange(
        0,
        fastrand::u32(1..span),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = LOWEST + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("ports below the ephemeral range fit in u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOWEST} and {ephemeral_start}");
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pxbackup-sidecar"))
}

/// A sidecar process on loopback ports; killed when dropped.
pub struct Sidecar {
    pub child: Child,
    pub metrics_url: String,
    pub ingest_url: String,
    pub stderr_path: PathBuf,
}

impl Sidecar {
    pub fn spawn(args: &[&str], log_dir: &Path) -> Sidecar {
        let (mp, ip) = (free_port(), free_port());
        let stderr_path = log_dir.join(format!("sidecar-{mp}.log"));
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let child = Command::new(bin())
            .arg("run")
            .args(["--listen", &format!("127.0.0.1:{mp}")])
            .args(["--ingest-listen", &format!("127.0.0.1:{ip}")])
            .args(args)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the sidecar");
        Sidecar {
            child,
            metrics_url: format!("http://127.0.0.1:{mp}"),
            ingest_url: format!("http://127.0.0.1:{ip}"),
            stderr_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until /readyz answers 200.
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sidecar exited early ({status}):\n{}", self.log());
            }
            if let Ok(r) = client()
                .get(format!("{}/readyz", self.metrics_url))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "not ready in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn scrape(&self) -> String {
        client()
            .get(format!("{}/metrics", self.metrics_url))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body")
    }

    /// A scrape as Prometheus makes it (gzip: the stored segments as they are), inflated.
    pub async fn scrape_gzip(&self) -> String {
        use std::io::Read;
        let r = client()
            .get(format!("{}/metrics", self.metrics_url))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .expect("scrape");
        assert_eq!(
            r.headers().get("content-encoding").map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        let body = r.bytes().await.expect("scrape body");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("a gzip body");
        text
    }

    pub async fn push(&self, ndjson: &str) -> (u16, serde_json::Value) {
        let r = client()
            .post(format!("{}/v1/events", self.ingest_url))
            .body(ndjson.to_owned())
            .send()
            .await
            .expect("push");
        let status = r.status().as_u16();
        let body = r.text().await.expect("answer body");
        (status, serde_json::from_str(&body).expect("json answer"))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Sample lines of one family (exact name).
pub fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(family))
        .collect()
}

/// One backup upsert line for ingest.
pub fn backup_line(uid: &str, name: &str, status: &str) -> String {
    serde_json::json!({
        "type": "backup", "op": "upsert", "uid": uid, "org_id": "default", "name": name,
        "cluster": "prod-east", "cluster_uid": "3e0f", "schedule_name": "nightly",
        "namespaces": ["shop"], "backup_location": "s3-east", "backup_object_type": "All",
        "status": status, "size_bytes": 1024, "resource_count": 3,
        "volumes": [{"volume": "pvc-1", "pvc": "data", "pvc_namespace": "shop",
                     "storage_class": "px-csi", "driver": "pxd", "status": status}],
        "created_at": "2026-11-23T01:00:00Z", "completed_at": "2026-11-23T01:04:10Z"
    })
    .to_string()
}

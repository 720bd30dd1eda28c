//! The performance targets, measured side by side in one run and printed as Markdown (the
//! tables of docs/performance.md). Ratios, not absolute times, are the result: these
//! machines are shared and noisy.
//!
//! The sidecar is measured as users run it: the release binary, spawned, fed through its
//! ingest endpoint, scraped over loopback, its resident memory read from /proc. The floor is
//! nginx (Debian's) serving the very same bytes from files with sendfile, plain and pre-gzipped
//! with `gzip -1`, scraped by the same client in alternating rounds.
//!
//!     cargo bench --bench targets                      # everything (about 10 minutes)
//!     cargo bench --bench targets -- --backups 20000   # a smaller fleet
//!     cargo bench --bench targets -- --only scrape     # scrape | memory | sizing | restart | apply
//!
//! Needs `nginx` and `gzip` on PATH (`apt-get install -y nginx-light gzip`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pxbackup_sidecar::clock::Clock;
use pxbackup_sidecar::inventory::{Inventory, Options};
use pxbackup_sidecar::model::*;
use pxbackup_sidecar::sources::demo::uuid;

const DAY: Duration = Duration::from_secs(24 * 3600);
const BATCH: usize = 5_000;
const ROUNDS: usize = 9;

// ---------------------------------------------------------------------------------------------
// The fleet

/// One backup with label values shaped like a real PXB fleet's: UUIDs, schedule-derived names,
/// one volume.
struct FleetBackup {
    uid: String,
    name: String,
    cluster: String,
    cluster_uid: String,
    schedule: String,
    namespace: String,
    location: String,
    volume: String,
    size: u64,
    resources: u64,
    created: i64,
}

struct Fleet {
    rng: fastrand::Rng,
    clusters: Vec<(String, String)>,
    serial: usize,
}

impl Fleet {
    fn new() -> Self {
        let mut rng = fastrand::Rng::with_seed(7);
        let clusters = (0..20)
            .map(|i| (format!("prod-cluster-{i:02}"), uuid(&mut rng)))
            .collect();
        Fleet {
            rng,
            clusters,
            serial: 0,
        }
    }

    fn next(&mut self) -> FleetBackup {
        let i = self.serial;
        self.serial += 1;
        let (cluster, cluster_uid) = self.clusters[i % self.clusters.len()].clone();
        let schedule = format!("daily-{}-{}", cluster, i % 50);
        FleetBackup {
            uid: uuid(&mut self.rng),
            name: format!("{schedule}-2026-11-23-{:06}", i % 1_000_000),
            cluster,
            cluster_uid,
            schedule,
            namespace: format!("app-{}", i % 30),
            location: format!("s3-backups-{}", i % 4),
            volume: format!("pvc-{}", uuid(&mut self.rng)),
            size: self.rng.u64(1 << 20..1 << 40),
            resources: self.rng.u64(1..500),
            created: 1_795_395_600 - (i as i64) * 60,
        }
    }
}

fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

impl FleetBackup {
    /// The same backup as the library's model, for the in-process measurements.
    fn model(&self, status: BackupStatus) -> Backup {
        Backup {
            uid: self.uid.clone(),
            name: self.name.clone(),
            owner: Owner {
                org_id: "default".into(),
                cluster: self.cluster.clone(),
                cluster_uid: self.cluster_uid.clone(),
            },
            schedule_name: self.schedule.clone(),
            namespaces: vec![self.namespace.clone()],
            backup_location: self.location.clone(),
            backup_object_type: "All".into(),
            status,
            size_bytes: Some(self.size),
            resource_count: Some(self.resources),
            volumes: vec![Volume {
                volume: self.volume.clone(),
                pvc: "data-0".into(),
                pvc_namespace: self.namespace.clone(),
                storage_class: "px-csi-db".into(),
                driver: "pxd".into(),
                status: Some(status),
            }],
            created_at: Some(Timestamp::from_secs(self.created)),
            completed_at: Some(Timestamp::from_secs(self.created + 250)),
            ..Backup::default()
        }
    }

    fn status(&self, i: usize) -> &'static str {
        match i % 20 {
            0 => "Failed",
            1 => "PartialSuccess",
            _ => "Success",
        }
    }

    fn upsert(&self, status: &str) -> String {
        let done = status != "InProgress";
        format!(
            concat!(
                r#"{{"type":"backup","op":"upsert","uid":"{}","org_id":"default","name":"{}","cluster":"{}","cluster_uid":"{}","#,
                r#""schedule_name":"{}","namespaces":["{}"],"backup_location":"{}","backup_object_type":"All","status":"{}","#,
                r#""size_bytes":{},"resource_count":{},"volumes":[{{"volume":"{}","pvc":"data-0","pvc_namespace":"{}","storage_class":"px-csi-db","driver":"pxd","status":"{}"}}],"#,
                r#""created_at":"{}"{}}}"#
            ),
            self.uid,
            self.name,
            self.cluster,
            self.cluster_uid,
            self.schedule,
            self.namespace,
            self.location,
            status,
            self.size,
            self.resources,
            self.volume,
            self.namespace,
            status,
            rfc3339(self.created),
            if done {
                format!(r#","completed_at":"{}""#, rfc3339(self.created + 250))
            } else {
                String::new()
            }
        )
    }

    fn delete(&self, deleted_at: Option<i64>) -> String {
        match deleted_at {
            Some(t) => format!(
                r#"{{"type":"backup","op":"delete","uid":"{}","deleted_at":"{}"}}"#,
                self.uid,
                rfc3339(t)
            ),
            None => format!(r#"{{"type":"backup","op":"delete","uid":"{}"}}"#, self.uid),
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client: the same for the sidecar and nginx, reading whole bodies.

struct Response {
    status: u16,
    body: Vec<u8>,
}

fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    s.write_all(body).expect("send body");
    let mut r = BufReader::with_capacity(1 << 20, s);
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (mut len, mut chunked): (Option<usize>, bool) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            }
            if k.eq_ignore_ascii_case("transfer-encoding") && v.trim() == "chunked" {
                chunked = true;
            }
        }
    }
    let mut body = Vec::with_capacity(len.unwrap_or(0));
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).expect("body");
        }
        None if chunked => {
            let mut raw = vec![0u8; 1 << 20];
            let mut dechunk = Dechunk::default();
            while !dechunk.done() {
                let n = r.read(&mut raw).expect("body");
                assert!(n > 0, "chunked body cut short");
                dechunk.feed(&raw[..n], Some(&mut body));
            }
        }
        None => {
            r.read_to_end(&mut body).expect("body");
        }
    }
    Response { status, body }
}

/// Times a GET, reading the whole body as fast as the socket delivers it (into one reused
/// buffer, nothing kept: the floor must not be the client); returns (seconds, body length).
fn timed_get(addr: SocketAddr, path: &str, headers: &[&str]) -> (f64, usize) {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 4 << 20]);
    }
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).ok();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut filled = 0;
        let head_end = loop {
            let n = s.read(&mut buf[filled..]).expect("read");
            assert!(n > 0, "connection closed before the headers");
            filled += n;
            if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
        let len: Option<usize> = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        });
        let Some(len) = len else {
            // Chunked (a plain-text scrape): the body's bytes are counted as they arrive.
            let mut dechunk = Dechunk::default();
            dechunk.feed(&buf[head_end..filled], None);
            while !dechunk.done() {
                let n = s.read(&mut buf[..]).expect("read");
                assert!(n > 0, "body cut short");
                dechunk.feed(&buf[..n], None);
            }
            return (t.elapsed().as_secs_f64(), dechunk.body);
        };
        let mut got = filled - head_end;
        while got < len {
            let n = s.read(&mut buf[..]).expect("read");
            assert!(n > 0, "body cut short");
            got += n;
        }
        (t.elapsed().as_secs_f64(), len)
    })
}

/// Reads a chunked body as it arrives, counting (and, if asked, keeping) its bytes.
#[derive(Default)]
struct Dechunk {
    state: ChunkState,
    size_line: Vec<u8>,
    body: usize,
}

#[derive(Default, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd(usize),
    Trailer,
    Done,
}

impl Dechunk {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn feed(&mut self, mut bytes: &[u8], mut keep: Option<&mut Vec<u8>>) {
        while !bytes.is_empty() {
            match self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                        self.size_line.extend_from_slice(bytes);
                        return;
                    };
                    self.size_line.extend_from_slice(&bytes[..end]);
                    bytes = &bytes[end + 1..];
                    let line = String::from_utf8_lossy(&self.size_line).trim().to_owned();
                    self.size_line.clear();
                    if self.state == ChunkState::Trailer {
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                            return;
                        }
                        continue;
                    }
                    let hex = line.split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(hex, 16).expect("chunk size");
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let n = left.min(bytes.len());
                    if let Some(k) = keep.as_deref_mut() {
                        k.extend_from_slice(&bytes[..n]);
                    }
                    self.body += n;
                    bytes = &bytes[n..];
                    self.state = if n == left {
                        ChunkState::DataEnd(2)
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd(left) => {
                    let n = left.min(bytes.len());
                    bytes = &bytes[n..];
                    self.state = if n == left {
                        ChunkState::Size
                    } else {
                        ChunkState::DataEnd(left - n)
                    };
                }
                ChunkState::Done => return,
            }
        }
    }
}

const GZIP: &str = "Accept-Encoding: gzip";
const OPENMETRICS: &str = "Accept: application/openmetrics-text;version=1.0.0";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------------------------
// The sidecar and nginx as processes

struct Sidecar {
    child: Child,
    metrics: SocketAddr,
    ingest: SocketAddr,
}

impl Sidecar {
    fn spawn(state_dir: &Path, extra: &[&str]) -> Sidecar {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let ingest: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pxbackup-sidecar"))
            .args(["run", "--source", "ingest", "--listen"])
            .arg(metrics.to_string())
            .arg("--ingest-listen")
            .arg(ingest.to_string())
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the sidecar");
        let sc = Sidecar {
            child,
            metrics,
            ingest,
        };
        sc.wait_ready(Duration::from_secs(120));
        sc
    }

    fn wait_ready(&self, limit: Duration) -> Duration {
        let t = Instant::now();
        while t.elapsed() < limit {
            if TcpStream::connect(self.metrics).is_ok()
                && request(self.metrics, "GET", "/readyz", &[], &[]).status == 200
            {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the sidecar did not become ready");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn push(&self, lines: &[String]) {
        for chunk in lines.chunks(BATCH) {
            let body = chunk.join("\n");
            let r = request(self.ingest, "POST", "/v1/events", &[], body.as_bytes());
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }

    fn rss(&self) -> u64 {
        status_kb(self.pid(), "VmRSS") * 1024
    }

    /// Resident memory of the process's own (anonymous) pages: RSS without the binary's
    /// code and other file pages.
    fn rss_anon(&self) -> u64 {
        status_kb(self.pid(), "RssAnon") * 1024
    }

    /// Resets the high-water mark of resident memory (Linux `clear_refs` 5).
    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").expect("clear_refs");
    }

    fn peak(&self) -> u64 {
        status_kb(self.pid(), "VmHWM") * 1024
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves `files` (name -> bytes) as static files with sendfile.
    fn serve(files: &[(&str, &[u8])]) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        for (name, bytes) in files {
            std::fs::write(www.join(name), bytes).unwrap();
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off; sendfile on; tcp_nopush on; default_type text/plain;\n\
                 client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
                 uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
                 server {{ listen {addr}; root {www}; }} }}\n",
                d = dir.path().display(),
                www = www.display(),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (apt-get install -y nginx-light)");
        let t = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "nginx did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Nginx {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gzip_1(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-1", "-c", "-n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap().unwrap();
    child.wait().unwrap();
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1000.0)
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn series_in(text: &[u8]) -> usize {
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count()
}

// ---------------------------------------------------------------------------------------------
// Phases

struct Args {
    backups: usize,
    only: Option<String>,
    restart_tombstones: usize,
}

fn args() -> Args {
    let mut a = Args {
        backups: 100_000,
        only: None,
        restart_tombstones: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--backups" => a.backups = it.next().and_then(|v| v.parse().ok()).expect("--backups N"),
            "--only" => a.only = it.next(),
            "--restart-tombstones" => {
                a.restart_tombstones = it.next().and_then(|v| v.parse().ok()).expect("N")
            }
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn main() {
    let a = args();
    let want = |phase: &str| a.only.as_deref().is_none_or(|o| o == phase);
    println!("# pxbackup-sidecar benchmark ({} backups)\n", a.backups);
    if want("scrape") || want("memory") {
        scrape_and_memory(a.backups, want("scrape"), want("memory"));
    }
    if want("apply") {
        apply_cost(a.backups);
    }
    if a.only.as_deref() == Some("probe") {
        probe(a.backups);
    }
    if a.only.as_deref() == Some("hold") {
        hold(a.backups);
    }
    if a.only.as_deref() == Some("plain") {
        plain_rounds(a.backups);
    }
    if want("sizing") {
        sizing(&[10_000, 50_000, a.backups.max(100_000)]);
    }
    if want("restart") {
        restart(a.restart_tombstones);
    }
}

fn load(sc: &Sidecar, fleet: &mut Fleet, n: usize) -> Vec<FleetBackup> {
    let backups: Vec<FleetBackup> = (0..n).map(|_| fleet.next()).collect();
    let lines: Vec<String> = backups
        .iter()
        .enumerate()
        .map(|(i, b)| b.upsert(b.status(i)))
        .collect();
    sc.push(&lines);
    backups
}

fn scrape_and_memory(n: usize, timing: bool, memory: bool) {
    let dir = tempfile::tempdir().unwrap();
    let sc = Sidecar::spawn(dir.path(), &[]);
    let mut fleet = Fleet::new();
    // The runtime, the listener, the allocator's arenas and the code of every path a backup
    // takes (its code pages count in RSS once touched, for the life of the process), before
    // the fleet: a thousand backups loaded, scraped both ways, deleted a window ago (so they
    // expire at once) and compacted away.
    let warm_up = load(&sc, &mut fleet, 1_000);
    timed_get(sc.metrics, "/metrics", &[]);
    let long_ago = now_secs() - DAY.as_secs() as i64 - 60;
    let deletes: Vec<String> = warm_up.iter().map(|b| b.delete(Some(long_ago))).collect();
    sc.push(&deletes);
    timed_get(sc.metrics, "/metrics", &[GZIP]);
    std::thread::sleep(Duration::from_secs(3));
    timed_get(sc.metrics, "/metrics", &[GZIP]);
    let (rss_empty, anon_empty) = (sc.rss(), sc.rss_anon());
    let backups = load(&sc, &mut fleet, n);
    timed_get(sc.metrics, "/metrics", &[GZIP]);
    std::thread::sleep(Duration::from_secs(3)); // jemalloc's purge of what loading freed
    let rss_loaded = sc.rss();
    let plain = request(sc.metrics, "GET", "/metrics", &[], &[]).body;
    let gz = request(sc.metrics, "GET", "/metrics", &[GZIP], &[]).body;
    let series = series_in(&plain);
    let reference_gz = gzip_1(&plain);
    println!(
        "## Scrape, {n} backups: {series} series, {} of text",
        mb(plain.len() as u64)
    );
    println!();
    println!(
        "gzip body {} vs `gzip -1` of the same text {} ({:.2}x)\n",
        mb(gz.len() as u64),
        mb(reference_gz.len() as u64),
        gz.len() as f64 / reference_gz.len() as f64
    );

    if timing {
        let om_plain = request(sc.metrics, "GET", "/metrics", &[OPENMETRICS], &[]).body;
        let om_gz_ref = gzip_1(&om_plain);
        let nginx = Nginx::serve(&[
            ("metrics.txt", &plain),
            ("metrics.txt.gz", &reference_gz),
            ("metrics.om.txt", &om_plain),
            ("metrics.om.txt.gz", &om_gz_ref),
        ]);
        let cases: [(&str, &[&str], &str); 4] = [
            ("text 0.0.4, gzip", &[GZIP], "/metrics.txt.gz"),
            ("text 0.0.4, plain", &[], "/metrics.txt"),
            (
                "OpenMetrics, gzip",
                &[GZIP, OPENMETRICS],
                "/metrics.om.txt.gz",
            ),
            ("OpenMetrics, plain", &[OPENMETRICS], "/metrics.om.txt"),
        ];
        let mut ours = vec![Vec::new(); cases.len()];
        let mut theirs = vec![Vec::new(); cases.len()];
        for _ in 0..ROUNDS {
            for (i, (_, headers, file)) in cases.iter().enumerate() {
                ours[i].push(timed_get(sc.metrics, "/metrics", headers).0);
                theirs[i].push(timed_get(nginx.addr, file, &[]).0);
            }
        }
        println!("| scrape (median of {ROUNDS}, alternating) | sidecar | nginx, same bytes | ratio | target |");
        println!("|---|---:|---:|---:|---:|");
        for (i, (name, _, _)) in cases.iter().enumerate() {
            let (o, t) = (median(ours[i].clone()), median(theirs[i].clone()));
            let target = if name.ends_with("gzip") { "2x" } else { "1.5x" };
            println!(
                "| {name} | {} | {} | **{:.2}x** | {target} |",
                ms(o),
                ms(t),
                o / t
            );
        }

        // Changes between scrapes: the realistic mix (new backups appended, the newest
        // finishing, the oldest deleted by retention), then 100 backups anywhere.
        let mut changed = |kind: &str, round: usize| -> Vec<String> {
            let mut lines = Vec::new();
            match kind {
                "realistic" => {
                    for _ in 0..40 {
                        lines.push(fleet.next().upsert("InProgress"));
                    }
                    for k in 0..40 {
                        let b = &backups[n - 1 - (round * 40 + k) % n];
                        lines.push(b.upsert("PartialSuccess"));
                    }
                    for k in 0..20 {
                        lines.push(backups[(round * 20 + k) % n].delete(None));
                    }
                }
                _ => {
                    let mut rng = fastrand::Rng::with_seed(round as u64);
                    for _ in 0..100 {
                        let b = &backups[rng.usize(..n)];
                        lines.push(b.upsert(if rng.bool() { "Failed" } else { "Aborted" }));
                    }
                }
            }
            lines
        };
        println!();
        println!("| gzip scrape after 100 backups changed (median of {ROUNDS}) | sidecar | nginx | ratio | target |");
        println!("|---|---:|---:|---:|---:|");
        // Scraped at once (the scrape renders what changed), and 1.5 s later (the background
        // refresher has rendered it, as it has by the time Prometheus scrapes again).
        for (kind, wait) in [
            ("realistic", 0),
            ("random", 0),
            ("realistic", 1500),
            ("random", 1500),
        ] {
            let (mut o, mut t) = (Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                sc.push(&changed(kind, round + if wait > 0 { ROUNDS } else { 0 }));
                std::thread::sleep(Duration::from_millis(wait));
                o.push(timed_get(sc.metrics, "/metrics", &[GZIP]).0);
                t.push(timed_get(nginx.addr, "/metrics.txt.gz", &[]).0);
            }
            let (o, t) = (median(o), median(t));
            let what = if kind == "realistic" {
                "realistic: 40 new, 40 finishing, 20 deleted"
            } else {
                "100 random backups anywhere in the fleet"
            };
            let when = if wait == 0 {
                "scraped at once".to_owned()
            } else {
                format!("scraped {:.1} s later", wait as f64 / 1000.0)
            };
            println!(
                "| {what}, {when} | {} | {} | **{:.2}x** | 3x |",
                ms(o),
                ms(t),
                o / t
            );
        }
        println!();
    }

    if memory {
        let rss = sc.rss();
        sc.reset_peak();
        let plain_len = timed_get(sc.metrics, "/metrics", &[]).1;
        let plain_peak = sc.peak().saturating_sub(rss);
        let rss = sc.rss();
        sc.reset_peak();
        timed_get(sc.metrics, "/metrics", &[GZIP]);
        let gzip_peak = sc.peak().saturating_sub(rss);
        println!("| memory | measured | target |");
        println!("|---|---:|---:|");
        println!(
            "| resident memory per series (RSS growth / series, whole process) | **{:.0} B** | 150 B |",
            rss_loaded.saturating_sub(rss_empty) as f64 / series as f64
        );
        println!(
            "| extra peak memory during a plain scrape (of a {} body) | {} (**{:.1}%**) | 5% |",
            mb(plain_len as u64),
            mb(plain_peak),
            plain_peak as f64 * 100.0 / plain_len as f64
        );
        println!(
            "| extra peak memory during a gzip scrape | {} (**{:.1}%** of the plain body) | 5% |",
            mb(gzip_peak),
            gzip_peak as f64 * 100.0 / plain_len as f64
        );

        // Delete everything in batches while Prometheus-like scrapes go on; the deletions are
        // dated so that their tombstones expire a minute later.
        // The bodies are made first: making them while the scrapes run would take the
        // benchmark's own CPU from the sidecar on the two cores.
        let expire_in = 60;
        let deleted_at = now_secs() - DAY.as_secs() as i64 + expire_in;
        let deletes: Vec<String> = backups.iter().map(|b| b.delete(Some(deleted_at))).collect();
        // Before and during, scrapes come at the same pace (a pause of SCRAPE_GAP after
        // each), so that the two compare like with like.
        const SCRAPE_GAP: Duration = Duration::from_millis(20);
        let before: Vec<f64> = (0..15)
            .map(|_| {
                let took = timed_get(sc.metrics, "/metrics", &[GZIP]).0;
                std::thread::sleep(SCRAPE_GAP);
                took
            })
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let scraper = {
            let (stop, addr) = (stop.clone(), sc.metrics);
            std::thread::spawn(move || {
                let mut times = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    times.push(timed_get(addr, "/metrics", &[GZIP]).0);
                    std::thread::sleep(SCRAPE_GAP);
                }
                times
            })
        };
        let rss_live = sc.rss();
        let cpu_before = thread_cpu(sc.pid());
        for chunk in deletes.chunks(1_000) {
            sc.push(chunk);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let during = scraper.join().unwrap();
        let cpu_after = thread_cpu(sc.pid());
        let mut by_name: std::collections::BTreeMap<String, i64> = Default::default();
        for (tid, (name, t)) in &cpu_after {
            let b = cpu_before.get(tid).map_or(0, |x| x.1);
            *by_name.entry(name.clone()).or_default() += t - b;
        }
        // Where the CPU went (clock ticks of 10 ms), by thread name: applying and rendering
        // run at background priority, scrapes on the tokio threads.
        eprintln!("CPU during the deletions, by thread (ticks): {by_name:?}");
        let worst = during.iter().copied().fold(0.0, f64::max);
        let mut sorted = during.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = (sorted.len().saturating_sub(1) as f64 * q) as usize;
            sorted.get(i).copied().unwrap_or(0.0)
        };
        eprintln!(
            "during the deletions: median {} p90 {} max {} ({} scrapes); in order, ms: {:.1?}; before: {:.1?}",
            ms(at(0.5)),
            ms(at(0.9)),
            ms(worst),
            sorted.len(),
            during.iter().map(|t| t * 1e3).collect::<Vec<_>>(),
            before.iter().map(|t| t * 1e3).collect::<Vec<_>>()
        );
        println!(
            "| worst gzip scrape while every backup is deleted in batches of 1,000 ({} scrapes) vs the median before | {} vs {} (**{:.2}x**) | 1.5x |",
            during.len(),
            ms(worst),
            ms(median(before.clone())),
            worst / median(before)
        );
        timed_get(sc.metrics, "/metrics", &[GZIP]);
        std::thread::sleep(Duration::from_secs(3));
        let (rss_tombstones, anon_tombstones) = (sc.rss(), sc.rss_anon());
        // Wait for the window to end; a scrape expires what is due.
        std::thread::sleep(Duration::from_secs(expire_in as u64 + 2));
        timed_get(sc.metrics, "/metrics", &[GZIP]);
        std::thread::sleep(Duration::from_secs(5));
        let (rss_expired, anon_expired) = (sc.rss(), sc.rss_anon());
        let held = |empty: u64, tombstones: u64, expired: u64| {
            expired.saturating_sub(empty) as f64 * 100.0
                / tombstones.saturating_sub(empty).max(1) as f64
        };
        println!(
            "| RSS: empty {} -> {n} live backups {} -> as tombstones {} -> all expired {} | still held after expiry: **{:.1}%** of the tombstones' memory | < 10% |",
            mb(rss_empty),
            mb(rss_live),
            mb(rss_tombstones),
            mb(rss_expired),
            held(rss_empty, rss_tombstones, rss_expired)
        );
        println!(
            "| the same, anonymous pages only (RSS without code and file pages): {} -> {} -> {} | **{:.1}%** | |",
            mb(anon_empty),
            mb(anon_tombstones),
            mb(anon_expired),
            held(anon_empty, anon_tombstones, anon_expired)
        );
        println!();
    }
    sc.stop();
}

/// Applying events in process (the library), at `n` backups: the applying path only.
fn apply_cost(n: usize) {
    let mut fleet = Fleet::new();
    let inv = Inventory::new(Clock::System, Options::with_backfill(DAY));
    let origin = Origin::source(SourceId::Ingest);
    let backups: Vec<FleetBackup> = (0..n).map(|_| fleet.next()).collect();
    for chunk in backups.chunks(BATCH) {
        let events = chunk
            .iter()
            .map(|b| Event::Upsert(Object::Backup(b.model(BackupStatus::Success))))
            .collect();
        inv.apply(&origin, events).expect("apply");
    }
    inv.snapshot();
    let probe = 10_000.min(n);
    let updates: Vec<Event> = backups[..probe]
        .iter()
        .map(|b| Event::Upsert(Object::Backup(b.model(BackupStatus::Failed))))
        .collect();
    let t = Instant::now();
    for e in updates {
        inv.apply(&origin, vec![e]).expect("apply");
    }
    let upsert = t.elapsed().as_secs_f64() / probe as f64;
    let t = Instant::now();
    for b in &backups[..probe] {
        inv.apply(
            &origin,
            vec![Event::Delete {
                kind: Kind::Backup,
                uid: b.uid.clone(),
                deleted_at: None,
            }],
        )
        .expect("apply");
    }
    let delete = t.elapsed().as_secs_f64() / probe as f64;
    let t = Instant::now();
    let unchanged: Vec<Event> = backups[probe..]
        .iter()
        .map(|b| Event::Upsert(Object::Backup(b.model(BackupStatus::Success))))
        .collect();
    let m = unchanged.len().max(1);
    inv.apply(&origin, unchanged).expect("apply");
    let same = t.elapsed().as_secs_f64() / m as f64;
    println!("## Applying events, {n} backups (in process, no journal)\n");
    println!("| operation | per event | target |");
    println!("|---|---:|---:|");
    println!(
        "| upsert that changes a backup | **{:.2} µs** | 5 µs |",
        upsert * 1e6
    );
    println!(
        "| delete (becomes a tombstone) | **{:.2} µs** | 5 µs |",
        delete * 1e6
    );
    println!(
        "| upsert that changes nothing (a re-list, an unchanged poll) | {:.2} µs | |",
        same * 1e6
    );
    println!();
}

/// The fleet loaded and served beside nginx with the same bytes until standard input closes,
/// for looking at a scrape with other tools (perf, curl, wrk; not part of the default run).
fn hold(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let sc = Sidecar::spawn(dir.path(), &[]);
    let mut fleet = Fleet::new();
    load(&sc, &mut fleet, n);
    let plain = request(sc.metrics, "GET", "/metrics", &[], &[]).body;
    let reference_gz = gzip_1(&plain);
    let nginx = Nginx::serve(&[("metrics.txt", &plain), ("metrics.txt.gz", &reference_gz)]);
    println!(
        "sidecar pid {} http://{}/metrics, nginx http://{}/metrics.txt[.gz]; close stdin to stop",
        sc.pid(),
        sc.metrics,
        nginx.addr
    );
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).ok();
    drop(nginx);
    sc.stop();
}

/// Plain scrapes only, many alternating rounds (the full run takes the median of 9): how
/// the sidecar's plain scrape compares with nginx, with the spread of both and the CPU the
/// sidecar spent per scrape (not part of the default run).
fn plain_rounds(n: usize) {
    const ROUNDS: usize = 31;
    let dir = tempfile::tempdir().unwrap();
    let sc = Sidecar::spawn(dir.path(), &[]);
    let mut fleet = Fleet::new();
    load(&sc, &mut fleet, n);
    timed_get(sc.metrics, "/metrics", &[GZIP]);
    let plain = request(sc.metrics, "GET", "/metrics", &[], &[]).body;
    let nginx = Nginx::serve(&[("metrics.txt", &plain)]);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let cpu_before = process_cpu_ticks(sc.pid());
    let threads_before = thread_cpu(sc.pid());
    for _ in 0..ROUNDS {
        ours.push(timed_get(sc.metrics, "/metrics", &[]).0);
        theirs.push(timed_get(nginx.addr, "/metrics.txt", &[]).0);
    }
    let cpu = (process_cpu_ticks(sc.pid()) - cpu_before) as f64 / 100.0 / ROUNDS as f64;
    let mut by_name: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (tid, (name, t)) in thread_cpu(sc.pid()) {
        let b = threads_before.get(&tid).map_or(0, |x| x.1);
        if t > b {
            by_name.entry(name).or_default().push(t - b);
        }
    }
    eprintln!("CPU by thread over {ROUNDS} plain scrapes (ticks of 10 ms): {by_name:?}");
    let spread = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[0], v[v.len() / 2], v[v.len() * 9 / 10])
    };
    let ((o0, o50, o90), (t0, t50, t90)) = (spread(ours), spread(theirs));
    println!("## Plain scrapes, {n} backups, {ROUNDS} alternating rounds\n");
    println!("| | min | median | p90 |");
    println!("|---|---:|---:|---:|");
    println!("| sidecar | {} | {} | {} |", ms(o0), ms(o50), ms(o90));
    println!(
        "| nginx, same bytes | {} | {} | {} |",
        ms(t0),
        ms(t50),
        ms(t90)
    );
    println!(
        "| ratio | {:.2}x | **{:.2}x** | {:.2}x |",
        o0 / t0,
        o50 / t50,
        o90 / t90
    );
    println!("\nsidecar CPU per plain scrape (all threads): {}", ms(cpu));
    drop(nginx);
    sc.stop();
}

/// Where a gzip scrape's time goes, in process: taking the snapshot, laying out the pieces,
/// assembling the gzip member (not part of the default run).
fn probe(n: usize) {
    use pxbackup_sidecar::exposition::Scrape;
    use pxbackup_sidecar::families::Format;
    let mut fleet = Fleet::new();
    let inv = Inventory::new(Clock::System, Options::with_backfill(DAY));
    let origin = Origin::source(SourceId::Ingest);
    let backups: Vec<FleetBackup> = (0..n).map(|_| fleet.next()).collect();
    for chunk in backups.chunks(BATCH) {
        let events = chunk
            .iter()
            .map(|b| Event::Upsert(Object::Backup(b.model(BackupStatus::Success))))
            .collect();
        inv.apply(&origin, events).expect("apply");
    }
    let t = Instant::now();
    inv.snapshot();
    println!(
        "first snapshot (renders everything): {}",
        ms(t.elapsed().as_secs_f64())
    );
    for _ in 0..3 {
        let t = Instant::now();
        let snap = inv.snapshot();
        let t1 = t.elapsed().as_secs_f64();
        let scrape = Scrape::new(&snap, Format::Text, Vec::new());
        let t2 = t.elapsed().as_secs_f64();
        let body = scrape.gzip();
        let t3 = t.elapsed().as_secs_f64();
        let len = body.len();
        let bytes = body.concat();
        let t4 = t.elapsed().as_secs_f64();
        println!(
            "snapshot {} layout {} gzip assembly {} copy all {} ({} bytes)",
            ms(t1),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(t4 - t3),
            len
        );
        drop(bytes);
    }
}

/// CPU time process `pid` has used, user and system, in clock ticks (10 ms).
fn process_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn thread_cpu(pid: u32) -> std::collections::HashMap<u32, (String, i64)> {
    let mut out = std::collections::HashMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid: u32 = e.file_name().to_string_lossy().parse().unwrap();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let t = ticks(11) + ticks(12);
        out.insert(tid, (name, t));
    }
    out
}

/// Waits until process `pid` is quiet: no more CPU used than a tenth of a core over 200 ms, at
/// most 30 s. Our own process after a dropped inventory (its threads finishing, jemalloc's
/// purge; a killed process leaves nothing running), or a sidecar still compacting its
/// journal or refreshing series when "steady" memory is read.
fn wait_until_quiet(pid: u32) -> Duration {
    let cpu_ticks = || process_cpu_ticks(pid);
    let t = Instant::now();
    let mut last = cpu_ticks();
    while t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
        let now = cpu_ticks();
        if now - last <= 2 {
            break;
        }
        last = now;
    }
    t.elapsed()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Backups and tombstones -> steady and peak resident memory, journal size: the chart's
/// defaults come from this table.
fn sizing(sizes: &[usize]) {
    println!("## Sizing (whole process, jemalloc)\n");
    println!("| backups | live: steady RSS | live: peak RSS during a gzip scrape | + all deleted (tombstones): steady RSS | peak RSS | journal, compacted | series cache |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let sc = Sidecar::spawn(dir.path(), &[]);
        let mut fleet = Fleet::new();
        let backups = load(&sc, &mut fleet, n);
        timed_get(sc.metrics, "/metrics", &[GZIP]);
        std::thread::sleep(Duration::from_secs(2));
        wait_until_quiet(sc.pid());
        let steady = sc.rss();
        sc.reset_peak();
        timed_get(sc.metrics, "/metrics", &[GZIP]);
        let peak = sc.peak();
        // Each deleted backup keeps its info series for the window: twice the objects at most,
        // when every backup of a window is replaced by a new one.
        let more = load(&sc, &mut fleet, n);
        let deletes: Vec<String> = backups.iter().map(|b| b.delete(None)).collect();
        sc.push(&deletes);
        drop(more);
        timed_get(sc.metrics, "/metrics", &[GZIP]);
        std::thread::sleep(Duration::from_secs(2));
        wait_until_quiet(sc.pid());
        let steady_t = sc.rss();
        sc.reset_peak();
        timed_get(sc.metrics, "/metrics", &[GZIP]);
        let peak_t = sc.peak();
        // A graceful stop compacts the journal and writes the series cache.
        sc.stop();
        let cache = std::fs::metadata(
            dir.path()
                .join(pxbackup_sidecar::inventory::series_cache::FILE_NAME),
        )
        .map_or(0, |m| m.len());
        let journal = dir_bytes(dir.path()) - cache;
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            mb(steady),
            mb(peak),
            mb(steady_t),
            mb(peak_t),
            mb(journal),
            mb(cache)
        );
    }
    println!();
}

/// Restart after kill -9 with `n` tombstones journaled (and each one's superseded live
/// record, as a kill leaves them): time until /readyz, until the first complete gzip scrape,
/// and peak memory of the replay.
fn restart(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let made = Instant::now();
    // A running sidecar writes the series cache in the background (`series_cache`); 1% of the
    // fleet changed after the last write, as a kill -9 between two writes leaves it.
    let changed_after = n / 100;
    let cache_groups;
    {
        let (inv, _) =
            Inventory::open(Clock::System, Options::with_backfill(DAY), &state).expect("journal");
        let origin = Origin::source(SourceId::Ingest);
        let mut fleet = Fleet::new();
        let mut make = |count: usize, inv: &Inventory| {
            for _ in 0..count.div_ceil(10_000) {
                let batch: Vec<FleetBackup> =
                    (0..10_000.min(count)).map(|_| fleet.next()).collect();
                let upserts = batch
                    .iter()
                    .map(|b| Event::Upsert(Object::Backup(b.model(BackupStatus::Success))))
                    .collect();
                inv.apply(&origin, upserts).expect("apply");
                let deletes = batch
                    .iter()
                    .map(|b| Event::Delete {
                        kind: Kind::Backup,
                        uid: b.uid.clone(),
                        deleted_at: None,
                    })
                    .collect();
                inv.apply(&origin, deletes).expect("apply");
            }
        };
        make(n - changed_after, &inv);
        drop(inv.snapshot());
        cache_groups = inv.save_series_cache().expect("series cache");
        make(changed_after, &inv);
        // Dropped without a compaction: what kill -9 leaves.
    }
    let cache_file = state.join(pxbackup_sidecar::inventory::series_cache::FILE_NAME);
    let cache_bytes = std::fs::metadata(&cache_file).map_or(0, |m| m.len());
    let journal = dir_bytes(&state) - cache_bytes;
    eprintln!(
        "made {n} tombstones in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    println!(
        "## Restart after kill -9 with {n} tombstones ({} journal; series cache {} for {cache_groups} groups, written before the last {changed_after}; two restarts of each kind, taking turns, each from a copy of the same files)\n",
        mb(journal),
        mb(cache_bytes)
    );
    println!("| | with the series cache | without it | target |");
    println!("|---|---:|---:|---:|");
    // Every restart from a copy of the same files (a restart compacts the journal it
    // replayed), the two kinds taking turns: the first start after the bench built the files
    // has been slower either way on this machine.
    const ROUNDS: usize = 2;
    let mut runs: [Vec<[String; 4]>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS * 2 {
        let with_cache = round % 2 == 1;
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&state).expect("state dir") {
            let path = entry.expect("state dir").path();
            if path.is_file() && (with_cache || path != cache_file) {
                let name = path.file_name().expect("a file name");
                std::fs::copy(&path, copy.path().join(name)).expect("copy the state dir");
            }
        }
        // What the bench wrote is on disk, as a killed sidecar's long since is: the write-back
        // is not the restart's.
        let _ = Command::new("sync").status();
        // A killed process's memory is gone at once; ours is given back by jemalloc's
        // background purge, which would otherwise share the two cores with the restart.
        let settled = wait_until_quiet(std::process::id());
        eprintln!(
            "the bench process was quiet after {:.1} s",
            settled.as_secs_f64()
        );
        let t = Instant::now();
        let sc = Sidecar::spawn(copy.path(), &[]);
        let ready = t.elapsed();
        let (first, _) = timed_get(sc.metrics, "/metrics", &[GZIP]);
        let served = t.elapsed();
        let peak = sc.peak();
        let (second, _) = timed_get(sc.metrics, "/metrics", &[GZIP]);
        runs[usize::from(!with_cache)].push([
            format!("{:.2} s", ready.as_secs_f64()),
            format!("{:.2} s (that scrape {})", served.as_secs_f64(), ms(first)),
            ms(second),
            mb(peak),
        ]);
        sc.kill();
    }
    let labels = [
        ("start until /readyz answers 200", "2 s"),
        ("start until the first gzip scrape is complete", "2 s"),
        ("the next scrape", ""),
        ("peak RSS during replay and first scrape", ""),
    ];
    let both = |runs: &[[String; 4]], i: usize| {
        runs.iter()
            .map(|r| r[i].as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    for (i, (label, target)) in labels.iter().enumerate() {
        println!(
            "| {label} | **{}** | {} | {target} |",
            both(&runs[0], i),
            both(&runs[1], i)
        );
    }
    println!();
    let _: PathBuf = state;
}

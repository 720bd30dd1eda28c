//! The journal at restart scale: a compacted journal of N tombstones (realistic backups, two
//! volumes, UUIDs: 300-400 bytes of object each) is written, then replayed as a restart does,
//! with the replay's peak memory growth measured (`/proc/self/clear_refs` resets the peak).
//!
//!     cargo bench --bench journal                   # 1,000,000 tombstones
//!     cargo bench --bench journal -- --records 100000
//!
//! The file is read back from the page cache (as after `kill -9` on the same node).

use std::sync::Arc;
use std::time::Instant;

use pxbackup_sidecar::model::{Backup, BackupStatus, Origin, Owner, SourceId, Timestamp, Volume};
use pxbackup_sidecar::persistence::{
    decode_backup, encode_backup, Journal, OwnedRecordRef, Record, FILE_NAME,
};
use pxbackup_sidecar::sources::demo::uuid;

fn realistic(rng: &mut fastrand::Rng, i: usize) -> Backup {
    let cluster = format!("prod-cluster-{:02}", i % 20);
    let schedule = format!("daily-{cluster}-{}", i % 50);
    let ns = format!("app-{}", i % 30);
    let volume = |rng: &mut fastrand::Rng, n: usize| Volume {
        volume: format!("pvc-{}", uuid(rng)),
        pvc: format!("data-{n}"),
        pvc_namespace: ns.clone(),
        storage_class: "px-csi-db".into(),
        driver: "pxd".into(),
        status: Some(BackupStatus::Success),
    };
    Backup {
        uid: uuid(rng),
        name: format!("{schedule}-2026-11-23-{i:06}"),
        owner: Owner {
            org_id: "default".into(),
            cluster,
            cluster_uid: "8ac0adc1-5d67-4c29-b4b0-aa52525d790d".into(),
        },
        schedule_name: schedule,
        namespaces: vec![ns.clone()],
        backup_location: format!("s3-backups-{}", i % 4),
        backup_object_type: "All".into(),
        status: BackupStatus::Success,
        size_bytes: Some(rng.u64(1 << 20..1 << 40)),
        resource_count: Some(rng.u64(1..500)),
        volumes: vec![volume(rng, 0), volume(rng, 1)],
        created_at: Some(Timestamp(1_795_395_600_000 - i as i64 * 60_000)),
        completed_at: Some(Timestamp(1_795_395_900_000 - i as i64 * 60_000)),
        ..Backup::default()
    }
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn reset_peak() {
    // "5" resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// `--replay-only <dir>`: replays the journal in `dir` and prints records, seconds and peak
/// RSS growth in bytes.
fn replay_only(dir: &std::path::Path) {
    reset_peak();
    let (rss_before, _) = rss();
    let t = Instant::now();
    let mut count = 0u64;
    let (journal, report) = Journal::open(dir, |r| {
        if let Record::Tombstone { object, .. } = &r {
            count += 1;
            std::hint::black_box(object.len());
        }
    })
    .expect("replay");
    let secs = t.elapsed().as_secs_f64();
    let (_, peak) = rss();
    journal.close().expect("close");
    assert_eq!(count, report.records);
    println!("{count} {secs} {}", peak.saturating_sub(rss_before));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--replay-only") {
        replay_only(std::path::Path::new(&args[i + 1]));
        return;
    }
    let n: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");

    let t = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let origin = Origin::scoped(SourceId::Kube, "team-a");
    let mut object_bytes = 0u64;
    let records: Vec<OwnedRecordRef> = (0..n)
        .map(|i| {
            let b = realistic(&mut rng, i);
            let object: Arc<[u8]> = encode_backup(&b).into();
            object_bytes += object.len() as u64;
            OwnedRecordRef::Tombstone {
                uid: b.uid.as_str().into(),
                origin: origin.clone(),
                previous: BackupStatus::Success,
                deleted_at: Timestamp(1_795_603_614_960),
                object,
            }
        })
        .collect();
    let encode = t.elapsed();

    let (journal, _) = Journal::open(dir.path(), |_| {}).expect("open");
    let t = Instant::now();
    journal.compact(records).wait().expect("compaction");
    let compact = t.elapsed();
    journal.close().expect("close");
    let file_bytes = std::fs::metadata(dir.path().join(FILE_NAME))
        .expect("journal")
        .len();

    // Restart, streaming into a sink that only counts, in a fresh process: its peak RSS
    // growth is the reader's own memory (in this one, freed heap would hide it).
    let out = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .arg("--replay-only")
        .arg(dir.path())
        .output()
        .expect("replay process");
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<f64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [count, secs, growth] = fields[..] else {
        panic!(
            "replay process: {line} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(count as usize, n);

    // Restart as the inventory would: keeping every record (and then decoding the objects).
    let t = Instant::now();
    let mut kept = Vec::with_capacity(n);
    let (journal, _) = Journal::open(dir.path(), |r| kept.push(r)).expect("replay");
    let replay_keep = t.elapsed();
    journal.close().expect("close");
    let t = Instant::now();
    let decoded = kept
        .iter()
        .filter_map(|r| match r {
            Record::Tombstone { object, .. } => decode_backup(object).ok(),
            _ => None,
        })
        .count();
    let decode = t.elapsed();
    assert_eq!(decoded, n);

    println!("| tombstones | object bytes (avg) | journal file | compaction (write + fsync) | replay, counting sink | replay MB/s | replay peak RSS growth | replay, keeping records | decode_backup of all (1 core) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {:.0} | {:.1} MB ({:.0} B/record) | {:.2} s | {:.3} s | {:.0} | {:.1} MB | {:.3} s | {:.3} s |",
        object_bytes as f64 / n as f64,
        mb(file_bytes),
        file_bytes as f64 / n as f64,
        compact.as_secs_f64(),
        secs,
        mb(file_bytes) / secs,
        mb(growth as u64),
        replay_keep.as_secs_f64(),
        decode.as_secs_f64(),
    );
    eprintln!("(encoding {n} backups took {:.2} s)", encode.as_secs_f64());
}

//! The on-disk spool: every bundle is written here before it is sent, so that a Pure1 outage
//! or a restart loses nothing. One file per bundle, named by its idempotency key, written
//! atomically (temp file, fsync, rename). The cap is in bytes; what it forces out is counted
//! as dropped and logged.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::telemetry::metrics::{TelemetryMetrics, UploadKind, UploadResult};

const SUFFIX: &str = ".json.gz";

/// One upload: its idempotency key (stable across retries and restarts), its kind, and the
/// gzipped JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub key: String,
    pub kind: UploadKind,
    pub body: Vec<u8>,
}

/// `<unix millis, 13 digits>-<kind>-<64 random bits>`: names sort oldest first, and the kind
/// is readable from the key alone.
pub fn new_key(kind: UploadKind, unix_millis: u64) -> String {
    format!(
        "{unix_millis:013}-{}-{:016x}",
        kind.as_str(),
        fastrand::u64(..)
    )
}

pub fn kind_of_key(key: &str) -> Option<UploadKind> {
    let kind = key.split('-').nth(1)?;
    UploadKind::ALL.into_iter().find(|k| k.as_str() == kind)
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// key -> size in bytes; BTreeMap order = age order.
    entries: BTreeMap<String, u64>,
    total: u64,
}

impl Spool {
    /// Opens (creating) the spool directory and indexes the bundles a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut entries = BTreeMap::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write that a crash interrupted: never renamed, so never complete.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(key) = name.strip_suffix(SUFFIX) {
                if kind_of_key(key).is_some() {
                    entries.insert(key.to_owned(), entry.metadata()?.len());
                }
            }
        }
        let total = entries.values().sum();
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            entries,
            total,
        })
    }

    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes;
    }

    pub fn bytes(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}{SUFFIX}"))
    }

    /// Stores a bundle, pushing out the oldest ones when the cap requires it. Every bundle
    /// pushed out (possibly this one, when it alone exceeds the cap) is counted and logged.
    pub fn put(&mut self, bundle: &Bundle, metrics: &TelemetryMetrics) -> io::Result<()> {
        let size = bundle.body.len() as u64;
        if size > self.max_bytes {
            metrics.count_upload(bundle.kind, UploadResult::Dropped);
            tracing::warn!(
                key = %bundle.key, kind = bundle.kind.as_str(), size, max = self.max_bytes,
                "telemetry bundle dropped: larger than the whole spool"
            );
            return Ok(());
        }
        while self.total + size > self.max_bytes {
            let Some((key, _)) = self.entries.first_key_value() else {
                break;
            };
            let key = key.clone();
            let kind = kind_of_key(&key).unwrap_or(bundle.kind);
            self.remove(&key)?;
            metrics.count_upload(kind, UploadResult::Dropped);
            tracing::warn!(
                key = %key, kind = kind.as_str(), max = self.max_bytes,
                "telemetry spool full: oldest unsent bundle dropped"
            );
        }
        let tmp = self.dir.join(format!(".{}.tmp", bundle.key));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bundle.body)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.path(&bundle.key))?;
        self.entries.insert(bundle.key.clone(), size);
        self.total += size;
        metrics.set_spool_bytes(self.total);
        Ok(())
    }

    pub fn oldest(&self) -> Option<String> {
        self.entries.keys().next().cloned()
    }

    pub fn read(&self, key: &str) -> io::Result<Bundle> {
        let kind = kind_of_key(key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a bundle key"))?;
        Ok(Bundle {
            key: key.to_owned(),
            kind,
            body: fs::read(self.path(key))?,
        })
    }

    pub fn remove(&mut self, key: &str) -> io::Result<()> {
        if let Some(size) = self.entries.remove(key) {
            self.total -= size;
            match fs::remove_file(self.path(key)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(kind: UploadKind, ms: u64, size: usize) -> Bundle {
        Bundle {
            key: new_key(kind, ms),
            kind,
            body: vec![7; size],
        }
    }

    #[test]
    fn the_cap_drops_oldest_first_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = TelemetryMetrics::default();
        let mut s = Spool::open(dir.path(), 250).unwrap();
        let a = bundle(UploadKind::Logs, 1, 100);
        let b = bundle(UploadKind::Health, 2, 100);
        let c = bundle(UploadKind::Clusters, 3, 100);
        for x in [&a, &b, &c] {
            s.put(x, &m).unwrap();
        }
        assert_eq!(m.uploads(UploadKind::Logs, UploadResult::Dropped), 1);
        assert_eq!(s.oldest(), Some(b.key.clone()));
        assert_eq!(s.bytes(), 200);
        s.put(&bundle(UploadKind::Health, 4, 300), &m).unwrap();
        assert_eq!(m.uploads(UploadKind::Health, UploadResult::Dropped), 1);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn survives_a_reopen_and_ignores_torn_writes() {
        let dir = tempfile::tempdir().unwrap();
        let m = TelemetryMetrics::default();
        let b = bundle(UploadKind::Health, 5, 10);
        Spool::open(dir.path(), 1000).unwrap().put(&b, &m).unwrap();
        fs::write(dir.path().join(".x.tmp"), b"torn").unwrap();
        let mut s = Spool::open(dir.path(), 1000).unwrap();
        assert_eq!(s.read(&b.key).unwrap(), b);
        assert!(!dir.path().join(".x.tmp").exists());
        s.remove(&b.key).unwrap();
        assert!(Spool::open(dir.path(), 1000).unwrap().is_empty());
    }
}

//! The on-disk spool: every bundle is written here before it is sent, so that a Pure1 outage
//! or a restart loses nothing. One file per bundle, named by its idempotency key, written
//! atomically (temp file, fsync, rename), 0600, in a 0700 directory of the sidecar's own; a
//! bundle is read back never through a link. The cap is in bytes (never above
//! `MAX_SPOOL_MAX_BYTES`); what it forces out is counted as dropped and logged. The spool is
//! bound to one identity (appliance id and destination): bundles made for one never leave
//! under another. Every method does file I/O: call them on the blocking pool.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::persistence::files;

use crate::telemetry::config::MAX_SPOOL_MAX_BYTES;
use crate::telemetry::metrics::{DropReason, TelemetryMetrics, UploadKind};

const SUFFIX: &str = ".json.gz";
/// Holds the identity the spooled bundles were made for.
const IDENTITY_FILE: &str = ".identity";

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
    /// Opens (creating) the spool directory and indexes the bundles a previous run left. The
    /// cap is enforced by the first `put` or `set_max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        files::private_dir(dir)?;
        let mut entries = BTreeMap::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write that a crash interrupted: never renamed, so never complete.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            // Only what the spool wrote: regular files (a link is not a bundle; it is left
            // alone, and never read through).
            if !entry.file_type()?.is_file() {
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
            max_bytes: max_bytes.min(MAX_SPOOL_MAX_BYTES),
            entries,
            total,
        })
    }

    /// A new cap, applied at once: a spool that a previous, larger cap filled is trimmed now.
    pub fn set_max_bytes(&mut self, max_bytes: u64, metrics: &TelemetryMetrics) -> io::Result<()> {
        self.max_bytes = max_bytes.min(MAX_SPOOL_MAX_BYTES);
        self.make_room(0, None, metrics)?;
        metrics.set_spool_bytes(self.total);
        Ok(())
    }

    /// Removes the oldest bundles until `size` more bytes fit under the cap.
    fn make_room(
        &mut self,
        size: u64,
        fallback_kind: Option<UploadKind>,
        metrics: &TelemetryMetrics,
    ) -> io::Result<()> {
        while self.total + size > self.max_bytes {
            let Some((key, _)) = self.entries.first_key_value() else {
                break;
            };
            let key = key.clone();
            self.remove(&key)?;
            if let Some(kind) = kind_of_key(&key).or(fallback_kind) {
                metrics.count_dropped(kind, DropReason::SpoolFull);
            }
            tracing::warn!(
                key = %key, max = self.max_bytes,
                "telemetry spool full: oldest unsent bundle dropped"
            );
        }
        Ok(())
    }

    /// Empties the spool: every bundle is removed unsent and counted under `reason`.
    pub fn purge(&mut self, reason: DropReason, metrics: &TelemetryMetrics) -> io::Result<usize> {
        let keys: Vec<String> = self.entries.keys().cloned().collect();
        for key in &keys {
            self.remove(key)?;
            if let Some(kind) = kind_of_key(key) {
                metrics.count_dropped(kind, reason);
            }
        }
        metrics.set_spool_bytes(self.total);
        if !keys.is_empty() {
            tracing::info!(
                bundles = keys.len(),
                reason = reason.as_str(),
                "telemetry spool emptied; those bundles are never sent"
            );
        }
        Ok(keys.len())
    }

    /// Binds the spool to `identity` (appliance id and destination). Bundles spooled for
    /// another identity, or for one not recorded (a spool from an older version), are
    /// dropped first.
    pub fn claim(&mut self, identity: &str, metrics: &TelemetryMetrics) -> io::Result<()> {
        let path = self.dir.join(IDENTITY_FILE);
        let current = match files::read(&path) {
            Ok(s) => Some(String::from_utf8_lossy(&s).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if current.as_deref() == Some(identity) {
            return Ok(());
        }
        self.purge(DropReason::IdentityChanged, metrics)?;
        write_atomically(&self.dir, IDENTITY_FILE, identity.as_bytes())
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
            metrics.count_dropped(bundle.kind, DropReason::SpoolFull);
            tracing::warn!(
                key = %bundle.key, kind = bundle.kind.as_str(), size, max = self.max_bytes,
                "telemetry bundle dropped: larger than the whole spool"
            );
            return Ok(());
        }
        self.make_room(size, Some(bundle.kind), metrics)?;
        write_atomically(&self.dir, &format!("{}{SUFFIX}", bundle.key), &bundle.body)?;
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
            body: files::read(&self.path(key))?,
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

/// Temp file, fsync, rename: a crash leaves the old file or the new one, never half of one.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    files::write_atomically(dir, name, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::UploadResult;

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
        assert_eq!(m.dropped(UploadKind::Logs, DropReason::SpoolFull), 1);
        assert_eq!(s.oldest(), Some(b.key.clone()));
        assert_eq!(s.bytes(), 200);
        s.put(&bundle(UploadKind::Health, 4, 300), &m).unwrap();
        assert_eq!(m.uploads(UploadKind::Health, UploadResult::Dropped), 1);
        assert_eq!(s.len(), 2);
        // A smaller cap trims at once.
        s.set_max_bytes(100, &m).unwrap();
        assert_eq!((s.len(), s.bytes()), (1, 100));
        // Never above the hard limit, whatever is asked.
        s.set_max_bytes(u64::MAX, &m).unwrap();
        assert_eq!(s.max_bytes, MAX_SPOOL_MAX_BYTES);
    }

    #[test]
    fn purge_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let m = TelemetryMetrics::default();
        let mut s = Spool::open(dir.path(), 1000).unwrap();
        s.claim("org-1\nhttps://a", &m).unwrap();
        s.put(&bundle(UploadKind::Health, 1, 10), &m).unwrap();
        s.put(&bundle(UploadKind::Logs, 2, 10), &m).unwrap();
        // The same identity (also after a reopen) keeps the bundles.
        let mut s = Spool::open(dir.path(), 1000).unwrap();
        s.claim("org-1\nhttps://a", &m).unwrap();
        assert_eq!(s.len(), 2);
        // Another one drops them, counted but not as a loss.
        s.claim("org-2\nhttps://a", &m).unwrap();
        assert!(s.is_empty());
        assert_eq!(
            m.dropped(UploadKind::Health, DropReason::IdentityChanged),
            1
        );
        assert_eq!(m.uploads(UploadKind::Health, UploadResult::Dropped), 0);
        s.put(&bundle(UploadKind::Clusters, 3, 10), &m).unwrap();
        assert_eq!(s.purge(DropReason::Paused, &m).unwrap(), 1);
        assert_eq!(m.dropped(UploadKind::Clusters, DropReason::Paused), 1);
        assert!(Spool::open(dir.path(), 1000).unwrap().is_empty());
        // A spool with no recorded identity (an older version's) is not trusted.
        let other = tempfile::tempdir().unwrap();
        let mut s = Spool::open(other.path(), 1000).unwrap();
        s.put(&bundle(UploadKind::Health, 4, 10), &m).unwrap();
        s.claim("org-1\nhttps://a", &m).unwrap();
        assert!(s.is_empty());
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

    /// Bundles and the identity are 0600 in a 0700 directory; a link planted under a bundle's
    /// name is never read through (it would upload whatever it points at).
    #[test]
    fn bundles_are_private_and_a_planted_link_is_never_read() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("telemetry").join("spool");
        let m = TelemetryMetrics::default();
        let mut s = Spool::open(&spool, 1000).unwrap();
        s.claim("org-1\nhttps://a", &m).unwrap();
        let b = bundle(UploadKind::Health, 6, 10);
        s.put(&b, &m).unwrap();
        assert_eq!(mode(&spool), 0o700);
        assert_eq!(mode(&s.path(&b.key)), 0o600);
        assert_eq!(mode(&spool.join(IDENTITY_FILE)), 0o600);

        let victim = dir.path().join("shadow");
        fs::write(&victim, b"root:CANARYhash:19000").unwrap();
        let planted = new_key(UploadKind::Logs, 7);
        std::os::unix::fs::symlink(&victim, spool.join(format!("{planted}{SUFFIX}"))).unwrap();
        let s = Spool::open(&spool, 1000).unwrap();
        if let Ok(b) = s.read(&planted) {
            assert!(!b.body.starts_with(b"root:"), "read through the link");
        }
    }
}

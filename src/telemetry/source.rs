//! Where the telemetry configuration comes from: a file or a mounted ConfigMap directory
//! (polled), or a ConfigMap through the Kubernetes API (watched; also PX-Backup's
//! `px-backup-config` with its pause switch). Each publishes what it sees on a watch channel
//! as a `RawConfig`: not read yet, missing, unreadable, or the data.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::telemetry::config::{parse_text, RawConfig};

/// Polled rather than watched with inotify: kubelet updates a mounted ConfigMap by swapping
/// the `..data` symlink to a new timestamped directory, and inotify watches on the old
/// symlink targets miss that swap (or fire on a directory that is about to vanish). Reading
/// a handful of tiny files once a second is cheap and always right.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A ConfigMap holds at most 1 MiB (the API server's limit on an object): a configuration
/// file, or a mounted directory's files together, larger than that is refused, not read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn unreadable(path: &Path, e: impl std::fmt::Display) -> RawConfig {
    RawConfig::Unreadable(format!("{}: {e}", path.display()))
}

fn too_large(path: &Path, bytes: u64) -> RawConfig {
    unreadable(
        path,
        format!(
            "{bytes} bytes or more; a telemetry configuration is at most 1 MiB \
             ({MAX_CONFIG_BYTES} bytes), as a ConfigMap is"
        ),
    )
}

/// Why a configuration file was not read.
enum ReadError {
    /// Not a regular file (a FIFO would hang the reading thread): not a configuration.
    NotRegular,
    /// Over the bytes left of the budget: at least this many.
    TooLarge(u64),
    Io(io::Error),
}

/// Reads a configuration file of at most `budget` bytes, through links (kubelet's layout is
/// made of them), without waiting on a FIFO, and never more than `budget + 1` bytes of it.
fn read_capped(path: &Path, budget: u64) -> Result<String, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > budget {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(budget + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > budget {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    String::from_utf8(bytes)
        .map_err(|e| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Reads the configuration at `path`: a directory holds one file per key (kubelet's layout,
/// hidden `..data` entries skipped), a file holds `key: value` lines. A file or key that
/// exists but cannot be read or parsed makes the whole configuration unreadable (off).
pub fn read_path(path: &Path) -> RawConfig {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return RawConfig::Missing,
        Err(e) => return unreadable(path, e),
    };
    if !meta.is_dir() {
        return match read_capped(path, MAX_CONFIG_BYTES) {
            Ok(text) => match parse_text(&text) {
                Ok(data) => RawConfig::Data(data),
                Err(e) => unreadable(path, e),
            },
            Err(ReadError::TooLarge(bytes)) => too_large(path, bytes),
            Err(ReadError::NotRegular) => unreadable(path, "not a regular file"),
            // Removed between the two calls: as if it had not been there.
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => RawConfig::Missing,
            Err(ReadError::Io(e)) => unreadable(path, e),
        };
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => return unreadable(path, e),
    };
    let mut data = BTreeMap::new();
    let mut used = 0u64;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return unreadable(path, e),
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // Opened through the key -> ..data/key symlink; directories and the like are not keys.
        match read_capped(&entry.path(), MAX_CONFIG_BYTES - used) {
            Ok(v) => {
                used += v.len() as u64;
                data.insert(name, v.trim().to_owned());
            }
            Err(ReadError::NotRegular) => continue,
            Err(ReadError::TooLarge(bytes)) => return too_large(path, used + bytes),
            // Kubelet swapped the directory while it was read: the next poll sees the new one.
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(ReadError::Io(e)) => return unreadable(&entry.path(), e),
        }
    }
    RawConfig::Data(data)
}

fn publish(tx: &watch::Sender<RawConfig>, raw: RawConfig) {
    tx.send_if_modified(|cur| {
        let changed = *cur != raw;
        if changed {
            *cur = raw;
        }
        changed
    });
}

pub async fn poll_path(
    path: std::path::PathBuf,
    tx: watch::Sender<RawConfig>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let p = path.clone();
        match tokio::task::spawn_blocking(move || read_path(&p)).await {
            Ok(raw) => publish(&tx, raw),
            Err(e) => tracing::error!(error = %e, "reading the telemetry configuration failed"),
        }
    }
}

/// The API server refuses this sidecar the ConfigMap (RBAC): it cannot be read, which is
/// not the same as a connection that broke and will be retried.
fn refused(e: &watcher::Error) -> Option<String> {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => s,
        _ => return None,
    };
    matches!(api.code, 401 | 403).then(|| format!("HTTP {}: {}", api.code, api.message))
}

/// Watches the one ConfigMap `name` in the namespace of `api` (a field selector keeps the
/// watch, and the RBAC it needs, to that object). None after the initial list, or a delete,
/// is `Missing`; a refusal is `Unreadable`. Other errors (a broken connection, an API server
/// restarting) keep what was last seen while the watcher lists again with backoff.
pub async fn watch_configmap(
    api: Api<ConfigMap>,
    name: String,
    tx: watch::Sender<RawConfig>,
    stop: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut seen_in_list = false;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => match refused(&e) {
                Some(why) => {
                    tracing::warn!(error = %e, configmap = %name, "ConfigMap refused to the sidecar; taken as unreadable (telemetry off); retrying");
                    publish(&tx, RawConfig::Unreadable(why));
                }
                None => {
                    tracing::warn!(error = %e, configmap = %name, "ConfigMap watch failed; retrying")
                }
            },
            Some(Ok(watcher::Event::Init)) => seen_in_list = false,
            Some(Ok(watcher::Event::InitApply(cm))) | Some(Ok(watcher::Event::Apply(cm))) => {
                seen_in_list = true;
                publish(&tx, RawConfig::Data(cm.data.unwrap_or_default()));
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if !seen_in_list {
                    publish(&tx, RawConfig::Missing);
                }
            }
            Some(Ok(watcher::Event::Delete(_))) => publish(&tx, RawConfig::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_layout_with_data_symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mount");
        std::fs::create_dir(&mount).unwrap();
        let v1 = mount.join("..2026_11_23_01");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("enabled"), "false\n").unwrap();
        std::os::unix::fs::symlink("..2026_11_23_01", mount.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/enabled", mount.join("enabled")).unwrap();
        let data = |raw: RawConfig| match raw {
            RawConfig::Data(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(data(read_path(&mount))["enabled"], "false");
        let v2 = mount.join("..2026_11_23_02");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("enabled"), "true").unwrap();
        std::os::unix::fs::symlink("..2026_11_23_02", mount.join("..data_tmp")).unwrap();
        std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
        let raw = data(read_path(&mount));
        assert_eq!(raw.len(), 1, "{raw:?}");
        assert_eq!(raw["enabled"], "true");
        assert_eq!(read_path(&dir.path().join("nope")), RawConfig::Missing);
    }

    #[test]
    fn a_file_that_cannot_be_read_or_parsed_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("telemetry.conf");
        std::fs::write(
            &f,
            "enabled: true
logs-interval 2 minutes please
",
        )
        .unwrap();
        assert!(matches!(read_path(&f), RawConfig::Unreadable(why) if why.contains("line 2")));
        std::fs::write(&f, [b'e', b'n', 0xff, b':', b'1']).unwrap();
        assert!(matches!(read_path(&f), RawConfig::Unreadable(_)));
    }

    /// A configuration larger than a ConfigMap can be (1 MiB) is refused with a clear error,
    /// without reading it whole: a file, or one key's file in a mounted directory.
    #[test]
    fn a_configuration_over_a_mib_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("telemetry.conf");
        let big: String = (0..100_000).map(|i| format!("key-{i}: value\n")).collect();
        assert!(big.len() > 1 << 20);
        std::fs::write(&f, &big).unwrap();
        match read_path(&f) {
            RawConfig::Unreadable(why) => assert!(why.contains("1 MiB"), "{why}"),
            other => panic!("{:?}", std::mem::discriminant(&other)),
        }
        let mount = dir.path().join("mount");
        std::fs::create_dir(&mount).unwrap();
        std::fs::write(mount.join("enabled"), "false").unwrap();
        std::fs::write(mount.join("environment"), "x".repeat((1 << 20) + 1)).unwrap();
        match read_path(&mount) {
            RawConfig::Unreadable(why) => assert!(why.contains("1 MiB"), "{why}"),
            other => panic!("{:?}", std::mem::discriminant(&other)),
        }
    }
}

//! Where the telemetry configuration comes from: a file or a mounted ConfigMap directory
//! (polled), or the ConfigMap itself through the Kubernetes API (watched). Both publish the
//! raw data on a watch channel; `None` means there is no configuration (disabled).

use std::collections::BTreeMap;
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

/// Reads the configuration at `path`: a directory holds one file per key (kubelet's layout,
/// hidden `..data` entries skipped), a file holds `key: value` lines. Missing = `None`.
pub fn read_path(path: &Path) -> RawConfig {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        let mut data = BTreeMap::new();
        for entry in std::fs::read_dir(path).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // metadata() follows the key -> ..data/key symlink.
            if !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                continue;
            }
            if let Ok(v) = std::fs::read_to_string(entry.path()) {
                data.insert(name, v.trim().to_owned());
            }
        }
        Some(data)
    } else {
        std::fs::read_to_string(path).ok().map(|t| parse_text(&t))
    }
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
        let raw = read_path(&path);
        tx.send_if_modified(|cur| {
            let changed = *cur != raw;
            if changed {
                *cur = raw;
            }
            changed
        });
    }
}

/// Watches the one ConfigMap `name` in the namespace of `api` (a field selector keeps the
/// watch to that object). A deleted ConfigMap, or none after the initial list, is `None`.
pub async fn watch_configmap(
    api: Api<ConfigMap>,
    name: String,
    tx: watch::Sender<RawConfig>,
    stop: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut seen_in_list = false;
    let publish = |raw: RawConfig| {
        tx.send_if_modified(|cur| {
            let changed = *cur != raw;
            if changed {
                *cur = raw;
            }
            changed
        });
    };
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(error = %e, configmap = %name, "telemetry ConfigMap watch failed; retrying")
            }
            Some(Ok(watcher::Event::Init)) => seen_in_list = false,
            Some(Ok(watcher::Event::InitApply(cm))) | Some(Ok(watcher::Event::Apply(cm))) => {
                seen_in_list = true;
                publish(Some(cm.data.unwrap_or_default()));
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if !seen_in_list {
                    publish(None);
                }
            }
            Some(Ok(watcher::Event::Delete(_))) => publish(None),
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
        assert_eq!(read_path(&mount).unwrap()["enabled"], "false");
        let v2 = mount.join("..2026_11_23_02");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("enabled"), "true").unwrap();
        std::os::unix::fs::symlink("..2026_11_23_02", mount.join("..data_tmp")).unwrap();
        std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
        let raw = read_path(&mount).unwrap();
        assert_eq!(raw.len(), 1, "{raw:?}");
        assert_eq!(raw["enabled"], "true");
        assert_eq!(read_path(&dir.path().join("nope")), None);
    }
}

//! Pure1 telemetry: the `px-backup-telemetry-config` ConfigMap, registration with Pure1, and
//! scheduled uploads of health metrics, logs and onboarded cluster UUIDs.
//!
//! `source` publishes the raw configuration, `controller` validates it (`config`) and runs the
//! state machine, `pure1` speaks the wire contract, `uploader` schedules bundles through the
//! `spool`, `logs` finds new log lines and `redact` cleans them before they leave.

pub mod config;
pub mod controller;
pub mod logs;
pub mod metrics;
pub mod payload;
pub mod preview;
pub mod pure1;
pub mod redact;
pub mod source;
pub mod spool;
pub mod store;
pub mod uploader;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Settings, TelemetryConfigSource};
use crate::exposition::Collector;
use crate::inventory::Inventory;
use crate::kubernetes::Kubernetes;
use crate::sources::SourceStatus;
use config::{Defaults, RawConfig, DEFAULT_SPOOL_MAX_BYTES};
use controller::{Context, Controller, Inputs};
use logs::LogCollector;
use metrics::TelemetryMetrics;
use spool::Spool;
use store::CredentialStore;
use uploader::Stores;

/// The sidecar's own log lines, for the logs upload (written by `logging`).
pub const OWN_LOG_FILE: &str = "sidecar.log";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--telemetry-ca-file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("telemetry state directory {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("--telemetry-configmap needs a Kubernetes client, and none was configured")]
    NoKubernetes,
    #[error("redaction rules: {0}")]
    Redactor(#[from] regex::Error),
}

/// What telemetry is handed: what it reads of the rest of the sidecar for its bundles, and
/// the metrics it keeps about itself.
#[derive(Clone)]
pub struct TelemetryContext {
    /// Read for counts and summaries only: making a bundle changes nothing in it.
    pub inventory: Arc<Inventory>,
    pub sources: Arc<SourceStatus>,
    pub metrics: Arc<TelemetryMetrics>,
    /// The sidecar's own families, for the health bundle.
    pub self_metrics: Arc<dyn Collector>,
}

/// `<state-dir>/telemetry`. Without --state-dir, a private directory made for this process
/// (see `PRIVATE_DIR`): never a fixed path in the shared temp dir, which another local user
/// could make first and own.
pub fn telemetry_dir(state_dir: Option<&Path>) -> std::io::Result<PathBuf> {
    match state_dir {
        Some(d) => Ok(in_state_dir(d)),
        None => private_dir(),
    }
}

/// Telemetry's directory in the state dir.
pub fn in_state_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("telemetry")
}

/// Telemetry's directory without --state-dir: `$TMPDIR/pxbackup-sidecar-XXXXXX`, made 0700
/// under a fresh random name by `tempfile` (nobody can have made it first), the same one for
/// the whole process, removed at a clean exit (`remove_private_dir`). Nothing in it outlives
/// the process: a restart registers again (file mode) and starts a new spool and log cursors.
static PRIVATE_DIR: Mutex<Option<tempfile::TempDir>> = Mutex::new(None);

fn private_dir() -> std::io::Result<PathBuf> {
    let mut dir = PRIVATE_DIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(d) = dir.as_ref() {
        return Ok(d.path().to_owned());
    }
    let made = tempfile::Builder::new()
        .prefix("pxbackup-sidecar-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(
            crate::persistence::files::DIR_MODE,
        ))
        .tempdir()?;
    let path = made.path().to_owned();
    *dir = Some(made);
    Ok(path)
}

/// Removes the private directory made without --state-dir, if any.
fn remove_private_dir() {
    let made = PRIVATE_DIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    drop(made);
}

/// The file the sidecar copies its own log lines to, when telemetry may be turned on.
pub fn own_log_path(settings: &Settings) -> Option<PathBuf> {
    match settings.telemetry_config {
        TelemetryConfigSource::None => None,
        _ => match telemetry_dir(settings.state_dir.as_deref()) {
            Ok(dir) => Some(dir.join(OWN_LOG_FILE)),
            Err(e) => {
                // Logging is not set up yet: this is said on stderr.
                eprintln!("pxbackup-sidecar: no directory for telemetry's copy of the log: {e}");
                None
            }
        },
    }
}

/// Every log file or directory whose lines telemetry uploads: the own log copy first.
fn log_paths(settings: &Settings, dir: &Path) -> Vec<PathBuf> {
    let mut paths = settings.telemetry_log_paths.clone();
    paths.insert(0, dir.join(OWN_LOG_FILE));
    paths
}

fn cursor_file(dir: &Path) -> PathBuf {
    dir.join("log-cursors.json")
}

/// The pod name (Kubernetes sets HOSTNAME) or the host name; empty when unknown, in which
/// case the appliance id stands in.
fn component_sn() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn read_ca(settings: &Settings) -> Result<Option<Vec<u8>>, TelemetryError> {
    match &settings.telemetry_ca_file {
        Some(path) => std::fs::read(path)
            .map(Some)
            .map_err(|source| TelemetryError::CaFile {
                path: path.display().to_string(),
                source,
            }),
        None => Ok(None),
    }
}

/// Runs telemetry until `stop`. Telemetry failures never stop the sidecar: they are logged
/// and telemetry stays off. `kube`: the process's one Kubernetes client (API mode needs it).
pub async fn run(
    sidecar: TelemetryContext,
    settings: Settings,
    kube: Option<Arc<Kubernetes>>,
    clock: Clock,
    stop: CancellationToken,
) {
    let stopping = stop.clone();
    if let Err(e) = run_inner(sidecar, settings, kube, clock, stop).await {
        tracing::error!(error = %e, "telemetry cannot start; it stays off");
    }
    if stopping.is_cancelled() {
        remove_private_dir();
    }
}

async fn run_inner(
    sidecar: TelemetryContext,
    settings: Settings,
    kube: Option<Arc<Kubernetes>>,
    clock: Clock,
    stop: CancellationToken,
) -> Result<(), TelemetryError> {
    crate::tls::install_crypto_provider();
    let dir = telemetry_dir(settings.state_dir.as_deref()).map_err(|source| {
        TelemetryError::StateDir {
            path: "(a private directory in the temp dir)".into(),
            source,
        }
    })?;
    let state_dir_error = |source| TelemetryError::StateDir {
        path: dir.display().to_string(),
        source,
    };
    let stores = {
        let (dir, paths) = (dir.clone(), log_paths(&settings, &dir));
        tokio::task::spawn_blocking(move || -> std::io::Result<Stores> {
            crate::persistence::files::private_dir(&dir)?;
            let spool = Spool::open(&dir.join("spool"), DEFAULT_SPOOL_MAX_BYTES)?;
            let logs = LogCollector::open(paths, cursor_file(&dir));
            Ok(Stores {
                spool: Arc::new(Mutex::new(spool)),
                logs: Arc::new(Mutex::new(logs)),
            })
        })
        .await
        .map_err(|e| state_dir_error(std::io::Error::other(e)))?
        .map_err(state_dir_error)?
    };
    sidecar
        .metrics
        .set_spool_bytes(uploader::lock(&stores.spool).bytes());
    let defaults = Defaults {
        endpoint: settings.telemetry_endpoint.clone(),
        appliance_id: None,
    };
    let (tx, rx) = watch::channel(RawConfig::Pending);
    let (inputs, store) = match &settings.telemetry_config {
        TelemetryConfigSource::None => return Ok(()),
        TelemetryConfigSource::File(path) => {
            let (path, stop) = (path.clone(), stop.clone());
            tokio::spawn(source::poll_path(path, tx, stop));
            let inputs = Inputs {
                config: rx,
                pause: None,
                cluster_uid: None,
            };
            (inputs, CredentialStore::Files(dir.clone()))
        }
        TelemetryConfigSource::ConfigMap { config, pause } => {
            let kube = kube.ok_or(TelemetryError::NoKubernetes)?;
            let client = kube.client();
            let api = Api::<ConfigMap>::namespaced(client.clone(), &config.namespace);
            tokio::spawn(source::watch_configmap(
                api,
                config.name.clone(),
                tx,
                stop.clone(),
            ));
            let (pause_tx, pause_rx) = watch::channel(RawConfig::Pending);
            let api = Api::<ConfigMap>::namespaced(client.clone(), &pause.namespace);
            tokio::spawn(source::watch_configmap(
                api,
                pause.name.clone(),
                pause_tx,
                stop.clone(),
            ));
            // PXB's appliance id defaults to the cluster's identity: the one lookup of the
            // process, shared with the kube source, retried until it succeeds.
            let (uid_tx, uid_rx) = watch::channel(None);
            let stop_uid = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    uid = kube.cluster_uid() => {
                        let _ = uid_tx.send(Some(uid));
                    }
                    _ = stop_uid.cancelled() => {}
                }
            });
            let inputs = Inputs {
                config: rx,
                pause: Some(pause_rx),
                cluster_uid: Some(uid_rx),
            };
            let store = CredentialStore::Secret {
                api: Api::<Secret>::namespaced(client, &config.namespace),
                name: settings.telemetry_secret.clone(),
            };
            (inputs, store)
        }
    };
    let ctx = Context {
        sidecar,
        clock,
        defaults,
        store: Arc::new(store),
        stores,
        extra_ca_pem: read_ca(&settings)?,
        component_sn: component_sn(),
        redactor: Arc::new(redact::Redactor::new()?),
    };
    Controller::new(ctx).run(inputs, stop).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without --state-dir telemetry's state is not under a fixed path of the shared temp
    /// directory (another user could make it first and own it): a private directory, 0700.
    #[test]
    fn without_a_state_dir_the_telemetry_dir_is_private() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = telemetry_dir(None).unwrap();
        assert_ne!(
            dir,
            std::env::temp_dir()
                .join("pxbackup-sidecar")
                .join("telemetry")
        );
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
        // One for the whole process, gone at a clean exit.
        assert_eq!(telemetry_dir(None).unwrap(), dir);
        remove_private_dir();
        assert!(!dir.exists());
    }
}

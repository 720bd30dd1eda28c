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

/// `<state-dir>/telemetry`. Without --state-dir a directory under the temp dir keeps the
/// spool and cursors for the life of the pod at least.
pub fn telemetry_dir(state_dir: Option<&Path>) -> PathBuf {
    match state_dir {
        Some(d) => d.join("telemetry"),
        None => std::env::temp_dir()
            .join("pxbackup-sidecar")
            .join("telemetry"),
    }
}

/// The file the sidecar copies its own log lines to, when telemetry may be turned on.
pub fn own_log_path(settings: &Settings) -> Option<PathBuf> {
    match settings.telemetry_config {
        TelemetryConfigSource::None => None,
        _ => Some(telemetry_dir(settings.state_dir.as_deref()).join(OWN_LOG_FILE)),
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
    if let Err(e) = run_inner(sidecar, settings, kube, clock, stop).await {
        tracing::error!(error = %e, "telemetry cannot start; it stays off");
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
    let dir = telemetry_dir(settings.state_dir.as_deref());
    let state_dir_error = |source| TelemetryError::StateDir {
        path: dir.display().to_string(),
        source,
    };
    let stores = {
        let (dir, paths) = (dir.clone(), log_paths(&settings, &dir));
        tokio::task::spawn_blocking(move || -> std::io::Result<Stores> {
            std::fs::create_dir_all(&dir)?;
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

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
pub mod pure1;
pub mod redact;
pub mod source;
pub mod spool;
pub mod store;
pub mod uploader;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, TelemetryConfigSource};
use crate::state::Shared;
use config::Defaults;
use controller::{Context, Controller};
use store::CredentialStore;

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
    #[error("Kubernetes client: {0}")]
    Kube(String),
    #[error("redaction rules: {0}")]
    Redactor(#[from] regex::Error),
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

/// The pod name (Kubernetes sets HOSTNAME) or the host name; empty when unknown, in which
/// case the appliance id stands in.
fn component_sn() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client, TelemetryError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| TelemetryError::Kube(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| TelemetryError::Kube(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| TelemetryError::Kube(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| TelemetryError::Kube(e.to_string()))
}

/// Runs telemetry until `stop`. Telemetry failures never stop the sidecar: they are logged
/// and telemetry stays disabled.
pub async fn run(shared: Arc<Shared>, settings: Settings, stop: CancellationToken) {
    if let Err(e) = run_inner(shared, settings, stop).await {
        tracing::error!(error = %e, "telemetry cannot start; it stays disabled");
    }
}

async fn run_inner(
    shared: Arc<Shared>,
    settings: Settings,
    stop: CancellationToken,
) -> Result<(), TelemetryError> {
    crate::tls::install_crypto_provider();
    let dir = telemetry_dir(settings.state_dir.as_deref());
    std::fs::create_dir_all(&dir).map_err(|source| TelemetryError::StateDir {
        path: dir.display().to_string(),
        source,
    })?;
    let extra_ca_pem = match &settings.telemetry_ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|source| TelemetryError::CaFile {
                path: path.display().to_string(),
                source,
            })?,
        ),
        None => None,
    };
    let mut log_paths = settings.telemetry_log_paths.clone();
    log_paths.insert(0, dir.join(OWN_LOG_FILE));
    let mut defaults = Defaults {
        endpoint: settings.telemetry_endpoint.clone(),
        appliance_id: None,
    };
    let (tx, rx) = watch::channel(None);
    let store = match &settings.telemetry_config {
        TelemetryConfigSource::None => return Ok(()),
        TelemetryConfigSource::File(path) => {
            let (path, stop) = (path.clone(), stop.clone());
            tokio::spawn(source::poll_path(path, tx, stop));
            CredentialStore::Files(dir.clone())
        }
        TelemetryConfigSource::ConfigMap { namespace, name } => {
            let client = kube_client(settings.kubeconfig.as_deref()).await?;
            // PXB's appliance id defaults to the cluster's identity: the kube-system UID.
            match Api::<Namespace>::all(client.clone())
                .get("kube-system")
                .await
            {
                Ok(ns) => defaults.appliance_id = ns.metadata.uid,
                Err(e) => tracing::warn!(error = %e,
                    "cannot read the kube-system namespace UID; appliance-id must be set in the ConfigMap"),
            }
            let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
            let (name, stop) = (name.clone(), stop.clone());
            tokio::spawn(source::watch_configmap(api, name, tx, stop));
            CredentialStore::Secret {
                api: Api::<Secret>::namespaced(client, namespace),
                name: settings.telemetry_secret.clone(),
            }
        }
    };
    let ctx = Context {
        shared,
        defaults,
        store: Arc::new(store),
        dir: dir.clone(),
        log_paths,
        extra_ca_pem,
        component_sn: component_sn(),
        redactor: Arc::new(redact::Redactor::new()?),
    };
    let controller = Controller::new(ctx).map_err(|source| TelemetryError::StateDir {
        path: dir.display().to_string(),
        source,
    })?;
    controller.run(rx, stop).await;
    Ok(())
}

//! `pxbackup-sidecar telemetry preview`: the next health, logs and clusters bundles exactly
//! as they would leave (redacted, before gzip), so that an administrator can read what Pure1
//! would receive before switching telemetry on. Nothing is sent, nothing is registered, and
//! nothing in the state dir is written (a running sidecar owns it): the journal is not
//! opened, the log cursors are read and not moved, the own-log copy is only read.
//!
//! The inventory is rebuilt in memory by the sources that can be read without side effects
//! (demo, kube: a list of the Stork CRs); backups pushed through ingest live only in the
//! running sidecar and are not counted here. Starting the sources is wiring, so `app` runs
//! the steps: `read_config`, the sources, `wait_for_sources`, then `bundles`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::Api;
use serde_json::Value;

use crate::clock::Clock;
use crate::config::{ConfigMapRef, Settings, TelemetryConfigSource};
use crate::kubernetes::{KubeClientError, Kubernetes};
use crate::model::SourceId;
use crate::sources::SourceStatus;
use crate::telemetry::config::{
    pause_state, validate, Defaults, InvalidValue, Pause, RawConfig, TelemetryConfig,
};
use crate::telemetry::logs::{Collected, LogCollector};
use crate::telemetry::metrics::UploadKind;
use crate::telemetry::redact::Redactor;
use crate::telemetry::spool::new_key;
use crate::telemetry::uploader::bundle_json;
use crate::telemetry::{cursor_file, in_state_dir, log_paths, source, TelemetryContext};

/// How long the sources get to finish their first list, and the cluster identity to be read.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("{0}")]
    Kube(#[from] KubeClientError),
    #[error("the telemetry configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<InvalidValue>),
    #[error("the telemetry configuration cannot be read: {0}")]
    Unreadable(String),
    #[error("timed out after {secs} s waiting for {what}", secs = SYNC_TIMEOUT.as_secs())]
    Timeout { what: &'static str },
    #[error("redaction rules: {0}")]
    Redactor(#[from] regex::Error),
}

impl PreviewError {
    /// 64 (EX_USAGE) for what the operator must fix in the configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PreviewError::Kube(_) | PreviewError::Invalid(_) | PreviewError::Unreadable(_) => 64,
            PreviewError::Timeout { .. } | PreviewError::Redactor(_) => 1,
        }
    }
}

/// The preview: `bundles`, an array in the order they are made (health, logs when there are
/// new lines, clusters), and what the sidecar would do with them now (`status`, a line for
/// stderr).
pub struct Preview {
    pub bundles: Value,
    pub status: String,
}

/// One ConfigMap read once (a list by name: the same RBAC as the running sidecar's watch).
async fn read_configmap(kube: &Kubernetes, cm: &ConfigMapRef) -> RawConfig {
    let api = Api::<ConfigMap>::namespaced(kube.client(), &cm.namespace);
    let params = ListParams::default().fields(&format!("metadata.name={}", cm.name));
    match api.list(&params).await {
        Ok(list) => match list.items.into_iter().next() {
            Some(found) => RawConfig::Data(found.data.unwrap_or_default()),
            None => RawConfig::Missing,
        },
        Err(e) => RawConfig::Unreadable(format!("ConfigMap {}/{}: {e}", cm.namespace, cm.name)),
    }
}

async fn within<T>(
    what: &'static str,
    f: impl std::future::Future<Output = T>,
) -> Result<T, PreviewError> {
    tokio::time::timeout(SYNC_TIMEOUT, f)
        .await
        .map_err(|_| PreviewError::Timeout { what })
}

/// What the preview shows: the configuration as it would be once switched on, and whether it
/// is switched on now.
pub struct Wanted {
    cfg: TelemetryConfig,
    pause: Pause,
    consent: bool,
}

/// Reads the telemetry configuration once and validates it as if `enabled` were "true".
/// `kube`: the process's one Kubernetes client, connected here when the configuration is in a
/// ConfigMap (the kube source then uses the same one).
pub async fn read_config(
    settings: &Settings,
    kube: &mut Option<Arc<Kubernetes>>,
) -> Result<Wanted, PreviewError> {
    let (raw, pause) = match &settings.telemetry_config {
        TelemetryConfigSource::None => (RawConfig::Missing, Pause::Running),
        TelemetryConfigSource::File(path) => {
            let path = path.clone();
            let raw = tokio::task::spawn_blocking(move || source::read_path(&path))
                .await
                .unwrap_or_else(|e| RawConfig::Unreadable(e.to_string()));
            (raw, Pause::Running)
        }
        TelemetryConfigSource::ConfigMap { config, pause } => {
            let k = Kubernetes::get_or_connect(kube, settings).await?;
            let raw = read_configmap(&k, config).await;
            (raw, pause_state(&read_configmap(&k, pause).await))
        }
    };
    let mut data = match raw {
        RawConfig::Data(d) => d,
        RawConfig::Missing | RawConfig::Pending => BTreeMap::new(),
        RawConfig::Unreadable(why) => return Err(PreviewError::Unreadable(why)),
    };
    let mut defaults = Defaults {
        endpoint: settings.telemetry_endpoint.clone(),
        appliance_id: None,
    };
    if let (Some(k), None) = (&*kube, data.get("appliance-id")) {
        defaults.appliance_id =
            Some(within("the kube-system namespace UID", k.cluster_uid()).await?);
    }
    // What would leave once switched on: validated as if `enabled` were "true".
    let consent = validate(&data, &defaults).consent;
    data.insert("enabled".into(), "true".into());
    let validation = validate(&data, &defaults);
    let Some(cfg) = validation.settings else {
        return Err(PreviewError::Invalid(validation.invalid));
    };
    Ok(Wanted {
        cfg,
        pause,
        consent,
    })
}

/// Resolves once every configured source has delivered its first list.
pub async fn wait_for_sources(status: &SourceStatus) -> Result<(), PreviewError> {
    within("the sources' first list", async {
        while !status.not_synced().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// The bundles `wanted` would make of what `sidecar` holds now, and what would become of them.
pub async fn bundles(
    settings: &Settings,
    wanted: Wanted,
    sidecar: &TelemetryContext,
    clock: &Clock,
) -> Result<Preview, PreviewError> {
    let Wanted {
        cfg,
        pause,
        consent,
    } = wanted;
    let mut notes = Vec::new();
    if settings.sources.contains(&SourceId::Ingest) {
        notes.push("objects pushed through ingest are known to the running sidecar only and are not counted here");
    }
    // The health bundle as a switched-on telemetry would make it.
    sidecar.metrics.set_enabled(true);
    sidecar.metrics.set_config_valid(true);

    // Without --state-dir the running sidecar's own-log copy and cursors are in a private
    // directory of its own: the preview reads the named log paths from their start.
    let (paths, cursors) = match &settings.state_dir {
        Some(state) => {
            let dir = in_state_dir(state);
            (log_paths(settings, &dir), cursor_file(&dir))
        }
        None => (settings.telemetry_log_paths.clone(), PathBuf::new()),
    };
    let redactor = Redactor::new()?;
    let logs_max = cfg.logs_max_bytes;
    // Read only: the cursors stay where the running sidecar left them.
    let collected = tokio::task::spawn_blocking(move || {
        LogCollector::open(paths, cursors).collect(logs_max, &redactor)
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "reading the log files failed");
        Collected::default()
    });
    let now = u64::try_from(clock.now().as_millis()).unwrap_or_default();
    let bundle = |kind: UploadKind| {
        let key = new_key(kind, now);
        bundle_json(kind, &key, now, &cfg.appliance_id, sidecar, &collected)
    };
    let mut bundles = vec![bundle(UploadKind::Health)];
    if collected.is_empty() {
        notes.push("no new log lines, so no logs bundle");
    } else {
        bundles.push(bundle(UploadKind::Logs));
    }
    bundles.push(bundle(UploadKind::Clusters));
    let state = match (&pause, consent) {
        (Pause::Paused(why), _) => format!("paused by PX-Backup ({why})"),
        (_, true) => "enabled".to_owned(),
        (_, false) => "disabled".to_owned(),
    };
    let mut status = format!(
        "nothing was sent. Telemetry is {state}; when it runs, these bundles go to {} as appliance-id {:?}",
        cfg.endpoint.destination(),
        cfg.appliance_id
    );
    for note in notes {
        status.push_str("; ");
        status.push_str(note);
    }
    Ok(Preview {
        bundles: Value::Array(bundles),
        status,
    })
}

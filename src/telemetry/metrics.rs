//! Telemetry's own metrics (`pxbackup_telemetry_*`), kept as atomics that the telemetry
//! controller and uploader update, rendered at scrape time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::exposition::{Collector, FamilyWriter, Value};
use crate::families::sidecar as catalog;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadKind {
    Health,
    Logs,
    Clusters,
}

impl UploadKind {
    pub const ALL: [UploadKind; 3] = [UploadKind::Health, UploadKind::Logs, UploadKind::Clusters];
    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::Health => "health",
            UploadKind::Logs => "logs",
            UploadKind::Clusters => "clusters",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadResult {
    Success,
    Failure,
    /// Pushed out of the full spool before it could be sent.
    Dropped,
}

impl UploadResult {
    pub const ALL: [UploadResult; 3] = [
        UploadResult::Success,
        UploadResult::Failure,
        UploadResult::Dropped,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            UploadResult::Success => "success",
            UploadResult::Failure => "failure",
            UploadResult::Dropped => "dropped",
        }
    }
}

#[derive(Debug)]
pub struct TelemetryMetrics {
    enabled: AtomicBool,
    registered: AtomicBool,
    config_valid: AtomicBool,
    uploads: [[AtomicU64; 3]; 3],
    /// f64 bits of the unix time; 0 = never.
    last_success: [AtomicU64; 3],
    spool_bytes: AtomicU64,
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        TelemetryMetrics {
            enabled: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            // No configuration read yet is not an invalid one.
            config_valid: AtomicBool::new(true),
            uploads: Default::default(),
            last_success: Default::default(),
            spool_bytes: AtomicU64::new(0),
        }
    }
}

impl TelemetryMetrics {
    pub fn set_enabled(&self, v: bool) {
        self.enabled.store(v, Relaxed);
    }
    pub fn set_registered(&self, v: bool) {
        self.registered.store(v, Relaxed);
    }
    pub fn set_config_valid(&self, v: bool) {
        self.config_valid.store(v, Relaxed);
    }
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }
    pub fn registered(&self) -> bool {
        self.registered.load(Relaxed)
    }
    pub fn config_valid(&self) -> bool {
        self.config_valid.load(Relaxed)
    }
    pub fn count_upload(&self, kind: UploadKind, result: UploadResult) {
        self.uploads[kind as usize][result as usize].fetch_add(1, Relaxed);
    }
    pub fn uploads(&self, kind: UploadKind, result: UploadResult) -> u64 {
        self.uploads[kind as usize][result as usize].load(Relaxed)
    }
    pub fn set_last_success(&self, kind: UploadKind, unix_secs: f64) {
        self.last_success[kind as usize].store(unix_secs.to_bits(), Relaxed);
    }
    pub fn set_spool_bytes(&self, v: u64) {
        self.spool_bytes.store(v, Relaxed);
    }
}

impl Collector for TelemetryMetrics {
    fn collect(&self, w: &mut FamilyWriter<'_>) {
        let flag = |b: &AtomicBool| Value::Int(i64::from(b.load(Relaxed)));
        w.single(&catalog::TELEMETRY_ENABLED, flag(&self.enabled));
        w.single(&catalog::TELEMETRY_REGISTERED, flag(&self.registered));
        w.single(&catalog::TELEMETRY_CONFIG_VALID, flag(&self.config_valid));
        let labels: Vec<[&str; 2]> = UploadKind::ALL
            .iter()
            .flat_map(|k| {
                UploadResult::ALL
                    .iter()
                    .map(move |r| [k.as_str(), r.as_str()])
            })
            .collect();
        w.family(
            &catalog::TELEMETRY_UPLOADS,
            labels.iter().enumerate().map(|(i, l)| {
                (
                    &l[..],
                    Value::Uint(self.uploads[i / 3][i % 3].load(Relaxed)),
                )
            }),
        );
        w.by_label(
            &catalog::TELEMETRY_LAST_SUCCESS,
            UploadKind::ALL.iter().filter_map(|k| {
                let bits = self.last_success[*k as usize].load(Relaxed);
                (bits != 0).then(|| (k.as_str(), Value::Float(f64::from_bits(bits))))
            }),
        );
        w.single(
            &catalog::TELEMETRY_SPOOL_BYTES,
            Value::Uint(self.spool_bytes.load(Relaxed)),
        );
    }
}

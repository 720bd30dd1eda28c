//! Telemetry's own metrics (`pxbackup_telemetry_*`), kept as atomics that the telemetry
//! controller and uploader update, rendered at scrape time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::exposition::{Collector, FamilyWriter, Value};
use crate::families::sidecar as catalog;
use crate::families::Family;

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

/// Why a bundle left the spool unsent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Pushed out by the spool cap to make room.
    SpoolFull,
    /// Its file could not be read back.
    Unreadable,
    /// Telemetry was switched off (`enabled` not true, ConfigMap gone or unreadable).
    Disabled,
    /// PX-Backup's pause switch.
    Paused,
    /// Made for another appliance id or endpoint.
    IdentityChanged,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::SpoolFull,
        DropReason::Unreadable,
        DropReason::Disabled,
        DropReason::Paused,
        DropReason::IdentityChanged,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::SpoolFull => "spool_full",
            DropReason::Unreadable => "unreadable",
            DropReason::Disabled => "disabled",
            DropReason::Paused => "paused",
            DropReason::IdentityChanged => "identity_changed",
        }
    }
    /// A loss nobody asked for, which `uploads_total{result="dropped"}` (and its alert)
    /// counts; a switch-off or a new identity empties the spool on purpose.
    fn is_loss(self) -> bool {
        matches!(self, DropReason::SpoolFull | DropReason::Unreadable)
    }
}

#[derive(Debug)]
pub struct TelemetryMetrics {
    enabled: AtomicBool,
    paused: AtomicBool,
    registered: AtomicBool,
    config_valid: AtomicBool,
    uploads: [[AtomicU64; 3]; 3],
    dropped: [[AtomicU64; 5]; 3],
    /// f64 bits of the unix time; 0 = never.
    last_success: [AtomicU64; 3],
    spool_bytes: AtomicU64,
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        TelemetryMetrics {
            enabled: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            // No configuration read yet is not an invalid one.
            config_valid: AtomicBool::new(true),
            uploads: Default::default(),
            dropped: Default::default(),
            last_success: Default::default(),
            spool_bytes: AtomicU64::new(0),
        }
    }
}

impl TelemetryMetrics {
    pub fn set_enabled(&self, v: bool) {
        self.enabled.store(v, Relaxed);
    }
    pub fn set_paused(&self, v: bool) {
        self.paused.store(v, Relaxed);
    }
    pub fn paused(&self) -> bool {
        self.paused.load(Relaxed)
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
    /// One bundle removed from the spool unsent.
    pub fn count_dropped(&self, kind: UploadKind, reason: DropReason) {
        self.dropped[kind as usize][reason as usize].fetch_add(1, Relaxed);
        if reason.is_loss() {
            self.count_upload(kind, UploadResult::Dropped);
        }
    }
    pub fn dropped(&self, kind: UploadKind, reason: DropReason) -> u64 {
        self.dropped[kind as usize][reason as usize].load(Relaxed)
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
        w.single(&catalog::TELEMETRY_PAUSED, flag(&self.paused));
        w.single(&catalog::TELEMETRY_REGISTERED, flag(&self.registered));
        w.single(&catalog::TELEMETRY_CONFIG_VALID, flag(&self.config_valid));
        let kinds = UploadKind::ALL.map(UploadKind::as_str);
        grid(
            w,
            &catalog::TELEMETRY_UPLOADS,
            &kinds,
            &UploadResult::ALL.map(UploadResult::as_str),
            &self.uploads,
        );
        grid(
            w,
            &catalog::TELEMETRY_BUNDLES_DROPPED,
            &kinds,
            &DropReason::ALL.map(DropReason::as_str),
            &self.dropped,
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

/// A counter family with two labels: one sample per pair of values, `counts[a][b]`.
fn grid<const B: usize>(
    w: &mut FamilyWriter<'_>,
    family: &Family,
    values_a: &[&str],
    values_b: &[&str; B],
    counts: &[[AtomicU64; B]],
) {
    let labels: Vec<[&str; 2]> = values_a
        .iter()
        .flat_map(|a| values_b.iter().map(move |b| [*a, *b]))
        .collect();
    w.family(
        family,
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| (&l[..], Value::Uint(counts[i / B][i % B].load(Relaxed)))),
    );
}

//! Upload loop of an enabled telemetry: makes bundles on their own intervals, puts them in
//! the spool, and drains the spool oldest first, backing off with jitter while the endpoint
//! fails. Cancelling stops it between uploads: a request in flight finishes, nothing new
//! starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::state::Shared;
use crate::telemetry::config::TelemetryConfig;
use crate::telemetry::logs::LogCollector;
use crate::telemetry::metrics::{UploadKind, UploadResult};
use crate::telemetry::payload;
use crate::telemetry::pure1::{Pure1Error, RestClient};
use crate::telemetry::redact::Redactor;
use crate::telemetry::spool::{new_key, Bundle, Spool};

pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Consecutive 401/403 answers after which the certificate is taken to be revoked: the loop
/// ends and the controller registers again. More than one, so that a single misrouted
/// answer does not throw away a good certificate.
pub const REJECTIONS_BEFORE_REREGISTERING: u32 = 3;

/// Exponential backoff with "equal jitter": half the step is fixed, half random, so that
/// many sidecars that lost Pure1 together do not come back in lockstep.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// When each kind is next due. Every kind is due at once when uploads start, then on its
/// own interval.
#[derive(Debug)]
pub struct Schedule {
    next: [Instant; 3],
    every: [Duration; 3],
}

impl Schedule {
    pub fn new(now: Instant, cfg: &TelemetryConfig) -> Schedule {
        Schedule {
            next: [now; 3],
            every: [
                cfg.health_interval,
                cfg.logs_interval,
                cfg.clusters_interval,
            ],
        }
    }
    /// The kinds due at `now`; each is rescheduled one interval after `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<UploadKind> {
        let mut due = Vec::new();
        for kind in UploadKind::ALL {
            let i = kind as usize;
            if self.next[i] <= now {
                due.push(kind);
                self.next[i] = now + self.every[i];
            }
        }
        due
    }
    pub fn next_deadline(&self) -> Instant {
        self.next.iter().copied().min().unwrap_or_else(Instant::now)
    }
}

pub enum Sink {
    Pure1(RestClient),
    /// Air-gapped: bundles become files in this directory.
    Dir(PathBuf),
}

impl Sink {
    async fn send(&self, bundle: Bundle) -> Result<(), SendError> {
        match self {
            Sink::Pure1(client) => client
                .upload(bundle.kind, &bundle.key, bundle.body)
                .await
                .map_err(SendError::Pure1),
            Sink::Dir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || write_bundle_file(&dir, &bundle))
                    .await
                    .map_err(|e| SendError::Io(std::io::Error::other(e)))?
                    .map_err(SendError::Io)
            }
        }
    }
}

fn write_bundle_file(dir: &std::path::Path, bundle: &Bundle) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", bundle.key));
    std::fs::write(&tmp, &bundle.body)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{}.json.gz", bundle.key)))
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Pure1(Pure1Error),
    #[error("{0}")]
    Io(std::io::Error),
}

/// Everything one upload run needs; the spool and log cursors persist across runs.
pub struct Uploads {
    pub shared: Arc<Shared>,
    pub config: TelemetryConfig,
    pub sink: Sink,
    pub spool: Spool,
    pub logs: LogCollector,
    pub redactor: Arc<Redactor>,
    /// Consecutive uploads refused for the certificate (401/403).
    pub rejections: u32,
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Uploads {
    /// The loop ended because the endpoint keeps refusing the client certificate.
    pub fn credentials_rejected(&self) -> bool {
        self.rejections >= REJECTIONS_BEFORE_REREGISTERING
    }

    fn make_bundle(&mut self, kind: UploadKind) -> Option<Bundle> {
        let now = unix_millis();
        let key = new_key(kind, now);
        let id = &self.config.appliance_id;
        let (value, collected) = match kind {
            UploadKind::Health => (payload::health(&self.shared, &key, id, now), None),
            UploadKind::Clusters => (payload::clusters(&self.shared, &key, id, now), None),
            UploadKind::Logs => {
                let mut collected = self.logs.collect(self.config.logs_max_bytes);
                if collected.is_empty() {
                    // Still store the cursors: a rotation or truncation may have moved them.
                    let _ = self.logs.commit(&collected);
                    return None;
                }
                for f in &mut collected.files {
                    // Redacted as one text, so that a PEM block spanning lines is seen whole.
                    let joined = f.lines.join("\n");
                    f.lines = self
                        .redactor
                        .redact(&joined)
                        .lines()
                        .map(str::to_owned)
                        .collect();
                }
                let v = payload::logs(&collected.files, collected.truncated, &key, id, now);
                (v, Some(collected))
            }
        };
        let body = match payload::gzip(&value) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(kind = kind.as_str(), error = %e, "cannot compress a telemetry bundle");
                self.shared
                    .telemetry
                    .count_upload(kind, UploadResult::Failure);
                return None;
            }
        };
        let bundle = Bundle { key, kind, body };
        if let Err(e) = self.spool.put(&bundle, &self.shared.telemetry) {
            // Not spooled: the log cursors stay where they were, so those lines come again.
            tracing::error!(kind = kind.as_str(), error = %e, "cannot write a telemetry bundle to the spool");
            self.shared
                .telemetry
                .count_upload(kind, UploadResult::Failure);
            return None;
        }
        if let Some(collected) = collected {
            if let Err(e) = self.logs.commit(&collected) {
                tracing::warn!(error = %e, "cannot store the telemetry log cursors; lines may be sent twice");
            }
        }
        self.shared.telemetry.set_spool_bytes(self.spool.bytes());
        Some(bundle)
    }

    /// Sends spooled bundles oldest first until the spool is empty (Ok) or one fails (Err).
    async fn drain(&mut self, stop: &CancellationToken) -> Result<(), ()> {
        while let Some(key) = self.spool.oldest() {
            if stop.is_cancelled() {
                return Ok(());
            }
            let bundle = match self.spool.read(&key) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "unreadable telemetry bundle removed from the spool");
                    if let Some(kind) = crate::telemetry::spool::kind_of_key(&key) {
                        self.shared
                            .telemetry
                            .count_upload(kind, UploadResult::Dropped);
                    }
                    let _ = self.spool.remove(&key);
                    continue;
                }
            };
            let kind = bundle.kind;
            let metrics = &self.shared.telemetry;
            match self.sink.send(bundle).await {
                Ok(()) => {
                    self.rejections = 0;
                    metrics.count_upload(kind, UploadResult::Success);
                    metrics.set_last_success(kind, unix_millis() as f64 / 1000.0);
                    if let Err(e) = self.spool.remove(&key) {
                        tracing::warn!(key = %key, error = %e, "cannot remove a sent bundle from the spool");
                    }
                    tracing::debug!(key = %key, kind = kind.as_str(), "telemetry bundle sent");
                }
                Err(SendError::Pure1(e)) if e.is_permanent() => {
                    metrics.count_upload(kind, UploadResult::Failure);
                    tracing::error!(key = %key, kind = kind.as_str(), error = %e,
                        "telemetry bundle rejected by the endpoint; removed from the spool");
                    let _ = self.spool.remove(&key);
                }
                Err(e) => {
                    if matches!(&e, SendError::Pure1(p) if p.is_auth_rejection()) {
                        self.rejections += 1;
                    }
                    metrics.count_upload(kind, UploadResult::Failure);
                    tracing::warn!(key = %key, kind = kind.as_str(), error = %e,
                        spooled = self.spool.len(), "telemetry upload failed; will retry");
                    self.shared.telemetry.set_spool_bytes(self.spool.bytes());
                    return Err(());
                }
            }
            self.shared.telemetry.set_spool_bytes(self.spool.bytes());
        }
        Ok(())
    }

    /// Runs until `stop`; hands the spool and log cursors back for the next run.
    pub async fn run(mut self, stop: CancellationToken) -> Uploads {
        let mut schedule = Schedule::new(Instant::now(), &self.config);
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        let mut retry_at: Option<Instant> = None;
        self.shared.telemetry.set_spool_bytes(self.spool.bytes());
        loop {
            if stop.is_cancelled() {
                break;
            }
            for kind in schedule.take_due(Instant::now()) {
                self.make_bundle(kind);
            }
            if retry_at.is_none_or(|t| Instant::now() >= t) {
                match self.drain(&stop).await {
                    Ok(()) => {
                        backoff.reset();
                        retry_at = None;
                    }
                    Err(()) => retry_at = Some(Instant::now() + backoff.next_delay()),
                }
                if self.credentials_rejected() {
                    tracing::warn!(
                        rejections = self.rejections,
                        "the endpoint keeps refusing the client certificate; registering again"
                    );
                    break;
                }
            }
            let wake = retry_at.map_or(schedule.next_deadline(), |r| {
                r.min(schedule.next_deadline())
            });
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::config::{validate, Defaults};

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (i, want) in [1u64, 2, 4, 8, 8, 8].into_iter().enumerate() {
            let step = Duration::from_secs(want);
            assert!(d[i] >= step / 2 && d[i] <= step, "{i}: {:?}", d[i]);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn each_kind_on_its_own_interval() {
        let raw = Some(
            [
                ("health-interval", "2s"),
                ("logs-interval", "5s"),
                ("clusters-interval", "3s"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let (cfg, _) = validate(&raw, &Defaults::default()).unwrap();
        let start = Instant::now();
        let mut s = Schedule::new(start, &cfg);
        assert_eq!(s.take_due(Instant::now()).len(), 3);
        let mut seen = Vec::new();
        for _ in 0..6 {
            tokio::time::sleep_until(s.next_deadline()).await;
            let secs = (Instant::now() - start).as_secs();
            for k in s.take_due(Instant::now()) {
                seen.push((secs, k));
            }
        }
        use UploadKind::*;
        assert_eq!(
            seen,
            vec![
                (2, Health),
                (3, Clusters),
                (4, Health),
                (5, Logs),
                (6, Health),
                (6, Clusters),
                (8, Health)
            ][..seen.len()]
                .to_vec()
        );
        assert!(seen.len() >= 6);
    }
}

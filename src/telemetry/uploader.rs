//! Upload loop of an enabled telemetry: makes bundles on their own intervals, puts them in
//! the spool, and drains the spool oldest first, backing off with jitter while the endpoint
//! fails. Cancelling stops it between uploads: a request in flight finishes, nothing new
//! starts. Making a bundle (inventory summary, log reading, redaction, gzip) and every spool
//! access run on the blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::BackoffBuilder;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::telemetry::config::TelemetryConfig;
use crate::telemetry::logs::{Collected, LogCollector};
use crate::telemetry::metrics::{DropReason, UploadKind, UploadResult};
use crate::telemetry::payload;
use crate::telemetry::pure1::{Pure1Error, RestClient};
use crate::telemetry::redact::Redactor;
use crate::telemetry::spool::{kind_of_key, new_key, Bundle, Spool};
use crate::telemetry::TelemetryContext;

pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Consecutive 401/403 answers after which the certificate is taken to be revoked: the loop
/// ends and the controller registers again. More than one, so that a single misrouted
/// answer does not throw away a good certificate.
pub const REJECTIONS_BEFORE_REREGISTERING: u32 = 3;

/// Exponential backoff with jitter: steps of 1 s doubling to 5 min, each delay between half
/// and all of its step, so that many sidecars that lost Pure1 together do not come back in
/// lockstep. (backon adds up to 100 % to a base of half the step.) Reset = build a new one.
pub fn backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(BACKOFF_BASE / 2)
        .with_max_delay(BACKOFF_MAX / 2)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next delay of `b` (it never ends; the cap stands in should it ever).
pub fn next_delay(b: &mut backon::ExponentialBackoff) -> Duration {
    b.next().unwrap_or(BACKOFF_MAX)
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

/// Temp file (created new, under a random name: never through a link), fsync, rename. 0644:
/// the site's own collector, whoever it runs as, takes the bundles from there.
fn write_bundle_file(dir: &std::path::Path, bundle: &Bundle) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::persistence::files::write_atomically_with_mode(
        dir,
        &format!("{}.json.gz", bundle.key),
        &bundle.body,
        0o644,
    )
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Pure1(Pure1Error),
    #[error("{0}")]
    Io(std::io::Error),
}

/// A poisoned lock still guards consistent data (each operation leaves the spool or the
/// cursors whole on disk), so it is used as it is.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The spool and the log cursors: they outlive every upload run. Used only on the blocking
/// pool, where the locks are held.
#[derive(Clone, Debug)]
pub struct Stores {
    pub spool: Arc<Mutex<Spool>>,
    pub logs: Arc<Mutex<LogCollector>>,
}

/// The JSON of a bundle of `kind`, exactly as it leaves (before gzip). `logs`: the redacted
/// lines of a logs bundle (ignored for the other kinds). Reads the inventory's summary only:
/// making a bundle changes nothing in it.
pub fn bundle_json(
    kind: UploadKind,
    key: &str,
    unix_millis: u64,
    appliance_id: &str,
    sidecar: &TelemetryContext,
    logs: &Collected,
) -> Value {
    match kind {
        UploadKind::Health => payload::health(sidecar, key, appliance_id, unix_millis),
        UploadKind::Clusters => payload::clusters(sidecar, key, appliance_id, unix_millis),
        UploadKind::Logs => {
            payload::logs(&logs.files, logs.truncated, key, appliance_id, unix_millis)
        }
    }
}

/// Everything one upload run needs.
pub struct Uploads {
    pub sidecar: TelemetryContext,
    pub clock: Clock,
    pub config: TelemetryConfig,
    pub sink: Sink,
    pub stores: Stores,
    pub redactor: Arc<Redactor>,
    /// Consecutive uploads refused for the certificate (401/403).
    pub rejections: u32,
}

/// Runs `f` on the blocking pool. `None` only if it panicked (logged).
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, what, "a telemetry task on the blocking pool failed");
            None
        }
    }
}

/// What `drain` found at the head of the spool.
enum Next {
    Empty,
    Send(Bundle),
    /// Unreadable; already removed and counted.
    Dropped,
}

impl Uploads {
    /// The loop ended because the endpoint keeps refusing the client certificate.
    pub fn credentials_rejected(&self) -> bool {
        self.rejections >= REJECTIONS_BEFORE_REREGISTERING
    }

    fn unix_millis(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis()).unwrap_or_default()
    }

    /// Makes a bundle of `kind` and spools it (on the blocking pool).
    async fn make_bundle(&self, kind: UploadKind) {
        let (sidecar, stores, redactor) = (
            self.sidecar.clone(),
            self.stores.clone(),
            self.redactor.clone(),
        );
        let (id, logs_max) = (self.config.appliance_id.clone(), self.config.logs_max_bytes);
        let now = self.unix_millis();
        blocking("make a bundle", move || {
            make_and_spool(kind, now, &id, &sidecar, &stores, logs_max, &redactor)
        })
        .await;
    }

    /// The oldest spooled bundle, read on the blocking pool.
    async fn next_bundle(&self) -> Next {
        let (stores, metrics) = (self.stores.clone(), self.sidecar.metrics.clone());
        blocking("read the spool", move || {
            let mut spool = lock(&stores.spool);
            let Some(key) = spool.oldest() else {
                return Next::Empty;
            };
            match spool.read(&key) {
                Ok(b) => Next::Send(b),
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "unreadable telemetry bundle removed from the spool");
                    if let Some(kind) = kind_of_key(&key) {
                        metrics.count_dropped(kind, DropReason::Unreadable);
                    }
                    let _ = spool.remove(&key);
                    metrics.set_spool_bytes(spool.bytes());
                    Next::Dropped
                }
            }
        })
        .await
        .unwrap_or(Next::Empty)
    }

    async fn remove(&self, key: String) {
        let (stores, metrics) = (self.stores.clone(), self.sidecar.metrics.clone());
        blocking("remove a sent bundle", move || {
            let mut spool = lock(&stores.spool);
            if let Err(e) = spool.remove(&key) {
                tracing::warn!(key = %key, error = %e, "cannot remove a bundle from the spool");
            }
            metrics.set_spool_bytes(spool.bytes());
        })
        .await;
    }

    /// Sends spooled bundles oldest first until the spool is empty (Ok) or one fails (Err).
    /// Stopped (switch-off): returns before the next send; the one on the wire finishes.
    async fn drain(&mut self, stop: &CancellationToken) -> Result<(), ()> {
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let bundle = match self.next_bundle().await {
                Next::Empty => return Ok(()),
                Next::Dropped => continue,
                Next::Send(b) => b,
            };
            // Reading the spool took a moment: a switch-off meanwhile wins.
            if stop.is_cancelled() {
                return Ok(());
            }
            let (kind, key) = (bundle.kind, bundle.key.clone());
            let metrics = &self.sidecar.metrics;
            match self.sink.send(bundle).await {
                Ok(()) => {
                    self.rejections = 0;
                    metrics.count_upload(kind, UploadResult::Success);
                    metrics.set_last_success(kind, self.clock.now().as_secs_f64());
                    tracing::debug!(key = %key, kind = kind.as_str(), "telemetry bundle sent");
                    self.remove(key).await;
                }
                Err(SendError::Pure1(e)) if e.is_permanent() => {
                    metrics.count_upload(kind, UploadResult::Failure);
                    tracing::error!(key = %key, kind = kind.as_str(), error = %e,
                        "telemetry bundle rejected by the endpoint; removed from the spool");
                    self.remove(key).await;
                }
                Err(e) => {
                    if matches!(&e, SendError::Pure1(p) if p.is_auth_rejection()) {
                        self.rejections += 1;
                    }
                    metrics.count_upload(kind, UploadResult::Failure);
                    tracing::warn!(key = %key, kind = kind.as_str(), error = %e,
                        "telemetry upload failed; will retry");
                    return Err(());
                }
            }
        }
    }

    /// Runs until `stop`, or until the endpoint keeps refusing the certificate.
    pub async fn run(mut self, stop: CancellationToken) -> Uploads {
        let mut schedule = Schedule::new(Instant::now(), &self.config);
        let mut backoff = backoff();
        let mut retry_at: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                break;
            }
            for kind in schedule.take_due(Instant::now()) {
                self.make_bundle(kind).await;
            }
            if retry_at.is_none_or(|t| Instant::now() >= t) {
                match self.drain(&stop).await {
                    Ok(()) => {
                        backoff = self::backoff();
                        retry_at = None;
                    }
                    Err(()) => retry_at = Some(Instant::now() + next_delay(&mut backoff)),
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

/// Makes one bundle and spools it; the log cursors move only once it is safely spooled.
fn make_and_spool(
    kind: UploadKind,
    unix_millis: u64,
    appliance_id: &str,
    sidecar: &TelemetryContext,
    stores: &Stores,
    logs_max_bytes: usize,
    redactor: &Redactor,
) {
    let key = new_key(kind, unix_millis);
    let mut logs = lock(&stores.logs);
    let collected = match kind {
        UploadKind::Logs => {
            let collected = logs.collect(logs_max_bytes, redactor);
            if collected.is_empty() {
                // No bundle; the cursors are still stored: a rotation may have moved them.
                let _ = logs.commit(&collected);
                return;
            }
            collected
        }
        UploadKind::Health | UploadKind::Clusters => Collected::default(),
    };
    let value = bundle_json(kind, &key, unix_millis, appliance_id, sidecar, &collected);
    let body = match payload::gzip(&value) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(kind = kind.as_str(), error = %e, "cannot compress a telemetry bundle");
            sidecar.metrics.count_upload(kind, UploadResult::Failure);
            return;
        }
    };
    let bundle = Bundle { key, kind, body };
    let mut spool = lock(&stores.spool);
    if let Err(e) = spool.put(&bundle, &sidecar.metrics) {
        // Not spooled: the log cursors stay where they were, so those lines come again.
        tracing::error!(kind = kind.as_str(), error = %e, "cannot write a telemetry bundle to the spool");
        sidecar.metrics.count_upload(kind, UploadResult::Failure);
        return;
    }
    sidecar.metrics.set_spool_bytes(spool.bytes());
    drop(spool);
    if kind == UploadKind::Logs {
        if let Err(e) = logs.commit(&collected) {
            tracing::warn!(error = %e, "cannot store the telemetry log cursors; lines may be sent twice");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::config::{validate, Defaults};

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut b = backoff();
        let d: Vec<Duration> = (0..12).map(|_| next_delay(&mut b)).collect();
        for (i, want) in [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
            .into_iter()
            .enumerate()
        {
            let step = Duration::from_secs(want);
            assert!(d[i] >= step / 2 && d[i] <= step, "{i}: {:?}", d[i]);
        }
        assert!(next_delay(&mut backoff()) <= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn each_kind_on_its_own_interval() {
        let raw = [
            ("health-interval", "2s"),
            ("logs-interval", "5s"),
            ("clusters-interval", "3s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let cfg = validate(&raw, &Defaults::default()).settings.unwrap();
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

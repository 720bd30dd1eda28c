//! The sidecar's own metrics (`pxbackup_sidecar_*`), read from the counters that the inventory,
//! the sources and the ingest endpoint keep.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::{Collector, FamilyWriter, Value};
use crate::families::sidecar as catalog;
use crate::inventory::{IgnoreReason, Inventory};
use crate::model::{Kind, SourceId};
use crate::sources::ingest::IngestStats;
use crate::sources::pxb::auth::{AuthStats, GrantResult};
use crate::sources::SourceStatus;

/// How long the previous scrape took to assemble: the server records it after each scrape,
/// the next one exports it (a scrape cannot report its own duration).
#[derive(Debug, Default)]
pub struct ScrapeDuration {
    /// f64 bits, seconds: there is no atomic float.
    seconds: AtomicU64,
}

impl ScrapeDuration {
    pub fn record(&self, took: Duration) {
        self.seconds.store(took.as_secs_f64().to_bits(), Relaxed);
    }
    pub fn seconds(&self) -> f64 {
        f64::from_bits(self.seconds.load(Relaxed))
    }
}

/// The collector of the sidecar's own families: handed what it reads, never written to.
pub struct SelfMetrics {
    pub inventory: Arc<Inventory>,
    pub sources: Arc<SourceStatus>,
    pub ingest: Arc<IngestStats>,
    pub scrape_duration: Arc<ScrapeDuration>,
    pub pxb_auth: Arc<AuthStats>,
}

impl Collector for SelfMetrics {
    fn collect(&self, w: &mut FamilyWriter<'_>) {
        write(w, self);
    }
}

fn write(w: &mut FamilyWriter<'_>, own: &SelfMetrics) {
    let counts = own.inventory.counts();
    w.by_label(
        &catalog::BUILD_INFO,
        [(env!("CARGO_PKG_VERSION"), Value::Int(1))],
    );
    let backfill = own.inventory.options().backfill;
    w.by_label(
        &catalog::BACKFILL_WINDOW,
        [(backfill.mode(), Value::Float(backfill.window.as_secs_f64()))],
    );
    let configured: Vec<SourceId> = own.sources.configured().collect();
    let per_source = |f: &dyn Fn(SourceId) -> Value| -> Vec<(&'static str, Value)> {
        configured.iter().map(|s| (s.as_str(), f(*s))).collect()
    };
    let stats = own.inventory.stats();
    w.by_label(
        &catalog::SOURCE_UP,
        per_source(&|s| Value::Int(i64::from(own.sources.is_up(s)))),
    );
    w.by_label(
        &catalog::EVENTS_APPLIED,
        per_source(&|s| Value::Uint(stats.applied[s as usize].load(Relaxed))),
    );
    w.by_label(
        &catalog::SOURCE_OBJECTS_INVALID,
        per_source(&|s| Value::Uint(own.sources.invalid_objects(s))),
    );
    w.by_label(
        &catalog::EVENTS_IGNORED,
        IgnoreReason::ALL.iter().map(|r| {
            (
                r.as_str(),
                Value::Uint(stats.ignored[*r as usize].load(Relaxed)),
            )
        }),
    );
    let ingest = &own.ingest;
    w.by_label(
        &catalog::INGEST_BATCHES,
        [
            ("applied", &ingest.applied),
            ("rejected", &ingest.rejected),
            ("unauthorized", &ingest.unauthorized),
            ("not_durable", &ingest.not_durable),
            ("overloaded", &ingest.overloaded),
            ("timed_out", &ingest.timed_out),
        ]
        .map(|(result, count)| (result, Value::Uint(count.load(Relaxed)))),
    );
    w.by_label(
        &catalog::OBJECTS,
        Kind::ALL.map(|k| {
            (
                k.as_str(),
                Value::Uint(counts.live_objects[k.index()] as u64),
            )
        }),
    );
    w.single(
        &catalog::TOMBSTONES_RETAINED,
        Value::Uint(counts.tombstones as u64),
    );
    w.single(
        &catalog::TOMBSTONES_EXPIRED,
        Value::Uint(stats.tombstones_expired.load(Relaxed)),
    );
    w.single(
        &catalog::JOURNAL_ERRORS,
        Value::Uint(own.inventory.journal_errors()),
    );
    w.single(
        &catalog::JOURNAL_RECORDS_SKIPPED,
        Value::Uint(stats.journal_records_skipped.load(Relaxed)),
    );
    w.single(
        &catalog::RESOURCE_SERIES_DROPPED,
        Value::Uint(stats.resource_series_dropped.load(Relaxed)),
    );
    w.single(
        &catalog::SCRAPE_DURATION,
        Value::Float(own.scrape_duration.seconds()),
    );
    let auth = &own.pxb_auth;
    w.by_label(
        &catalog::PXB_OIDC_LOGINS,
        GrantResult::ALL.map(|r| (r.as_str(), Value::Uint(auth.logins(r)))),
    );
    w.by_label(
        &catalog::PXB_OIDC_REFRESHES,
        GrantResult::ALL.map(|r| (r.as_str(), Value::Uint(auth.refreshes(r)))),
    );
    w.single(
        &catalog::PXB_TOKEN_EXPIRY,
        Value::Uint(auth.token_expiry_unix_seconds()),
    );
}

//! The one shared state of a running sidecar (the controller-rs pattern): handed to the HTTP
//! handlers and the tasks; each part is owned and updated by one module.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::inventory::Inventory;
use crate::sources::ingest::IngestStats;
use crate::sources::SourceStatus;
use crate::telemetry::metrics::TelemetryMetrics;

pub struct Shared {
    pub inventory: Arc<Inventory>,
    pub sources: SourceStatus,
    pub ingest: IngestStats,
    pub telemetry: TelemetryMetrics,
    /// f64 bits of the duration of the previous scrape, in seconds.
    pub last_scrape_seconds: AtomicU64,
}

impl Shared {
    pub fn new(inventory: Arc<Inventory>, sources: SourceStatus) -> Self {
        Shared {
            inventory,
            sources,
            ingest: IngestStats::default(),
            telemetry: TelemetryMetrics::default(),
            last_scrape_seconds: AtomicU64::new(0),
        }
    }
}

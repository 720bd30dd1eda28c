//! Sources of events: the demo fleet, push ingest, the Kubernetes (Stork) watcher and the
//! PX-Backup poller. Every source feeds the inventory through `Inventory::apply_off_runtime`
//! (background priority, giving way to scrapes); none touches metrics.

pub mod demo;
pub mod ingest;
pub mod kube;
pub mod pxb;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::inventory::Inventory;
use crate::model::SourceId;

/// What a source is handed: the inventory it feeds and the status it reports. Nothing else:
/// a source neither serves nor reads metrics.
#[derive(Clone)]
pub struct SourceContext {
    pub inventory: Arc<Inventory>,
    pub status: Arc<SourceStatus>,
}

/// Health of the configured sources: whether each has finished its initial sync (for
/// `/readyz`) and is connected now (`pxbackup_sidecar_source_up`).
#[derive(Debug, Default)]
pub struct SourceStatus {
    configured: [AtomicBool; SourceId::COUNT],
    synced: [AtomicBool; SourceId::COUNT],
    up: [AtomicBool; SourceId::COUNT],
    invalid_objects: [AtomicU64; SourceId::COUNT],
}

impl SourceStatus {
    pub fn new(configured: &[SourceId]) -> Self {
        let s = SourceStatus::default();
        for id in configured {
            s.configured[*id as usize].store(true, Relaxed);
        }
        s
    }
    pub fn configured(&self) -> impl Iterator<Item = SourceId> + '_ {
        SourceId::ALL
            .into_iter()
            .filter(|id| self.configured[*id as usize].load(Relaxed))
    }
    /// The source has delivered its initial state (for a watcher: the first full list).
    pub fn mark_synced(&self, id: SourceId) {
        self.synced[id as usize].store(true, Relaxed);
        self.up[id as usize].store(true, Relaxed);
    }
    pub fn set_up(&self, id: SourceId, up: bool) {
        self.up[id as usize].store(up, Relaxed);
    }
    pub fn is_up(&self, id: SourceId) -> bool {
        self.up[id as usize].load(Relaxed)
    }
    pub fn count_invalid_object(&self, id: SourceId) {
        self.invalid_objects[id as usize].fetch_add(1, Relaxed);
    }
    pub fn invalid_objects(&self, id: SourceId) -> u64 {
        self.invalid_objects[id as usize].load(Relaxed)
    }
    /// Configured sources that have not finished their initial sync.
    pub fn not_synced(&self) -> Vec<SourceId> {
        self.configured()
            .filter(|id| !self.synced[*id as usize].load(Relaxed))
            .collect()
    }
}

//! What the store keeps per object, and the running counts telemetry reads.
//!
//! A backup is kept encoded (about a third of its decoded size, and the very bytes its journal
//! record carries), decoded only when its group of series is rendered again. The other kinds
//! are few and small: they are kept as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::store::Render;
use crate::families::backup::{BackupRow, BackupState, FAMILIES};
use crate::families::objects::LastSuccess;
use crate::families::KindFamilies;
use crate::model::{Backup, BackupStatus, Kind, Origin, Timestamp};
use crate::persistence::ScheduleKey;

/// Encodes a backup as the store and the journal keep it (the journal's own encoding, so a
/// compaction writes the stored bytes as they are).
pub fn encode_backup(b: &Backup) -> Arc<[u8]> {
    Arc::from(crate::persistence::encode_backup(b))
}

pub use crate::persistence::decode_backup;

#[derive(Clone, Debug)]
pub struct BackupEntry {
    pub origin: Origin,
    pub state: BackupState,
    /// The status it was last seen with (tombstones keep it too).
    pub status: BackupStatus,
    pub cluster_uid: Arc<str>,
    pub object: Arc<[u8]>,
}

impl BackupEntry {
    pub fn is_tombstone(&self) -> bool {
        matches!(self.state, BackupState::Deleted { .. })
    }
}

impl Render for BackupEntry {
    fn render(&self, identity: &mut Vec<u8>, outs: &mut [Vec<u8>]) {
        match decode_backup(&self.object) {
            Ok(backup) => {
                let row = BackupRow {
                    backup,
                    state: self.state,
                };
                FAMILIES.render(&row, identity, outs);
            }
            // Only a bug can get here: the bytes were encoded by this process.
            Err(e) => {
                tracing::error!(error = %e, "a stored backup does not decode; its series are left out")
            }
        }
    }

    fn rendered_from(&self, feed: &mut dyn FnMut(&[u8])) -> bool {
        // A `BackupRow` is the decoded object and the state: nothing else is rendered.
        match self.state {
            BackupState::Live { previous } => {
                feed(b"live");
                feed(previous.map_or("", BackupStatus::as_str).as_bytes());
            }
            BackupState::Deleted {
                previous,
                deleted_at,
            } => {
                feed(b"deleted");
                feed(previous.as_str().as_bytes());
                feed(&deleted_at.0.to_le_bytes());
            }
        }
        feed(&self.object);
        true
    }
}

/// A restore, schedule, cluster or backup location.
pub struct ObjectEntry<T: 'static> {
    pub origin: Origin,
    pub object: Arc<T>,
    families: &'static KindFamilies<T>,
}

impl<T> Clone for ObjectEntry<T> {
    fn clone(&self) -> Self {
        ObjectEntry {
            origin: self.origin.clone(),
            object: Arc::clone(&self.object),
            families: self.families,
        }
    }
}

impl<T> ObjectEntry<T> {
    pub fn new(origin: Origin, object: T, families: &'static KindFamilies<T>) -> Self {
        ObjectEntry {
            origin,
            object: Arc::new(object),
            families,
        }
    }
}

impl<T: Send + Sync> Render for ObjectEntry<T> {
    fn render(&self, identity: &mut Vec<u8>, outs: &mut [Vec<u8>]) {
        self.families.render(&self.object, identity, outs);
    }
}

#[derive(Clone, Debug)]
pub struct LastSuccessEntry(pub Arc<LastSuccess>);

impl LastSuccessEntry {
    pub fn new(key: &ScheduleKey, completed_at: Timestamp) -> Self {
        LastSuccessEntry(Arc::new(LastSuccess {
            org_id: key.org_id.clone(),
            cluster: key.cluster.clone(),
            cluster_uid: key.cluster_uid.clone(),
            schedule_name: key.schedule_name.clone(),
            completed_at,
        }))
    }
}

impl Render for LastSuccessEntry {
    fn render(&self, identity: &mut Vec<u8>, outs: &mut [Vec<u8>]) {
        crate::families::objects::SCHEDULE_LAST_SUCCESS.render(&self.0, identity, outs);
    }
}

/// Counts kept as objects change, so that reading them is cheap and never touches the store.
#[derive(Debug, Default)]
pub struct Tally {
    live_backups_by_status: [usize; 11],
    tombstones_by_previous: [usize; 11],
    /// How many live objects name each cluster UID.
    clusters: HashMap<Arc<str>, usize>,
}

/// Counts for telemetry's health upload and the cluster-UUID upload.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub objects: BTreeMap<&'static str, usize>,
    pub backups_by_status: BTreeMap<&'static str, usize>,
    pub tombstones_by_previous_status: BTreeMap<&'static str, usize>,
    pub cluster_uids: BTreeSet<String>,
}

fn status_index(s: BackupStatus) -> usize {
    usize::try_from(s.value()).unwrap_or(0).min(10)
}

impl Tally {
    pub fn add_backup(&mut self, e: &BackupEntry) {
        match e.state {
            BackupState::Live { .. } => {
                self.live_backups_by_status[status_index(e.status)] += 1;
                self.add_cluster(&e.cluster_uid);
            }
            BackupState::Deleted { previous, .. } => {
                self.tombstones_by_previous[status_index(previous)] += 1;
            }
        }
    }
    pub fn remove_backup(&mut self, e: &BackupEntry) {
        match e.state {
            BackupState::Live { .. } => {
                let n = &mut self.live_backups_by_status[status_index(e.status)];
                *n = n.saturating_sub(1);
                self.remove_cluster(&e.cluster_uid);
            }
            BackupState::Deleted { previous, .. } => {
                let n = &mut self.tombstones_by_previous[status_index(previous)];
                *n = n.saturating_sub(1);
            }
        }
    }
    pub fn add_cluster(&mut self, uid: &Arc<str>) {
        if !uid.is_empty() {
            *self.clusters.entry(Arc::clone(uid)).or_default() += 1;
        }
    }
    pub fn remove_cluster(&mut self, uid: &str) {
        if let Some(n) = self.clusters.get_mut(uid) {
            *n -= 1;
            if *n == 0 {
                self.clusters.remove(uid);
            }
        }
    }
    /// The Arc the tally already holds for `uid`, so that every entry of a cluster shares one.
    pub fn intern_cluster(&self, uid: &str) -> Arc<str> {
        self.clusters
            .get_key_value(uid)
            .map_or_else(|| Arc::from(uid), |(k, _)| Arc::clone(k))
    }

    pub fn summary(&self, live_objects: &[usize; 5]) -> Summary {
        let by_status = |counts: &[usize; 11]| {
            BackupStatus::ALL
                .iter()
                .filter(|s| counts[status_index(**s)] > 0)
                .map(|s| (s.as_str(), counts[status_index(*s)]))
                .collect()
        };
        Summary {
            objects: Kind::ALL
                .iter()
                .map(|k| (k.as_str(), live_objects[k.index()]))
                .collect(),
            backups_by_status: by_status(&self.live_backups_by_status),
            tombstones_by_previous_status: by_status(&self.tombstones_by_previous),
            cluster_uids: self.clusters.keys().map(|k| k.to_string()).collect(),
        }
    }
}

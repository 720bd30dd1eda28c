//! What the store keeps per object, and the running counts telemetry reads.
//!
//! A backup is kept encoded (about a third of its decoded size, and the very bytes its journal
//! record carries), decoded only when its group of series is rendered again. The other kinds
//! are few and small: they are kept as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::store::{Render, RenderFamily};
use crate::families::backup::{BackupRow, BackupState, BackupText, SharedIdentity, FAMILIES};
use crate::families::objects::LastSuccess;
use crate::families::{Escape, KindFamilies, Owned};
use crate::model::{Backup, BackupStatus, Kind, Origin, Timestamp};
use crate::persistence::ScheduleKey;

/// Encodes a backup as the store and the journal keep it (the journal's own encoding, so a
/// compaction writes the stored bytes as they are).
pub fn encode_backup(b: &Backup) -> Arc<[u8]> {
    Arc::from(crate::persistence::encode_backup(b))
}

pub use crate::persistence::decode_backup;

/// The shared identities of the stored backups (`families::backup::SharedIdentity`), one
/// per distinct value. Entries hold them; the set forgets those no entry holds any more when
/// it has grown to twice what was held at its last sweep.
#[derive(Default)]
pub struct SharedIdentities {
    set: HashSet<Arc<SharedIdentity>, foldhash::fast::RandomState>,
    held_at_sweep: usize,
}

impl SharedIdentities {
    fn get(&mut self, identity: SharedIdentity) -> Arc<SharedIdentity> {
        if let Some(held) = self.set.get(&identity) {
            return Arc::clone(held);
        }
        if self.set.len() >= 2 * self.held_at_sweep.max(512) {
            self.set.retain(|s| Arc::strong_count(s) > 1);
            self.held_at_sweep = self.set.len();
        }
        let identity = Arc::new(identity);
        self.set.insert(Arc::clone(&identity));
        identity
    }

    /// How many are kept (tests).
    pub fn len(&self) -> usize {
        self.set.len()
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// `text_of` a backup already read (`view`, which `parse_checked` accepted).
pub fn text_of_view(
    view: &crate::persistence::BackupView<'_>,
    shared: &mut SharedIdentities,
) -> BackupText {
    let escape = crate::families::backup::escape_of(view);
    BackupText {
        escape,
        sections: view.sections,
        shared: shared.get(SharedIdentity::of(view, escape)),
    }
}

/// How a stored backup is written into the exposition, worked out once as it is stored (see
/// `families::backup::BackupText`); `None` when it does not decode: it is then kept (and
/// journaled) as it is, and renders nothing.
pub fn text_of(object: &[u8], shared: &mut SharedIdentities) -> Option<BackupText> {
    match crate::persistence::BackupView::parse_checked(object) {
        Ok(view) => Some(text_of_view(&view, shared)),
        Err(e) => {
            tracing::warn!(error = %e, "a stored backup does not decode; it is kept as it is and renders no series");
            None
        }
    }
}

#[derive(Clone, Debug)]
pub struct BackupEntry {
    pub origin: Origin,
    pub state: BackupState,
    /// The status it was last seen with (tombstones keep it too).
    pub status: BackupStatus,
    pub cluster_uid: Arc<str>,
    pub object: Arc<[u8]>,
    /// How `object` is written (`text_of`).
    pub text: Option<BackupText>,
}

impl BackupEntry {
    pub fn is_tombstone(&self) -> bool {
        matches!(self.state, BackupState::Deleted { .. })
    }
}

/// What a plain-text scrape takes of a backup: its stored bytes (shared) and its state.
#[derive(Clone)]
pub struct BackupSource {
    state: BackupState,
    text: Option<BackupText>,
    object: Arc<[u8]>,
}

impl RenderFamily for BackupSource {
    fn render_family(&self, family: usize, out: &mut Vec<u8>) {
        if let Some(text) = &self.text {
            BackupRow::with_sections(&self.object, self.state, text.sections)
                .render_family(family, text, out);
        }
    }
}

impl Render for BackupEntry {
    type Source = BackupSource;

    fn source(&self) -> BackupSource {
        BackupSource {
            state: self.state,
            text: self.text.clone(),
            object: Arc::clone(&self.object),
        }
    }

    fn render(&self, identity: &mut Vec<u8>, outs: &mut [Vec<u8>]) {
        if let Some(text) = &self.text {
            let row = BackupRow::with_sections(&self.object, self.state, text.sections);
            FAMILIES.render(&row, text.escape, identity, outs);
        }
    }

    fn rendered_from(&self, feed: &mut dyn FnMut(&[u8])) -> bool {
        // A `BackupRow` is the stored object and the state: nothing else is rendered.
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
    families: &'static KindFamilies<Owned<T>>,
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
    pub fn new(origin: Origin, object: T, families: &'static KindFamilies<Owned<T>>) -> Self {
        ObjectEntry {
            origin,
            object: Arc::new(object),
            families,
        }
    }
}

/// What a plain-text scrape takes of a restore, schedule, cluster or backup location.
pub struct ObjectSource<T: 'static> {
    object: Arc<T>,
    families: &'static KindFamilies<Owned<T>>,
}

impl<T: Send + Sync> RenderFamily for ObjectSource<T> {
    fn render_family(&self, family: usize, out: &mut Vec<u8>) {
        self.families
            .render_family(&self.object, family, Escape::Check, out);
    }
}

impl<T: Send + Sync> Render for ObjectEntry<T> {
    type Source = ObjectSource<T>;

    fn source(&self) -> ObjectSource<T> {
        ObjectSource {
            object: Arc::clone(&self.object),
            families: self.families,
        }
    }

    fn render(&self, identity: &mut Vec<u8>, outs: &mut [Vec<u8>]) {
        self.families
            .render(&self.object, Escape::Check, identity, outs);
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
            schedule_namespace: key.schedule_namespace.clone(),
            completed_at,
        }))
    }
}

impl RenderFamily for LastSuccessEntry {
    fn render_family(&self, family: usize, out: &mut Vec<u8>) {
        crate::families::objects::SCHEDULE_LAST_SUCCESS.render_family(
            &self.0,
            family,
            Escape::Check,
            out,
        );
    }
}

impl Render for LastSuccessEntry {
    type Source = LastSuccessEntry;

    fn source(&self) -> LastSuccessEntry {
        self.clone()
    }

    fn render(&self, identity: &mut Vec<u8>, outs: &mut [Vec<u8>]) {
        crate::families::objects::SCHEDULE_LAST_SUCCESS.render(
            &self.0,
            Escape::Check,
            identity,
            outs,
        );
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

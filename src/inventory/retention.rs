//! Retention of deleted backups: what `previous_status` a tombstone takes, when an upsert of a
//! deleted backup's uid is a re-creation rather than a stale event, and the index of
//! tombstones by expiry time (expiry touches only what expires, never the whole store).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{BackupStatus, Timestamp};

/// The status a tombstone would take as `previous_status`, updated with each status a live
/// backup reports: the last terminal status seen; if the backup never finished, the last
/// status seen other than Deleting and DeletePending (those say what is happening to it, not
/// how it went).
pub fn next_previous(previous: Option<BackupStatus>, status: BackupStatus) -> Option<BackupStatus> {
    if status.is_terminal() {
        return Some(status);
    }
    match status {
        BackupStatus::Deleting | BackupStatus::DeletePending => previous,
        _ if previous.is_some_and(BackupStatus::is_terminal) => previous,
        _ => Some(status),
    }
}

/// `previous_status` of the tombstone of a backup last seen with `status`. A backup only ever
/// seen while being deleted keeps that status.
pub fn tombstone_previous(previous: Option<BackupStatus>, status: BackupStatus) -> BackupStatus {
    previous.unwrap_or(status)
}

/// Whether an upsert for the uid of a backup deleted at `deleted_at` is a new backup with the
/// same uid. An upsert created before the deletion, or one that does not say when it was
/// created (a producer retrying an old upsert), is a stale event from before the deletion.
pub fn is_recreation(created_at: Option<Timestamp>, deleted_at: Timestamp) -> bool {
    created_at.is_some_and(|c| c > deleted_at)
}

/// When a deletion takes effect: a time ahead of ours is clock skew (it happened by now), no
/// time means now.
pub fn effective_deletion(deleted_at: Option<Timestamp>, now: Timestamp) -> Timestamp {
    deleted_at.map_or(now, |t| t.min(now))
}

/// Tombstones by expiry time.
#[derive(Default)]
pub struct ExpiryIndex {
    by_time: BTreeSet<ExpiryKey>,
}

/// A tombstone's place in the index. The uid's first bytes are compared before the uid: a
/// batch deleted at once expires at one time, and ordering it by the uid strings alone reads
/// each of them (scattered over the heap, a cache miss each) many times: a quarter of a
/// second per million at start-up. The order is the same as by (time, uid).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ExpiryKey {
    expires_at: Timestamp,
    uid_prefix: u64,
    uid: Arc<str>,
}

impl ExpiryKey {
    fn new(expires_at: Timestamp, uid: Arc<str>) -> Self {
        // Big-endian, zero-padded: comparing prefixes agrees with comparing the strings.
        let mut prefix = [0u8; 8];
        let head = &uid.as_bytes()[..uid.len().min(8)];
        prefix[..head.len()].copy_from_slice(head);
        ExpiryKey {
            expires_at,
            uid_prefix: u64::from_be_bytes(prefix),
            uid,
        }
    }
}

impl ExpiryIndex {
    pub fn insert(&mut self, expires_at: Timestamp, uid: Arc<str>) {
        self.by_time.insert(ExpiryKey::new(expires_at, uid));
    }
    pub fn remove(&mut self, expires_at: Timestamp, uid: &Arc<str>) {
        self.by_time
            .remove(&ExpiryKey::new(expires_at, Arc::clone(uid)));
    }
    pub fn len(&self) -> usize {
        self.by_time.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
    pub fn next(&self) -> Option<Timestamp> {
        self.by_time.first().map(|k| k.expires_at)
    }
    /// Takes the next tombstone whose window has ended by `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<Arc<str>> {
        if self.next()? > now {
            return None;
        }
        self.by_time.pop_first().map(|k| k.uid)
    }
    /// Builds the index in one pass (after a replay), cheaper than inserting one by one.
    pub fn from_unsorted(entries: Vec<(Timestamp, Arc<str>)>) -> Self {
        let mut keys: Vec<ExpiryKey> = entries
            .into_iter()
            .map(|(at, uid)| ExpiryKey::new(at, uid))
            .collect();
        keys.sort_unstable();
        ExpiryIndex {
            // Already sorted: the collect's own sort only checks that.
            by_time: keys.into_iter().collect(),
        }
    }
}

/// The backfill window and the mode that chose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackfillWindow {
    pub window: Duration,
    pub federated: bool,
}

impl BackfillWindow {
    pub fn expires_at(&self, deleted_at: Timestamp) -> Timestamp {
        deleted_at.saturating_add(self.window)
    }
    pub fn mode(&self) -> &'static str {
        if self.federated {
            "federated"
        } else {
            "classic"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackupStatus::*;

    fn after(statuses: &[BackupStatus]) -> BackupStatus {
        let mut p = None;
        for s in statuses {
            p = next_previous(p, *s);
        }
        tombstone_previous(p, *statuses.last().unwrap())
    }

    #[test]
    fn previous_status_is_the_last_terminal_status() {
        assert_eq!(after(&[Pending, InProgress, Success, Deleting]), Success);
        assert_eq!(after(&[Failed, InProgress, PartialSuccess]), PartialSuccess);
        // A retry that has not finished does not hide how the backup went.
        assert_eq!(after(&[Failed, InProgress, DeletePending]), Failed);
    }

    #[test]
    fn a_backup_deleted_while_it_runs_keeps_its_last_running_status() {
        assert_eq!(after(&[Pending, InProgress, Deleting]), InProgress);
        assert_eq!(after(&[InProgress, DeletePending, Deleting]), InProgress);
        // Seen only while being deleted: nothing better is known.
        assert_eq!(after(&[Deleting]), Deleting);
    }

    #[test]
    fn stale_upserts() {
        let deleted = Timestamp(10_000);
        assert!(is_recreation(Some(Timestamp(10_001)), deleted));
        assert!(!is_recreation(Some(deleted), deleted));
        assert!(!is_recreation(None, deleted));
    }

    #[test]
    fn expiry_pops_in_time_order_and_only_when_due() {
        let mut idx = ExpiryIndex::from_unsorted(vec![
            (Timestamp(30), Arc::from("c")),
            (Timestamp(10), Arc::from("a")),
            (Timestamp(20), Arc::from("b")),
        ]);
        assert_eq!(idx.pop_due(Timestamp(5)), None);
        assert_eq!(idx.pop_due(Timestamp(20)).as_deref(), Some("a"));
        assert_eq!(idx.pop_due(Timestamp(20)).as_deref(), Some("b"));
        assert_eq!(idx.pop_due(Timestamp(20)), None);
        assert_eq!(idx.next(), Some(Timestamp(30)));
    }

    #[test]
    fn ties_in_time_pop_in_uid_order_whatever_the_prefixes() {
        // Shorter than the prefix, equal prefixes, a NUL after a shared head.
        let uids = ["b", "ab", "abcdefgh2", "abcdefgh1", "ab\0", "abcdefgh", "a"];
        let mut idx = ExpiryIndex::from_unsorted(
            uids.iter()
                .map(|u| (Timestamp(10), Arc::from(*u)))
                .collect(),
        );
        idx.remove(Timestamp(10), &Arc::from("abcdefgh"));
        let mut popped = Vec::new();
        while let Some(uid) = idx.pop_due(Timestamp(10)) {
            popped.push(uid.to_string());
        }
        let mut want: Vec<&str> = uids.iter().copied().filter(|u| *u != "abcdefgh").collect();
        want.sort_unstable();
        assert_eq!(popped, want);
    }
}

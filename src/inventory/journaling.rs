//! What the inventory journals and when: a batch's records appended in the order of the
//! changes, the whole live state rewritten when most of the journal is dead records or a
//! write failed. How records are written, fsynced and compacted is `crate::persistence`'s.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::apply::Pending;
use super::entries::BackupEntry;
use super::{Inventory, JournalError, State};
use crate::families::backup::BackupState;
use crate::persistence::{OwnedRecordRef, Ticket};

impl State {
    /// Every journaled fact, to rewrite the journal as exactly the live state: only shared
    /// pointers are copied, so this is cheap enough to do under the lock.
    pub(super) fn journal_snapshot(&self) -> Vec<OwnedRecordRef> {
        let mut out = Vec::with_capacity(self.backups.len() + self.last_success.len());
        out.extend(self.backups.iter().map(|(uid, e)| backup_record(uid, e)));
        out.extend(
            self.last_success
                .iter()
                .map(|(key, e)| OwnedRecordRef::LastSuccess {
                    key: key.clone(),
                    completed_at: e.0.completed_at,
                }),
        );
        out
    }
}

impl Inventory {
    /// Queues the batch's records (under the lock, so the journal follows the order of the
    /// changes); the caller waits for the ticket after releasing the lock. An unchanged batch
    /// writes nothing, unless the journal must be rewritten.
    pub(super) fn persist(&self, st: &State, pending: Pending) -> Option<Ticket> {
        let journal = self.journal.as_ref()?;
        if journal.needs_rewrite() {
            // An earlier write failed, so the file may miss records: rewrite it whole, this
            // batch included. Even an unchanged batch does: a producer retrying a refused
            // batch changes nothing, and its retry must still make the state durable.
            return Some(journal.compact(st.journal_snapshot()));
        }
        if pending.records.is_empty() {
            return None;
        }
        let refs: Vec<_> = pending
            .records
            .iter()
            .map(OwnedRecordRef::as_record_ref)
            .collect();
        match journal.append(&refs) {
            Ok(ticket) => {
                self.maybe_compact(st);
                Some(ticket)
            }
            Err(e) => {
                // Refused before anything was written (a record over the size limit): the
                // rest is made durable by a rewrite, which leaves that record out.
                tracing::error!(error = %e, "a journal record was refused");
                Some(journal.compact(st.journal_snapshot()))
            }
        }
    }

    /// Rewrites the journal as exactly the live state (at shutdown, so that the next start
    /// replays nothing superseded). Without a journal, does nothing.
    pub fn compact_journal(&self) -> Result<(), JournalError> {
        let Some(journal) = self.journal.as_ref() else {
            return Ok(());
        };
        let snapshot = self.lock().journal_snapshot();
        journal.compact(snapshot).wait()
    }

    /// Starts a rewrite of the journal when most of it is dead records (superseded, expired,
    /// forgotten). It runs on the journal's own thread; nothing waits for it.
    pub(super) fn maybe_compact(&self, st: &State) {
        let Some(journal) = self.journal.as_ref() else {
            return;
        };
        let live = (st.backups.len() + st.last_success.len()) as u64;
        if journal.wants_compaction(live) {
            drop(journal.compact(st.journal_snapshot()));
        }
    }

    /// Failed journal writes (appends and compactions) and records refused for their size.
    pub fn journal_errors(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| {
            let stats = j.stats();
            stats.write_errors.load(Relaxed) + stats.refused_records.load(Relaxed)
        })
    }
}

/// The journal record of a backup or tombstone as the store holds it.
pub(super) fn backup_record(uid: &Arc<str>, e: &BackupEntry) -> OwnedRecordRef {
    match e.state {
        BackupState::Live { previous } => OwnedRecordRef::Backup {
            uid: Arc::clone(uid),
            origin: e.origin.clone(),
            previous,
            object: Arc::clone(&e.object),
        },
        BackupState::Deleted {
            previous,
            deleted_at,
        } => OwnedRecordRef::Tombstone {
            uid: Arc::clone(uid),
            origin: e.origin.clone(),
            previous,
            deleted_at,
            object: Arc::clone(&e.object),
        },
    }
}

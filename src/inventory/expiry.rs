//! Expiring tombstones when their backfill window ends: on time (`run_expiry`), and at every
//! scrape, so that exposition is exact even when the task runs late.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Inventory, State};
use crate::model::Timestamp;

impl Inventory {
    /// Drops every tombstone whose backfill window has ended by `now`; returns how many.
    pub fn expire_due(&self, now: Timestamp) -> usize {
        let mut st = self.lock();
        self.expire_locked(&mut st, now)
    }

    pub(super) fn expire_locked(&self, st: &mut State, now: Timestamp) -> usize {
        let mut n = 0;
        while let Some(uid) = st.expiry.pop_due(now) {
            if let Some((_, e)) = st.backups.remove(&uid) {
                st.tally.remove_backup(&e);
            }
            n += 1;
        }
        if n > 0 {
            self.stats.tombstones_expired.fetch_add(n as u64, Relaxed);
            self.maybe_compact(st);
            st.backups.release_unused_capacity();
        }
        n
    }

    /// When the next tombstone expires, if any.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.lock().expiry.next()
    }

    /// Expires tombstones on time until `shutdown` resolves. Scrapes also expire what is due,
    /// so exposition is exact even if this task runs late.
    pub async fn run_expiry(&self, shutdown: impl std::future::Future<Output = ()>) {
        // Re-check at least this often: the wall clock can jump.
        const MAX_WAIT: Duration = Duration::from_secs(30);
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now();
            let next = {
                let mut st = self.lock();
                self.expire_locked(&mut st, now);
                st.expiry.next()
            };
            let wait = next.map_or(MAX_WAIT, |t| {
                Duration::from_millis(u64::try_from(t.0 - now.0).unwrap_or(0)).min(MAX_WAIT)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.expiry_changed.notified() => {}
                () = &mut shutdown => return,
            }
        }
    }
}

//! Wall-clock time for deadlines that must survive a restart (tombstone expiry).
//!
//! Production reads the system clock. Tests anchor the clock on tokio's `Instant`, so that
//! `tokio::time::pause()` and `advance()` move wall time too and retention is tested without
//! sleeping (the linkerd2-proxy and vector approach).

use crate::model::Timestamp;

#[derive(Clone, Debug)]
pub enum Clock {
    System,
    /// `anchor` at the moment `origin` was taken; "now" advances with tokio time.
    Tokio {
        anchor: Timestamp,
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `anchor` now and then follows tokio time (paused or not).
    pub fn tokio_anchored(anchor: Timestamp) -> Clock {
        Clock::Tokio {
            anchor,
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::from_system_time(std::time::SystemTime::now()),
            Clock::Tokio { anchor, origin } => anchor.saturating_add(origin.elapsed()),
        }
    }
}

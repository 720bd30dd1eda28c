//! Scrapes in flight, and background work giving the cores to them.
//!
//! On two cores, applying a burst of changes (a mass deletion: parsing, applying, journaling)
//! and rendering it shares the machine with a scrape that only copies: nice 10 lowers their
//! share of a core they share, not the memory bandwidth and cache of the core next to it. So
//! a pushed batch before it is parsed and again before it is applied, the refresher between
//! groups, and a journal compaction between runs of records, wait while a scrape is
//! being prepared or sent, up to a bound (under scrapes back to back they still make
//! progress). With Prometheus scraping every 15-60 s this costs a producer a few tens of
//! milliseconds now and then; a scrape during a burst stays as fast as one without.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest one refresh pass waits for scrapes, all waits together.
pub(super) const REFRESH_WAIT: Duration = Duration::from_secs(1);
/// The longest one applied batch waits: a scraper reading slowly (a plain body over a slow
/// link) slows ingest to ten batches a second at worst, never stops it.
pub const APPLY_WAIT: Duration = Duration::from_millis(100);
/// How often waiting background work looks again.
const POLL: Duration = Duration::from_millis(1);

/// How many scrapes are in flight (prepared or being sent). Clones count the same scrapes.
#[derive(Clone, Default)]
pub struct Scrapes(Arc<AtomicUsize>);

impl Scrapes {
    /// Counts a scrape until the returned guard drops (with its response body).
    pub fn start(&self) -> ScrapeInFlight {
        self.0.fetch_add(1, Relaxed);
        ScrapeInFlight(Arc::clone(&self.0))
    }

    pub fn in_flight(&self) -> usize {
        self.0.load(Relaxed)
    }

    /// One piece of background work's way of giving way to them, waiting `at_most` in all.
    pub(super) fn give_way(&self, at_most: Duration) -> GiveWay {
        GiveWay {
            scrapes: Arc::clone(&self.0),
            budget_us: u64::try_from(at_most.as_micros()).unwrap_or(u64::MAX),
            waited_us: AtomicU64::new(0),
        }
    }
}

/// One scrape in flight; dropping it ends it.
#[must_use = "the scrape counts as in flight only while this is held"]
pub struct ScrapeInFlight(Arc<AtomicUsize>);

impl Drop for ScrapeInFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Shared by the threads of one piece of background work (a refresh pass, a batch, a journal
/// compaction).
pub(super) struct GiveWay {
    scrapes: Arc<AtomicUsize>,
    budget_us: u64,
    waited_us: AtomicU64,
}

impl GiveWay {
    /// Waits while a scrape is in flight, unless this work has waited its budget already.
    pub(super) fn wait(&self) {
        if self.scrapes.load(Relaxed) == 0 {
            return;
        }
        let started = Instant::now();
        while self.scrapes.load(Relaxed) > 0
            && self.waited_us.load(Relaxed) + elapsed_us(started) < self.budget_us
        {
            std::thread::sleep(POLL);
        }
        self.waited_us.fetch_add(elapsed_us(started), Relaxed);
    }
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_waits_for_the_scrape_in_flight_and_goes_on_when_it_ends() {
        let scrapes = Scrapes::default();
        let scrape = scrapes.start();
        assert_eq!(scrapes.in_flight(), 1);
        std::thread::scope(|s| {
            let way = scrapes.give_way(REFRESH_WAIT);
            let pass = s.spawn(move || {
                way.wait();
                Instant::now()
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(!pass.is_finished(), "the pass did not wait for the scrape");
            // When it went on, not how long it waited: on a loaded machine the pass may start
            // late and wait less than the sleep above.
            let ended = Instant::now();
            drop(scrape);
            let went_on = pass.join().unwrap();
            assert!(went_on >= ended, "the pass went on before the scrape ended");
        });
        assert_eq!(scrapes.in_flight(), 0);
        // Nothing in flight: no wait at all.
        let t = Instant::now();
        scrapes.give_way(REFRESH_WAIT).wait();
        assert!(t.elapsed() < REFRESH_WAIT);
    }

    #[test]
    fn a_pass_waits_at_most_its_budget_under_scrapes_back_to_back() {
        let scrapes = Scrapes::default();
        let _endless = scrapes.start();
        let way = scrapes.give_way(REFRESH_WAIT);
        let t = Instant::now();
        for _ in 0..5 {
            way.wait();
        }
        // All five groups together waited about one budget, not five.
        let waited = t.elapsed();
        assert!(waited >= REFRESH_WAIT, "{waited:?}");
        assert!(waited < REFRESH_WAIT * 3, "{waited:?}");
    }
}

//! Scrapes in flight: at most so many at once, the rest waiting a while for a place, newest
//! first, and refused (503) when none comes in time.
//!
//! Newest first: under overload the newest request is the one most likely to still be wanted
//! (the client of an old one may have given up already), and a fresh Prometheus scrape is not
//! kept behind hundreds of requests from clients that never read. A scrape holds its place
//! until its body is sent or dropped; one whose client stops reading loses its connection
//! after `server`'s write stall timeout, so a place is never held for ever.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// The places, and the requests waiting for one (oldest at the front).
#[derive(Debug)]
pub struct ScrapeSlots {
    state: Arc<Mutex<State>>,
    wait: Duration,
    max_waiting: usize,
}

#[derive(Debug)]
struct State {
    free: usize,
    waiting: VecDeque<oneshot::Sender<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Each critical section leaves the counts consistent: a poisoned lock is still usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives a freed place to the newest request still waiting, or back to the pool.
fn release(state: &Mutex<State>) {
    let mut s = lock(state);
    while let Some(waiter) = s.waiting.pop_back() {
        if waiter.send(()).is_ok() {
            return;
        }
    }
    s.free += 1;
}

/// A place held: given back when dropped.
#[derive(Debug)]
pub struct ScrapeSlot {
    state: Arc<Mutex<State>>,
}

impl Drop for ScrapeSlot {
    fn drop(&mut self) {
        release(&self.state);
    }
}

/// A request waiting for a place. Dropped without having taken the place it was given (a
/// timeout racing the grant, the request cancelled), it gives the place on.
struct Waiter {
    rx: oneshot::Receiver<()>,
    state: Arc<Mutex<State>>,
    placed: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.placed {
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                release(&self.state);
            }
        }
    }
}

impl ScrapeSlots {
    /// `places` scrapes at once; up to `max_waiting` more wait at most `wait` each (a newer
    /// one pushes the oldest out when they are that many).
    pub fn new(places: usize, max_waiting: usize, wait: Duration) -> ScrapeSlots {
        ScrapeSlots {
            state: Arc::new(Mutex::new(State {
                free: places,
                waiting: VecDeque::new(),
            })),
            wait,
            max_waiting,
        }
    }

    /// A place, at once or after waiting; None when none came in time (or a newer request
    /// pushed this one out of a full queue).
    pub async fn acquire(&self) -> Option<ScrapeSlot> {
        let rx = {
            let mut s = lock(&self.state);
            if s.free > 0 {
                s.free -= 1;
                return Some(ScrapeSlot {
                    state: self.state.clone(),
                });
            }
            // Requests that gave up since are no longer waiting.
            s.waiting.retain(|w| !w.is_closed());
            if s.waiting.len() >= self.max_waiting {
                // The oldest is refused (its sender dropped) to make room for the newest.
                s.waiting.pop_front();
            }
            let (tx, rx) = oneshot::channel();
            s.waiting.push_back(tx);
            rx
        };
        let mut waiter = Waiter {
            rx,
            state: self.state.clone(),
            placed: false,
        };
        match tokio::time::timeout(self.wait, &mut waiter.rx).await {
            Ok(Ok(())) => {
                waiter.placed = true;
                Some(ScrapeSlot {
                    state: self.state.clone(),
                })
            }
            _ => None,
        }
    }

    /// Places free now (tests).
    pub fn free(&self) -> usize {
        lock(&self.state).free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_newest_waiter_gets_the_next_place_and_old_ones_give_up() {
        let slots = Arc::new(ScrapeSlots::new(1, 8, Duration::from_secs(5)));
        let held = slots.acquire().await.expect("a free place");
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let (slots, done_tx) = (slots.clone(), done_tx.clone());
            tokio::spawn(async move {
                let slot = slots.acquire().await;
                let _ = done_tx.send((i, slot.is_some()));
                drop(slot);
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        // The newest (2) first; it gives its place on to the next newest (1), then (0).
        let order: Vec<_> = [done.recv().await, done.recv().await, done.recv().await]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(order, vec![(2, true), (1, true), (0, true)]);
        assert_eq!(slots.free(), 1);

        // Waiting longer than `wait`: refused, and the place is not lost.
        let held = slots.acquire().await.expect("a free place");
        assert!(slots.acquire().await.is_none());
        drop(held);
        assert_eq!(slots.free(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_pushes_out_its_oldest() {
        let slots = Arc::new(ScrapeSlots::new(1, 2, Duration::from_secs(60)));
        let held = slots.acquire().await.expect("a free place");
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let slots = slots.clone();
            waiting.push(tokio::spawn(async move { slots.acquire().await.is_some() }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The oldest was pushed out at once.
        assert!(!waiting.remove(0).await.unwrap());
        drop(held);
        assert!(waiting.pop().unwrap().await.unwrap());
        assert!(waiting.pop().unwrap().await.unwrap());
        assert_eq!(slots.free(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_cancelled_as_it_is_given_a_place_passes_it_on() {
        let slots = Arc::new(ScrapeSlots::new(1, 8, Duration::from_secs(60)));
        let held = slots.acquire().await.expect("a free place");
        let cancelled = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        assert_eq!(slots.free(), 1);
        let slot = slots.acquire().await;
        assert!(slot.is_some());
    }
}

//! What a scrape serves: a snapshot of every kind's compressed series, made current by
//! rendering the groups that changed (by the scrape within a budget, by the background
//! refresher otherwise), and runs of unchanged groups packed in the background.

use std::sync::Arc;
use std::time::Duration;

use super::entries::{BackupEntry, LastSuccessEntry, ObjectEntry};
use super::segment::{self, Compressor, SharedGroup};
use super::store::{self, make_group, Freshness, GroupView, Render, Table};
use super::{give_way, Inventory, State};
use crate::families::backup as backup_families;
use crate::families::objects;
use crate::families::{Family, KindFamilies, Rows};
use crate::model::{BackupLocation, Cluster, Restore, Schedule};
use crate::priority::BackgroundThread;

/// Groups changed in place that one scrape renders itself, per kind, when no more changed:
/// 4 groups of backups are 256 backups, ~0.7 MB of text, about 6 ms of CPU: a fifth of a
/// scrape of 100,000 backups. More than that is a burst, left whole to the refresher.
pub const SCRAPE_RENDER_BUDGET: usize = 4;

/// Changed groups the background refresher copies out of the store in one hold of the lock:
/// 16 groups of backups are 1,024 entries, about a tenth of a millisecond to copy.
pub(super) const REMAKE_AT_ONCE: usize = 16;

/// The series of one kind as a scrape serves them: for each family in order, the segment of
/// that family in every part.
pub struct KindSnapshot {
    pub families: Vec<&'static Family>,
    pub parts: Vec<Part>,
}

/// Consecutive entries of a kind, in order: one group, or a run of groups packed.
#[derive(Clone)]
pub enum Part {
    Group(SharedGroup),
    Packed(Arc<segment::Pack>),
}

impl Part {
    /// The part's segment of the kind's family `f`.
    pub fn family(&self, f: usize) -> Option<&segment::Segment> {
        match self {
            Part::Group(g) => g.families.get(f),
            Part::Packed(p) => p.families.get(f),
        }
    }
}

/// Everything a scrape needs, in exposition order; only shared pointers to compressed
/// segments, so it costs next to nothing to hold.
pub struct Snapshot {
    pub kinds: Vec<KindSnapshot>,
}

/// What a plain-text scrape serves, in exposition order: each kind's entries as they are
/// now, rendered a family at a time off the lock. Nothing is inflated: a backup as it is
/// stored holds each of its strings once, where the deflated text of its nine or more series
/// holds them once per family, so writing the text from the backup is several times faster
/// than inflating it, and costs no memory beyond the few words per entry taken here.
pub struct TextSnapshot {
    pub kinds: Vec<KindText>,
}

/// One kind in a `TextSnapshot`.
pub struct KindText {
    pub families: Vec<&'static Family>,
    pub groups: Box<dyn store::GroupsText>,
}

fn kind_text<K: std::hash::Hash + Eq, E: Render, R: Rows>(
    table: &Table<K, E>,
    families: &'static KindFamilies<R>,
) -> KindText {
    KindText {
        families: families.families().collect(),
        groups: Box::new(table.text_view()),
    }
}

impl Inventory {
    /// Keeps the compressed series up to date between scrapes: shortly after changes, renders
    /// the stale groups on a blocking thread, so that a scrape usually finds every group ready
    /// and only copies (a scrape still renders whatever is stale when it comes). Runs until
    /// `shutdown` resolves.
    pub async fn run_refresher(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        // A burst of changes (a page of a poll, a batch) settles before it is rendered, and a
        // group that changes all the time is rendered at most once a second, as a scrape
        // every second would.
        const SETTLE: Duration = Duration::from_millis(100);
        const MIN_GAP: Duration = Duration::from_secs(1);
        // How often a quiet refresher looks whether the series cache is due.
        const SAVE_CHECK: Duration = Duration::from_secs(60);
        tokio::pin!(shutdown);
        // Its own thread at background priority: it renders while the cores are idle and
        // gives way to scrapes, which render what they need on normal threads.
        let renderer = BackgroundThread::start("series-refresh");
        // What the series cache covers is served before anything is rendered: on a normal
        // thread, as a scrape waits for it.
        let inventory = Arc::clone(&self);
        if let Err(e) = tokio::task::spawn_blocking(move || inventory.warm_up()).await {
            tracing::error!(error = %e, "loading the series cache failed; the first scrape renders every group");
        }
        let mut last_save = tokio::time::Instant::now();
        loop {
            let changed = tokio::select! {
                () = self.changed.notified() => true,
                () = tokio::time::sleep(SAVE_CHECK) => false,
                () = &mut shutdown => return,
            };
            if changed {
                tokio::select! {
                    () = tokio::time::sleep(SETTLE) => {}
                    () = &mut shutdown => return,
                }
                let inventory = Arc::clone(&self);
                if let Err(e) = renderer
                    .run(move || {
                        inventory.refresh_in_background();
                        inventory.pack_in_background();
                    })
                    .await
                {
                    tracing::error!(error = %e, "rendering changed series failed; the next scrape renders them");
                }
            }
            if self.series_cache_wants_save(last_save.elapsed()) {
                last_save = tokio::time::Instant::now();
                let inventory = Arc::clone(&self);
                let saved = renderer
                    .run(move || {
                        let way = inventory.scrapes.give_way(give_way::REFRESH_WAIT);
                        inventory.save_series_cache_with(Some(&way))
                    })
                    .await;
                match saved {
                    Ok(Ok(groups)) => tracing::debug!(groups, "series cache written"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the series cache was not written; a restart renders what it misses")
                    }
                    Err(e) => tracing::error!(error = %e, "writing the series cache failed"),
                }
            }
            if changed {
                tokio::select! {
                    () = tokio::time::sleep(MIN_GAP.saturating_sub(SETTLE)) => {}
                    () = &mut shutdown => return,
                }
            }
        }
    }

    fn series_cache_wants_save(&self, since_last: Duration) -> bool {
        self.series_cache.as_ref().is_some_and(|c| {
            let groups = self.lock().backups.groups();
            super::series_cache::wants_save(c.made_since_save(), groups, since_last)
        })
    }

    /// Everything as it is now: expires what is due, renders and compresses every group that
    /// changed (on every core, off the lock), and returns shared pointers to every group's
    /// segments. Blocking: call it off the async workers.
    pub fn snapshot(&self) -> Snapshot {
        self.warm_up();
        let _one_at_a_time = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        self.snapshot_with(Freshness::Exact).0
    }

    /// The background refresher's pass: expires what is due and makes every group that
    /// changed, `REMAKE_AT_ONCE` groups at a time, holding the lock only to copy them out and
    /// to install what was made, and waiting while a scrape is in flight (see `give_way`).
    /// A group that changes again or moves meanwhile is not installed; the change that did it
    /// woke the refresher for another pass.
    fn refresh_in_background(&self) {
        self.warm_up();
        let _one_at_a_time = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        self.expire_locked(&mut self.lock(), now);
        let way = self.scrapes.give_way(give_way::REFRESH_WAIT);
        let work = Work {
            give_way: Some(&way),
            seed: self.fingerprint_seed(),
        };
        let made = self.remake_table(|st| &mut st.backups, &backup_families::FAMILIES, work);
        if let Some(cache) = &self.series_cache {
            cache.note_made(made);
        }
        self.remake_table(|st| &mut st.restores, &objects::RESTORE, work);
        self.remake_table(|st| &mut st.schedules, &objects::SCHEDULE, work);
        let last_success = &objects::SCHEDULE_LAST_SUCCESS;
        self.remake_table(|st| &mut st.last_success, last_success, work);
        self.remake_table(|st| &mut st.clusters, &objects::CLUSTER, work);
        self.remake_table(|st| &mut st.locations, &objects::BACKUP_LOCATION, work);
    }

    /// Makes the table's changed groups a few at a time; how many it made.
    fn remake_table<K: std::hash::Hash + Eq, E: Render, R: Rows>(
        &self,
        table: impl Fn(&mut State) -> &mut Table<K, E>,
        families: &'static KindFamilies<R>,
        work: Work<'_>,
    ) -> usize {
        let (mut from, mut made) = (0, 0);
        loop {
            if let Some(way) = work.give_way {
                way.wait();
            }
            let (stale, next) = table(&mut self.lock()).stale_groups(from, REMAKE_AT_ONCE);
            if stale.is_empty() {
                return made;
            }
            let views = stale.into_iter().map(GroupView::Stale).collect();
            let refreshed = refresh(views, families, work);
            made += refreshed.made.len();
            refreshed.install(table(&mut self.lock()));
            from = next;
        }
    }

    /// Packs every run of groups whose pack a change dropped (see `segment::Pack`), off the
    /// lock, between runs waiting while a scrape is in flight. A run that changes meanwhile
    /// is left for the next pass.
    fn pack_in_background(&self) {
        let way = self.scrapes.give_way(give_way::REFRESH_WAIT);
        self.pack_table(|st| &mut st.backups, &way);
        self.pack_table(|st| &mut st.restores, &way);
        self.pack_table(|st| &mut st.schedules, &way);
        self.pack_table(|st| &mut st.last_success, &way);
        self.pack_table(|st| &mut st.clusters, &way);
        self.pack_table(|st| &mut st.locations, &way);
    }

    fn pack_table<K: std::hash::Hash + Eq, E: Render>(
        &self,
        table: impl Fn(&mut State) -> &mut Table<K, E>,
        way: &give_way::GiveWay,
    ) {
        let (unpacked, families) = {
            let mut st = self.lock();
            let t = table(&mut st);
            (t.unpacked(), t.families())
        };
        for run in unpacked {
            way.wait();
            let (pack, groups) = segment::pack(&run.groups, families);
            table(&mut self.lock()).install_pack(&run, pack, groups);
        }
    }

    /// What a plain-text scrape serves: every entry as it is now (tombstones whose window
    /// ended are expired first), taken in one hold of the lock, so that the text is one
    /// consistent state even while changes are applied during the scrape. Renders nothing.
    pub fn text_snapshot(&self) -> TextSnapshot {
        let now = self.clock.now();
        let mut st = self.lock();
        self.expire_locked(&mut st, now);
        TextSnapshot {
            kinds: vec![
                kind_text(&st.backups, &backup_families::FAMILIES),
                kind_text(&st.restores, &objects::RESTORE),
                kind_text(&st.schedules, &objects::SCHEDULE),
                kind_text(&st.last_success, &objects::SCHEDULE_LAST_SUCCESS),
                kind_text(&st.clusters, &objects::CLUSTER),
                kind_text(&st.locations, &objects::BACKUP_LOCATION),
            ],
        }
    }

    /// Counts a scrape as in flight until the guard drops: hold it until the response body
    /// is sent.
    pub fn scrape_started(&self) -> give_way::ScrapeInFlight {
        self.scrapes.start()
    }

    pub fn scrapes_in_flight(&self) -> usize {
        self.scrapes.in_flight()
    }

    /// Waits while a scrape is in flight, at most `give_way::APPLY_WAIT`. Applying a batch
    /// waits so; a producer calls it before its own heavy work on a batch (parsing a pushed
    /// body), so that a burst of changes leaves the cores to a scrape at every step, not only
    /// at the last.
    pub fn give_way_to_scrapes(&self) {
        self.scrapes.give_way(give_way::APPLY_WAIT).wait();
    }

    /// What a scrape serves: `snapshot`, but a scrape renders groups changed in place only
    /// when a kind has at most `SCRAPE_RENDER_BUDGET` of them (and none while the background
    /// refresher is rendering); otherwise they are served as rendered last, and the refresher,
    /// already woken by the change, renders them within about a second. So a burst of changes
    /// (a mass deletion, a re-list that changes everything) never makes a scrape slow, and a
    /// handful of changes still shows in the very next scrape. New and moved groups have
    /// nothing to serve in their place: they are always rendered.
    pub fn snapshot_for_scrape(&self) -> Snapshot {
        // Right after a restart: wait for what the series cache covers rather than render it.
        self.warm_up();
        let (snapshot, made) = match self.refresh.try_lock() {
            Ok(_one_at_a_time) => self.snapshot_with(Freshness::Budget(SCRAPE_RENDER_BUDGET)),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let _one_at_a_time = p.into_inner();
                self.snapshot_with(Freshness::Budget(SCRAPE_RENDER_BUDGET))
            }
            Err(std::sync::TryLockError::WouldBlock) => self.snapshot_with(Freshness::Budget(0)),
        };
        // What this scrape made is not packed yet (after a restart, nothing is): the refresher
        // packs it.
        if made > 0 {
            self.changed.notify_one();
        }
        snapshot
    }

    /// The snapshot, and how many groups it made.
    pub(super) fn snapshot_with(&self, freshness: Freshness) -> (Snapshot, usize) {
        let now = self.clock.now();
        let views = {
            let mut st = self.lock();
            self.expire_locked(&mut st, now);
            Views {
                backups: st.backups.view(freshness),
                restores: st.restores.view(freshness),
                schedules: st.schedules.view(freshness),
                last_success: st.last_success.view(freshness),
                clusters: st.clusters.view(freshness),
                locations: st.locations.view(freshness),
            }
        };
        let seed = self.fingerprint_seed();
        let work = Work {
            give_way: None,
            seed,
        };
        let backups = refresh(views.backups, &backup_families::FAMILIES, work);
        let restores = refresh(views.restores, &objects::RESTORE, work);
        let schedules = refresh(views.schedules, &objects::SCHEDULE, work);
        let last_success = refresh(views.last_success, &objects::SCHEDULE_LAST_SUCCESS, work);
        let clusters = refresh(views.clusters, &objects::CLUSTER, work);
        let locations = refresh(views.locations, &objects::BACKUP_LOCATION, work);
        if let Some(cache) = &self.series_cache {
            cache.note_made(backups.made.len());
        }
        {
            let mut st = self.lock();
            backups.install(&mut st.backups);
            restores.install(&mut st.restores);
            schedules.install(&mut st.schedules);
            last_success.install(&mut st.last_success);
            clusters.install(&mut st.clusters);
            locations.install(&mut st.locations);
        }
        let made = [
            &backups,
            &restores,
            &schedules,
            &last_success,
            &clusters,
            &locations,
        ]
        .iter()
        .map(|r| r.made.len())
        .sum();
        let snapshot = Snapshot {
            kinds: vec![
                backups.snapshot(&backup_families::FAMILIES),
                restores.snapshot(&objects::RESTORE),
                schedules.snapshot(&objects::SCHEDULE),
                last_success.snapshot(&objects::SCHEDULE_LAST_SUCCESS),
                clusters.snapshot(&objects::CLUSTER),
                locations.snapshot(&objects::BACKUP_LOCATION),
            ],
        };
        (snapshot, made)
    }
}

/// What one scrape took from the tables.
struct Views {
    backups: Vec<GroupView<BackupEntry>>,
    restores: Vec<GroupView<ObjectEntry<Restore>>>,
    schedules: Vec<GroupView<ObjectEntry<Schedule>>>,
    last_success: Vec<GroupView<LastSuccessEntry>>,
    clusters: Vec<GroupView<ObjectEntry<Cluster>>>,
    locations: Vec<GroupView<ObjectEntry<BackupLocation>>>,
}

/// A table's parts after a refresh, and the groups made fresh (to keep for the next scrape):
/// group index, generation, position among the parts.
struct Refreshed {
    parts: Vec<Part>,
    made: Vec<(usize, u64, usize)>,
}

impl Refreshed {
    fn install<K: std::hash::Hash + Eq, E: Render>(&self, table: &mut Table<K, E>) {
        for (index, generation, at) in &self.made {
            if let Some(Part::Group(g)) = self.parts.get(*at) {
                table.install(*index, *generation, g);
            }
        }
    }
    fn snapshot<K: Rows>(self, families: &'static KindFamilies<K>) -> KindSnapshot {
        KindSnapshot {
            families: families.families().collect(),
            parts: self.parts,
        }
    }
}

/// How a refresh makes groups: whether it gives way to scrapes, and the fingerprints' seed.
#[derive(Clone, Copy)]
struct Work<'a> {
    give_way: Option<&'a give_way::GiveWay>,
    seed: u64,
}

/// Renders and compresses the stale groups among `views`: for a scrape, split across the
/// cores; in the background, on the refresher's own thread, leaving the other cores to
/// scrapes (and not starting threads for every few groups: their allocator caches, made and
/// dropped a hundred times in a pass, left ~12 MB more resident at 100,000 tombstones).
fn refresh<E: Render, K: Rows>(
    views: Vec<GroupView<E>>,
    families: &'static KindFamilies<K>,
    Work { give_way, seed }: Work<'_>,
) -> Refreshed {
    let n_families = families.len();
    let mut parts: Vec<Option<Part>> = Vec::with_capacity(views.len());
    let mut stale = Vec::new();
    for view in views {
        match view {
            GroupView::Packed(p) => parts.push(Some(Part::Packed(p))),
            GroupView::Ready(g) => parts.push(Some(Part::Group(g))),
            GroupView::Stale(s) => {
                stale.push((parts.len(), s));
                parts.push(None);
            }
        }
    }
    let threads = if give_way.is_some() {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(stale.len().div_ceil(4))
            .max(1)
    };
    let chunk = stale.len().div_ceil(threads).max(1);
    let work = |part: &[(usize, store::StaleGroup<E>)]| -> Vec<(usize, SharedGroup)> {
        let mut compressor = Compressor::default();
        let (mut texts, mut identity) = (Vec::new(), Vec::new());
        part.iter()
            .map(|(at, s)| {
                if let Some(way) = give_way {
                    way.wait();
                }
                let g = make_group(
                    &s.entries,
                    n_families,
                    &mut compressor,
                    &mut texts,
                    &mut identity,
                    seed,
                );
                (*at, g)
            })
            .collect()
    };
    let results: Vec<(usize, SharedGroup)> = if threads == 1 {
        work(&stale)
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = stale
                .chunks(chunk)
                .map(|part| scope.spawn(move || work(part)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let stale_at: std::collections::HashMap<usize, (usize, u64)> = stale
        .iter()
        .map(|(at, s)| (*at, (s.index, s.generation)))
        .collect();
    let mut made = Vec::with_capacity(results.len());
    for (at, g) in results {
        if let (Some(slot), Some((index, generation))) = (parts.get_mut(at), stale_at.get(&at)) {
            *slot = Some(Part::Group(g));
            made.push((*index, *generation, at));
        }
    }
    Refreshed {
        // A group a worker could not make (it panicked on a bug) is served empty this time
        // and stays stale, so the next scrape tries again.
        parts: parts
            .into_iter()
            .map(|p| p.unwrap_or_else(|| Part::Group(SharedGroup::default())))
            .collect(),
        made,
    }
}

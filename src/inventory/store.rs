//! The store of one kind of object: entries keyed by uid in a dense map (a scrape walks a
//! vector), and their series rendered and compressed per group of `GROUP` consecutive entries
//! and per family (kube-state-metrics keeps each object's rendered bytes; we keep a group's,
//! compressed, which costs a tenth of the memory).
//!
//! A change marks only its group stale; a scrape renders and compresses the stale groups
//! again and reuses every other one as it is, so what a scrape does beyond copying grows with
//! what changed since the previous scrape, never with the fleet. Applying an event stays O(1):
//! it never renders. Runs of `PACK` groups that have not changed since are served as one
//! `Pack` each, which a scrape lays out and sends as one piece per family.

use std::hash::Hash;
use std::sync::Arc;

use indexmap::IndexMap;

use super::segment::{Compressor, Pack, SharedGroup};

/// Entries per group. Smaller groups make a change cheaper to re-compress; larger ones
/// compress better (each segment starts without a dictionary) and make fewer pieces to send.
/// Measured at 100,000 backups (docs/performance.md): at 64 the gzip body is 1.07x one
/// `gzip -1` stream of the same text (1.25x at 32), and a changed backup costs ~170 KB of text
/// to render and compress again, off the scrape as a rule (the background refresher).
pub const GROUP: usize = 64;

/// Groups per pack (see `segment::Pack`): 2,048 entries, a few hundred KB of compressed text
/// per family for backups. Larger packs make fewer, larger pieces to send; smaller ones cost
/// less to pack again after a change (the background refresher copies a changed pack whole).
pub const PACK: usize = 32;

/// What the store needs of an entry: render its series, one text buffer per family, and hand
/// a plain-text scrape what renders them later.
pub trait Render: Clone + Send + Sync {
    /// What a plain-text scrape takes of the entry under the lock, to render it off the lock
    /// a family at a time: shared pointers, a few words.
    type Source: RenderFamily;
    fn source(&self) -> Self::Source;

    fn render(&self, identity: &mut Vec<u8>, outs: &mut [Vec<u8>]);

    /// Feeds `feed` everything the entry's series are rendered from, and says whether it did:
    /// kinds kept across restarts do, so that their groups can be found again in the series
    /// cache by fingerprint (`series_cache`). What is not fed must not change the series.
    fn rendered_from(&self, _feed: &mut dyn FnMut(&[u8])) -> bool {
        false
    }
}

/// Renders one family of an entry (a plain-text scrape writes the whole fleet a family at a
/// time, and keeps no text of its own).
pub trait RenderFamily: Send + Sync + 'static {
    fn render_family(&self, family: usize, out: &mut Vec<u8>);
}

/// The fingerprint of what a group is made from (see `Render::rendered_from`), or none when an
/// entry cannot say. 128 bits, seeded per state directory: a producer that does not know the
/// seed cannot make two groups collide.
pub fn fingerprint<'a, E: Render + 'a>(
    entries: impl IntoIterator<Item = &'a E>,
    seed: u64,
) -> Option<u128> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    let mut feed = |bytes: &[u8]| {
        // Length first: the fed pieces cannot run into each other.
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for e in entries {
        if !e.rendered_from(&mut feed) {
            return None;
        }
    }
    Some(hasher.digest128())
}

struct Group {
    /// The segments last made for the group (still there while it is stale).
    segments: Option<SharedGroup>,
    /// Something in the group changed since its segments were made.
    stale: bool,
    /// Its members changed (an entry added, removed, or moved in by a removal): its old
    /// segments would show a moved entry twice or a removed one still, so they are never
    /// served again.
    moved: bool,
    /// Bumped by every change, so that a refresh made from an older view is not installed.
    generation: u64,
}

impl Group {
    /// Stale, but its last segments still show the right members: they can be served while
    /// it waits for the refresher.
    fn changed_in_place(&self) -> bool {
        self.stale && !self.moved && self.segments.is_some()
    }

    /// The segments to serve as they are: current ones, or (unless changes in place are to
    /// be made again) the last ones made of a group changed in place.
    fn ready(&self, make_in_place: bool) -> Option<&SharedGroup> {
        match &self.segments {
            Some(segments) if !self.stale => Some(segments),
            Some(segments) if self.changed_in_place() && !make_in_place => Some(segments),
            _ => None,
        }
    }
}

/// Uids come from sources (ingest accepts any string): the hasher is seeded at random, so a
/// producer cannot aim collisions at it.
type Hasher = foldhash::fast::RandomState;

pub struct Table<K, E> {
    entries: IndexMap<K, E, Hasher>,
    groups: Vec<Group>,
    /// Per run of `PACK` groups, their segments packed, while every group in it still has the
    /// segments that were packed (making a group's segments again drops its run's pack).
    packs: Vec<Option<Arc<Pack>>>,
    families: usize,
}

/// The made segments of a run of groups with no pack, to be packed off the lock.
pub struct Unpacked {
    pub run: usize,
    pub generations: Vec<u64>,
    pub groups: Vec<SharedGroup>,
}

/// A group whose segments must be made again, with what it held when the scrape looked.
pub struct StaleGroup<E> {
    pub index: usize,
    pub generation: u64,
    pub entries: Vec<E>,
}

/// How current the series a view hands out must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Every group that changed is made again.
    Exact,
    /// At most this many groups whose entries only changed in place are made again; the
    /// others are served as last made, until the background refresher makes them.
    Budget(usize),
}

/// What a scrape takes from one table: each group's segments, or what it needs to make them.
pub enum GroupView<E> {
    /// A whole run of `PACK` groups (or the last, shorter run), each ready, as one pack.
    Packed(Arc<Pack>),
    Ready(SharedGroup),
    Stale(StaleGroup<E>),
}

impl<K: Hash + Eq, E: Render> Table<K, E> {
    pub fn new(families: usize) -> Self {
        Table {
            entries: IndexMap::with_hasher(Hasher::default()),
            groups: Vec::new(),
            packs: Vec::new(),
            families,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn get<Q: ?Sized + Hash + indexmap::Equivalent<K>>(&self, key: &Q) -> Option<&E> {
        self.entries.get(key)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &E)> {
        self.entries.iter()
    }
    pub fn values(&self) -> impl Iterator<Item = &E> {
        self.entries.values()
    }
    /// Entries to change in ways that do not change what they render (bookkeeping kept beside
    /// them): no group becomes stale.
    pub fn values_mut_unrendered(&mut self) -> impl Iterator<Item = &mut E> {
        self.entries.values_mut()
    }
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    fn touch(&mut self, index: usize, moved: bool) {
        let g = index / GROUP;
        if g >= self.groups.len() {
            self.groups.resize_with(g + 1, || Group {
                segments: None,
                stale: true,
                moved: true,
                generation: 0,
            });
        }
        let group = &mut self.groups[g];
        group.stale = true;
        group.moved |= moved;
        group.generation += 1;
    }

    /// Inserts or replaces; returns the entry it replaced.
    pub fn insert(&mut self, key: K, entry: E) -> Option<E> {
        let (index, old) = self.entries.insert_full(key, entry);
        self.touch(index, old.is_none());
        old
    }

    /// Replaces the entry of `key`, or inserts it with the key `make_key` builds (so that a
    /// replacement, the common case in a replay, allocates no key).
    pub fn upsert<Q>(&mut self, key: &Q, make_key: impl FnOnce(&Q) -> K, entry: E) -> Option<E>
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K>,
    {
        use indexmap::map::raw_entry_v1::{RawEntryApiV1, RawEntryMut};
        use std::hash::BuildHasher;
        // One hash and one probe either way: a replay does this a million times or more.
        let hash = self.entries.hasher().hash_one(key);
        match self
            .entries
            .raw_entry_mut_v1()
            .from_key_hashed_nocheck(hash, key)
        {
            RawEntryMut::Occupied(mut slot) => {
                let index = slot.index();
                let old = slot.insert(entry);
                self.touch(index, false);
                Some(old)
            }
            RawEntryMut::Vacant(slot) => {
                let index = slot.index();
                slot.insert_hashed_nocheck(hash, make_key(key), entry);
                self.touch(index, true);
                None
            }
        }
    }

    /// Changes an entry in place; `None` if there is none.
    pub fn update<Q, R>(&mut self, key: &Q, f: impl FnOnce(&mut E) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K>,
    {
        let (index, _, entry) = self.entries.get_full_mut(key)?;
        let r = f(entry);
        self.touch(index, false);
        Some(r)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<(K, E)>
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K>,
    {
        let (index, k, e) = self.entries.swap_remove_full(key)?;
        self.touch(index, true);
        // The last entry moved into the hole: its old group lost it.
        let moved_from = self.entries.len();
        if moved_from != index {
            self.touch(moved_from, true);
        }
        let groups = self.entries.len().div_ceil(GROUP);
        if self.groups.len() > groups {
            self.groups.truncate(groups);
            // The last run lost a group: its pack would show it still.
            self.packs.truncate(groups.div_ceil(PACK));
            if let Some(last) = self.packs.last_mut() {
                *last = None;
            }
        }
        Some((k, e))
    }

    /// Gives memory back after a burst of removals (tombstones expiring): maps keep their
    /// capacity otherwise.
    pub fn release_unused_capacity(&mut self) {
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
            self.groups.shrink_to_fit();
            self.packs.shrink_to_fit();
        }
    }

    /// What a scrape needs; cheap (pointer copies) for groups that are up to date. Under a
    /// `Freshness::Budget(n)`, groups whose entries only changed in place are made again only
    /// when there are at most `n` of them: a handful of changes shows at once, a burst is
    /// served as last made and left whole to the background refresher (making part of a
    /// burst would slow every scrape of the burst and show nothing sooner than the refresher
    /// does). Groups whose members changed are always made again (their old segments would
    /// show a moved entry twice or a removed one still).
    pub fn view(&self, freshness: Freshness) -> Vec<GroupView<E>> {
        let make_in_place = match freshness {
            Freshness::Exact => true,
            Freshness::Budget(n) => {
                let changed = self.groups.iter().filter(|g| g.changed_in_place());
                changed.take(n + 1).count() <= n
            }
        };
        let mut views = Vec::with_capacity(self.groups.len());
        for (run, groups) in self.groups.chunks(PACK).enumerate() {
            // A run whose groups are all served as they are, as last packed, goes as its pack.
            let pack = self.packs.get(run).and_then(Option::as_ref);
            if let Some(pack) = pack.filter(|p| p.groups == groups.len()) {
                if groups.iter().all(|g| g.ready(make_in_place).is_some()) {
                    views.push(GroupView::Packed(Arc::clone(pack)));
                    continue;
                }
            }
            for (i, group) in groups.iter().enumerate() {
                let g = run * PACK + i;
                views.push(match group.ready(make_in_place) {
                    Some(segments) => GroupView::Ready(Arc::clone(segments)),
                    None => GroupView::Stale(self.stale_group(g)),
                });
            }
        }
        views
    }

    /// Up to `at_most` groups that changed, from group `from` on, with the index to go on
    /// from. The background refresher takes them a few at a time: copying the entries of
    /// every changed group at once (a mass deletion's) held the lock for milliseconds, and a
    /// scrape waited behind it. Empty once no group from `from` on changed.
    pub fn stale_groups(&self, from: usize, at_most: usize) -> (Vec<StaleGroup<E>>, usize) {
        let mut stale = Vec::new();
        let mut next = from;
        for (g, group) in self.groups.iter().enumerate().skip(from) {
            if stale.len() == at_most {
                break;
            }
            next = g + 1;
            if group.ready(true).is_none() {
                stale.push(self.stale_group(g));
            }
        }
        (stale, next)
    }

    fn stale_group(&self, g: usize) -> StaleGroup<E> {
        let end = (g * GROUP + GROUP).min(self.entries.len());
        StaleGroup {
            index: g,
            generation: self.groups.get(g).map_or(0, |group| group.generation),
            entries: self
                .entries
                .get_range(g * GROUP..end)
                .map(|slice| slice.values().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// What a plain-text scrape renders this table from (see `TextView`).
    pub fn text_view(&self) -> TextView<E::Source> {
        TextView {
            sources: self.entries.values().map(Render::source).collect(),
            made: self
                .groups
                .iter()
                .map(|g| g.segments.clone().filter(|_| !g.stale))
                .collect(),
        }
    }

    /// Keeps segments made from a view, unless the group changed since.
    pub fn install(&mut self, index: usize, generation: u64, segments: &SharedGroup) {
        if let Some(group) = self.groups.get_mut(index) {
            if group.generation == generation {
                group.segments = Some(Arc::clone(segments));
                group.stale = false;
                group.moved = false;
                if let Some(pack) = self.packs.get_mut(index / PACK) {
                    *pack = None;
                }
            }
        }
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Every group made and current, in order, with the keys of its entries (for the series
    /// cache).
    pub fn made_groups(&self) -> Vec<(Vec<K>, SharedGroup)>
    where
        K: Clone,
    {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.stale)
            .filter_map(|(i, g)| {
                let segments = g.segments.clone()?;
                let slice = self
                    .entries
                    .get_range(i * GROUP..(i * GROUP + GROUP).min(self.len()))?;
                Some((slice.keys().cloned().collect(), segments))
            })
            .collect()
    }

    /// Where the entry of `key` is.
    pub fn index_of<Q: ?Sized + Hash + indexmap::Equivalent<K>>(&self, key: &Q) -> Option<usize> {
        self.entries.get_index_of(key)
    }

    /// Puts the entries in `order`, a permutation of their indices: every group is to be made
    /// again. In place, by swaps (the map keeps each key's hash: no key is hashed again). An
    /// index out of range or repeated is passed over.
    pub fn reorder(&mut self, order: &[usize]) {
        let n = self.entries.len();
        // `at[original]`: where that entry is now; `who[index]`: which entry is there.
        let mut at: Vec<usize> = (0..n).collect();
        let mut who: Vec<usize> = (0..n).collect();
        for (j, &original) in order.iter().enumerate().take(n) {
            let Some(&from) = at.get(original) else {
                continue;
            };
            // Already there, or placed before (a repeat): places before `j` are final.
            if from <= j {
                continue;
            }
            self.entries.swap_indices(j, from);
            let displaced = who[j];
            who[j] = original;
            who[from] = displaced;
            at[original] = j;
            at[displaced] = from;
        }
        for g in 0..self.groups.len() {
            self.touch(g * GROUP, true);
        }
        self.packs.clear();
    }

    /// The generation of group `index` and the fingerprint of its entries as they are now.
    pub fn fingerprint_of(&self, index: usize, seed: u64) -> Option<(u64, Option<u128>)> {
        let group = self.groups.get(index)?;
        let slice = self
            .entries
            .get_range(index * GROUP..(index * GROUP + GROUP).min(self.len()))?;
        Some((group.generation, fingerprint(slice.values(), seed)))
    }

    /// Runs of groups that have no pack and whose groups are all made and current: what the
    /// background refresher packs next.
    pub fn unpacked(&self) -> Vec<Unpacked> {
        self.groups
            .chunks(PACK)
            .enumerate()
            .filter(|(run, _)| self.packs.get(*run).is_none_or(Option::is_none))
            .filter_map(|(run, groups)| {
                let made: Option<Vec<SharedGroup>> = groups
                    .iter()
                    .map(|g| g.segments.clone().filter(|_| !g.stale))
                    .collect();
                Some(Unpacked {
                    run,
                    generations: groups.iter().map(|g| g.generation).collect(),
                    groups: made?,
                })
            })
            .collect()
    }

    /// Keeps a pack made from `unpacked`, with its groups' segments re-made as slices of it,
    /// unless a group of the run changed since (then the run waits for the next pass).
    pub fn install_pack(&mut self, unpacked: &Unpacked, pack: Arc<Pack>, groups: Vec<SharedGroup>) {
        let start = unpacked.run * PACK;
        let groups_now = self.groups.len();
        let Some(run) = self
            .groups
            .get_mut(start..start + unpacked.generations.len())
        else {
            return;
        };
        let run_len = run.len();
        let current = run
            .iter()
            .zip(&unpacked.generations)
            .all(|(g, generation)| g.generation == *generation && !g.stale);
        let whole = start + run_len == groups_now || run_len == PACK;
        if !current || !whole || groups.len() != run_len {
            return;
        }
        for (group, segments) in run.iter_mut().zip(groups) {
            group.segments = Some(segments);
        }
        if self.packs.len() <= unpacked.run {
            self.packs.resize(unpacked.run + 1, None);
        }
        self.packs[unpacked.run] = Some(pack);
    }

    pub fn families(&self) -> usize {
        self.families
    }

    /// Compressed bytes held (for the benchmark and the sizing table).
    pub fn deflate_bytes(&self) -> usize {
        self.groups
            .iter()
            .filter_map(|g| g.segments.as_ref())
            .map(|s| s.deflate_bytes())
            .sum()
    }
}

/// One table as a plain-text scrape takes it under the lock: every entry's source in order
/// (shared pointers, a few words each), and each group's segments where they are current,
/// which say where a family has no series (those groups are passed over, not rendered).
pub struct TextView<S> {
    sources: Vec<S>,
    made: Vec<Option<SharedGroup>>,
}

/// A `TextView` whatever its entries: what the exposition renders from.
pub trait GroupsText: Send + Sync {
    /// How many groups of `GROUP` entries.
    fn groups(&self) -> usize;
    /// The length of family `family`'s text in group `group`, when known without rendering.
    fn known_len(&self, family: usize, group: usize) -> Option<u64>;
    /// Appends the text of family `family` for `groups`.
    fn render(&self, family: usize, groups: std::ops::Range<usize>, out: &mut Vec<u8>);
}

impl<S: RenderFamily> GroupsText for TextView<S> {
    fn groups(&self) -> usize {
        self.sources.len().div_ceil(GROUP)
    }

    fn known_len(&self, family: usize, group: usize) -> Option<u64> {
        let made = self.made.get(group)?.as_ref()?;
        Some(made.families.get(family).map_or(0, |s| s.len))
    }

    fn render(&self, family: usize, groups: std::ops::Range<usize>, out: &mut Vec<u8>) {
        for group in groups {
            if self.known_len(family, group) == Some(0) {
                continue;
            }
            let start = group * GROUP;
            let end = (start + GROUP).min(self.sources.len());
            for source in self.sources.get(start..end).unwrap_or_default() {
                source.render_family(family, out);
            }
        }
    }
}

/// Renders and compresses one stale group.
pub fn make_group<E: Render>(
    entries: &[E],
    families: usize,
    compressor: &mut Compressor,
    texts: &mut Vec<Vec<u8>>,
    identity: &mut Vec<u8>,
    seed: u64,
) -> SharedGroup {
    texts.resize_with(families, Vec::new);
    for t in texts.iter_mut() {
        t.clear();
    }
    for e in entries {
        e.render(identity, texts);
    }
    let mut group = compressor.compress_group(texts);
    group.fingerprint = fingerprint(entries, seed);
    Arc::new(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Line(String);
    impl Render for Line {
        type Source = Line;
        fn source(&self) -> Line {
            self.clone()
        }
        fn render(&self, _identity: &mut Vec<u8>, outs: &mut [Vec<u8>]) {
            outs[0].extend_from_slice(self.0.as_bytes());
        }
    }
    impl RenderFamily for Line {
        fn render_family(&self, _family: usize, out: &mut Vec<u8>) {
            out.extend_from_slice(self.0.as_bytes());
        }
    }

    fn stale(t: &Table<String, Line>) -> Vec<usize> {
        stale_with(t, Freshness::Exact)
    }

    fn stale_with(t: &Table<String, Line>, freshness: Freshness) -> Vec<usize> {
        t.view(freshness)
            .iter()
            .filter_map(|v| match v {
                GroupView::Stale(s) => Some(s.index),
                GroupView::Ready(_) | GroupView::Packed(_) => None,
            })
            .collect()
    }

    /// A table of `n` entries ("l{i}"), every group made.
    fn made(n: usize) -> Table<String, Line> {
        let mut t = Table::new(1);
        for i in 0..n {
            t.insert(format!("u{i}"), Line(format!("l{i}\n")));
        }
        refresh(&mut t);
        t
    }

    fn refresh(t: &mut Table<String, Line>) {
        let mut c = Compressor::default();
        for v in t.view(Freshness::Exact) {
            if let GroupView::Stale(s) = v {
                let g = make_group(&s.entries, 1, &mut c, &mut Vec::new(), &mut Vec::new(), 0);
                t.install(s.index, s.generation, &g);
            }
        }
    }

    #[test]
    fn a_change_makes_only_its_group_stale() {
        let mut t = Table::new(1);
        for i in 0..GROUP * 4 {
            t.insert(format!("u{i}"), Line(format!("l{i}\n")));
        }
        assert_eq!(stale(&t), vec![0, 1, 2, 3]);
        refresh(&mut t);
        assert!(stale(&t).is_empty());
        t.update(&format!("u{}", GROUP + 8), |l| l.0 = "changed\n".into());
        assert_eq!(stale(&t), vec![1]);
        refresh(&mut t);
        // A removal moves the last entry into the hole: both groups change.
        t.remove("u3");
        assert_eq!(stale(&t), vec![0, 3]);
    }

    #[test]
    fn a_refresh_from_an_older_view_is_not_installed() {
        let mut t = Table::new(1);
        t.insert("a".to_string(), Line("a\n".into()));
        let views = t.view(Freshness::Exact);
        t.update("a", |l| l.0 = "b\n".into());
        let mut c = Compressor::default();
        for v in views {
            if let GroupView::Stale(s) = v {
                let g = make_group(&s.entries, 1, &mut c, &mut Vec::new(), &mut Vec::new(), 0);
                t.install(s.index, s.generation, &g);
            }
        }
        assert_eq!(stale(&t), vec![0]);
    }

    #[test]
    fn a_busy_scrape_may_serve_groups_changed_in_place_but_never_moved_ones() {
        let mut t = made(GROUP * 3);
        t.update("u1", |l| l.0 = "changed\n".into());
        t.remove(&format!("u{}", GROUP + 1));
        let stale_when_lenient = stale_with(&t, Freshness::Budget(0));
        // Group 0 changed in place: served as it was. Groups 1 (a hole) and 2 (lost its
        // last entry to the hole) moved: made again.
        assert_eq!(stale_when_lenient, vec![1, 2]);
        assert_eq!(stale(&t), vec![0, 1, 2]);
    }

    #[test]
    fn a_scrape_makes_groups_changed_in_place_only_when_they_fit_its_budget() {
        let mut t = made(GROUP * 6);
        for g in [0, 2, 3, 5] {
            t.update(&format!("u{}", g * GROUP + 1), |l| l.0 = "changed\n".into());
        }
        // A new entry makes a new group, which has nothing to serve: made whatever the budget.
        t.insert("new".to_string(), Line("new\n".into()));
        let remade = |freshness| stale_with(&t, freshness);
        // Four changed in place: a budget of four makes them all, a smaller one none (a
        // burst is the refresher's), and the new group is made either way.
        assert_eq!(remade(Freshness::Budget(4)), vec![0, 2, 3, 5, 6]);
        assert_eq!(remade(Freshness::Budget(3)), vec![6]);
        assert_eq!(remade(Freshness::Budget(0)), vec![6]);
        assert_eq!(remade(Freshness::Exact), vec![0, 2, 3, 5, 6]);
    }

    #[test]
    fn changed_groups_are_taken_a_few_at_a_time_and_each_once() {
        let mut t = made(GROUP * 8);
        for g in [1, 2, 4, 7] {
            t.update(&format!("u{}", g * GROUP + 3), |l| l.0 = "changed\n".into());
        }
        let taken = |from, at_most| {
            let (stale, next) = t.stale_groups(from, at_most);
            let indices: Vec<usize> = stale.iter().map(|s| s.index).collect();
            (indices, next)
        };
        assert_eq!(taken(0, 2), (vec![1, 2], 3));
        assert_eq!(taken(3, 2), (vec![4, 7], 8));
        assert_eq!(taken(8, 2), (vec![], 8));
        // Taken whole: what a view of every group would hand out for them.
        let (stale, _) = t.stale_groups(7, 1);
        let from_view: Vec<_> = t
            .view(Freshness::Exact)
            .into_iter()
            .filter_map(|v| match v {
                GroupView::Stale(s) if s.index == 7 => Some((s.generation, s.entries)),
                _ => None,
            })
            .collect();
        let [(generation, entries)] = from_view.as_slice() else {
            panic!("group 7 is stale once");
        };
        assert_eq!(stale[0].generation, *generation);
        let text = |e: &[Line]| e.iter().map(|l| l.0.clone()).collect::<String>();
        assert_eq!(text(&stale[0].entries), text(entries));
        // Nothing changed: nothing taken.
        refresh(&mut t);
        let (stale, next) = t.stale_groups(0, 16);
        assert!(stale.is_empty());
        assert_eq!(next, 8);
    }

    #[test]
    fn groups_shrink_with_the_table() {
        let mut t = Table::new(1);
        for i in 0..GROUP + 1 {
            t.insert(format!("u{i}"), Line(String::new()));
        }
        t.remove("u0");
        assert_eq!(t.view(Freshness::Exact).len(), 1);
    }

    fn pack_all(t: &mut Table<String, Line>) -> usize {
        let runs = t.unpacked();
        for run in &runs {
            let (pack, groups) = crate::inventory::segment::pack(&run.groups, t.families());
            t.install_pack(run, pack, groups);
        }
        runs.len()
    }

    /// What a scrape would serve from `view`: packs and ready groups inflated, stale groups
    /// made from their entries.
    fn served(t: &Table<String, Line>, freshness: Freshness) -> String {
        let mut inflater = crate::inventory::segment::Inflater::default();
        let mut out = Vec::new();
        for v in t.view(freshness) {
            let segment = match v {
                GroupView::Packed(p) => p.families[0].clone(),
                GroupView::Ready(g) => g.families[0].clone(),
                GroupView::Stale(s) => {
                    let mut c = Compressor::default();
                    let g = make_group(&s.entries, 1, &mut c, &mut Vec::new(), &mut Vec::new(), 0);
                    g.families[0].clone()
                }
            };
            inflater.inflate(&segment, &mut out).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    fn packed(t: &Table<String, Line>, freshness: Freshness) -> usize {
        t.view(freshness)
            .iter()
            .filter(|v| matches!(v, GroupView::Packed(_)))
            .count()
    }

    fn lines(range: std::ops::Range<usize>) -> String {
        range.map(|i| format!("l{i}\n")).collect()
    }

    #[test]
    fn made_runs_are_packed_and_serve_the_same_text() {
        let n = GROUP * PACK * 2 + GROUP * 3 + 5; // two whole runs and a short one
        let mut t = Table::new(1);
        for i in 0..n {
            t.insert(format!("u{i}"), Line(format!("l{i}\n")));
        }
        // Nothing made yet: nothing to pack.
        assert_eq!(pack_all(&mut t), 0);
        refresh(&mut t);
        assert_eq!(pack_all(&mut t), 3);
        assert_eq!(t.view(Freshness::Exact).len(), 3);
        assert_eq!(packed(&t, Freshness::Exact), 3);
        assert_eq!(served(&t, Freshness::Exact), lines(0..n));
        // Packed runs are not packed again.
        assert_eq!(pack_all(&mut t), 0);
    }

    #[test]
    fn a_change_unpacks_only_its_run_once_its_group_is_made_again() {
        let n = GROUP * PACK * 3;
        let mut t = made(n);
        pack_all(&mut t);
        let changed = GROUP * PACK + 7; // in the second run
        t.update(&format!("u{changed}"), |l| l.0 = "changed\n".into());
        // Served as last made (a burst, left to the refresher): the pack as it was.
        assert_eq!(packed(&t, Freshness::Budget(0)), 3);
        assert_eq!(served(&t, Freshness::Budget(0)), lines(0..n));
        // Served exactly: the second run group by group, its changed group made again.
        assert_eq!(packed(&t, Freshness::Exact), 2);
        assert_eq!(stale(&t), vec![PACK + changed % (GROUP * PACK) / GROUP]);
        let want = lines(0..changed) + "changed\n" + &lines(changed + 1..n);
        assert_eq!(served(&t, Freshness::Exact), want);
        refresh(&mut t);
        // Made again, its run's pack is gone until the next pack pass.
        assert_eq!(packed(&t, Freshness::Budget(0)), 2);
        assert_eq!(served(&t, Freshness::Budget(0)), want);
        assert_eq!(pack_all(&mut t), 1);
        assert_eq!(packed(&t, Freshness::Exact), 3);
        assert_eq!(served(&t, Freshness::Exact), want);
    }

    #[test]
    fn a_pack_of_a_run_that_changed_meanwhile_is_not_kept() {
        let mut t = made(GROUP * 2);
        let runs = t.unpacked();
        assert_eq!(runs.len(), 1);
        let (pack, groups) = crate::inventory::segment::pack(&runs[0].groups, 1);
        t.update("u3", |l| l.0 = "changed\n".into());
        t.install_pack(&runs[0], pack, groups);
        assert_eq!(packed(&t, Freshness::Budget(0)), 0);
        let want = lines(0..3) + "changed\n" + &lines(4..GROUP * 2);
        assert_eq!(served(&t, Freshness::Exact), want);
        // A run that grew meanwhile is not kept either: the pack lacks the new group.
        refresh(&mut t);
        let runs = t.unpacked();
        let (pack, groups) = crate::inventory::segment::pack(&runs[0].groups, 1);
        t.insert("new".into(), Line("new\n".into()));
        t.install_pack(&runs[0], pack, groups);
        assert_eq!(packed(&t, Freshness::Budget(0)), 0);
    }

    #[test]
    fn a_run_that_loses_a_group_loses_its_pack() {
        let mut t = made(GROUP * 3 + 1);
        pack_all(&mut t);
        // The last group held one entry: removing any entry empties it.
        t.remove("u0");
        assert_eq!(packed(&t, Freshness::Budget(0)), 0);
        let mut want: Vec<String> = (1..GROUP * 3 + 1).map(|i| format!("l{i}\n")).collect();
        // The last entry moved into the hole.
        let last = want.pop().unwrap();
        want.insert(0, last);
        assert_eq!(served(&t, Freshness::Exact), want.concat());
    }

    #[test]
    fn reordering_puts_entries_where_asked_and_keeps_every_key_found() {
        let mut t: Table<String, Line> = Table::new(1);
        for i in 0..200 {
            t.insert(format!("k{i}"), Line(format!("{i}\n")));
        }
        let mut c = Compressor::default();
        for v in t.view(Freshness::Exact) {
            if let GroupView::Stale(s) = v {
                let g = make_group(&s.entries, 1, &mut c, &mut Vec::new(), &mut Vec::new(), 0);
                t.install(s.index, s.generation, &g);
            }
        }
        assert!(stale(&t).is_empty());
        // A shuffle (37 is prime to 200: every index once).
        let order: Vec<usize> = (0..200).map(|i| (i * 37 + 11) % 200).collect();
        t.reorder(&order);
        let keys: Vec<String> = t.iter().map(|(k, _)| k.clone()).collect();
        let want: Vec<String> = order.iter().map(|i| format!("k{i}")).collect();
        assert_eq!(keys, want);
        for i in 0..200 {
            assert_eq!(t.get(&format!("k{i}")).unwrap().0, format!("{i}\n"));
            assert_eq!(
                t.index_of(&format!("k{i}")),
                keys.iter().position(|k| *k == format!("k{i}"))
            );
        }
        assert_eq!(stale(&t).len(), 200usize.div_ceil(GROUP));
    }
}

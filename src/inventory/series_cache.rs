//! The series cache: the backups' compressed series as last made, kept in the state
//! directory, so that the first scrape after a restart sends them instead of rendering and
//! compressing every backup and tombstone again (seconds of CPU at a million tombstones).
//!
//! It is a cache, never a source of truth. Each group of backups is found again by the
//! fingerprint of what it renders from (`store::fingerprint`): a group whose entries changed
//! since the file was written, or that a removal reshuffled, does not match and is made again
//! as usual. A file written by a build of other source (`build.rs`), with another family
//! count, damaged or torn is used up to the damage or not at all: what it no longer covers is
//! rendered, never served wrong. It is written whole to a temp file, fsynced, renamed over the
//! old one and the directory fsynced: a crash leaves the old file or the new one.
//!
//! Layout: a header, `MAGIC` (8) | source id (16) | fingerprint seed (8) | families (2), then
//! one record per group: payload length (4) | CRC-32 of the payload (4) | payload, which is
//! fingerprint (16) | entries (2) | per entry: uid length (2) | uid | and per family: text
//! CRC-32 (4) | text length (8) | deflate length (4) | deflate bytes. Integers little-endian.
//!
//! The uids put the store back in the order the file has (a replay after `kill -9` may bring
//! the backups back in another): a group of the file whose backups are all still there is laid
//! out as a group again, and is served from the file when its fingerprint still matches.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::segment::{GroupSegments, Segment, SharedGroup};
use super::store::GROUP;
use super::{give_way, Inventory};

pub const FILE_NAME: &str = "series.cache";
const MAGIC: [u8; 8] = *b"PXBSC\0\0\x01";
const HEADER_LEN: usize = 8 + 16 + 8 + 2;
/// A record is one group: 64 backups' compressed series, tens of KB. A length past this is
/// damage, not a record.
const MAX_RECORD: u32 = 16 << 20;
const WRITE_BUFFER: usize = 1 << 20;
/// Records written between two looks at scrapes in flight (see `give_way`).
const GIVE_WAY_EVERY: usize = 256;

/// The source this build was made from (see `build.rs`).
fn source_id() -> [u8; 16] {
    let hex = env!("PXB_SOURCE_ID").as_bytes();
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).take(16).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        id[i] = digit(pair[0]) << 4 | pair.get(1).map_or(0, |&c| digit(c));
    }
    id
}

#[derive(Debug, thiserror::Error)]
#[error("series cache {path}: {what}: {source}")]
pub struct SeriesCacheError {
    path: PathBuf,
    what: &'static str,
    #[source]
    source: io::Error,
}

fn io_error<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(io::Error) -> SeriesCacheError + 'a {
    move |source| SeriesCacheError {
        path: path.to_path_buf(),
        what,
        source,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    source: [u8; 16],
    seed: u64,
    families: u16,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..24].copy_from_slice(&self.source);
        out[24..32].copy_from_slice(&self.seed.to_le_bytes());
        out[32..34].copy_from_slice(&self.families.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; HEADER_LEN]) -> Option<Header> {
        if bytes[..8] != MAGIC {
            return None;
        }
        let mut source = [0u8; 16];
        source.copy_from_slice(&bytes[8..24]);
        Some(Header {
            source,
            seed: u64::from_le_bytes(bytes[24..32].try_into().ok()?),
            families: u16::from_le_bytes(bytes[32..34].try_into().ok()?),
        })
    }
}

/// Reads the header of the file at `path`, if there is one this build can use.
fn read_header(path: &Path, families: u16) -> Option<Header> {
    let mut bytes = [0u8; HEADER_LEN];
    File::open(path).ok()?.read_exact(&mut bytes).ok()?;
    Header::decode(&bytes).filter(|h| h.source == source_id() && h.families == families)
}

/// What reading the file found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Groups served from the file.
    pub groups: usize,
    /// Groups the store held (the rest are rendered as usual).
    pub of: usize,
    /// Records whose checksum or layout did not hold, and bytes left unread after damage
    /// that made the rest unreadable.
    pub damaged_records: usize,
    pub unread_bytes: u64,
    /// Where the time went: reading and checking the file, laying the store out in its
    /// order, fingerprinting the groups and serving those that match.
    pub took_reading: Duration,
    pub took_laying_out: Duration,
    pub took_matching: Duration,
}

/// Hands `keep` each record of `body` (the file after its header), in order, stopping at the
/// end or at damage that leaves no next record to find. Records are slices of `body`: nothing
/// is copied.
fn read_records(
    body: &Bytes,
    families: usize,
    loaded: &mut Loaded,
    mut keep: impl FnMut(CachedGroup),
) {
    let mut at = 0;
    while at < body.len() {
        let Some(frame) = body.get(at..at + 8) else {
            // A torn last record.
            loaded.damaged_records += 1;
            return;
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let start = at + 8;
        let end = start + len as usize;
        if len > MAX_RECORD || end > body.len() {
            // A damaged length, or a torn last record: where a next record starts is lost.
            loaded.damaged_records += 1;
            loaded.unread_bytes += (body.len() - at) as u64;
            return;
        }
        at = end;
        let payload = body.slice(start..end);
        if crc32fast::hash(&payload) != crc {
            loaded.damaged_records += 1;
            continue;
        }
        match decode_group(payload, families) {
            Some(group) => keep(group),
            None => loaded.damaged_records += 1,
        }
    }
}

/// One record: a group as it was written.
struct CachedGroup {
    fingerprint: u128,
    /// The uids of its entries, as ranges of `payload` (checked to be UTF-8).
    payload: Bytes,
    uids: Vec<std::ops::Range<usize>>,
    segments: GroupSegments,
}

impl CachedGroup {
    fn uids(&self) -> impl Iterator<Item = &str> {
        self.uids
            .iter()
            .map(|r| std::str::from_utf8(&self.payload[r.clone()]).unwrap_or_default())
    }
}

fn take<'a>(payload: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let bytes = payload.get(*at..*at + n)?;
    *at += n;
    Some(bytes)
}

fn decode_group(payload: Bytes, families: usize) -> Option<CachedGroup> {
    let at = &mut 0;
    let fingerprint = u128::from_le_bytes(take(&payload, at, 16)?.try_into().ok()?);
    let entries = u16::from_le_bytes(take(&payload, at, 2)?.try_into().ok()?);
    let mut uids = Vec::with_capacity(usize::from(entries));
    for _ in 0..entries {
        let len = u16::from_le_bytes(take(&payload, at, 2)?.try_into().ok()?);
        let start = *at;
        std::str::from_utf8(take(&payload, at, usize::from(len))?).ok()?;
        uids.push(start..*at);
    }
    let mut segments = Vec::with_capacity(families);
    for _ in 0..families {
        let head = take(&payload, at, 16)?;
        let crc = u32::from_le_bytes(head[..4].try_into().ok()?);
        let len = u64::from_le_bytes(head[4..12].try_into().ok()?);
        let deflate_len = u32::from_le_bytes(head[12..16].try_into().ok()?) as usize;
        if (len == 0) != (deflate_len == 0) {
            return None;
        }
        let start = *at;
        take(&payload, at, deflate_len)?;
        segments.push(Segment::from_parts(crc, len, payload.slice(start..*at)));
    }
    (*at == payload.len()).then(|| CachedGroup {
        fingerprint,
        payload: payload.clone(),
        uids,
        segments: GroupSegments {
            families: segments.into_boxed_slice(),
            fingerprint: Some(fingerprint),
        },
    })
}

fn encode_group(fp: u128, uids: &[Arc<str>], group: &GroupSegments, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&fp.to_le_bytes());
    out.extend_from_slice(&(uids.len() as u16).to_le_bytes());
    for uid in uids {
        // Uids longer than 64 KB do not come through ingest; cut, they would not be found.
        let uid = &uid.as_bytes()[..uid.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        out.extend_from_slice(uid);
    }
    for s in group.families.iter() {
        out.extend_from_slice(&s.crc.to_le_bytes());
        out.extend_from_slice(&s.len.to_le_bytes());
        out.extend_from_slice(&(s.deflate.len() as u32).to_le_bytes());
        out.extend_from_slice(&s.deflate);
    }
    let len = (out.len() - 8) as u32;
    let crc = crc32fast::hash(&out[8..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// When the refresher writes the file again: after a good part of the groups were made again,
/// or after anything at all was and a long while passed. Writing it costs its whole size
/// (tens of MB at 100,000 backups), so one changed backup a minute must not rewrite it each
/// minute; after `kill -9` the groups made since the last write are rendered again.
pub fn wants_save(made_since: usize, groups: usize, since_last: Duration) -> bool {
    const SOON: Duration = Duration::from_secs(60);
    const LATEST: Duration = Duration::from_secs(15 * 60);
    made_since > 0 && (since_last >= LATEST || (made_since >= groups / 64 && since_last >= SOON))
}

/// The inventory's cache: where it lives, the seed of its fingerprints, and whether a file is
/// waiting to be loaded.
pub struct SeriesCache {
    path: PathBuf,
    dir: PathBuf,
    families: u16,
    /// Fixed for the life of the process (every fingerprint it makes uses it): the file's,
    /// when a usable file was there at start, so that its groups can be found.
    seed: u64,
    /// A usable file is there and not loaded yet.
    pending: Mutex<bool>,
    warming: AtomicBool,
    /// Backup groups made since the file was last written.
    made_since_save: AtomicUsize,
}

impl SeriesCache {
    /// Looks at what is in `dir`; reads only the header.
    pub fn open(dir: &Path, families: usize) -> SeriesCache {
        let path = dir.join(FILE_NAME);
        let families = u16::try_from(families).unwrap_or(u16::MAX);
        let header = read_header(&path, families);
        SeriesCache {
            dir: dir.to_path_buf(),
            families,
            seed: header.map_or_else(|| fastrand::u64(..), |h| h.seed),
            pending: Mutex::new(header.is_some()),
            warming: AtomicBool::new(header.is_some()),
            made_since_save: AtomicUsize::new(0),
            path,
        }
    }

    fn header(&self) -> Header {
        Header {
            source: source_id(),
            seed: self.seed,
            families: self.families,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn note_made(&self, groups: usize) {
        self.made_since_save.fetch_add(groups, Relaxed);
    }

    pub fn made_since_save(&self) -> usize {
        self.made_since_save.load(Relaxed)
    }

    pub fn is_warming(&self) -> bool {
        self.warming.load(Relaxed)
    }
}

impl Inventory {
    /// Serves the groups the series cache still covers, once, before anything renders: the
    /// first scrape after a restart waits for this instead of making every group itself.
    /// Without a usable file, returns at once.
    pub fn warm_up(&self) {
        let Some(cache) = self.series_cache.as_ref() else {
            return;
        };
        if !cache.is_warming() {
            return;
        }
        let _one_at_a_time = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending = cache.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !std::mem::take(&mut *pending) {
            return;
        }
        let started = Instant::now();
        let loaded = self.load_series_cache(cache);
        cache.warming.store(false, Relaxed);
        tracing::info!(
            groups = loaded.groups,
            of = loaded.of,
            damaged_records = loaded.damaged_records,
            unread_bytes = loaded.unread_bytes,
            took_ms = started.elapsed().as_millis() as u64,
            reading_ms = loaded.took_reading.as_millis() as u64,
            laying_out_ms = loaded.took_laying_out.as_millis() as u64,
            matching_ms = loaded.took_matching.as_millis() as u64,
            "series cache loaded; the groups it does not cover are rendered by the first scrape"
        );
        if loaded.damaged_records > 0 {
            tracing::warn!(
                path = %cache.path.display(),
                damaged_records = loaded.damaged_records,
                "the series cache is damaged; what it no longer covers is rendered again"
            );
        }
        if loaded.groups > 0 {
            // Packed by the refresher.
            self.changed.notify_one();
        }
    }

    fn load_series_cache(&self, cache: &SeriesCache) -> Loaded {
        let mut loaded = Loaded {
            of: self.lock().backups.groups(),
            ..Loaded::default()
        };
        // Read whole, in one buffer, that the groups' segments are slices of (the refresher
        // packs them soon, and the buffer goes back whole once the packs replaced them).
        let started = Instant::now();
        let Ok(file) = std::fs::read(&cache.path) else {
            return loaded;
        };
        let file = Bytes::from(file);
        let header: Option<&[u8; HEADER_LEN]> =
            file.get(..HEADER_LEN).and_then(|h| h.try_into().ok());
        if header.and_then(Header::decode) != Some(cache.header()) {
            return loaded;
        }
        let mut cached = Vec::new();
        read_records(
            &file.slice(HEADER_LEN..),
            usize::from(cache.families),
            &mut loaded,
            |g| cached.push(g),
        );
        loaded.took_reading = started.elapsed();
        let started = Instant::now();
        // The store in the file's order: each group of the file whose backups are all here,
        // whole, where it was; the rest after them. Under the lock, on every core: nothing
        // else needs it this early, and a scrape is waiting for it.
        let mut st = self.lock();
        let table = &mut st.backups;
        let found: Vec<Option<Vec<usize>>> = on_cores(&cached, |g| {
            if g.uids.is_empty() || g.uids.len() > GROUP {
                return None;
            }
            g.uids().map(|uid| table.index_of(uid)).collect()
        });
        let mut placed = vec![false; table.len()];
        let mut order = Vec::with_capacity(table.len());
        let mut expected = Vec::new();
        for (g, at) in cached.into_iter().zip(found) {
            // A short group (the file's last, as a rule) ends the groups laid out: one after
            // it would start in the middle of a group.
            if order.len() % GROUP != 0 {
                break;
            }
            let Some(at) = at.filter(|at| at.iter().all(|&i| !placed[i])) else {
                continue;
            };
            for &i in &at {
                placed[i] = true;
            }
            expected.push((order.len() / GROUP, g.fingerprint, g.segments));
            order.extend(at);
        }
        order.extend((0..placed.len()).filter(|&i| !placed[i]));
        table.reorder(&order);
        loaded.took_laying_out = started.elapsed();
        let started = Instant::now();
        let now = on_cores(&expected, |(index, _, _)| {
            table.fingerprint_of(*index, cache.seed)
        });
        for ((index, fp, segments), now) in expected.into_iter().zip(now) {
            if let Some((generation, Some(current))) = now {
                if current == fp {
                    table.install(index, generation, &Arc::new(segments));
                    loaded.groups += 1;
                }
            }
        }
        loaded.took_matching = started.elapsed();
        loaded
    }

    /// Writes the backups' groups as made now (stale ones left out) to the series cache.
    /// Returns how many groups it wrote; without a state directory, does nothing.
    pub fn save_series_cache(&self) -> Result<usize, SeriesCacheError> {
        self.save_series_cache_with(None)
    }

    /// `save_series_cache` for the background refresher: it waits while a scrape is in
    /// flight, between runs of records.
    pub(super) fn save_series_cache_with(
        &self,
        way: Option<&give_way::GiveWay>,
    ) -> Result<usize, SeriesCacheError> {
        let Some(cache) = self.series_cache.as_ref() else {
            return Ok(0);
        };
        let made = cache.made_since_save.swap(0, Relaxed);
        let groups = self.lock().backups.made_groups();
        let written = write_file(cache, &groups, way);
        if written.is_err() {
            // Not written: what was made since the last good write still counts.
            cache.made_since_save.fetch_add(made, Relaxed);
        }
        written
    }
}

/// `f` of every item, in order, the items split across the cores.
fn on_cores<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The header and a record per group with a fingerprint; returns how many records.
fn write_records(
    w: &mut impl Write,
    header: Header,
    groups: &[(Vec<Arc<str>>, SharedGroup)],
    way: Option<&give_way::GiveWay>,
) -> io::Result<usize> {
    w.write_all(&header.encode())?;
    let mut record = Vec::new();
    let mut written = 0;
    for (uids, group) in groups {
        let Some(fp) = group.fingerprint else {
            continue;
        };
        if written % GIVE_WAY_EVERY == 0 {
            if let Some(way) = way {
                way.wait();
            }
        }
        encode_group(fp, uids, group, &mut record);
        w.write_all(&record)?;
        written += 1;
    }
    Ok(written)
}

fn write_file(
    cache: &SeriesCache,
    groups: &[(Vec<Arc<str>>, SharedGroup)],
    way: Option<&give_way::GiveWay>,
) -> Result<usize, SeriesCacheError> {
    let path = &cache.path;
    let temp = tempfile::Builder::new()
        .prefix(".series.cache.")
        .tempfile_in(&cache.dir)
        .map_err(io_error(path, "create a temp file beside it"))?;
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, temp);
    let written =
        write_records(&mut w, cache.header(), groups, way).map_err(io_error(path, "write"))?;
    let temp = w
        .into_inner()
        .map_err(|e| io_error(path, "write")(e.into_error()))?;
    temp.as_file().sync_all().map_err(io_error(path, "fsync"))?;
    temp.persist(path)
        .map_err(|e| io_error(path, "rename the new file over")(e.error))?;
    File::open(&cache.dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(&cache.dir, "fsync the directory of"))?;
    Ok(written)
}

#[cfg(test)]
mod tests;

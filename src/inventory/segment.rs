//! Series kept compressed: a segment is the text of some series as raw deflate data ending in
//! a full flush, so that segments compressed independently can be sent one after the other as
//! one deflate stream (pigz's trick). With the CRC-32 and length of each segment's text, a
//! scrape assembles a valid gzip member without compressing anything it already has (plain
//! text is written from the stored objects instead: see `snapshot::TextSnapshot`). Compressed
//! text is about a tenth of the plain text, which is what keeps a large fleet within its
//! memory target.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// zlib-rs level 2: dynamic Huffman codes (level 1 uses static ones and compresses backup
/// text 30% worse), about 300 MB/s per core on this text.
const LEVEL: u32 = 2;

/// Some series as compressed text.
#[derive(Clone, Debug, Default)]
pub struct Segment {
    /// Raw deflate blocks ending in a full flush; empty when the text is.
    pub deflate: Bytes,
    /// CRC-32 of the text.
    pub crc: u32,
    /// Length of the text.
    pub len: u64,
    /// x^(8·len) modulo the CRC-32 polynomial: appending this segment's text to a text with
    /// CRC c gives CRC `multiply(shift, c) ^ crc`, one multiplication at scrape time instead
    /// of the ~20 a general CRC combination takes (a scrape combines tens of thousands).
    pub shift: u32,
}

impl Segment {
    /// The segment of `text`, compressed as `deflate`.
    fn of(text: &[u8], deflate: Bytes) -> Segment {
        if text.is_empty() {
            return Segment::default();
        }
        Segment {
            deflate,
            crc: crc32fast::hash(text),
            len: text.len() as u64,
            shift: crc::shift_for(text.len() as u64),
        }
    }

    /// A segment read back as it was written: its deflate blocks, and the CRC and length of
    /// their text.
    pub fn from_parts(crc: u32, len: u64, deflate: Bytes) -> Segment {
        if len == 0 {
            return Segment::default();
        }
        Segment {
            deflate,
            crc,
            len,
            shift: crc::shift_for(len),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The segments of one group of objects, one per family of their kind.
#[derive(Debug, Default)]
pub struct GroupSegments {
    pub families: Box<[Segment]>,
    /// What the group was made from, for the series cache (`series_cache`): none for kinds
    /// that are not kept across restarts.
    pub fingerprint: Option<u128>,
}

impl GroupSegments {
    /// Compressed bytes held.
    pub fn deflate_bytes(&self) -> usize {
        self.families.iter().map(|s| s.deflate.len()).sum()
    }
}

pub type SharedGroup = Arc<GroupSegments>;

/// The segments of consecutive groups, laid end to end per family, in one buffer: a scrape
/// sends a family's share of a whole pack as one large piece (one buffer for the kernel to
/// copy from, instead of dozens of small ones for the HTTP layer to gather into its own), and
/// lays out a body from a few hundred pieces instead of tens of thousands. The packed groups'
/// own segments are slices of the same buffer, so a pack costs no memory of its own.
#[derive(Debug)]
pub struct Pack {
    /// One segment per family: the packed groups' segments of that family, concatenated.
    pub families: Box<[Segment]>,
    /// How many groups it holds.
    pub groups: usize,
}

/// Lays the segments of `groups` (in order) end to end per family, and gives each group new
/// segments that are slices of the pack's buffer (the old ones can then be dropped).
pub fn pack(groups: &[SharedGroup], families: usize) -> (Arc<Pack>, Vec<SharedGroup>) {
    let of = |g: &SharedGroup, f: usize| g.families.get(f).cloned().unwrap_or_default();
    // Every family in one buffer, family after family: one allocation per pack (see
    // `Compressor::compress_group`).
    let total: usize = groups.iter().map(|g| g.deflate_bytes()).sum();
    let mut buffer = Vec::with_capacity(total);
    for f in 0..families {
        for g in groups {
            buffer.extend_from_slice(&of(g, f).deflate);
        }
    }
    let buffer = Bytes::from(buffer);
    let mut packed = Vec::with_capacity(families);
    let mut regrouped: Vec<Vec<Segment>> = groups
        .iter()
        .map(|_| Vec::with_capacity(families))
        .collect();
    let mut at = 0;
    for f in 0..families {
        let family_start = at;
        let mut sum = Checksum::default();
        for (g, out) in groups.iter().zip(regrouped.iter_mut()) {
            let s = of(g, f);
            sum.push(&s);
            let end = at + s.deflate.len();
            out.push(Segment {
                deflate: buffer.slice(at..end),
                ..s
            });
            at = end;
        }
        packed.push(Segment {
            deflate: buffer.slice(family_start..at),
            crc: sum.crc(),
            len: sum.len(),
            shift: crc::shift_for(sum.len()),
        });
    }
    let pack = Arc::new(Pack {
        families: packed.into_boxed_slice(),
        groups: groups.len(),
    });
    let regrouped = regrouped
        .into_iter()
        .zip(groups)
        .map(|(families, g)| {
            Arc::new(GroupSegments {
                families: families.into_boxed_slice(),
                fingerprint: g.fingerprint,
            })
        })
        .collect();
    (pack, regrouped)
}

/// A reusable compressor: a zlib state is a few hundred KB, so each thread keeps one.
pub struct Compressor {
    state: Compress,
    out: Vec<u8>,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor {
            state: Compress::new(Compression::new(LEVEL), false),
            out: Vec::new(),
        }
    }
}

impl Compressor {
    pub fn compress(&mut self, text: &[u8]) -> Segment {
        self.out.clear();
        self.deflate_onto_out(text);
        Segment::of(text, Bytes::copy_from_slice(&self.out))
    }

    /// One segment per text, all in one buffer (the group's segments are slices of it): one
    /// allocation per group instead of one per family, and for backups one of the allocator's
    /// page-sized extents, which it gives back whole once the group is made again or packed.
    /// Freed small segments would leave holes in pages shared with long-lived objects.
    pub fn compress_group(&mut self, texts: &[Vec<u8>]) -> GroupSegments {
        self.out.clear();
        let ends: Vec<usize> = texts
            .iter()
            .map(|text| {
                self.deflate_onto_out(text);
                self.out.len()
            })
            .collect();
        let buffer = Bytes::copy_from_slice(&self.out);
        let mut start = 0;
        let families = texts
            .iter()
            .zip(ends)
            .map(|(text, end)| {
                let deflate = buffer.slice(start..end);
                start = end;
                Segment::of(text, deflate)
            })
            .collect();
        GroupSegments {
            families,
            fingerprint: None,
        }
    }

    /// Appends `text` compressed as one segment (nothing if it is empty) to `self.out`.
    fn deflate_onto_out(&mut self, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        self.state.reset();
        self.out.reserve(text.len() / 4 + 64);
        let mut input = text;
        loop {
            if self.out.capacity() - self.out.len() < 64 {
                self.out.reserve(self.out.len().max(4096));
            }
            let before = self.state.total_in();
            // Compressing into a Vec with room cannot fail: errors are for misuse of the
            // stream (a flush after finish), which this code never does.
            let status = self
                .state
                .compress_vec(input, &mut self.out, FlushCompress::Full)
                .unwrap_or(Status::StreamEnd);
            let used = usize::try_from(self.state.total_in() - before).unwrap_or(input.len());
            input = &input[used..];
            // Done once all input is in and the flush marker fitted (room left over).
            if input.is_empty() && self.out.len() < self.out.capacity() {
                break;
            }
            if status == Status::StreamEnd {
                break;
            }
        }
    }
}

/// Inflates segments back into text (tests, and whoever wants the text a gzip scrape sends:
/// plain-text scrapes are written from the stored objects instead, see `exposition::body`).
pub struct Inflater {
    state: flate2::Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            state: flate2::Decompress::new(false),
        }
    }
}

/// A segment that does not inflate to the length it was made with: a bug or memory damage.
#[derive(Debug, thiserror::Error)]
#[error("a compressed segment is damaged: {0}")]
pub struct DamagedSegment(String);

impl Inflater {
    /// Appends the text of `segment` to `out`.
    pub fn inflate(&mut self, segment: &Segment, out: &mut Vec<u8>) -> Result<(), DamagedSegment> {
        use flate2::{FlushDecompress, Status};
        if segment.is_empty() {
            return Ok(());
        }
        let want = usize::try_from(segment.len).map_err(|e| DamagedSegment(e.to_string()))?;
        let start = out.len();
        // One byte of room more than the text: a segment that makes more is seen as damaged.
        out.reserve_exact(want + 1);
        self.state.reset(false);
        let mut result = self
            .state
            .decompress_vec(&segment.deflate, out, FlushDecompress::None);
        if result.is_ok() {
            result = self
                .state
                .decompress_vec(&DEFLATE_END, out, FlushDecompress::Finish);
        }
        let got = out.len() - start;
        match result {
            Ok(Status::StreamEnd) if got == want => Ok(()),
            Ok(status) => {
                out.truncate(start + got.min(want));
                Err(DamagedSegment(format!(
                    "{got} bytes of text instead of {want} ({status:?})"
                )))
            }
            Err(e) => {
                out.truncate(start);
                Err(DamagedSegment(e.to_string()))
            }
        }
    }
}

/// The fixed-code final block that ends a deflate stream of full-flushed segments.
pub const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// A gzip member header: no name, no time (so equal bodies are equal bytes), unknown OS.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// The gzip trailer for text with this CRC-32 and length.
pub fn gzip_trailer(crc: u32, len: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    t[4..].copy_from_slice(&((len & 0xffff_ffff) as u32).to_le_bytes());
    t
}

/// CRC-32 and length of texts laid end to end, from theirs.
#[derive(Clone, Debug, Default)]
pub struct Checksum {
    crc: u32,
    len: u64,
}

impl Checksum {
    pub fn push(&mut self, segment: &Segment) {
        if segment.is_empty() {
            return;
        }
        self.crc = crc::multiply(segment.shift, self.crc) ^ segment.crc;
        self.len += segment.len;
    }
    pub fn crc(&self) -> u32 {
        self.crc
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Arithmetic on CRC-32 (the reflected polynomial of gzip) as polynomials over GF(2), to
/// combine the CRCs of texts laid end to end (zlib's `crc32_combine`, split so that the costly
/// part is done once per segment).
mod crc {
    const POLY: u32 = 0xedb8_8320;

    /// a·b modulo the polynomial (bit 31 is x^0 in the reflected order).
    pub fn multiply(a: u32, mut b: u32) -> u32 {
        let mut m = 1u32 << 31;
        let mut p = 0;
        while m != 0 {
            if a & m != 0 {
                p ^= b;
                if a & (m - 1) == 0 {
                    break;
                }
            }
            m >>= 1;
            b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        }
        p
    }

    /// x^(2^k) modulo the polynomial, for k = 0..32.
    fn x2n(k: usize) -> u32 {
        static TABLE: std::sync::OnceLock<[u32; 32]> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut t = [0u32; 32];
            t[0] = 1 << 30; // x^1
            for i in 1..32 {
                t[i] = multiply(t[i - 1], t[i - 1]);
            }
            t
        })[k % 32]
    }

    /// x^(8·len) modulo the polynomial: what shifting a CRC past `len` bytes multiplies by.
    pub fn shift_for(len: u64) -> u32 {
        let mut p = 1u32 << 31; // x^0
        let (mut n, mut k) = (len, 3usize);
        while n != 0 {
            if n & 1 != 0 {
                p = multiply(x2n(k), p);
            }
            n >>= 1;
            k += 1;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn text(seed: u64, lines: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::new();
        for i in 0..lines {
            out.extend_from_slice(
                format!(
                    "pxbackup_backup_status{{uid=\"{:x}\",name=\"nightly-{i}\"}} {}\n",
                    rng.u64(..),
                    rng.u8(0..11)
                )
                .as_bytes(),
            );
        }
        out
    }

    #[test]
    fn segments_laid_end_to_end_are_one_gzip_member() {
        let texts: Vec<Vec<u8>> = vec![text(1, 300), vec![], text(2, 1), text(3, 5000), text(4, 2)];
        let mut c = Compressor::default();
        let segments: Vec<Segment> = texts.iter().map(|t| c.compress(t)).collect();
        let mut sum = Checksum::default();
        let mut body = GZIP_HEADER.to_vec();
        for s in &segments {
            body.extend_from_slice(&s.deflate);
            sum.push(s);
        }
        body.extend_from_slice(&DEFLATE_END);
        body.extend_from_slice(&gzip_trailer(sum.crc(), sum.len()));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, texts.concat());
        // And each segment inflates alone.
        let mut inflater = Inflater::default();
        let mut plain = Vec::new();
        for s in &segments {
            inflater.inflate(s, &mut plain).unwrap();
        }
        assert_eq!(plain, texts.concat());
    }

    #[test]
    fn a_pack_is_its_groups_end_to_end_and_they_are_slices_of_it() {
        let mut c = Compressor::default();
        // Two families; some groups empty in one of them.
        let texts: Vec<[Vec<u8>; 2]> = (0..5u64)
            .map(|g| {
                let second = if g % 2 == 0 {
                    text(g + 100, 7)
                } else {
                    Vec::new()
                };
                [text(g, 40 + g as usize * 13), second]
            })
            .collect();
        let groups: Vec<SharedGroup> = texts
            .iter()
            .map(|[a, b]| {
                Arc::new(GroupSegments {
                    families: vec![c.compress(a), c.compress(b)].into_boxed_slice(),
                    fingerprint: None,
                })
            })
            .collect();
        let (pack, regrouped) = pack(&groups, 2);
        assert_eq!(pack.groups, 5);
        for f in 0..2 {
            let whole: Vec<u8> = texts.iter().flat_map(|t| t[f].clone()).collect();
            let packed = &pack.families[f];
            assert_eq!(packed.crc, crc32fast::hash(&whole));
            assert_eq!(packed.len, whole.len() as u64);
            assert_eq!(packed.shift, crc::shift_for(whole.len() as u64));
            let mut plain = Vec::new();
            Inflater::default().inflate(packed, &mut plain).unwrap();
            assert_eq!(plain, whole);
            // Each group's new segment is the same text, sharing the pack's buffer.
            let range = packed.deflate.as_ptr() as usize
                ..packed.deflate.as_ptr() as usize + packed.deflate.len();
            for (g, new) in regrouped.iter().enumerate() {
                let s = &new.families[f];
                assert_eq!(s.deflate, groups[g].families[f].deflate);
                assert_eq!(
                    (s.crc, s.len),
                    (groups[g].families[f].crc, groups[g].families[f].len)
                );
                if !s.is_empty() {
                    assert!(range.contains(&(s.deflate.as_ptr() as usize)));
                }
            }
        }
    }

    #[test]
    fn combined_crcs_match_crc32fast() {
        let parts: Vec<Vec<u8>> = (0..20).map(|i| text(i, (i as usize * 37) % 500)).collect();
        let mut c = Compressor::default();
        let mut sum = Checksum::default();
        for p in &parts {
            sum.push(&c.compress(p));
        }
        let whole = parts.concat();
        assert_eq!(sum.crc(), crc32fast::hash(&whole));
        assert_eq!(sum.len(), whole.len() as u64);
    }

    #[test]
    fn a_damaged_segment_is_reported_not_served() {
        let mut c = Compressor::default();
        let mut s = c.compress(&text(5, 100));
        s.len += 1;
        assert!(Inflater::default().inflate(&s, &mut Vec::new()).is_err());
    }

    #[test]
    fn compression_pays() {
        let t = text(6, 2000);
        let s = Compressor::default().compress(&t);
        assert!(
            s.deflate.len() * 3 < t.len(),
            "{} of {}",
            s.deflate.len(),
            t.len()
        );
    }
}

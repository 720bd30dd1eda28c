//! Format 2 framing and the streaming frame scanner.
//!
//! A frame is a 16-byte header followed by its payload:
//!
//! ```text
//! [sync marker: 4 bytes E9 1C B7 5A][payload length: u32 LE][crc32(payload): u32 LE]
//! [crc32(the 12 header bytes before it): u32 LE][payload]
//! ```
//!
//! The header checksum makes the length trustworthy before the payload is read, and the sync
//! marker lets a reader that met damage find the next frame: it scans forward for the marker
//! and takes the first position whose header checksum, length and payload checksum all hold
//! (two independent 32-bit checksums: a false match inside other bytes is not a practical
//! concern). Damage therefore costs only the frames it touches.
//!
//! The scanner never holds more than one window of the file (1 MiB, or one frame when a frame
//! is larger) in memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Format 1 (the previous release): `[len u32][crc32 u32][postcard payload]` frames.
pub(crate) const MAGIC_V1: [u8; 8] = *b"PXBJRNL1";
/// Format 2: the frames of this module.
pub(crate) const MAGIC_V2: [u8; 8] = *b"PXBJRNL2";
/// What every format's magic starts with: a later format is refused, not mistaken for junk.
pub(crate) const MAGIC_FAMILY: &[u8; 7] = b"PXBJRNL";
pub(crate) const MAGIC_LEN: u64 = 8;

/// Bytes with the high bit set and no ASCII: they do not occur as a run in label text, and a
/// chance occurrence inside binary fields is rejected by the header checksum.
pub(crate) const SYNC: [u8; 4] = [0xE9, 0x1C, 0xB7, 0x5A];
pub(crate) const HEADER_LEN: usize = 16;

/// The largest payload a frame may carry. Writers refuse larger records (so that every frame
/// written can be replayed); readers treat a larger length as damage. A backup is a few
/// hundred bytes; even one with thousands of namespaces stays far below this.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// How much of the file the reader holds at once.
const WINDOW: usize = 1 << 20;
/// How far the resync scan looks per step.
const SCAN_CHUNK: usize = 64 << 10;

/// The payload would be over `MAX_PAYLOAD`; nothing was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge(pub usize);

/// Appends one frame to `buf` whose payload `write` appends. On `Err` (the writer's, or a
/// payload over `MAX_PAYLOAD`) `buf` is left as it was.
pub(crate) fn push_frame<E>(
    buf: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<TooLarge>,
{
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = write(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let payload_len = buf.len() - start - HEADER_LEN;
    let len = match u32::try_from(payload_len) {
        Ok(len) if payload_len <= MAX_PAYLOAD => len,
        _ => {
            buf.truncate(start);
            return Err(TooLarge(payload_len).into());
        }
    };
    let crc = crc32fast::hash(&buf[start + HEADER_LEN..]);
    let header = header(len, crc);
    buf[start..start + HEADER_LEN].copy_from_slice(&header);
    Ok(())
}

fn header(len: u32, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[0..4].copy_from_slice(&SYNC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&h[0..12]);
    h[12..16].copy_from_slice(&hcrc.to_le_bytes());
    h
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The payload length and checksum of a header that is intact, with a length within limits.
fn parse_header(h: &[u8]) -> Option<(usize, u32)> {
    if h.len() < HEADER_LEN || h[0..4] != SYNC || crc32fast::hash(&h[0..12]) != word(h, 12) {
        return None;
    }
    let len = usize::try_from(word(h, 4)).ok()?;
    (len <= MAX_PAYLOAD).then_some((len, word(h, 8)))
}

/// A read-only window onto a file of known length: positional reads (`pread`), so that a
/// resync can look ahead and come back without seeking a shared cursor.
pub(crate) struct Window<'f> {
    file: &'f File,
    len: u64,
    /// `buf` holds the file's bytes `base..base + buf.len()`.
    base: u64,
    buf: Vec<u8>,
}

impl<'f> Window<'f> {
    pub(crate) fn new(file: &'f File, len: u64) -> Self {
        Window {
            file,
            len,
            base: 0,
            buf: Vec::new(),
        }
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.len
    }

    /// The `n` bytes at `offset`, or `None` if the file ends before them.
    pub(crate) fn get(&mut self, offset: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let Some(end) = offset.checked_add(n as u64) else {
            return Ok(None);
        };
        if end > self.len {
            return Ok(None);
        }
        if offset < self.base || end > self.base + self.buf.len() as u64 {
            // Refill from `offset`: a frame that straddled the old window is read again, at
            // most one frame per window.
            let want = usize::try_from((WINDOW.max(n) as u64).min(self.len - offset))
                .unwrap_or(WINDOW.max(n));
            if want <= WINDOW && self.buf.capacity() > WINDOW {
                // A large frame grew the buffer: give it back once it is passed.
                self.buf = Vec::new();
            }
            // Only newly grown bytes are zeroed; a steady window reuses its buffer.
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.base = offset;
        }
        let start = usize::try_from(offset - self.base).unwrap_or(usize::MAX);
        Ok(self.buf.get(start..start + n))
    }
}

/// What the scanner found next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// An intact frame; its payload is `Scanner::payload(offset, len)`.
    Frame { offset: u64, len: usize },
    /// Bytes that are no intact frame, followed by an intact one at `offset + len`.
    Damaged { offset: u64, len: u64 },
    /// Bytes up to the end of the file that hold no intact frame: a torn (or damaged) tail.
    Tail { offset: u64, len: u64 },
}

/// Walks the frames of a format 2 file, resynchronizing after damage.
pub(crate) struct Scanner<'f> {
    window: Window<'f>,
    pos: u64,
}

impl<'f> Scanner<'f> {
    pub(crate) fn new(file: &'f File, len: u64, start: u64) -> Self {
        Scanner {
            window: Window::new(file, len),
            pos: start,
        }
    }

    pub(crate) fn next_item(&mut self) -> io::Result<Option<Item>> {
        let pos = self.pos;
        let file_len = self.window.file_len();
        if pos >= file_len {
            return Ok(None);
        }
        if let Some(len) = self.frame_at(pos)? {
            self.pos = pos + (HEADER_LEN + len) as u64;
            return Ok(Some(Item::Frame { offset: pos, len }));
        }
        Ok(Some(match self.resync(pos + 1)? {
            Some(next) => {
                self.pos = next;
                Item::Damaged {
                    offset: pos,
                    len: next - pos,
                }
            }
            None => {
                self.pos = file_len;
                Item::Tail {
                    offset: pos,
                    len: file_len - pos,
                }
            }
        }))
    }

    /// The payload of the frame just returned by `next_item` (still in the window).
    pub(crate) fn payload(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        self.window
            .get(offset + HEADER_LEN as u64, len)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "frame past the end"))
    }

    /// The payload length of an intact frame at `offset`, if there is one.
    fn frame_at(&mut self, offset: u64) -> io::Result<Option<usize>> {
        let Some((len, crc)) = self.window.get(offset, HEADER_LEN)?.and_then(parse_header) else {
            return Ok(None);
        };
        let Some(payload) = self.window.get(offset + HEADER_LEN as u64, len)? else {
            return Ok(None);
        };
        Ok((crc32fast::hash(payload) == crc).then_some(len))
    }

    /// The offset of the first intact frame at or after `from`.
    fn resync(&mut self, from: u64) -> io::Result<Option<u64>> {
        let file_len = self.window.file_len();
        let mut at = from;
        while file_len.saturating_sub(at) >= HEADER_LEN as u64 {
            let n = usize::try_from((file_len - at).min(SCAN_CHUNK as u64)).unwrap_or(SCAN_CHUNK);
            let found = match self.window.get(at, n)? {
                Some(chunk) => chunk.windows(SYNC.len()).position(|w| w == SYNC),
                None => return Ok(None),
            };
            match found {
                Some(i) => {
                    let candidate = at + i as u64;
                    if self.frame_at(candidate)?.is_some() {
                        return Ok(Some(candidate));
                    }
                    at = candidate + 1;
                }
                // Keep the last bytes: a marker may straddle two chunks.
                None => at += (n - (SYNC.len() - 1)) as u64,
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        push_frame::<TooLargeErr>(&mut buf, |b| {
            b.extend_from_slice(payload);
            Ok(())
        })
        .unwrap();
        buf
    }

    #[derive(Debug)]
    struct TooLargeErr(#[allow(dead_code)] usize);
    impl From<TooLarge> for TooLargeErr {
        fn from(t: TooLarge) -> Self {
            TooLargeErr(t.0)
        }
    }

    fn scan(bytes: &[u8]) -> Vec<Item> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let mut s = Scanner::new(&f, bytes.len() as u64, 0);
        let mut items = Vec::new();
        while let Some(item) = s.next_item().unwrap() {
            items.push(item);
        }
        items
    }

    #[test]
    fn header_layout_is_frozen() {
        let f = frame(b"abc");
        assert_eq!(&f[0..4], &SYNC);
        assert_eq!(&f[4..8], &3u32.to_le_bytes());
        assert_eq!(&f[8..12], &crc32fast::hash(b"abc").to_le_bytes());
        assert_eq!(&f[12..16], &crc32fast::hash(&f[0..12]).to_le_bytes());
        assert_eq!(&f[16..], b"abc");
    }

    #[test]
    fn oversized_payload_is_refused_and_leaves_the_buffer_alone() {
        let mut buf = b"keep".to_vec();
        let err = push_frame::<TooLargeErr>(&mut buf, |b| {
            b.resize(b.len() + MAX_PAYLOAD + 1, 7);
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.0, MAX_PAYLOAD + 1);
        assert_eq!(buf, b"keep");
    }

    #[test]
    fn damage_is_skipped_up_to_the_next_intact_frame() {
        let (a, b, c) = (frame(b"first"), frame(b"second"), frame(b"third"));
        let mut bytes = [a.clone(), b.clone(), c.clone()].concat();
        bytes[a.len() + HEADER_LEN + 2] ^= 1; // in b's payload
        let items = scan(&bytes);
        assert_eq!(
            items,
            vec![
                Item::Frame { offset: 0, len: 5 },
                Item::Damaged {
                    offset: a.len() as u64,
                    len: b.len() as u64
                },
                Item::Frame {
                    offset: (a.len() + b.len()) as u64,
                    len: 5
                },
            ]
        );
    }

    #[test]
    fn garbage_with_a_false_sync_marker_is_skipped() {
        let (a, c) = (frame(b"first"), frame(b"third"));
        let mut garbage = vec![0u8; 100];
        garbage[10..14].copy_from_slice(&SYNC); // a marker whose header checksum fails
        garbage[98..100].copy_from_slice(&SYNC[..2]); // a marker cut by the next frame
        let bytes = [a.clone(), garbage, c].concat();
        let items = scan(&bytes);
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(
            items[1],
            Item::Damaged {
                offset: a.len() as u64,
                len: 100
            }
        );
    }

    #[test]
    fn an_incomplete_last_frame_is_a_tail() {
        let (a, b) = (frame(b"first"), frame(b"second"));
        let bytes = [a.clone(), b[..b.len() - 2].to_vec()].concat();
        let items = scan(&bytes);
        assert_eq!(
            items[1],
            Item::Tail {
                offset: a.len() as u64,
                len: (b.len() - 2) as u64
            }
        );
    }

    #[test]
    fn frames_larger_than_the_window_are_read() {
        let big = vec![42u8; WINDOW * 2 + 3];
        let bytes = [frame(b"x"), frame(&big), frame(b"y")].concat();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        let mut s = Scanner::new(&f, bytes.len() as u64, 0);
        let mut payloads = Vec::new();
        while let Some(Item::Frame { offset, len }) = s.next_item().unwrap() {
            payloads.push(s.payload(offset, len).unwrap().to_vec());
        }
        assert_eq!(payloads, vec![b"x".to_vec(), big, b"y".to_vec()]);
        assert!(s.window.buf.capacity() <= WINDOW * 3 + HEADER_LEN);
    }
}

//! A scrape body.
//!
//! With gzip (what Prometheus always asks for) the body is a gzip member laid out from the
//! stored segments as they are: a header, every segment, an empty final block, and a trailer
//! whose CRC-32 is combined from the segments' own. Nothing the inventory already compressed is
//! compressed again, and nothing is copied: the body is a list of shared buffers, streamed.
//! Without gzip the text is written a family at a time from the entries themselves (see
//! `inventory::TextSnapshot`) on every core, in small chunks, so a scrape never holds the
//! whole text.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::families::text::{write_header, write_trailer, Format};
use crate::families::{self, Family};
use crate::inventory::segment::{
    gzip_trailer, Checksum, Compressor, Inflater, Segment, DEFLATE_END, GZIP_HEADER,
};
use crate::inventory::{Snapshot, TextSnapshot};

/// One piece of a scrape, in order.
#[derive(Clone)]
enum Piece {
    Header(&'static Family),
    Series(Segment),
}

/// What one scrape serves: the inventory's series in exposition order, then `tail` (the
/// sidecar's own families, made for this scrape, and the OpenMetrics `# EOF`).
pub struct Scrape {
    format: Format,
    pieces: Vec<Piece>,
    tail: Vec<u8>,
}

/// The HELP and TYPE lines of every family, compressed once per format.
fn compressed_headers(format: Format) -> &'static HashMap<&'static str, Segment> {
    static TEXT: OnceLock<HashMap<&'static str, Segment>> = OnceLock::new();
    static OPENMETRICS: OnceLock<HashMap<&'static str, Segment>> = OnceLock::new();
    let cell = match format {
        Format::Text => &TEXT,
        Format::OpenMetrics => &OPENMETRICS,
    };
    cell.get_or_init(|| {
        let mut compressor = Compressor::default();
        families::all()
            .into_iter()
            .map(|f| (f.name, compressor.compress(&header_text(f, format))))
            .collect()
    })
}

fn header_text(family: &Family, format: Format) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_header(&mut out, family, format);
    out
}

impl Scrape {
    /// `tail` holds complete families; the trailer of the format is added here.
    pub fn new(snapshot: &Snapshot, format: Format, mut tail: Vec<u8>) -> Scrape {
        let parts: usize = snapshot
            .kinds
            .iter()
            .map(|k| k.parts.len() * k.families.len())
            .sum();
        let mut pieces = Vec::with_capacity(parts + 64);
        for kind in &snapshot.kinds {
            for (f, family) in kind.families.iter().enumerate() {
                pieces.push(Piece::Header(family));
                for part in &kind.parts {
                    if let Some(segment) = part.family(f).filter(|s| !s.is_empty()) {
                        pieces.push(Piece::Series(segment.clone()));
                    }
                }
            }
        }
        write_trailer(&mut tail, format);
        Scrape {
            format,
            pieces,
            tail,
        }
    }

    /// The body as a gzip member, without compressing anything already compressed.
    pub fn gzip(&self) -> GzipBody {
        let headers = compressed_headers(self.format);
        let mut sum = Checksum::default();
        let mut chunks = Vec::with_capacity(self.pieces.len() + 4);
        chunks.push(Bytes::from_static(&GZIP_HEADER));
        for piece in &self.pieces {
            let segment = match piece {
                Piece::Header(f) => match headers.get(f.name) {
                    Some(s) => s,
                    None => continue,
                },
                Piece::Series(s) => s,
            };
            sum.push(segment);
            chunks.push(segment.deflate.clone());
        }
        let tail = Compressor::default().compress(&self.tail);
        sum.push(&tail);
        chunks.push(tail.deflate);
        chunks.push(Bytes::from_static(&DEFLATE_END));
        chunks.push(Bytes::copy_from_slice(&gzip_trailer(sum.crc(), sum.len())));
        GzipBody::new(chunks)
    }

    /// The whole plain text in one buffer, inflated from the segments a gzip scrape sends
    /// (tests: what Prometheus reads).
    pub fn text(&self) -> Result<Vec<u8>, crate::inventory::segment::DamagedSegment> {
        let mut inflater = Inflater::default();
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Header(f) => write_header(&mut out, f, self.format),
                Piece::Series(s) => inflater.inflate(s, &mut out)?,
            }
        }
        out.extend_from_slice(&self.tail);
        Ok(out)
    }
}

/// A plain-text scrape: the inventory's series written a family at a time, then `tail` (the
/// sidecar's own families and the OpenMetrics `# EOF`).
pub struct TextScrape {
    format: Format,
    snapshot: TextSnapshot,
    tail: Vec<u8>,
}

/// What a run of a plain-text body holds, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TextPiece {
    Header {
        kind: usize,
        family: usize,
    },
    Series {
        kind: usize,
        family: usize,
        groups: std::ops::Range<usize>,
    },
    Tail,
}

/// Consecutive pieces of a plain-text body, made into text by one producer.
#[derive(Clone, Debug, Default)]
struct TextRun {
    pieces: Vec<TextPiece>,
    /// About how much text they make (for sizing the buffer).
    estimate: usize,
}

/// What a group's text of one family is taken to be when the store cannot say (it changed
/// since it was last made): runs are cut by it, nothing depends on it being right.
const UNKNOWN_GROUP_TEXT: u64 = 16 * 1024;

impl TextScrape {
    pub fn new(snapshot: TextSnapshot, format: Format, mut tail: Vec<u8>) -> TextScrape {
        write_trailer(&mut tail, format);
        TextScrape {
            format,
            snapshot,
            tail,
        }
    }

    /// The body cut into consecutive runs of about `chunk` bytes of text each, to be made
    /// text independently (on several threads) and sent in order.
    fn runs(&self, chunk: usize) -> Vec<TextRun> {
        let chunk = chunk as u64;
        let mut runs = Vec::new();
        let mut run = TextRun::default();
        let mut bytes = 0u64;
        let close = |run: &mut TextRun, bytes: &mut u64, runs: &mut Vec<TextRun>| {
            run.estimate = usize::try_from(*bytes).unwrap_or(usize::MAX);
            runs.push(std::mem::take(run));
            *bytes = 0;
        };
        for (k, kind) in self.snapshot.kinds.iter().enumerate() {
            let groups = kind.groups.groups();
            for f in 0..kind.families.len() {
                run.pieces.push(TextPiece::Header { kind: k, family: f });
                bytes += 256;
                let mut start = 0;
                for g in 0..groups {
                    bytes += kind.groups.known_len(f, g).unwrap_or(UNKNOWN_GROUP_TEXT);
                    if bytes >= chunk {
                        run.pieces.push(TextPiece::Series {
                            kind: k,
                            family: f,
                            groups: start..g + 1,
                        });
                        start = g + 1;
                        close(&mut run, &mut bytes, &mut runs);
                    }
                }
                if start < groups {
                    run.pieces.push(TextPiece::Series {
                        kind: k,
                        family: f,
                        groups: start..groups,
                    });
                }
            }
        }
        run.pieces.push(TextPiece::Tail);
        bytes += self.tail.len() as u64;
        close(&mut run, &mut bytes, &mut runs);
        runs
    }

    /// The text of one run.
    fn run_text(&self, run: &TextRun, out: &mut Vec<u8>) {
        for piece in &run.pieces {
            match piece {
                TextPiece::Header { kind, family } => {
                    if let Some(f) = self
                        .snapshot
                        .kinds
                        .get(*kind)
                        .and_then(|k| k.families.get(*family))
                    {
                        write_header(out, f, self.format);
                    }
                }
                TextPiece::Series {
                    kind,
                    family,
                    groups,
                } => {
                    if let Some(k) = self.snapshot.kinds.get(*kind) {
                        k.groups.render(*family, groups.clone(), out);
                    }
                }
                TextPiece::Tail => out.extend_from_slice(&self.tail),
            }
        }
    }

    /// The text in runs of about `chunk` bytes, on this thread, each handed to `each` (a
    /// buffer reused from run to run).
    pub fn write_chunks(&self, chunk: usize, mut each: impl FnMut(&[u8])) {
        let mut out = Vec::new();
        for run in self.runs(chunk) {
            out.clear();
            self.run_text(&run, &mut out);
            each(&out);
        }
    }

    /// The whole text in one buffer (tests, tools).
    pub fn text(&self) -> Vec<u8> {
        let mut text = Vec::new();
        self.write_chunks(1 << 20, |chunk| text.extend_from_slice(chunk));
        text
    }
}

/// Segments smaller than this are gathered into frames; larger ones are frames of their own.
const SMALL_SEGMENT: usize = 16 * 1024;
const FRAME: usize = 64 * 1024;

/// A gzip body: the stored segments sent one after the other, with its exact length known up
/// front (so it goes out with `Content-Length`, not chunked). Packed segments (hundreds of KB)
/// go out as they are, for the kernel to copy straight from the store; a group's own segments
/// are a few KB each, and runs of them are copied into frames of about `FRAME` bytes on the
/// way out (a frame each would make a write syscall per sixteen of them, see `server.rs`).
pub struct GzipBody {
    chunks: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl GzipBody {
    fn new(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        GzipBody {
            chunks: chunks.into_iter(),
            remaining,
        }
    }
    pub fn len(&self) -> u64 {
        self.remaining
    }
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
    /// The whole body in one buffer (tests).
    pub fn concat(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.remaining).unwrap_or(0));
        for c in self.chunks {
            out.extend_from_slice(&c);
        }
        out
    }

    fn next_frame(&mut self) -> Option<Bytes> {
        let first = self.chunks.by_ref().find(|c| !c.is_empty())?;
        if first.len() >= SMALL_SEGMENT {
            return Some(first);
        }
        let mut frame = bytes::BytesMut::with_capacity(FRAME + SMALL_SEGMENT);
        frame.extend_from_slice(&first);
        while frame.len() < FRAME {
            match self.chunks.as_slice().first() {
                Some(next) if next.len() < SMALL_SEGMENT => {
                    frame.extend_from_slice(next);
                    self.chunks.next();
                }
                _ => break,
            }
        }
        Some(frame.freeze())
    }
}

impl http_body::Body for GzipBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.next_frame() {
            Some(frame) => {
                self.remaining -= frame.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A plain body fed by producers writing runs of text on blocking threads, each a few chunks
/// ahead of the network at most: run `i` comes from producer `i % producers`, so the body
/// reads them back in order. Its length is not known before it is written: it goes out
/// chunked.
pub struct TextBody {
    producers: Vec<tokio::sync::mpsc::Receiver<Bytes>>,
    next: usize,
    runs: usize,
}

/// A producer could not finish the body: the response ends short, which the scraper sees as
/// a failed scrape instead of wrong data.
#[derive(Debug, thiserror::Error)]
#[error("the scrape body ended early")]
pub struct BodyCut;

impl TextBody {
    /// Starts `producers` blocking tasks that make the text of `scrape` in runs of about
    /// `chunk` bytes, each at most `ahead` runs ahead of what was sent.
    pub fn spawn(scrape: TextScrape, chunk: usize, producers: usize, ahead: usize) -> TextBody {
        let runs = std::sync::Arc::new(scrape.runs(chunk));
        let scrape = std::sync::Arc::new(scrape);
        let producers = producers.clamp(1, runs.len().max(1));
        let receivers = (0..producers)
            .map(|p| {
                let (tx, rx) = tokio::sync::mpsc::channel(ahead.max(1));
                let (scrape, runs) = (scrape.clone(), runs.clone());
                tokio::task::spawn_blocking(move || {
                    for run in runs.iter().skip(p).step_by(producers) {
                        // Sized up front: growing a quarter-megabyte buffer by doubling copies
                        // it again and again, which shows at gigabytes a second.
                        let mut text = Vec::with_capacity(run.estimate + run.estimate / 8);
                        scrape.run_text(run, &mut text);
                        if tx.blocking_send(Bytes::from(text)).is_err() {
                            return; // the scraper went away
                        }
                    }
                });
                rx
            })
            .collect();
        TextBody {
            producers: receivers,
            next: 0,
            runs: runs.len(),
        }
    }
}

impl http_body::Body for TextBody {
    type Data = Bytes;
    type Error = BodyCut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            if self.next >= self.runs {
                return Poll::Ready(None);
            }
            let n = self.producers.len();
            let next = self.next;
            match self.producers[next % n].poll_recv(cx) {
                Poll::Ready(Some(c)) => {
                    self.next += 1;
                    // A run with no text (families without series) sends nothing.
                    if !c.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(c))));
                    }
                }
                // The producer stopped before its last run: it panicked.
                Poll::Ready(None) => {
                    tracing::error!("a scrape could not be written; the response is cut short");
                    return Poll::Ready(Some(Err(BodyCut)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.runs
    }
}

/// A response body that keeps its scrape counted as in flight, and its place among the
/// scrapes in flight, until it is dropped: sent, or the scraper went away (or was cut off).
pub struct InFlight<B> {
    body: B,
    _scrape: crate::inventory::give_way::ScrapeInFlight,
    _slot: Option<super::slots::ScrapeSlot>,
}

impl<B> InFlight<B> {
    pub fn new(body: B, scrape: crate::inventory::give_way::ScrapeInFlight) -> Self {
        InFlight {
            body,
            _scrape: scrape,
            _slot: None,
        }
    }

    /// Holding `slot` until the body is dropped.
    pub fn holding(mut self, slot: super::slots::ScrapeSlot) -> Self {
        self._slot = Some(slot);
        self
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for InFlight<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::inventory::Inventory;
    use crate::model::{
        Backup, BackupStatus, Event, Object, Origin, Owner, SourceId, Timestamp, Volume,
    };
    use http_body_util::BodyExt;

    /// An inventory of `n` backups, every tenth one deleted, and rendered (so that its groups
    /// say which families are empty) unless `fresh`.
    fn inventory(n: usize, fresh: bool) -> Inventory {
        let inv = Inventory::in_memory(Clock::System, std::time::Duration::from_secs(3600));
        let backups = (0..n).map(|i| {
            Event::Upsert(Object::Backup(Backup {
                uid: format!("uid-{i}"),
                name: format!("nightly-{i}"),
                owner: Owner {
                    org_id: "default".into(),
                    cluster: format!("cluster-{}", i % 3),
                    cluster_uid: format!("cu-{}", i % 3),
                },
                schedule_name: format!("nightly-{}", i % 7),
                namespaces: vec!["shop".into()],
                status: BackupStatus::Success,
                size_bytes: Some(i as u64 * 1000),
                volumes: vec![Volume {
                    volume: format!("pvc-{i}"),
                    ..Volume::default()
                }],
                created_at: Some(Timestamp::from_secs(1_795_000_000 + i as i64)),
                ..Backup::default()
            }))
        });
        let origin = Origin::source(SourceId::Ingest);
        inv.apply(&origin, backups.collect()).expect("applied");
        let deletes = (0..n).step_by(10).map(|i| Event::Delete {
            kind: crate::model::Kind::Backup,
            uid: format!("uid-{i}"),
            deleted_at: None,
        });
        inv.apply(&origin, deletes.collect()).expect("applied");
        if !fresh {
            drop(inv.snapshot());
        }
        inv
    }

    async fn body_text(body: TextBody) -> Vec<u8> {
        body.collect()
            .await
            .expect("whole body")
            .to_bytes()
            .to_vec()
    }

    /// Whatever the writers and the chunk size, the body is the text, in order; and it is
    /// the gzip body's text.
    #[tokio::test]
    async fn the_body_is_the_text_in_order_whatever_the_writers() {
        for fresh in [false, true] {
            let inv = inventory(700, fresh);
            let whole =
                TextScrape::new(inv.text_snapshot(), Format::Text, b"tail 1\n".to_vec()).text();
            assert!(whole.ends_with(b"tail 1\n"));
            let inflated = Scrape::new(&inv.snapshot(), Format::Text, b"tail 1\n".to_vec())
                .text()
                .expect("inflates");
            assert_eq!(
                String::from_utf8_lossy(&whole),
                String::from_utf8_lossy(&inflated)
            );
            for (chunk, producers, ahead) in
                [(1, 1, 1), (1000, 2, 1), (4096, 3, 2), (1 << 20, 2, 1)]
            {
                let scrape =
                    TextScrape::new(inv.text_snapshot(), Format::Text, b"tail 1\n".to_vec());
                let sent = body_text(TextBody::spawn(scrape, chunk, producers, ahead)).await;
                assert!(
                    sent == whole,
                    "chunk {chunk}, {producers} writers, fresh {fresh}"
                );
            }
        }
    }

    /// A writer that stops before its last run (it panicked) cuts the body short with an
    /// error: the scraper sees a failed scrape, never a short one taken for whole.
    #[tokio::test]
    async fn a_writer_that_stops_early_cuts_the_body_with_an_error() {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.send(Bytes::from_static(b"first run\n")).await.unwrap();
        drop(tx);
        let body = TextBody {
            producers: vec![rx],
            next: 0,
            runs: 2,
        };
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(
            first.into_data().unwrap(),
            Bytes::from_static(b"first run\n")
        );
        assert!(matches!(body.frame().await, Some(Err(BodyCut))));
    }

    #[tokio::test]
    async fn an_empty_inventory_sends_the_headers_and_the_tail() {
        let inv = Inventory::in_memory(Clock::System, std::time::Duration::from_secs(60));
        let scrape = TextScrape::new(inv.text_snapshot(), Format::OpenMetrics, Vec::new());
        let text = String::from_utf8(body_text(TextBody::spawn(scrape, 100, 2, 1)).await).unwrap();
        assert!(text.contains("# TYPE pxbackup_backup_object_info gauge\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}

//! Exposition: serving what the inventory keeps. `body` assembles a scrape: gzip from the
//! stored compressed segments as they are, plain text written from the stored objects a family
//! at a time; `self_metrics` and the collectors add the sidecar's own families, `server` speaks
//! HTTP, `slots` bounds the scrapes in flight and `stall` cuts clients that stop reading.

pub mod body;
pub mod self_metrics;
pub mod server;
pub mod slots;
pub mod stall;

pub use crate::families::text::{accepts_gzip, header_accepts, Format, Value};
use crate::families::{text, Family};
use crate::inventory::{Snapshot, TextSnapshot};
pub use body::{Scrape, TextScrape};

/// Something that exports its own families at scrape time (the sidecar's self metrics,
/// telemetry). Each collector writes whole families: a family is never split across two.
pub trait Collector: Send + Sync {
    fn collect(&self, w: &mut FamilyWriter<'_>);
}

/// Writes complete families (header, then samples) in the negotiated format. Label names come
/// from the family's description; callers give values in the same order.
pub struct FamilyWriter<'a> {
    out: &'a mut Vec<u8>,
    format: Format,
}

impl<'a> FamilyWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>, format: Format) -> Self {
        FamilyWriter { out, format }
    }

    /// A family: for each sample, its label values (in the family's label order) and value.
    pub fn family<'v>(
        &mut self,
        family: &Family,
        samples: impl IntoIterator<Item = (&'v [&'v str], Value)>,
    ) {
        text::write_header(self.out, family, self.format);
        for (values, value) in samples {
            debug_assert_eq!(values.len(), family.labels.len(), "{}", family.name);
            text::write_sample_parts(
                self.out,
                family,
                &[],
                family.labels,
                values,
                value,
                text::Escape::Check,
            );
        }
    }

    /// A family with one label: `(label value, sample value)` pairs.
    pub fn by_label<'v>(
        &mut self,
        family: &Family,
        samples: impl IntoIterator<Item = (&'v str, Value)>,
    ) {
        text::write_header(self.out, family, self.format);
        for (label_value, value) in samples {
            text::write_sample_parts(
                self.out,
                family,
                &[],
                family.labels,
                &[label_value],
                value,
                text::Escape::Check,
            );
        }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, family: &Family, value: Value) {
        self.family(family, [(&[][..], value)]);
    }
}

/// The text of the collectors' families, for the end of a scrape.
pub fn collect(format: Format, collectors: &[&dyn Collector]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * 1024);
    let mut w = FamilyWriter::new(&mut out, format);
    for c in collectors {
        c.collect(&mut w);
    }
    out
}

/// A whole plain-text scrape in one buffer, written from the entries as a plain-text scrape
/// over HTTP is (tests, tools).
pub fn encode_text(
    snapshot: TextSnapshot,
    format: Format,
    collectors: &[&dyn Collector],
) -> Vec<u8> {
    TextScrape::new(snapshot, format, collect(format, collectors)).text()
}

/// A whole scrape as plain text in one buffer, inflated from the segments a gzip scrape sends
/// (tests: what Prometheus reads).
pub fn encode(snapshot: &Snapshot, format: Format, collectors: &[&dyn Collector]) -> Vec<u8> {
    let scrape = Scrape::new(snapshot, format, collect(format, collectors));
    match scrape.text() {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "a scrape could not be assembled");
            Vec::new()
        }
    }
}

//! Exposition: the metric catalog, rendering of objects to series, assembling a scrape, and
//! the HTTP server. It only reads state; the inventory owns it.

pub mod catalog;
pub mod render;
pub mod self_metrics;
pub mod server;
pub mod text;

use std::io::Write;

use crate::inventory::Snapshot;
use crate::model::Kind;
use catalog::Family;
pub use text::{Format, Value};

/// Something that exports its own families at scrape time (the sidecar's self metrics,
/// telemetry). Each collector writes whole families: a family is never split across two.
pub trait Collector: Send + Sync {
    fn collect(&self, w: &mut FamilyWriter<'_>);
}

/// Writes complete families (header, then samples) in the negotiated format.
pub struct FamilyWriter<'a> {
    out: &'a mut Vec<u8>,
    format: Format,
}

impl<'a> FamilyWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>, format: Format) -> Self {
        FamilyWriter { out, format }
    }

    pub fn family(&mut self, family: &Family, samples: &[(&[(&str, &str)], Value)]) {
        text::write_header(self.out, family, self.format);
        for (labels, value) in samples {
            text::write_sample(self.out, family, &[], labels, *value);
        }
    }

    /// A family whose samples differ by one label: `(label value, sample value)` pairs.
    pub fn by_label<'v>(
        &mut self,
        family: &Family,
        label: &str,
        samples: impl IntoIterator<Item = (&'v str, Value)>,
    ) {
        text::write_header(self.out, family, self.format);
        for (label_value, value) in samples {
            text::write_sample(self.out, family, &[], &[(label, label_value)], value);
        }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, family: &Family, value: Value) {
        self.family(family, &[(&[], value)]);
    }
}

/// Assembles a scrape body: headers once per family, then every object's pre-rendered section
/// of that family, then the collectors' families.
pub fn encode(snapshot: &Snapshot, format: Format, collectors: &[&dyn Collector]) -> Vec<u8> {
    let mut out = Vec::with_capacity(snapshot.series_bytes + 64 * 1024);
    write_objects(&mut out, snapshot, format);
    let mut w = FamilyWriter::new(&mut out, format);
    for c in collectors {
        c.collect(&mut w);
    }
    text::write_trailer(&mut out, format);
    out
}

fn write_objects(out: &mut Vec<u8>, snapshot: &Snapshot, format: Format) {
    let sections = |out: &mut Vec<u8>, kind: Kind, families: &[&Family]| {
        for (i, family) in families.iter().enumerate() {
            text::write_header(out, family, format);
            for r in &snapshot.kinds[kind.index()] {
                out.extend_from_slice(r.section(i));
            }
        }
    };
    sections(out, Kind::Backup, &catalog::BACKUP_FAMILIES);
    sections(out, Kind::Restore, &catalog::RESTORE_FAMILIES);
    sections(out, Kind::Schedule, &catalog::SCHEDULE_FAMILIES);
    text::write_header(out, &catalog::SCHEDULE_LAST_SUCCESS, format);
    for r in &snapshot.last_success {
        out.extend_from_slice(r.section(0));
    }
    sections(out, Kind::Cluster, &[&catalog::CLUSTER_STATUS]);
    sections(
        out,
        Kind::BackupLocation,
        &[&catalog::BACKUP_LOCATION_STATUS],
    );
}

/// Whether a comma-separated `Accept`-style header lists a value that `matches` without
/// refusing it with `q=0`.
pub fn header_accepts(header: Option<&str>, matches: impl Fn(&str) -> bool) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let value = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            matches(value) && !refused
        })
    })
}

/// Whether an `Accept-Encoding` header allows gzip.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    header_accepts(accept_encoding, |coding| {
        coding.eq_ignore_ascii_case("gzip") || coding == "*"
    })
}

/// Compresses a body; the encoder is always finished (truncated gzip bodies were a
/// kube-state-metrics bug twice).
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=1.0, *;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = b"pxbackup_backup_status{uid=\"a\"} 6\n".repeat(1000);
        let z = gzip(&body).unwrap();
        assert!(z.len() < body.len() / 10);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
    }
}

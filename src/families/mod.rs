//! Every metric family this sidecar exports, each described once: its name, help, type and
//! labels, and (for the families of inventory objects) the function that renders an object
//! into it, as kube-state-metrics' `FamilyGenerator` does. The catalog
//! (`pxbackup-sidecar catalog`), the renderer and the scrape all read these descriptions, so
//! they cannot drift, and nothing depends on the position of a section.
//!
//! Data flows one way: `model` -> `families` (text of one object) -> `inventory` (keeps it
//! rendered) -> `exposition` (serves it).

pub mod backup;
pub mod objects;
pub mod sidecar;
pub mod text;

use serde::Serialize;

pub use text::{Escape, Format, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Gauge,
    Counter,
}

/// A family's description.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// For counters, the name without `_total` (the OpenMetrics family name).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    /// Label names in the order they are written.
    pub labels: &'static [&'static str],
    /// The fixed text of its series, made from the above at first use.
    series_text: SeriesTextCell,
}

/// The fixed text of a family's series, between the label values: `name{first_label="`, then
/// `",label="` for each further label, then `"} ` before the sample value. A series is these
/// pieces and the values laid in turn, without assembling label names each time (a scrape
/// writes a million series).
#[derive(Debug)]
pub struct SeriesText {
    pub open: Box<[u8]>,
    /// One per label after the first.
    pub between: Box<[Box<[u8]>]>,
}

/// `SeriesText`, made once; not part of what a family is (two equal descriptions are equal
/// whether or not either has been written yet).
#[derive(Debug, Default)]
struct SeriesTextCell(std::sync::OnceLock<SeriesText>);

impl PartialEq for SeriesTextCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for SeriesTextCell {}

impl Family {
    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Gauge,
            labels,
            series_text: SeriesTextCell(std::sync::OnceLock::new()),
        }
    }
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Counter,
            labels,
            series_text: SeriesTextCell(std::sync::OnceLock::new()),
        }
    }
    /// The fixed text of the family's series (for families with labels).
    pub fn series_text(&self) -> &SeriesText {
        self.series_text.0.get_or_init(|| {
            let mut open = self.sample_name().into_bytes();
            open.push(b'{');
            if let Some(first) = self.labels.first() {
                open.extend_from_slice(first.as_bytes());
                open.extend_from_slice(b"=\"");
            }
            let between = self
                .labels
                .iter()
                .skip(1)
                .map(|l| format!("\",{l}=\"").into_bytes().into_boxed_slice())
                .collect();
            SeriesText {
                open: open.into_boxed_slice(),
                between,
            }
        })
    }

    /// The sample name PromQL uses (`_total` for counters).
    pub fn sample_name(&self) -> String {
        match self.kind {
            MetricType::Counter => format!("{}_total", self.name),
            MetricType::Gauge => self.name.to_owned(),
        }
    }
}

/// Joins an identity label list and a family's own labels into one `&'static` list, at
/// compile time.
#[macro_export]
macro_rules! labels {
    ($identity:path $(, $extra:literal)*) => {{
        const L: &[&str] = &{
            const ID: &[&str] = $identity;
            let mut out = [""; ID.len() + [$($extra),*].len()];
            let mut i = 0;
            while i < ID.len() { out[i] = ID[i]; i += 1; }
            let extra: &[&str] = &[$($extra),*];
            let mut j = 0;
            while j < extra.len() { out[i + j] = extra[j]; j += 1; }
            out
        };
        L
    }};
}

/// What the generators of a kind read: `Row<'a>`, which may borrow from stored bytes (a
/// backup is rendered in place from its stored encoding).
pub trait Rows: 'static {
    type Row<'a>;
}

/// The rows of kinds kept as they are: the object itself.
pub struct Owned<T>(std::marker::PhantomData<T>);

impl<T: 'static> Rows for Owned<T> {
    type Row<'a> = T;
}

/// One family of an object kind: its description and how one object renders into it.
pub struct Generator<K: Rows> {
    pub family: Family,
    pub generate: for<'a, 'r> fn(&'r K::Row<'a>, &mut Samples<'_>),
}

/// The most identity labels a kind has.
pub const MAX_IDENTITY: usize = 8;

/// Label values of an object, borrowed from it, without allocating.
#[derive(Clone, Copy)]
pub struct LabelValues<'r> {
    values: [&'r [u8]; MAX_IDENTITY],
    len: usize,
}

impl<'r> LabelValues<'r> {
    pub fn as_slice(&self) -> &[&'r [u8]] {
        &self.values[..self.len]
    }
}

impl<'r, const N: usize> From<[&'r [u8]; N]> for LabelValues<'r> {
    fn from(list: [&'r [u8]; N]) -> Self {
        const { assert!(N <= MAX_IDENTITY) };
        let mut values: [&'r [u8]; MAX_IDENTITY] = [&[]; MAX_IDENTITY];
        values[..N].copy_from_slice(&list);
        LabelValues { values, len: N }
    }
}

impl<'r, const N: usize> From<[&'r str; N]> for LabelValues<'r> {
    fn from(list: [&'r str; N]) -> Self {
        LabelValues::from(list.map(str::as_bytes))
    }
}

/// The families of one kind of object: the identity labels every series of the kind starts
/// with, how to read them off an object, and the generators in exposition order.
pub struct KindFamilies<K: Rows> {
    pub identity: &'static [&'static str],
    pub identity_values: for<'a, 'r> fn(&'r K::Row<'a>) -> LabelValues<'r>,
    pub generators: &'static [Generator<K>],
}

impl<K: Rows> KindFamilies<K> {
    pub fn len(&self) -> usize {
        self.generators.len()
    }
    pub fn is_empty(&self) -> bool {
        self.generators.is_empty()
    }
    pub fn families(&self) -> impl Iterator<Item = &'static Family> + '_ {
        self.generators.iter().map(|g| &g.family)
    }

    /// Writes `row`'s identity label values with the text between them of `family`'s
    /// series: `v1",name="v2",...,"vN` (every family of a kind starts with the same labels).
    #[inline]
    fn write_identity(&self, row: &K::Row<'_>, family: &Family, escape: Escape, out: &mut Vec<u8>) {
        let values = (self.identity_values)(row);
        debug_assert_eq!(values.len, self.identity.len());
        let between = &family.series_text().between;
        for (i, value) in values.as_slice().iter().enumerate() {
            if let Some(b) = i.checked_sub(1).and_then(|i| between.get(i)) {
                out.extend_from_slice(b);
            }
            text::write_label_value(out, value, escape);
        }
    }

    /// Appends `row`'s series of family `i` to `outs[i]`, for every family: the identity
    /// labels are written once per object, not once per series.
    pub fn render(
        &self,
        row: &K::Row<'_>,
        escape: Escape,
        identity: &mut Vec<u8>,
        outs: &mut [Vec<u8>],
    ) {
        identity.clear();
        if let Some(first) = self.generators.first() {
            self.write_identity(row, &first.family, escape, identity);
        }
        for (generator, out) in self.generators.iter().zip(outs.iter_mut()) {
            self.generate(generator, row, escape, IdentityText::Written(identity), out);
        }
    }

    /// Runs one generator on `row`, its series appended to `out`.
    fn generate(
        &self,
        generator: &Generator<K>,
        row: &K::Row<'_>,
        escape: Escape,
        identity: IdentityText<'_>,
        out: &mut Vec<u8>,
    ) {
        let mut samples = Samples {
            out,
            family: &generator.family,
            extra: &generator.family.labels[self.identity.len()..],
            escape,
            identity,
        };
        (generator.generate)(row, &mut samples);
    }

    /// `render_family`, the identity labels written by `write_identity` (a kind that keeps
    /// them partly written).
    pub fn render_family_with(
        &self,
        row: &K::Row<'_>,
        family: usize,
        escape: Escape,
        write_identity: &dyn Fn(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) {
        if let Some(generator) = self.generators.get(family) {
            let identity = IdentityText::Unwritten(write_identity);
            self.generate(generator, row, escape, identity, out);
        }
    }

    /// Appends `row`'s series of family `family` alone (a plain-text scrape writes a family at
    /// a time). The identity labels are written only if the row has a series there.
    pub fn render_family(
        &self,
        row: &K::Row<'_>,
        family: usize,
        escape: Escape,
        out: &mut Vec<u8>,
    ) {
        let Some(generator) = self.generators.get(family) else {
            return;
        };
        let write = |out: &mut Vec<u8>| self.write_identity(row, &generator.family, escape, out);
        self.render_family_with(row, family, escape, &write, out);
    }
}

/// Writes an object's identity labels.
type IdentityWriter<'s> = &'s dyn Fn(&mut Vec<u8>);

/// An object's identity labels, as the samples of one family find them.
enum IdentityText<'s> {
    /// Written once for all the object's families.
    Written(&'s [u8]),
    /// Not written yet: the first sample writes them in place...
    Unwritten(IdentityWriter<'s>),
    /// ...where the next samples copy them from.
    At(std::ops::Range<usize>),
}

/// Where a generator writes the series of one object in one family. Label names come from the
/// family's description; a generator gives only values, in the same order.
pub struct Samples<'s> {
    out: &'s mut Vec<u8>,
    family: &'s Family,
    extra: &'s [&'static str],
    escape: Escape,
    identity: IdentityText<'s>,
}

impl Samples<'_> {
    /// One series: `values` pair with the family's labels after the identity ones.
    pub fn push(&mut self, values: &[&[u8]], value: Value) {
        debug_assert_eq!(
            values.len(),
            self.extra.len(),
            "{}: label values do not match the description",
            self.family.name
        );
        let out = &mut *self.out;
        let text = self.family.series_text();
        out.extend_from_slice(&text.open);
        match &self.identity {
            IdentityText::Written(identity) => out.extend_from_slice(identity),
            IdentityText::Unwritten(write) => {
                let start = out.len();
                write(out);
                self.identity = IdentityText::At(start..out.len());
            }
            IdentityText::At(at) => out.extend_from_within(at.clone()),
        }
        // The text before each of the family's labels after the identity ones.
        let between = text.between.len().checked_sub(values.len());
        let between = between.and_then(|from| text.between.get(from..));
        for (b, v) in between.unwrap_or_default().iter().zip(values) {
            out.extend_from_slice(b);
            text::write_label_value(out, v, self.escape);
        }
        out.extend_from_slice(b"\"} ");
        value.write(out);
        out.push(b'\n');
    }

    /// One series when the value is known.
    pub fn push_some(&mut self, values: &[&[u8]], value: Option<Value>) {
        if let Some(v) = value {
            self.push(values, v);
        }
    }
}

/// Every family, in exposition order.
pub fn all() -> Vec<&'static Family> {
    let mut out: Vec<&'static Family> = Vec::new();
    out.extend(backup::FAMILIES.families());
    out.extend(objects::RESTORE.families());
    out.extend(objects::SCHEDULE.families());
    out.extend(objects::SCHEDULE_LAST_SUCCESS.families());
    out.extend(objects::CLUSTER.families());
    out.extend(objects::BACKUP_LOCATION.families());
    out.extend(sidecar::ALL);
    out
}

/// One catalog entry as `pxbackup-sidecar catalog` prints it: `name` is the sample name
/// (with `_total` for counters), as PromQL uses it.
#[derive(Serialize)]
pub struct CatalogEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricType,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

pub fn catalog() -> Vec<CatalogEntry> {
    all()
        .into_iter()
        .map(|f| CatalogEntry {
            name: f.sample_name(),
            kind: f.kind,
            help: f.help,
            labels: f.labels,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_never_use_reserved_labels() {
        let all = all();
        let mut names: Vec<_> = all.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for f in all {
            assert!(f.name.starts_with("pxbackup_"), "{}", f.name);
            assert!(!f.help.contains(['\n', '\\', '"']), "{}", f.name);
            let mut labels = f.labels.to_vec();
            labels.sort_unstable();
            labels.dedup();
            assert_eq!(labels.len(), f.labels.len(), "{} repeats a label", f.name);
            for l in f.labels {
                // Target labels Prometheus (or its Kubernetes discovery) sets itself.
                assert!(
                    !matches!(*l, "job" | "instance" | "namespace" | "pod"),
                    "{} uses {l}",
                    f.name
                );
            }
            // promtool: `_count` / `_sum` / `_bucket` belong to histograms and summaries.
            if f.kind == MetricType::Gauge {
                assert!(!f.name.ends_with("_count"), "{}", f.name);
                assert!(!f.name.ends_with("_total"), "{}", f.name);
            }
        }
    }

    #[test]
    fn label_lists_join_identity_and_extras() {
        assert_eq!(
            backup::DELETED_TIMESTAMP_LABELS,
            &[
                "org_id",
                "name",
                "uid",
                "cluster",
                "cluster_uid",
                "schedule_name",
                "previous_status"
            ]
        );
    }
}

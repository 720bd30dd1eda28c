//! The sidecar's own metrics (`pxbackup_sidecar_*`), read from the counters that the inventory,
//! the sources and the ingest endpoint keep.

use std::sync::atomic::Ordering::Relaxed;

use super::catalog;
use super::{FamilyWriter, Value};
use crate::inventory::{IgnoreReason, Snapshot};
use crate::model::{Kind, SourceId};
use crate::state::Shared;

pub fn write(w: &mut FamilyWriter<'_>, shared: &Shared, snapshot: &Snapshot) {
    w.family(
        &catalog::BUILD_INFO,
        &[(&[("version", env!("CARGO_PKG_VERSION"))], Value::Int(1))],
    );
    let configured: Vec<SourceId> = shared.sources.configured().collect();
    let per_source = |f: &dyn Fn(SourceId) -> Value| -> Vec<(SourceId, Value)> {
        configured.iter().map(|s| (*s, f(*s))).collect()
    };
    let source_family = |w: &mut FamilyWriter<'_>, family, values: Vec<(SourceId, Value)>| {
        let labels: Vec<[(&str, &str); 1]> =
            values.iter().map(|(s, _)| [("source", s.as_str())]).collect();
        let samples: Vec<(&[(&str, &str)], Value)> = labels
            .iter()
            .zip(&values)
            .map(|(l, (_, v))| (&l[..], *v))
            .collect();
        w.family(family, &samples);
    };
    source_family(
        w,
        &catalog::SOURCE_UP,
        per_source(&|s| Value::Int(i64::from(shared.sources.is_up(s)))),
    );
    let stats = shared.inventory.stats();
    source_family(
        w,
        &catalog::EVENTS_APPLIED,
        per_source(&|s| Value::Uint(stats.applied[s as usize].load(Relaxed))),
    );
    source_family(
        w,
        &catalog::SOURCE_OBJECTS_INVALID,
        per_source(&|s| Value::Uint(shared.sources.invalid_objects(s))),
    );
    let reasons: Vec<[(&str, &str); 1]> = IgnoreReason::ALL
        .iter()
        .map(|r| [("reason", r.as_str())])
        .collect();
    let ignored: Vec<(&[(&str, &str)], Value)> = IgnoreReason::ALL
        .iter()
        .zip(&reasons)
        .map(|(r, l)| (&l[..], Value::Uint(stats.ignored[*r as usize].load(Relaxed))))
        .collect();
    w.family(&catalog::EVENTS_IGNORED, &ignored);
    let ingest = &shared.ingest;
    w.family(
        &catalog::INGEST_BATCHES,
        &[
            (&[("result", "applied")], Value::Uint(ingest.applied.load(Relaxed))),
            (&[("result", "rejected")], Value::Uint(ingest.rejected.load(Relaxed))),
            (
                &[("result", "unauthorized")],
                Value::Uint(ingest.unauthorized.load(Relaxed)),
            ),
        ],
    );
    let kinds: Vec<[(&str, &str); 1]> = Kind::ALL.iter().map(|k| [("kind", k.as_str())]).collect();
    let objects: Vec<(&[(&str, &str)], Value)> = Kind::ALL
        .iter()
        .zip(&kinds)
        .map(|(k, l)| (&l[..], Value::Uint(snapshot.live_objects[k.index()] as u64)))
        .collect();
    w.family(&catalog::OBJECTS, &objects);
    w.single(
        &catalog::TOMBSTONES_RETAINED,
        Value::Uint(snapshot.tombstones as u64),
    );
    w.single(
        &catalog::TOMBSTONES_EXPIRED,
        Value::Uint(stats.tombstones_expired.load(Relaxed)),
    );
    w.single(
        &catalog::JOURNAL_ERRORS,
        Value::Uint(stats.journal_errors.load(Relaxed)),
    );
    w.single(
        &catalog::JOURNAL_RECORDS_SKIPPED,
        Value::Uint(stats.journal_records_skipped.load(Relaxed)),
    );
    w.single(
        &catalog::SCRAPE_DURATION,
        Value::Float(f64::from_bits(shared.last_scrape_seconds.load(Relaxed))),
    );
}

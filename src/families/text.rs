//! Writing the Prometheus text formats: label escaping, sample lines and family headers.
//!
//! Sample lines of gauges and counters are identical in text 0.0.4 and OpenMetrics 1.0, so
//! per-object series are rendered once and served in either format; only the headers (and the
//! closing `# EOF`) depend on the format.

use super::{Family, MetricType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks the format from an `Accept` header: OpenMetrics only when the scraper names it
    /// with a non-zero quality, text 0.0.4 otherwise (Prometheus 3 fails on anything else).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants_om = header_accepts(accept, |media| {
            media.eq_ignore_ascii_case("application/openmetrics-text")
        });
        if wants_om {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
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

/// Whether label values may hold what the formats escape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Each value is looked at, and backslash, double quote and newline escaped.
    Check,
    /// The values are known to hold none of them (a stored backup checked once when it was
    /// stored): written as they are.
    Verbatim,
}

/// Appends `value` escaped as a label value: backslash, double quote and newline, as both
/// formats require. Everything else (any UTF-8) passes through.
pub fn escape_label_value(out: &mut Vec<u8>, value: &str) {
    write_label_value(out, value.as_bytes(), Escape::Check);
}

/// Whether a label value must be escaped.
pub fn needs_escaping(value: &[u8]) -> bool {
    value.iter().any(|b| matches!(b, b'\\' | b'"' | b'\n'))
}

/// Appends a label value (UTF-8), escaped unless `escape` says it needs none.
#[inline]
pub fn write_label_value(out: &mut Vec<u8>, value: &[u8], escape: Escape) {
    if escape == Escape::Verbatim || !needs_escaping(value) {
        out.extend_from_slice(value);
    } else {
        write_escaped(out, value);
    }
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Appends `,name="value"` pairs (the first without the comma when `first` is true).
#[inline]
pub fn write_labels<V: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    names: &[&str],
    values: &[V],
    first: bool,
    escape: Escape,
) {
    let mut first = first;
    for (name, value) in names.iter().zip(values) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        write_label_value(out, value.as_ref(), escape);
        out.push(b'"');
    }
}

/// A sample value. Integers are written exactly; floats in Rust's shortest round-trip form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
}

/// Floats below this with no fraction are written as the integers they are (the same text
/// as Rust's `Display`, without its general float formatting: timestamps in whole seconds
/// are most of a backup's values).
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

impl Value {
    pub fn write(self, out: &mut Vec<u8>) {
        use std::io::Write;
        let mut digits = itoa::Buffer::new();
        match self {
            Value::Int(v) => out.extend_from_slice(digits.format(v).as_bytes()),
            Value::Uint(v) => out.extend_from_slice(digits.format(v).as_bytes()),
            Value::Float(v) if v.is_nan() => out.extend_from_slice(b"NaN"),
            Value::Float(v) if v.is_infinite() => {
                out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
            }
            // -0.0 is written "-0", which an integer cannot say.
            Value::Float(v) if v.abs() < EXACT_INTEGER && v != 0.0 && (v as i64) as f64 == v => {
                out.extend_from_slice(digits.format(v as i64).as_bytes());
            }
            // Writing to a Vec cannot fail.
            Value::Float(v) => {
                let _ = write!(out, "{v}");
            }
        }
    }
}

/// Appends one sample line: `name{<prefix><labels>} value\n`. `prefix` is an already
/// rendered label fragment (an object's identity labels), written first.
pub fn write_sample_parts<V: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    family: &Family,
    prefix: &[u8],
    names: &[&str],
    values: &[V],
    value: Value,
    escape: Escape,
) {
    out.extend_from_slice(family.name.as_bytes());
    if family.kind == MetricType::Counter {
        out.extend_from_slice(b"_total");
    }
    if !prefix.is_empty() || !names.is_empty() {
        out.push(b'{');
        out.extend_from_slice(prefix);
        write_labels(out, names, values, prefix.is_empty(), escape);
        out.push(b'}');
    }
    out.push(b' ');
    value.write(out);
    out.push(b'\n');
}

/// Appends the HELP and TYPE lines of a family, once per scrape.
pub fn write_header(out: &mut Vec<u8>, family: &Family, format: Format) {
    let kind = match family.kind {
        MetricType::Gauge => "gauge",
        MetricType::Counter => "counter",
    };
    match format {
        Format::Text => {
            // Text 0.0.4 names the counter family after its sample, with `_total`.
            let suffix = if family.kind == MetricType::Counter {
                "_total"
            } else {
                ""
            };
            for line in [
                format!("# HELP {}{suffix} {}\n", family.name, family.help),
                format!("# TYPE {}{suffix} {kind}\n", family.name),
            ] {
                out.extend_from_slice(line.as_bytes());
            }
        }
        Format::OpenMetrics => {
            for line in [
                format!("# TYPE {} {kind}\n", family.name),
                format!("# HELP {} {}\n", family.name, family.help),
            ] {
                out.extend_from_slice(line.as_bytes());
            }
        }
    }
}

pub fn write_trailer(out: &mut Vec<u8>, format: Format) {
    if format == Format::OpenMetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_what_the_format_requires() {
        let mut out = Vec::new();
        escape_label_value(&mut out, "a\\b\"c\nd é ☃ \t");
        assert_eq!(String::from_utf8(out).unwrap(), "a\\\\b\\\"c\\nd é ☃ \t");
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=1.0, *;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn negotiates_openmetrics_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0,text/plain")),
            Format::Text
        );
    }

    #[test]
    fn floats_are_written_as_rust_displays_them() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            1e15,
            1e16,
            -1e16,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            9_007_199_254_740_993.0,
            1e21,
            1e-7,
            f64::MAX,
            f64::MIN_POSITIVE,
            1_795_395_600.0,
            1_795_395_600.001,
        ];
        for _ in 0..10_000 {
            values.push(rng.i64(..) as f64 / 1000.0);
            values.push(rng.i64(-1 << 40..1 << 40) as f64);
            values.push(f64::from_bits(rng.u64(..)));
        }
        for v in values {
            let mut out = Vec::new();
            Value::Float(v).write(&mut out);
            let expected = if v.is_nan() {
                "NaN".to_owned()
            } else if v.is_infinite() {
                if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
            } else {
                format!("{v}")
            };
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{v:e}");
        }
    }

    #[test]
    fn verbatim_values_are_written_as_they_are() {
        let mut out = Vec::new();
        write_label_value(&mut out, b"a\"b", Escape::Verbatim);
        write_label_value(&mut out, b"a\"b", Escape::Check);
        assert_eq!(out, b"a\"ba\\\"b");
        assert!(needs_escaping(b"x\ny"));
        assert!(!needs_escaping("é ☃ \t".as_bytes()));
    }

    #[test]
    fn values_are_exact() {
        let mut out = Vec::new();
        Value::Uint(u64::MAX).write(&mut out);
        out.push(b' ');
        Value::Float(1_795_395_600.5).write(&mut out);
        out.push(b' ');
        Value::Float(f64::NAN).write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "18446744073709551615 1795395600.5 NaN"
        );
    }
}

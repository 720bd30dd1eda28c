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

/// Appends `value` escaped as a label value: backslash, double quote and newline, as both
/// formats require. Everything else (any UTF-8) passes through.
pub fn escape_label_value(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Appends `,name="value"` pairs (the first without the comma when `first` is true).
pub fn write_labels(out: &mut Vec<u8>, labels: &[(&str, &str)], first: bool) {
    let mut first = first;
    for (name, value) in labels {
        write_label(out, name, value, first);
        first = false;
    }
}

/// Appends one `name="value"` pair, preceded by a comma unless it is the first.
pub fn write_label(out: &mut Vec<u8>, name: &str, value: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    escape_label_value(out, value);
    out.push(b'"');
}

/// A sample value. Integers are written exactly; floats in Rust's shortest round-trip form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl Value {
    pub fn write(self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = match self {
            Value::Int(v) => write!(out, "{v}"),
            Value::Uint(v) => write!(out, "{v}"),
            Value::Float(v) if v.is_nan() => write!(out, "NaN"),
            Value::Float(v) if v.is_infinite() => {
                write!(out, "{}", if v > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(v) => write!(out, "{v}"),
        };
    }
}

/// Appends one sample line: `name{<prefix><labels>} value\n`. `prefix` is an already
/// rendered label fragment (an object's identity labels), written first.
pub fn write_sample(
    out: &mut Vec<u8>,
    family: &Family,
    prefix: &[u8],
    labels: &[(&str, &str)],
    value: Value,
) {
    let (names, values): (Vec<&str>, Vec<&str>) = labels.iter().copied().unzip();
    write_sample_parts(out, family, prefix, &names, &values, value);
}

/// `write_sample` with label names and values in two parallel lists (no pairing needed).
pub fn write_sample_parts(
    out: &mut Vec<u8>,
    family: &Family,
    prefix: &[u8],
    names: &[&str],
    values: &[&str],
    value: Value,
) {
    out.extend_from_slice(family.name.as_bytes());
    if family.kind == MetricType::Counter {
        out.extend_from_slice(b"_total");
    }
    if !prefix.is_empty() || !names.is_empty() {
        out.push(b'{');
        out.extend_from_slice(prefix);
        let mut first = prefix.is_empty();
        for (name, v) in names.iter().zip(values) {
            write_label(out, name, v, first);
            first = false;
        }
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

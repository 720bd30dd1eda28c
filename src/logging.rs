//! Log set-up: text or JSON lines on stderr, filtered by `--log-level`. When telemetry may be
//! turned on, the same lines also go (as plain text) to a size-capped file in the state dir,
//! from which the telemetry log upload takes the sidecar's own operational lines.
//!
//! Values from outside (a rejected field, a configuration value, a file name) reach an answer
//! or a log line through `echo` or `bounded` only: quoted up to a bound, their control
//! characters escaped, so that a value can neither flood a log nor forge a line of it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::persistence::files;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogFormat;

/// Past this size the file is renamed to `<path>.1` (replacing the previous one) and a new
/// one is started: two files at most, whatever the uptime.
pub const OWN_LOG_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// An append-only file that rotates itself at `max` bytes.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
    max: u64,
}

impl RotatingFile {
    /// Opens (creating it 0600, and its directory 0700) the file at `path`, never through a
    /// link: it lives in the state dir, which is the sidecar's own.
    pub fn open(path: &Path, max: u64) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            files::private_dir(dir)?;
        }
        let (file, _) = files::open_append(path, false)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            file,
            written,
            max,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        let rotated = PathBuf::from(format!("{}.1", self.path.display()));
        fs::rename(&self.path, rotated)?;
        (self.file, _) = files::open_append(&self.path, false)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// How much of a value from outside an answer or a log line quotes: enough to recognise it,
/// never enough to flood either.
pub const MAX_ECHO_BYTES: usize = 256;
/// How long a message quoting such values (a parser's error) may be in all.
pub const MAX_MESSAGE_BYTES: usize = 4 * MAX_ECHO_BYTES;
const CUT: &str = "...";

/// Control characters (a newline above all) as escapes: `\n`, `\r`, `\t`, `\u{1b}`.
fn push_escaped(out: &mut String, c: char) {
    if c.is_control() {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

/// A value from outside, for an answer or a log line: its first `MAX_ECHO_BYTES` bytes (cut
/// on a character boundary, then `...`), control characters escaped.
pub fn echo(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_ECHO_BYTES + 8));
    for (i, c) in value.char_indices() {
        if i + c.len_utf8() > MAX_ECHO_BYTES {
            out.push_str(CUT);
            break;
        }
        push_escaped(&mut out, c);
    }
    out
}

/// A message that quotes values from outside (a parser's error: `unknown status "..."`,
/// ``unknown field `...` ``): each quoted run (between `"` or backticks) is cut after
/// `MAX_ECHO_BYTES` bytes, the whole after `MAX_MESSAGE_BYTES`, and control characters are
/// escaped. What the message says around the values stays whole.
pub fn bounded(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_BYTES + 8));
    // The quote that opened the run we are in, and how many of its bytes were kept.
    let mut quote: Option<char> = None;
    let mut run = 0usize;
    let mut escaped = false;
    for c in message.chars() {
        if out.len() + c.len_utf8() > MAX_MESSAGE_BYTES {
            out.push_str(CUT);
            break;
        }
        match quote {
            Some(q) if c == q && !escaped => {
                quote = None;
                out.push(c);
            }
            Some(_) => {
                escaped = c == '\\' && !escaped;
                run += c.len_utf8();
                if run <= MAX_ECHO_BYTES {
                    push_escaped(&mut out, c);
                } else if run - c.len_utf8() <= MAX_ECHO_BYTES {
                    out.push_str(CUT);
                }
            }
            None => {
                if c == '"' || c == '`' {
                    quote = Some(c);
                    run = 0;
                    escaped = false;
                }
                push_escaped(&mut out, c);
            }
        }
    }
    out
}

pub fn init(format: LogFormat, filter: &str, own_log: Option<&Path>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stderr = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(io::stderr)
            .boxed(),
        // Colours only for a person at a terminal: `kubectl logs` and log shippers get plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(io::stderr)
            .boxed(),
    };
    let file = own_log.and_then(|path| match RotatingFile::open(path, OWN_LOG_MAX_BYTES) {
        Ok(f) => Some(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(Mutex::new(f))
                .boxed(),
        ),
        Err(e) => {
            eprintln!(
                "pxbackup-sidecar: cannot open {} for telemetry logs: {e}",
                path.display()
            );
            None
        }
    });
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let mut f = RotatingFile::open(&p, 10).unwrap();
        f.write_all(b"123456\n").unwrap();
        f.write_all(b"abcdef\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "abcdef\n");
        assert_eq!(
            fs::read_to_string(dir.path().join("x.log.1")).unwrap(),
            "123456\n"
        );
    }

    /// The own-log copy is 0600 and never written through a planted link.
    #[test]
    fn the_own_log_is_private_and_never_follows_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("telemetry").join("sidecar.log");
        let mut f = RotatingFile::open(&p, 10).unwrap();
        f.write_all(b"123456\n").unwrap();
        f.write_all(b"abcdef\n").unwrap();
        for file in [
            p.clone(),
            dir.path().join("telemetry").join("sidecar.log.1"),
        ] {
            let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        let mode = fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);

        let victim = dir.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let planted = dir.path().join("planted.log");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        if let Ok(mut f) = RotatingFile::open(&planted, 1 << 20) {
            let _ = f.write_all(b"appended\n");
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn values_are_echoed_bounded_and_on_one_line() {
        assert_eq!(echo("soon"), "soon");
        assert_eq!(echo("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        let long = echo(&"é".repeat(1000));
        assert!(
            long.len() <= MAX_ECHO_BYTES + 3 && long.ends_with("..."),
            "{long}"
        );
        // Quoted runs are cut, the words around them stay.
        let msg = format!(
            "line 1: status: unknown backup status \"{}\"; expected one of: Success Failed",
            "A".repeat(5 << 20)
        );
        let out = bounded(&msg);
        assert!(out.len() < MAX_MESSAGE_BYTES, "{}", out.len());
        assert!(
            out.contains("AAAA...\"; expected one of: Success Failed"),
            "{out}"
        );
        let msg = "unknown field `x\nERROR forged`, expected one of `type`, `op`";
        assert_eq!(
            bounded(msg),
            "unknown field `x\\nERROR forged`, expected one of `type`, `op`"
        );
        // An escaped quote does not end a Debug-quoted run.
        let msg = format!("bad {:?} end", format!("q\"{}", "B".repeat(400)));
        let out = bounded(&msg);
        assert!(out.ends_with("...\" end"), "{out}");
        assert!(bounded(&"x".repeat(10_000)).len() <= MAX_MESSAGE_BYTES + 3);
    }
}

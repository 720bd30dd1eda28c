//! Log set-up: text or JSON lines on stderr, filtered by `--log-level`. When telemetry may be
//! turned on, the same lines also go (as plain text) to a size-capped file in the state dir,
//! from which the telemetry log upload takes the sidecar's own operational lines.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    pub fn open(path: &Path, max: u64) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
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
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
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
}

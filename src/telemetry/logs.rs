//! Collects log lines not sent before, from files and directories, with a cursor per file
//! (path, inode, offset) persisted in the state dir so that a restart neither resends nor
//! skips lines. Only complete lines are taken; a rotated file (`<path>.1` with the cursor's
//! inode) is finished before its successor is read.
//!
//! Every line is redacted whole before the size budget is applied to what will be sent: a
//! cut never splits a secret. Reading runs on the blocking pool (the caller's business).
//!
//! Only regular files are read, never through a link: whoever can write a log directory
//! would otherwise choose any file the sidecar can read (`zz -> /etc/shadow`). A link, in a
//! directory or as a named path, is skipped, counted, and logged once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::persistence::files;
use crate::telemetry::redact::Redactor;

/// A line longer than this (or than the budget, if larger) is never sent: it is replaced by a
/// marker and skipped to its end, since reading it whole to redact it is not worth the memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// An over-long line is skipped in reads of this size, holes of a sparse file jumped over:
/// a 2 GB line without a newline is skipped in the collection that finds it.
const SKIP_CHUNK: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub inode: u64,
    pub offset: u64,
    /// Lines since a private key block opened and did not close yet (0: none); carried so a
    /// block cut by a bundle boundary is still removed in the next bundle.
    #[serde(default)]
    pub key_lines: u32,
    /// The rest of an over-long line is still to be skipped.
    #[serde(default)]
    pub skipping: bool,
}

/// New lines of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileLines {
    pub path: String,
    pub lines: Vec<String>,
}

/// What one collection found (redacted), and the cursors to store once it is safely spooled.
#[derive(Debug, Default)]
pub struct Collected {
    pub files: Vec<FileLines>,
    /// The size cap stopped the collection: more lines wait for the next upload.
    pub truncated: bool,
    cursors: BTreeMap<PathBuf, Cursor>,
}

impl Collected {
    pub fn is_empty(&self) -> bool {
        self.files.iter().all(|f| f.lines.is_empty())
    }
}

#[derive(Debug)]
pub struct LogCollector {
    paths: Vec<PathBuf>,
    cursor_file: PathBuf,
    cursors: BTreeMap<PathBuf, Cursor>,
    /// Links met among the log files (each time one is met), and those already logged.
    links_skipped: u64,
    links_logged: BTreeSet<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct CursorRecord {
    path: PathBuf,
    #[serde(flatten)]
    cursor: Cursor,
}

/// The redacted lines going into one bundle, and what is left of its budget.
struct Budget<'a> {
    left: usize,
    /// Nothing taken yet in this bundle: a line too long for the whole budget is then cut
    /// (after redaction) rather than blocking its file for ever.
    first: bool,
    truncated: bool,
    redactor: &'a Redactor,
}

impl LogCollector {
    /// `paths` are files or directories (every regular file directly in it).
    pub fn open(paths: Vec<PathBuf>, cursor_file: PathBuf) -> LogCollector {
        let cursors = files::read(&cursor_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<CursorRecord>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.path, r.cursor))
            .collect();
        LogCollector {
            paths,
            cursor_file,
            cursors,
            links_skipped: 0,
            links_logged: BTreeSet::new(),
        }
    }

    /// Links met among the log files since start, each time one was met.
    pub fn links_skipped(&self) -> u64 {
        self.links_skipped
    }

    fn skip_link(&mut self, path: &Path) {
        self.links_skipped += 1;
        if self.links_logged.insert(path.to_owned()) {
            tracing::warn!(
                path = %crate::logging::echo(&path.display().to_string()),
                skipped = self.links_skipped,
                "a log path is a symbolic link; links are never followed, it is not uploaded (name the file it points to instead)"
            );
        }
    }

    /// The regular files to read: each named file, and every regular file directly in each
    /// named directory. Links are skipped (see the module's note); other kinds (directories,
    /// FIFOs, sockets) are not logs.
    fn files(&mut self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut links = Vec::new();
        for p in &self.paths {
            match fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => {
                    let mut in_dir: Vec<PathBuf> = Vec::new();
                    for entry in fs::read_dir(p).into_iter().flatten().flatten() {
                        // The entry's own type: a link is a link, wherever it points.
                        match entry.file_type() {
                            Ok(t) if t.is_file() => in_dir.push(entry.path()),
                            Ok(t) if t.is_symlink() => links.push(entry.path()),
                            _ => {}
                        }
                    }
                    in_dir.sort();
                    // `x.log.1` next to `x.log` is read through the rotation of `x.log`;
                    // reading it on its own as well would send its lines twice.
                    let rotated_twin = |f: &PathBuf| {
                        let name = f.to_string_lossy();
                        name.strip_suffix(".1")
                            .is_some_and(|base| in_dir.iter().any(|o| o.to_string_lossy() == base))
                    };
                    let keep: Vec<PathBuf> = in_dir
                        .iter()
                        .filter(|f| !rotated_twin(f))
                        .cloned()
                        .collect();
                    out.extend(keep);
                }
                Ok(m) if m.file_type().is_symlink() => links.push(p.clone()),
                Ok(m) if m.is_file() => out.push(p.clone()),
                Ok(_) => {}
                Err(_) => {} // not there yet: it may appear later
            }
        }
        links.sort();
        for link in links {
            self.skip_link(&link);
        }
        out
    }

    /// Reads new complete lines and redacts them; at most `max_bytes` of redacted lines in
    /// all. Cursors only move on `commit`.
    pub fn collect(&mut self, max_bytes: usize, redactor: &Redactor) -> Collected {
        let mut out = Collected::default();
        let mut budget = Budget {
            left: max_bytes,
            first: true,
            truncated: false,
            redactor,
        };
        for path in self.files() {
            if budget.left == 0 {
                budget.truncated = true;
                break;
            }
            // Opened once, never through a link (one may have been swapped in since the
            // listing); what is read is what was checked.
            let file = match files::open_regular(&path) {
                Ok(f) => f,
                Err(e) => {
                    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                        self.skip_link(&path);
                    } else {
                        tracing::debug!(path = %path.display(), error = %e, "log file not read");
                    }
                    continue;
                }
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            let mut cursor = self.cursors.get(&path).copied().unwrap_or_default();
            let mut lines = Vec::new();
            if cursor.inode != meta.ino() {
                // Rotated: finish the previous file when it is still there as <path>.1.
                let rotated = PathBuf::from(format!("{}.1", path.display()));
                if cursor.inode != 0 {
                    let previous =
                        files::open_regular(&rotated).and_then(|f| f.metadata().map(|m| (f, m)));
                    if let Ok((f1, m1)) = previous {
                        if m1.ino() == cursor.inode
                            && !take_lines(&f1, &mut cursor, m1.len(), &mut budget, &mut lines)
                        {
                            // The budget ran out inside the rotated file: its successor waits.
                            out.cursors.insert(path.clone(), cursor);
                            push_lines(&mut out, &path, lines);
                            continue;
                        }
                    }
                }
                // A key block cut by the rotation is still open in the new file.
                cursor = Cursor {
                    inode: meta.ino(),
                    offset: 0,
                    key_lines: cursor.key_lines,
                    skipping: false,
                };
            } else if meta.len() < cursor.offset {
                // Truncated in place (copytruncate): a new file in all but name.
                cursor = Cursor {
                    inode: meta.ino(),
                    ..Cursor::default()
                };
            }
            take_lines(&file, &mut cursor, meta.len(), &mut budget, &mut lines);
            out.cursors.insert(path.clone(), cursor);
            push_lines(&mut out, &path, lines);
        }
        out.truncated = budget.truncated;
        out
    }

    /// Stores the cursors of a collection whose bundle is safely in the spool.
    pub fn commit(&mut self, collected: &Collected) -> io::Result<()> {
        for (p, c) in &collected.cursors {
            self.cursors.insert(p.clone(), *c);
        }
        let records: Vec<CursorRecord> = self
            .cursors
            .iter()
            .map(|(p, c)| CursorRecord {
                path: p.clone(),
                cursor: *c,
            })
            .collect();
        let json = serde_json::to_vec(&records).map_err(io::Error::other)?;
        let (Some(dir), Some(name)) = (
            self.cursor_file.parent(),
            self.cursor_file.file_name().and_then(|n| n.to_str()),
        ) else {
            return Err(io::Error::other(format!(
                "{} is not a file path",
                self.cursor_file.display()
            )));
        };
        files::write_atomically(dir, name, &json)
    }
}

fn push_lines(out: &mut Collected, path: &Path, lines: Vec<String>) {
    if !lines.is_empty() {
        out.files.push(FileLines {
            path: path.display().to_string(),
            lines,
        });
    }
}

/// Takes the complete lines of `file` after the cursor (the file is `len` bytes long), each
/// redacted, while they fit the budget; moves the cursor past what was taken. True when the
/// file was read to its end (a partial last line, still being written, aside).
fn take_lines(
    file: &File,
    cursor: &mut Cursor,
    len: u64,
    budget: &mut Budget<'_>,
    lines: &mut Vec<String>,
) -> bool {
    let line_cap = MAX_LINE_BYTES.max(budget.left);
    loop {
        if cursor.skipping {
            match find_newline(file, cursor.offset, len) {
                Ok(Some(at)) => {
                    cursor.offset = at + 1;
                    cursor.skipping = false;
                }
                // The line goes on to the end of what is written: still skipping.
                Ok(None) => {
                    cursor.offset = len.max(cursor.offset);
                    return true;
                }
                Err(_) => return true, // shrunk meanwhile: the next collection sees to it
            }
        }
        let available = len.saturating_sub(cursor.offset);
        if available == 0 {
            return true;
        }
        if budget.left == 0 {
            budget.truncated = true;
            return false;
        }
        // Enough for the budget and one line as long as the cap, whatever precedes it.
        let want = usize::try_from(available)
            .unwrap_or(usize::MAX)
            .min(line_cap.saturating_add(budget.left));
        let more_in_file = (want as u64) < available;
        let mut buf = vec![0u8; want];
        if file.read_exact_at(&mut buf, cursor.offset).is_err() {
            return true; // shrunk meanwhile: the next collection sees what became of it
        }
        let mut rest = &buf[..];
        while budget.left > 0 {
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                if rest.len() >= line_cap {
                    // No end in sight: never sent, skipped up to its newline at once.
                    let marker = format!("[line longer than {line_cap} bytes omitted]");
                    if marker.len() > budget.left && !budget.first {
                        budget.truncated = true;
                        return false;
                    }
                    cursor.offset += rest.len() as u64;
                    cursor.skipping = true;
                    budget.left = budget.left.saturating_sub(marker.len() + 1);
                    budget.first = false;
                    lines.push(marker);
                    break;
                }
                // Otherwise a partial last line, still being written (it waits), or one whose
                // end lies beyond what was read.
                if more_in_file {
                    budget.truncated = true;
                    return false;
                }
                return true;
            };
            let raw = String::from_utf8_lossy(&rest[..end]);
            let (redacted, key_lines) = budget.redactor.redact_line(&raw, cursor.key_lines);
            let cost = redacted.as_ref().map_or(0, |l| l.len() + 1);
            let mut line = redacted;
            if cost > budget.left {
                if !budget.first {
                    budget.truncated = true;
                    return false;
                }
                // One line longer than the whole budget: cut after redaction, the rest dropped.
                if let Some(l) = &mut line {
                    let mut cut = budget.left.saturating_sub(1);
                    while !l.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    l.truncate(cut);
                }
                budget.truncated = true;
            }
            cursor.offset += end as u64 + 1;
            cursor.key_lines = key_lines;
            rest = &rest[end + 1..];
            if let Some(l) = line {
                budget.left = budget.left.saturating_sub(l.len() + 1);
                budget.first = false;
                lines.push(l);
            }
        }
        if cursor.skipping {
            continue;
        }
        // The budget is spent: whatever is left waits for the next bundle.
        if !rest.is_empty() || more_in_file {
            budget.truncated = true;
            return false;
        }
        return true;
    }
}

/// The offset of the first newline of `file` at or after `from` and before `len`, read
/// `SKIP_CHUNK` bytes at a time; holes of a sparse file (which hold no newline) are jumped
/// over where the file system can say where data is (`SEEK_DATA`).
fn find_newline(file: &File, mut from: u64, len: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; SKIP_CHUNK];
    while from < len {
        match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(from)) {
            Ok(data) => from = from.max(data),
            // No data after `from`: holes to the end.
            Err(rustix::io::Errno::NXIO) => return Ok(None),
            Err(_) => {} // not supported here: read through
        }
        if from >= len {
            break;
        }
        let n = usize::try_from(len - from).map_or(SKIP_CHUNK, |n| n.min(SKIP_CHUNK));
        file.read_exact_at(&mut buf[..n], from)?;
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            return Ok(Some(from + i as u64));
        }
        from += n as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn red() -> Redactor {
        Redactor::new().unwrap()
    }

    fn append(p: &Path, s: &str) {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    #[test]
    fn only_new_complete_lines_and_the_cursor_survives() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let cur = dir.path().join("cursors.json");
        append(&log, "one\ntwo\npart");
        let mut c = LogCollector::open(vec![log.clone()], cur.clone());
        let got = c.collect(1 << 20, &red());
        assert_eq!(got.files[0].lines, vec!["one", "two"]);
        c.commit(&got).unwrap();
        append(&log, "ial\nthree\n");
        let mut c = LogCollector::open(vec![log.clone()], cur.clone());
        let got = c.collect(1 << 20, &red());
        assert_eq!(got.files[0].lines, vec!["partial", "three"]);
        c.commit(&got).unwrap();
        assert!(c.collect(1 << 20, &red()).is_empty());
        // The cursors are the sidecar's alone, and no temp file is left beside them.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&cur).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn size_cap_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("b.log");
        let state = tempfile::tempdir().unwrap();
        let cur = state.path().join("cursors.json");
        append(&log, "aaaa\nbbbb\ncccc\n");
        let mut c = LogCollector::open(vec![dir.path().to_owned()], cur);
        let got = c.collect(10, &red());
        assert_eq!(got.files[0].lines, vec!["aaaa", "bbbb"]);
        assert!(got.truncated);
        c.commit(&got).unwrap();
        fs::rename(&log, dir.path().join("b.log.1")).unwrap();
        append(&log, "dddd\n");
        let got = c.collect(1 << 20, &red());
        // The successor first finishes the rotated remainder; b.log.1 is not read on its own,
        // and the cursor file in another directory is not a log.
        assert_eq!(got.files.len(), 1, "{:?}", got.files);
        assert_eq!(got.files[0].lines, vec!["cccc", "dddd"]);
        assert!(!got.truncated);
    }

    /// A line longer than the whole budget is redacted whole and then cut: the cut can never
    /// leave half a secret that no pattern recognises.
    #[test]
    fn redaction_comes_before_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        // The budget ends in the middle of the token.
        let line = format!("2026-11-23T01:00:00Z auth {jwt} accepted\n");
        append(&log, &line);
        append(&log, "next\n");
        let cur = dir.path().join("cursors.json");
        let mut c = LogCollector::open(vec![log.clone()], cur);
        let got = c.collect(40, &red());
        let sent = got.files[0].lines.join("\n");
        assert!(got.truncated);
        assert!(!sent.contains("eyJhbGci"), "{sent}");
        assert!(
            sent.starts_with("2026-11-23T01:00:00Z auth [REDACTED]"),
            "{sent}"
        );
        assert!(sent.len() < 40);
        c.commit(&got).unwrap();
        // The cut-off rest of that line is not sent later; the next line is.
        let got = c.collect(40, &red());
        assert_eq!(got.files[0].lines, vec!["next"]);
    }

    /// A private key block that is still being written when a bundle is made stays removed
    /// in the next bundle (through a restart too), its short last line included.
    #[test]
    fn a_key_block_across_two_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("k.log");
        append(
            &log,
            "loading key\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkgk3Zfg0YpAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        );
        let cur = dir.path().join("cursors.json");
        let mut c = LogCollector::open(vec![log.clone()], cur.clone());
        let got = c.collect(1000, &red());
        assert_eq!(
            got.files[0].lines,
            vec!["loading key", "[REDACTED PRIVATE KEY]"]
        );
        c.commit(&got).unwrap();
        append(&log, "q2w==\n-----END EC PRIVATE KEY-----\nkey loaded\n");
        let mut c = LogCollector::open(vec![log], cur);
        let got = c.collect(1000, &red());
        assert_eq!(got.files[0].lines, vec!["key loaded"]);
    }

    #[test]
    fn an_endless_line_is_omitted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.log");
        append(&log, &"A1b2C3d4".repeat(MAX_LINE_BYTES / 8 + 10));
        let cur = dir.path().join("cursors.json");
        let mut c = LogCollector::open(vec![log.clone()], cur);
        let got = c.collect(1000, &red());
        assert_eq!(got.files[0].lines.len(), 1);
        assert!(got.files[0].lines[0].contains("omitted"), "{:?}", got.files);
        c.commit(&got).unwrap();
        append(&log, "tail of it\nafter\n");
        let got = c.collect(1000, &red());
        assert_eq!(got.files[0].lines, vec!["after"]);
    }

    /// A link in a log directory, or a named log path that is a link, is never followed:
    /// whoever can write the directory would choose what is uploaded. The regular files are
    /// read as usual.
    #[test]
    fn links_among_the_log_files_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        let secret = dir.path().join("shadow");
        fs::write(&secret, "root:CANARYhash:19000:0:99999:7:::\n").unwrap();
        append(&logs.join("a.log"), "ordinary line\n");
        std::os::unix::fs::symlink(&secret, logs.join("zz-x")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("named.log")).unwrap();
        // A rotated twin that is a link: its "successor" is a real file.
        append(&logs.join("b.log"), "b line\n");
        let cur = dir.path().join("cursors.json");
        let mut c = LogCollector::open(vec![logs.clone(), dir.path().join("named.log")], cur);
        let got = c.collect(1 << 20, &red());
        let sent = format!("{:?}", got.files);
        assert!(!sent.contains("CANARYhash"), "{sent}");
        assert!(
            sent.contains("ordinary line") && sent.contains("b line"),
            "{sent}"
        );
        assert_eq!(c.links_skipped(), 2);
        // Met again at the next collection: counted again, still never read.
        let again = c.collect(1 << 20, &red());
        assert!(again.files.iter().all(|f| !f.path.ends_with("zz-x")));
        assert_eq!(c.links_skipped(), 4);
    }

    /// A line with no end in sight is skipped in the collection that finds it, however long:
    /// a sparse 2 GB log without a newline costs one collection, not 2 MiB per collection.
    #[test]
    fn an_endless_line_is_skipped_at_once_however_long() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sparse.log");
        fs::File::create(&log).unwrap().set_len(2 << 30).unwrap();
        append(&log, "\nafter\n");
        let cur = dir.path().join("cursors.json");
        let mut c = LogCollector::open(vec![log.clone()], cur);
        let started = std::time::Instant::now();
        let got = c.collect(1000, &red());
        let lines = got
            .files
            .first()
            .map(|f| f.lines.clone())
            .unwrap_or_default();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("omitted"), "{lines:?}");
        assert_eq!(lines[1], "after");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        c.commit(&got).unwrap();
        assert!(c.collect(1000, &red()).is_empty());
    }
}

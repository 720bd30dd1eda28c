//! Collects log lines not sent before, from files and directories, with a cursor per file
//! (path, inode, offset) persisted in the state dir so that a restart neither resends nor
//! skips lines. Only complete lines are taken; a rotated file (`<path>.1` with the cursor's
//! inode) is finished before its successor is read.
//!
//! Every line is redacted whole before the size budget is applied to what will be sent: a
//! cut never splits a secret. Reading runs on the blocking pool (the caller's business).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::telemetry::redact::Redactor;

/// A line longer than this (or than the budget, if larger) is never sent: it is replaced by a
/// marker and skipped to its end, since reading it whole to redact it is not worth the memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

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
        let cursors = fs::read(&cursor_file)
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
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in &self.paths {
            match fs::metadata(p) {
                Ok(m) if m.is_dir() => {
                    let mut in_dir: Vec<PathBuf> = fs::read_dir(p)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.path())
                        .filter(|f| f.is_file())
                        .collect();
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
                Ok(_) => out.push(p.clone()),
                Err(_) => {} // not there yet: it may appear later
            }
        }
        out
    }

    /// Reads new complete lines and redacts them; at most `max_bytes` of redacted lines in
    /// all. Cursors only move on `commit`.
    pub fn collect(&self, max_bytes: usize, redactor: &Redactor) -> Collected {
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
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let mut cursor = self.cursors.get(&path).copied().unwrap_or_default();
            let mut lines = Vec::new();
            if cursor.inode != meta.ino() {
                // Rotated: finish the previous file when it is still there as <path>.1.
                let rotated = PathBuf::from(format!("{}.1", path.display()));
                if cursor.inode != 0 {
                    if let Ok(m1) = fs::metadata(&rotated) {
                        if m1.ino() == cursor.inode
                            && !take_lines(&rotated, &mut cursor, m1.len(), &mut budget, &mut lines)
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
            take_lines(&path, &mut cursor, meta.len(), &mut budget, &mut lines);
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
        let tmp = self.cursor_file.with_extension("tmp");
        fs::write(&tmp, json)?;
        fs::rename(&tmp, &self.cursor_file)
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

/// Takes the complete lines of `path` after the cursor (the file is `len` bytes long), each
/// redacted, while they fit the budget; moves the cursor past what was taken. True when the
/// file was read to its end (a partial last line, still being written, aside).
fn take_lines(
    path: &Path,
    cursor: &mut Cursor,
    len: u64,
    budget: &mut Budget<'_>,
    lines: &mut Vec<String>,
) -> bool {
    let line_cap = MAX_LINE_BYTES.max(budget.left);
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
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(cursor.offset))?;
        f.read_exact(&mut buf)
    });
    if read.is_err() {
        return true; // gone or shrunk meanwhile: the next collection sees what became of it
    }
    let mut rest = &buf[..];
    if cursor.skipping {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                cursor.offset += i as u64 + 1;
                cursor.skipping = false;
                rest = &rest[i + 1..];
            }
            None => {
                cursor.offset += rest.len() as u64;
                return !more_in_file;
            }
        }
    }
    while budget.left > 0 {
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            if rest.len() >= line_cap {
                // No end in sight: never sent, skipped up to its newline.
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
    // The budget is spent: whatever is left waits for the next bundle.
    if !rest.is_empty() || more_in_file {
        budget.truncated = true;
        return false;
    }
    true
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
        let c = LogCollector::open(vec![log], cur);
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
}

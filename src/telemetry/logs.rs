//! Collects log lines not sent before, from files and directories, with a cursor per file
//! (path, inode, offset) persisted in the state dir so that a restart neither resends nor
//! skips lines. Only complete lines are taken; a rotated file (`<path>.1` with the cursor's
//! inode) is finished before its successor is read.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub inode: u64,
    pub offset: u64,
}

/// New lines of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileLines {
    pub path: String,
    pub lines: Vec<String>,
}

/// What one collection found, and the cursors to store once it is safely spooled.
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
    inode: u64,
    offset: u64,
}

impl LogCollector {
    /// `paths` are files or directories (every regular file directly in it).
    pub fn open(paths: Vec<PathBuf>, cursor_file: PathBuf) -> LogCollector {
        let cursors = fs::read(&cursor_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<CursorRecord>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                (
                    r.path,
                    Cursor {
                        inode: r.inode,
                        offset: r.offset,
                    },
                )
            })
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

    /// Reads new complete lines, at most `max_bytes` of them in all, redacting nothing: the
    /// caller redacts. Cursors only move on `commit`.
    pub fn collect(&self, max_bytes: usize) -> Collected {
        let mut out = Collected::default();
        let mut budget = max_bytes;
        for path in self.files() {
            if budget == 0 {
                out.truncated = true;
                break;
            }
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let mut cursor = self.cursors.get(&path).copied().unwrap_or_default();
            let mut text = String::new();
            if cursor.inode != meta.ino() {
                // Rotated: finish the previous file when it is still there as <path>.1.
                let rotated = PathBuf::from(format!("{}.1", path.display()));
                if cursor.inode != 0 {
                    if let Ok(m1) = fs::metadata(&rotated) {
                        if m1.ino() == cursor.inode {
                            let (chunk, _) =
                                read_lines(&rotated, cursor.offset, m1.len(), budget, true);
                            budget -= chunk.len().min(budget);
                            text.push_str(&chunk);
                        }
                    }
                }
                cursor = Cursor {
                    inode: meta.ino(),
                    offset: 0,
                };
            } else if meta.len() < cursor.offset {
                cursor.offset = 0; // truncated in place (copytruncate)
            }
            let (chunk, next) = read_lines(
                &path,
                cursor.offset,
                meta.len(),
                budget,
                budget == max_bytes,
            );
            // Capped when what was left in the file did not fit in the budget (a partial
            // last line that merely waits for its newline is not a cap).
            if meta.len() - cursor.offset > budget as u64 {
                out.truncated = true;
            }
            budget -= chunk.len().min(budget);
            cursor.offset = next;
            text.push_str(&chunk);
            out.cursors.insert(path.clone(), cursor);
            if !text.is_empty() {
                out.files.push(FileLines {
                    path: path.display().to_string(),
                    lines: text.lines().map(str::to_owned).collect(),
                });
            }
        }
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
                inode: c.inode,
                offset: c.offset,
            })
            .collect();
        let json = serde_json::to_vec(&records).map_err(io::Error::other)?;
        let tmp = self.cursor_file.with_extension("tmp");
        fs::write(&tmp, json)?;
        fs::rename(&tmp, &self.cursor_file)
    }
}

/// Complete lines from `offset`, at most `budget` bytes. A single line longer than the whole
/// budget (`may_cut`) is cut rather than blocking the file forever.
fn read_lines(path: &Path, offset: u64, len: u64, budget: usize, may_cut: bool) -> (String, u64) {
    let want = (len.saturating_sub(offset)).min(budget as u64) as usize;
    if want == 0 {
        return (String::new(), offset);
    }
    let mut buf = vec![0u8; want];
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut buf)
    });
    if read.is_err() {
        return (String::new(), offset);
    }
    let end = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if may_cut && want == budget => want,
        None => return (String::new(), offset),
    };
    buf.truncate(end);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    (text, offset + end as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        let got = c.collect(1 << 20);
        assert_eq!(got.files[0].lines, vec!["one", "two"]);
        c.commit(&got).unwrap();
        append(&log, "ial\nthree\n");
        let mut c = LogCollector::open(vec![log.clone()], cur.clone());
        let got = c.collect(1 << 20);
        assert_eq!(got.files[0].lines, vec!["partial", "three"]);
        c.commit(&got).unwrap();
        assert!(c.collect(1 << 20).is_empty());
    }

    #[test]
    fn size_cap_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("b.log");
        let state = tempfile::tempdir().unwrap();
        let cur = state.path().join("cursors.json");
        append(&log, "aaaa\nbbbb\ncccc\n");
        let mut c = LogCollector::open(vec![dir.path().to_owned()], cur);
        let got = c.collect(10);
        assert_eq!(got.files[0].lines, vec!["aaaa", "bbbb"]);
        assert!(got.truncated);
        c.commit(&got).unwrap();
        fs::rename(&log, dir.path().join("b.log.1")).unwrap();
        append(&log, "dddd\n");
        let got = c.collect(1 << 20);
        // The successor first finishes the rotated remainder; b.log.1 is not read on its own,
        // and the cursor file in another directory is not a log.
        assert_eq!(got.files.len(), 1, "{:?}", got.files);
        assert_eq!(got.files[0].lines, vec!["cccc", "dddd"]);
        assert!(!got.truncated);
    }
}

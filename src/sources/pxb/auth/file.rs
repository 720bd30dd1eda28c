//! A token the operator keeps up to date in a file (`--pxb-token-file`, a mounted Secret), and
//! what tells that a mounted file changed (used for the OIDC credential files too).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{BearerToken, SetupError};

/// What identifies a version of a file: a kubelet update swaps the `..data` symlink, which
/// changes the inode behind the path; an in-place edit changes the size or mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

impl FileStamp {
    pub(super) fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The token file and the last token read from it.
#[derive(Debug)]
pub(super) struct TokenFile {
    pub(super) path: PathBuf,
    stamp: Option<FileStamp>,
    pub(super) token: Option<BearerToken>,
}

impl TokenFile {
    pub(super) fn open(path: &Path) -> Result<TokenFile, SetupError> {
        let mut f = TokenFile {
            path: path.to_owned(),
            stamp: None,
            token: None,
        };
        f.read().map_err(|reason| SetupError::TokenFile {
            path: path.display().to_string(),
            reason,
        })?;
        Ok(f)
    }

    fn read(&mut self) -> Result<(), String> {
        let stamp = FileStamp::of(&self.path).map_err(|e| e.to_string())?;
        let text = secrecy::SecretString::from(
            std::fs::read_to_string(&self.path).map_err(|e| e.to_string())?,
        );
        let token = BearerToken::new(secrecy::ExposeSecret::expose_secret(&text).trim());
        let Some(token) = token else {
            return Err("the file is empty".into());
        };
        self.stamp = Some(stamp);
        self.token = Some(token);
        Ok(())
    }

    /// Re-reads the file when it changed, or always with `force`. A file that cannot be read
    /// (mid-rotation, deleted) leaves the last good token in use.
    pub(super) fn refresh(&mut self, force: bool) {
        let changed = match FileStamp::of(&self.path) {
            Ok(stamp) => Some(stamp) != self.stamp,
            Err(_) => true,
        };
        if !(changed || force) {
            return;
        }
        match self.read() {
            Ok(()) => tracing::debug!(file = %self.path.display(), "PX-Backup token (re-)read"),
            Err(reason) => tracing::warn!(
                file = %self.path.display(), %reason,
                "cannot re-read the PX-Backup token file; the last token read stays in use"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: &TokenFile) -> Option<String> {
        f.token.as_ref().map(|t| t.expose().to_owned())
    }

    #[test]
    fn the_token_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t-token\n").unwrap();
        let f = TokenFile::open(&path).unwrap();
        assert!(!format!("{f:?}").contains("s3cr3t"), "{f:?}");
        assert_eq!(text(&f).as_deref(), Some("s3cr3t-token"));
    }

    #[test]
    fn a_replaced_file_is_read_again_and_a_bad_one_keeps_the_last_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one").unwrap();
        let mut f = TokenFile::open(&path).unwrap();
        // What kubelet does: write elsewhere, then rename over (a new inode).
        let next = dir.path().join("token.new");
        std::fs::write(&next, "two").unwrap();
        std::fs::rename(&next, &path).unwrap();
        f.refresh(false);
        assert_eq!(text(&f).as_deref(), Some("two"));
        std::fs::write(&path, "").unwrap();
        f.refresh(false);
        assert_eq!(text(&f).as_deref(), Some("two"));
        std::fs::remove_file(&path).unwrap();
        f.refresh(true);
        assert_eq!(text(&f).as_deref(), Some("two"));
    }

    #[test]
    fn an_empty_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " \n").unwrap();
        let e = TokenFile::open(&path).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(e.to_string().contains("--pxb-token-file"), "{e}");
    }
}

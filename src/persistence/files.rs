//! Files and directories of the state dir, which is the sidecar's own: nothing in it is opened
//! through a link, a file meant to be new is created new (an existing one is never truncated
//! in its place), directories are 0700 and files 0600, owned by the sidecar's user; and one
//! process at a time holds the dir (`StateDirLock`).
//!
//! The state dir itself is named by the operator and may be reached through links; it must be
//! owned by the sidecar's user, or by root: kubelet makes a volume's mount point, owned by
//! root, and a pod's volume is reachable from that pod's containers only. Whatever it holds,
//! every file in it is opened without following a link and must be owned by the sidecar's
//! user, so a file or link that someone else planted is refused, never used.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories the sidecar makes in its state dir.
pub const DIR_MODE: u32 = 0o700;
/// Files the sidecar makes in its state dir.
pub const FILE_MODE: u32 = 0o600;
/// The lock file in the state dir (see `StateDirLock`).
pub const LOCK_FILE: &str = ".lock";

fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `O_NOFOLLOW`: a link as the last component fails the open (`ELOOP`). `O_NONBLOCK`: opening
/// a FIFO someone put in place of a file does not wait for a writer (it is refused after the
/// open, as not a regular file); for a regular file it changes nothing.
fn no_follow() -> i32 {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    flags.bits() as i32
}

fn error(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

/// An open that failed on a link says so, instead of "too many levels of symbolic links".
fn named(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        error(
            path,
            "is a symbolic link, which the sidecar does not follow",
        )
    } else {
        e
    }
}

fn owned_by_us(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    if meta.uid() == own_uid() {
        Ok(())
    } else {
        Err(error(
            path,
            format!(
                "is owned by uid {}, not by the sidecar's user (uid {})",
                meta.uid(),
                own_uid()
            ),
        ))
    }
}

/// Takes group and other bits off what the sidecar owns (an earlier release made 0755/0644).
fn tighten(path: &Path, meta: &std::fs::Metadata, mode: u32) -> io::Result<()> {
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates the state dir 0700 (with any missing parents), or checks the one there: a
/// directory owned by the sidecar's user, or by root (a volume's mount point). The mode of
/// one that was there is left as it is: it may be a directory others use too (`/tmp` named
/// by mistake), which the sidecar must not close to them; what it makes inside is its own.
pub fn state_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(error(dir, "is not a directory"));
    }
    match meta.uid() {
        0 => Ok(()),
        _ => owned_by_us(dir, &meta),
    }
}

/// A directory of the sidecar's own (`telemetry`, `telemetry/spool`): made 0700 with any
/// missing parents, or the one there checked (a directory, not a link, owned by the sidecar's
/// user) and made 0700.
pub fn private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(error(
            path,
            "is a symbolic link, which the sidecar does not follow",
        ));
    }
    if !meta.is_dir() {
        return Err(error(path, "is not a directory"));
    }
    owned_by_us(path, &meta)?;
    tighten(path, &meta, DIR_MODE)
}

/// Checks what was opened: a regular file owned by the sidecar's user; made 0600.
fn own_file(path: &Path, file: &File) -> io::Result<()> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(error(path, "is not a regular file"));
    }
    owned_by_us(path, &meta)?;
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// Opens a file of the state dir as `options` say (read, write, append), never through a
/// link, creating it 0600 when `create`; it must be a regular file owned by the sidecar's user.
fn open_own(path: &Path, options: &mut OpenOptions, create: bool) -> io::Result<File> {
    let file = options
        .create(create)
        .mode(FILE_MODE)
        .custom_flags(no_follow())
        .open(path)
        .map_err(|e| named(path, e))?;
    own_file(path, &file)?;
    Ok(file)
}

/// Opens a file for reading that may be anyone's (a log file the sidecar uploads), never
/// through a link: it must be a regular file itself (a FIFO or device is refused at once).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
        .map_err(|e| named(path, e))?;
    if !file.metadata()?.is_file() {
        return Err(error(path, "is not a regular file"));
    }
    Ok(file)
}

/// Opens an existing file of the state dir for reading (see `open_own`).
pub fn open_read(path: &Path) -> io::Result<File> {
    open_own(path, OpenOptions::new().read(true), false)
}

/// Reads a whole file of the state dir (see `open_own`).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_read(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens a file of the state dir for appending (and reading, with `read`), creating it 0600
/// if it is not there. True when it was created.
pub fn open_append(path: &Path, read: bool) -> io::Result<(File, bool)> {
    match create_new(path, read) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let file = open_own(path, OpenOptions::new().read(read).append(true), false)?;
            Ok((file, false))
        }
        Err(e) => Err(e),
    }
}

/// Creates a new file 0600 for writing (and reading, with `read`): `O_CREAT | O_EXCL`, which
/// fails on anything already there, a link included, instead of following or truncating it.
pub fn create_new(path: &Path, read: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(read)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates a new file 0600 where a stale one of the same name may be left from a crash: the
/// stale one (or a link in its place) is removed, never written through.
pub fn replace_new(path: &Path, read: bool) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    create_new(path, read)
}

/// Replaces `dir/name` whole with `bytes`: a temp file beside it (0600, under a fresh random
/// name `.<name>.XXXXXX.tmp`, created new), written, fsynced and renamed over it (a rename
/// replaces a link planted there, it does not write through it). A crash leaves the old file
/// or the new one.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_atomically_with_mode(dir, name, bytes, FILE_MODE)
}

/// `write_atomically` with another mode (before the umask): for a file meant to be read by
/// others, such as a bundle for an air-gapped site's collector.
pub fn write_atomically_with_mode(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// The state dir held by this process: an exclusive `flock` on `<dir>/.lock`, for as long as
/// this lives. The kernel lets go of it when the process ends, however it ends: a `kill -9`
/// leaves no stale lock behind. The file says who holds it (`pid N on HOST`), for the error
/// another process gets.
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
}

/// Why the state dir could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: what its lock file says about it.
    Held {
        holder: String,
    },
    Io(PathBuf, io::Error),
}

/// What the lock file may say, at most (it is shown in an error).
const MAX_HOLDER: usize = 200;

impl StateDirLock {
    pub fn acquire(dir: &Path) -> Result<StateDirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |e| LockError::Io(path.clone(), e);
        let mut file = match create_new(&path, true) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                open_own(&path, OpenOptions::new().read(true).write(true), false).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        };
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut said = Vec::new();
                let _ = (&mut file).take(MAX_HOLDER as u64).read_to_end(&mut said);
                let said: String = String::from_utf8_lossy(&said)
                    .trim()
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                let holder = if said.is_empty() {
                    "a process that has not written its pid yet".to_owned()
                } else {
                    said
                };
                return Err(LockError::Held { holder });
            }
            Err(e) => return Err(io_err(e.into())),
        }
        let host = rustix::system::uname();
        let holder = format!(
            "pid {} on {}\n",
            std::process::id(),
            host.nodename().to_string_lossy()
        );
        file.set_len(0)
            .and_then(|()| std::os::unix::fs::FileExt::write_all_at(&file, holder.as_bytes(), 0))
            .map_err(io_err)?;
        Ok(StateDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_files_never_go_through_a_link_or_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create_new(&link, false).is_err());
        let err = open_append(&link, true).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(read(&link).is_err());
        // A stale file (or link) of a fixed name is removed, not written through.
        let mut f = replace_new(&link, false).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(mode(&link), FILE_MODE);
        // Renamed over a link: the link goes, its target stays.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomically(dir.path(), "link", b"replaced").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&link).unwrap(), b"replaced");
        assert_eq!(mode(&link), FILE_MODE);
    }

    /// A state dir that was there keeps its mode (a shared directory named by mistake is not
    /// closed to others); one that was not is made 0700.
    #[test]
    fn the_state_dir_is_made_0700_and_an_existing_one_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
        state_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o1777);
        let new = dir.path().join("a").join("state");
        state_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(state_dir(&dir.path().join("file")).is_err());
    }

    #[test]
    fn private_dirs_are_0700_and_never_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a").join("b");
        private_dir(&sub).unwrap();
        assert_eq!((mode(&sub), mode(&dir.path().join("a"))), (0o700, 0o700));
        std::fs::set_permissions(&sub, Permissions::from_mode(0o755)).unwrap();
        private_dir(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&sub, &link).unwrap();
        assert!(private_dir(&link).is_err());
    }

    #[test]
    fn a_fifo_in_place_of_a_file_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = open_read(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_lock_is_held_once_and_says_by_whom() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StateDirLock::acquire(dir.path()).unwrap();
        match StateDirLock::acquire(dir.path()) {
            Err(LockError::Held { holder }) => {
                assert!(holder.starts_with(&format!("pid {} on ", std::process::id())))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(mode(&dir.path().join(LOCK_FILE)), FILE_MODE);
        drop(lock);
        StateDirLock::acquire(dir.path()).unwrap();
    }
}

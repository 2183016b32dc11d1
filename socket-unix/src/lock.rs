//! The per-event lock file `{socket_dir}/{event}.lock`.
//!
//! Only the holder of the exclusive `flock` may probe, remove, create or remove the event's socket
//! file, so two servers starting at once can never both bind, and a stale socket is reclaimed by
//! exactly one of them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation, OFlags};
use socket_core::{Error, ErrorKind, EventName, Result};

use crate::{euid, FileId};

/// How often `acquire` retries when the lock file is replaced under it.
const ACQUIRE_ATTEMPTS: usize = 16;

/// An exclusive, held lock on an event's lock file. Releasing or dropping it removes the file (if it
/// is still ours) and then releases the lock.
#[derive(Debug)]
pub(crate) struct LockFile {
    path: PathBuf,
    file: Option<File>,
    id: FileId,
}

impl LockFile {
    /// Takes the lock without waiting.
    ///
    /// A holder removes the file when it stops; a process that opened the old file just before
    /// may then lock an unlinked inode. So after locking, the file must still be the one at
    /// `path`, else the attempt is repeated.
    pub(crate) fn acquire(path: &Path, event: &EventName) -> Result<LockFile> {
        for _ in 0..ACQUIRE_ATTEMPTS {
            let file = open(path)?;
            let meta = file.metadata().map_err(|e| io_error(path, "inspect", e))?;
            if !meta.is_file() || meta.uid() != euid() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "lock file {} is not a regular file of yours (uid {}): remove it or choose another \
                         socket.socket_dir",
                        path.display(),
                        meta.uid()
                    ),
                ));
            }
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(Error::new(
                        ErrorKind::AddrInUse,
                        format!(
                            "a server for event {:?} is already running (lock {} is held): stop it first or use \
                             another event name",
                            event.as_str(),
                            path.display()
                        ),
                    ))
                }
                Err(e) => return Err(io_error(path, "lock", e.into())),
            }
            let id = FileId::of(&meta);
            match fs::symlink_metadata(path) {
                Ok(now) if FileId::of(&now) == id => {
                    return Ok(LockFile { path: path.to_owned(), file: Some(file), id })
                }
                // Replaced or removed by the previous holder while we waited: try again.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(path, "inspect", e)),
            }
        }
        Err(Error::new(
            ErrorKind::Connection,
            format!("cannot lock {}: the file keeps being replaced; try again", path.display()),
        ))
    }

    /// Removes the lock file (if it is still ours) and releases the lock.
    pub(crate) fn release(mut self) -> io::Result<()> {
        self.release_now()
    }

    fn release_now(&mut self) -> io::Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let result = match fs::symlink_metadata(&self.path) {
            Ok(now) if FileId::of(&now) == self.id => match fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        // Closing the file releases the flock, after the unlink.
        drop(file);
        result
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if let Err(e) = self.release_now() {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot remove the lock file");
        }
    }
}

fn open(path: &Path) -> Result<File> {
    // NOFOLLOW: never follow a symlink planted at the lock path; NONBLOCK: never hang on a FIFO.
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK;
    #[allow(clippy::cast_possible_wrap)]
    let flags = flags.bits() as i32;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| io_error(path, "open", e))
}

fn io_error(path: &Path, what: &str, e: io::Error) -> Error {
    Error::new(ErrorKind::Connection, format!("cannot {what} lock file {}", path.display())).with_source(e)
}

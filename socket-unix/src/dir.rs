//! The socket directory: created private, or verified before use.

use std::fs::{self, DirBuilder, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use socket_core::{Error, ErrorKind, Result};

use crate::euid;

/// Makes sure `dir` is a safe place for socket files, creating it if missing.
///
/// A missing directory is created with mode 0700 (missing parents too, also 0700), and its mode is
/// then set to exactly 0700 whatever the umask. An existing directory is checked, never changed:
/// it must be a real directory (not a symlink), owned by the effective user, and not writable by
/// group or others. Only the last path component is checked; its parents are trusted, like
/// `/tmp` with its sticky bit.
pub(crate) fn ensure_socket_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => check_existing(dir, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(dir),
        Err(e) => Err(inspect_error(dir, e)),
    }
}

fn create(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(|e| create_error(parent, e))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            let meta = fs::symlink_metadata(dir).map_err(|e| inspect_error(dir, e))?;
            // Check before chmod: chmod follows symlinks, and the path must still be the directory
            // we just made (only its owner can replace it in a sticky or private parent).
            check_owned_dir(dir, &meta)?;
            if meta.mode() & 0o7777 != 0o700 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| create_error(dir, e))?;
            }
            tracing::debug!(dir = %dir.display(), "created socket directory with mode 0700");
            let meta = fs::symlink_metadata(dir).map_err(|e| inspect_error(dir, e))?;
            check_existing(dir, &meta)
        }
        // Someone (maybe a concurrent server) created it first: verify it like any existing one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir).map_err(|e| inspect_error(dir, e))?;
            check_existing(dir, &meta)
        }
        Err(e) => Err(create_error(dir, e)),
    }
}

/// Type and owner checks shared by new and existing directories.
fn check_owned_dir(dir: &Path, meta: &Metadata) -> Result<()> {
    let shown = dir.display();
    if meta.file_type().is_symlink() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "socket directory {shown} is a symlink: refusing to use it, since a symlink can redirect sockets \
                 elsewhere; set socket.socket_dir to a real directory"
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "socket directory {shown} exists but is not a directory: remove it or choose another socket.socket_dir"
            ),
        ));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "socket directory {shown} is owned by uid {}, not by you (uid {me}): refusing to use it; \
                 choose a socket.socket_dir of your own",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Checks an existing directory without changing it.
pub(crate) fn check_existing(dir: &Path, meta: &Metadata) -> Result<()> {
    check_owned_dir(dir, meta)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let shown = dir.display();
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "socket directory {shown} has mode {mode:04o}, writable by group or others, so another user could \
                 replace its sockets: run `chmod 700 {shown}` or choose another socket.socket_dir"
            ),
        ));
    }
    Ok(())
}

fn inspect_error(dir: &Path, e: io::Error) -> Error {
    Error::new(ErrorKind::Config, format!("cannot inspect socket directory {}: check socket.socket_dir", dir.display()))
        .with_source(e)
}

fn create_error(dir: &Path, e: io::Error) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("cannot create socket directory {}: choose a writable socket.socket_dir", dir.display()),
    )
    .with_source(e)
}

//! Bind and close edge cases of the lock file: a lock path that is not a
//! regular file, and a lock file replaced or removed behind a live server.

use std::fs;
use std::os::unix::fs::FileTypeExt;

use socket_core::ErrorKind;

use crate::util::*;

/// A FIFO planted at the lock path is refused with a config error naming the path, and left alone.
#[test]
fn lock_path_that_is_a_fifo_is_refused() -> TestResult {
    let (tmp, config) = fresh()?;
    let dir = tmp.path().join("sockets");
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let lock = dir.join("fifo.lock");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &lock,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )?;
    assert_err(bind(&event("fifo"), &config), ErrorKind::Config, &["is not a regular file", "fifo.lock"])?;
    assert!(fs::symlink_metadata(&lock)?.file_type().is_fifo(), "the FIFO is not removed");
    assert!(!dir.join("fifo.sock").exists(), "no socket is created");
    Ok(())
}

/// A lock file replaced by someone else while the server runs is not deleted by the server's close.
#[test]
fn close_keeps_a_lock_file_that_is_no_longer_ours() -> TestResult {
    let (tmp, config) = fresh()?;
    let dir = tmp.path().join("sockets");
    let listener = bind(&event("replaced"), &config)?;
    let lock = dir.join("replaced.lock");
    fs::remove_file(&lock)?;
    fs::write(&lock, b"someone else's")?;
    listener.close()?;
    assert_eq!(fs::read(&lock)?, b"someone else's", "a foreign lock file is left alone");
    assert!(!dir.join("replaced.sock").exists(), "the server's own socket is removed");
    Ok(())
}

/// A lock file removed behind a running server does not make close fail; close stays idempotent.
#[test]
fn close_tolerates_a_removed_lock_file() -> TestResult {
    let (tmp, config) = fresh()?;
    let dir = tmp.path().join("sockets");
    let listener = bind(&event("gone"), &config)?;
    fs::remove_file(dir.join("gone.lock"))?;
    listener.close()?;
    listener.close()?;
    assert_eq!(entries(&dir)?, Vec::<String>::new());
    Ok(())
}

/// Accepting on a closed listener fails with Closed instead of hanging.
#[test]
fn accept_after_close_fails_with_closed() -> TestResult {
    let (_tmp, config) = fresh()?;
    let listener = bind(&event("shut"), &config)?;
    listener.close()?;
    let result = run(async { Ok(listener.accept().await) })?;
    assert_err(result, ErrorKind::Closed, &["closed"])?;
    Ok(())
}

/// A private socket dir with a stale socket or a lock file of another user (made as root):
/// neither is removed or used, and the error names the uid. Needs root to chown.
#[test]
fn stale_socket_and_lock_file_of_another_user_are_refused() -> TestResult {
    if !is_root() {
        return Ok(());
    }
    let (tmp, config) = fresh()?;
    let dir = tmp.path().join("sockets");
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let stale = dir.join("foreign.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    std::os::unix::fs::chown(&stale, Some(OTHER_UID), Some(OTHER_UID))?;
    let expected = format!("stale socket {} belongs to uid {OTHER_UID}", stale.display());
    assert_err(bind(&event("foreign"), &config), ErrorKind::Config, &[&expected, "refusing to remove it"])?;
    assert_eq!(socket_unix::socket_state(&stale)?, socket_unix::SocketState::Stale, "the stale socket was touched");

    let lock = dir.join("locked.lock");
    fs::write(&lock, b"")?;
    std::os::unix::fs::chown(&lock, Some(OTHER_UID), Some(OTHER_UID))?;
    let expected = format!("lock file {} is not a regular file of yours (uid {OTHER_UID})", lock.display());
    assert_err(bind(&event("locked"), &config), ErrorKind::Config, &[&expected])?;
    assert!(lock.exists() && !dir.join("locked.sock").exists(), "the foreign lock file was used");
    Ok(())
}

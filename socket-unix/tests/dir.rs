//! The socket directory (S3, S4, S5).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use socket_core::ErrorKind;

use crate::util::*;

fn mode(path: &std::path::Path) -> TestResult<u32> {
    Ok(fs::symlink_metadata(path)?.mode() & 0o7777)
}

/// S5: a missing directory (and its missing parent) is created with mode 0700 exactly.
#[test]
fn created_socket_dir_is_0700() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("parent").join("sockets");
    let listener = bind(&event("created"), &config_in(&dir))?;
    assert_eq!(mode(&dir)?, 0o700);
    assert_eq!(mode(&tmp.path().join("parent"))?, 0o700);
    listener.close()?;
    Ok(())
}

/// S5: group- or other-writable directories are refused, named, and left as they were; 0755 is fine.
#[test]
fn group_or_other_writable_dirs_refused_0755_accepted() -> TestResult {
    let tmp = tempfile::tempdir()?;
    for bad in [0o777, 0o770, 0o720, 0o702] {
        let dir = tmp.path().join(format!("d{bad:o}"));
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(bad))?;
        let shown = dir.display().to_string();
        assert_err(bind(&event("ev"), &config_in(&dir)), ErrorKind::Config, &[&shown, "chmod 700", "socket_dir"])?;
        assert_eq!(mode(&dir)?, bad, "an existing directory is never chmod-ed");
        assert!(entries(&dir)?.is_empty(), "nothing is written into a refused directory");
    }
    let dir = tmp.path().join("d755");
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let listener = bind(&event("ev"), &config_in(&dir))?;
    assert_eq!(mode(&dir)?, 0o755);
    listener.close()?;
    Ok(())
}

/// S3: a symlinked socket dir is refused, whether it points to our own directory or elsewhere.
#[test]
fn symlinked_socket_dir_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let target = tmp.path().join("real");
    fs::create_dir(&target)?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o700))?;
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link)?;
    let shown = link.display().to_string();
    assert_err(bind(&event("ev"), &config_in(&link)), ErrorKind::Config, &[&shown, "symlink"])?;
    assert!(entries(&target)?.is_empty());

    let dangling = tmp.path().join("dangling");
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), &dangling)?;
    assert_err(bind(&event("ev"), &config_in(&dangling)), ErrorKind::Config, &["symlink"])?;
    assert!(!tmp.path().join("nowhere").exists(), "the symlink target is not created");
    Ok(())
}

/// A socket dir that is a regular file is refused.
#[test]
fn dir_that_is_a_file_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("file");
    fs::write(&file, b"data")?;
    assert_err(bind(&event("ev"), &config_in(&file)), ErrorKind::Config, &["not a directory"])?;
    assert_eq!(fs::read(&file)?, b"data");
    Ok(())
}

/// S4: a directory owned by another uid is refused and never changed. As root the test makes
/// such a directory; otherwise it uses `/`, which belongs to root.
#[test]
fn socket_dir_of_another_owner_is_refused() -> TestResult {
    if !is_root() {
        let err = bind(&event("ev"), &config_in(std::path::Path::new("/")));
        return assert_err(err, ErrorKind::Config, &["owned by uid 0"]);
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("foreign");
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::chown(&dir, Some(OTHER_UID), Some(OTHER_UID))?;
    let expected = format!("owned by uid {OTHER_UID}");
    assert_err(bind(&event("ev"), &config_in(&dir)), ErrorKind::Config, &[&expected, "socket_dir"])?;
    let meta = fs::symlink_metadata(&dir)?;
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (OTHER_UID, 0o700));
    assert!(entries(&dir)?.is_empty());
    Ok(())
}

/// A socket dir below a regular file: the server cannot inspect it and the client is told the
/// path is not a directory, both as configuration errors; the file is left as it was.
#[test]
fn socket_dir_below_a_file_is_a_config_error_for_server_and_client() -> TestResult {
    use socket_core::Transport;
    use socket_unix::{socket_state, UnixTransport};

    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("file");
    fs::write(&file, b"data")?;
    let dir = file.join("sockets");
    let config = config_in(&dir);
    let shown = dir.display().to_string();
    assert_err(bind(&event("ev"), &config), ErrorKind::Config, &["cannot inspect socket directory", &shown])?;

    let endpoint = UnixTransport.endpoints(&event("ev"), &config)?.remove(0);
    let result = run(async { Ok(UnixTransport.connect(&endpoint, &config).await.map(|c| c.peer)) })?;
    assert_err(result, ErrorKind::Config, &[&shown, "is not a directory", "socket.socket_dir"])?;

    let state = socket_state(std::path::Path::new(&endpoint.address));
    assert_eq!(state.map_err(|e| e.kind()), Err(std::io::ErrorKind::NotADirectory));
    assert_eq!(fs::read(&file)?, b"data");
    Ok(())
}

/// A missing socket dir whose parent is a dangling symlink cannot be created: a configuration
/// error naming the parent, and the symlink's target is not created either.
#[test]
fn socket_dir_below_a_dangling_symlink_is_not_created() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let parent = tmp.path().join("dangling");
    std::os::unix::fs::symlink(tmp.path().join("nowhere").join("deeper"), &parent)?;
    let shown = parent.display().to_string();
    assert_err(
        bind(&event("ev"), &config_in(&parent.join("sockets"))),
        ErrorKind::Config,
        &["cannot create socket directory", &shown, "writable socket.socket_dir"],
    )?;
    assert!(!tmp.path().join("nowhere").exists(), "the symlink's target was created");
    assert!(fs::symlink_metadata(&parent)?.file_type().is_symlink());
    Ok(())
}

/// A socket dir that is not valid UTF-8 is refused by validation and by bind.
#[test]
fn socket_dir_must_be_utf8() -> TestResult {
    use socket_core::Transport;
    use std::os::unix::ffi::OsStrExt;

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join(std::ffi::OsStr::from_bytes(b"sock\xffets"));
    let config = config_in(&dir);
    assert_err(socket_unix::UnixTransport.validate(&config), ErrorKind::Config, &["socket.socket_dir", "UTF-8"])?;
    assert_err(bind(&event("ev"), &config), ErrorKind::Config, &["must be valid UTF-8"])?;
    assert!(!dir.exists(), "the directory was created");
    Ok(())
}

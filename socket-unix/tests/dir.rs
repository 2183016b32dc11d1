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
fn created_dir_is_0700() -> TestResult {
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
fn writable_dirs_refused_0755_accepted() -> TestResult {
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
fn symlink_dir_refused() -> TestResult {
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
fn foreign_owner_refused() -> TestResult {
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

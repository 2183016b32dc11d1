//! `socketctl list`: live and stale sockets in the socket directory.

use std::os::unix::net::UnixListener;

use crate::util::{fail, TestEnv, TestResult};

#[test]
fn list_shows_live_and_stale_sockets() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "live_ev"])?;
    serve.expect_event("listening")?;
    // A stale socket: bound, then its listener gone (connect is refused).
    drop(UnixListener::bind(env.socket_path("stale_ev"))?);
    // Not listed: a regular file named like a socket.
    std::fs::write(env.socket_path("not_a_socket"), b"x")?;

    let out = env.run(&["list", "--json"])?;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<serde_json::Value> = out.stdout.iter().map(|l| serde_json::from_str(l)).collect::<Result<_, _>>()?;
    let expected = [
        serde_json::json!({"event_name": "live_ev", "path": env.socket_path("live_ev").to_string_lossy(), "state": "live"}),
        serde_json::json!({"event_name": "stale_ev", "path": env.socket_path("stale_ev").to_string_lossy(), "state": "stale"}),
    ];
    assert_eq!(lines, expected, "{out:?}");
    let keys: Vec<_> = lines[0].as_object().ok_or("not an object")?.keys().cloned().collect();
    assert_eq!(keys, ["event_name", "path", "state"]);

    let out = env.run(&["list"])?;
    assert_eq!(out.code, 0, "{out:?}");
    let [header, live, stale] = out.stdout.as_slice() else { return Err(fail(format!("{out:?}"))) };
    assert!(header.starts_with("EVENT"), "{header}");
    assert!(live.starts_with("live_ev") && live.contains("live") && live.ends_with("live_ev.sock"), "{live}");
    assert!(stale.starts_with("stale_ev") && stale.contains("stale"), "{stale}");
    Ok(())
}

#[test]
fn list_of_an_empty_or_missing_directory_prints_nothing() -> TestResult {
    let env = TestEnv::new()?;
    let out = env.run(&["list", "--json"])?;
    assert_eq!((out.code, out.stdout.len(), out.stderr.len()), (0, 0, 0), "{out:?}");
    let missing = env.socket_dir().join("missing");
    let out = env.run_raw(&["list", "--socket-dir", &missing.to_string_lossy()])?;
    assert_eq!((out.code, out.stdout.len(), out.stderr.len()), (0, 0, 0), "{out:?}");
    Ok(())
}

//! Every error path: exit code, empty stdout, one stderr line.

use crate::util::{TestEnv, TestResult};

#[test]
fn no_server_exits_3() -> TestResult {
    let env = TestEnv::new()?;
    env.run(&["send", "absent_ev", "--data", "{}"])?.expect_error(3, "no server")?;
    env.run(&["listen", "absent_ev"])?.expect_error(3, "no server")?;
    env.run(&["listen", "absent_ev", "--count", "1", "--no-reconnect"])?.expect_error(3, "no server")?;
    Ok(())
}

#[test]
fn sending_not_allowed_exits_4() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "quiet_ev", "--no-client-send"])?;
    serve.expect_event("listening")?;
    env.run(&["send", "quiet_ev", "--data", r#"{"x": 1}"#])?.expect_error(4, "not")?;
    // The server never saw a message.
    serve.expect_event("disconnected")?;
    serve.signal(rustix::process::Signal::TERM)?;
    assert_eq!(serve.wait()?, 0);
    let rest = serve.stdout_all()?;
    assert!(rest.iter().all(|l| !l.contains(r#""event":"message""#)), "{rest:?}");
    Ok(())
}

#[test]
fn connection_limit_exits_4() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "full_ev", "--max-connections", "1"])?;
    serve.expect_event("listening")?;
    let listen = env.spawn(&["listen", "full_ev"])?;
    serve.expect_connected(listen.pid())?;
    env.run(&["send", "full_ev", "--data", "{}"])?.expect_error(4, "max")?;
    env.run(&["listen", "full_ev", "--no-reconnect"])?.expect_error(4, "max")?;
    Ok(())
}

#[test]
fn invalid_json_exits_2() -> TestResult {
    let env = TestEnv::new()?;
    // Checked before connecting: no server is needed to get exit 2.
    env.run(&["send", "json_ev", "--data", "{oops"])?.expect_error(2, "invalid JSON")?;
    env.run(&["send", "json_ev", "--data", "[1, 2]"])?.expect_error(2, "expected an object, got an array")?;
    env.run(&["send", "json_ev", "--data", "\"text\""])?.expect_error(2, "expected an object, got a string")?;
    env.run(&["send", "json_ev", "--type", "control", "--data", r#"{"control": "shutdown"}"#])?
        .expect_error(2, "reserved for protocol control")?;
    Ok(())
}

#[test]
fn invalid_event_name_exits_2() -> TestResult {
    let env = TestEnv::new()?;
    let long = "x".repeat(65);
    for args in [
        vec!["send", "bad name", "--data", "{}"],
        vec!["listen", "../etc"],
        vec!["serve", "a/b"],
        vec!["listen", ""],
        vec!["serve", long.as_str()],
    ] {
        env.run(&args)?.expect_error(2, "event name")?;
    }
    Ok(())
}

#[test]
fn bad_usage_exits_2() -> TestResult {
    let env = TestEnv::new()?;
    env.run_raw(&[])?.expect_error(2, "a command is required")?;
    env.run(&["listen"])?.expect_error(2, "<EVENT>")?;
    env.run(&["list", "--bogus"])?.expect_error(2, "--bogus")?;
    env.run(&["send", "ev", "--type", "ping"])?.expect_error(2, "ping")?;
    env.run(&["listen", "ev", "--count", "0"])?.expect_error(2, "--count")?;
    env.run(&["listen", "ev", "--timeout", "soon"])?.expect_error(2, "--timeout")?;
    env.run(&["serve", "ev", "--max-connections", "0"])?.expect_error(2, "--max-connections")?;
    env.run(&["--transport", "pigeon", "list"])?.expect_error(2, "pigeon")?;
    env.run(&["-v", "-q", "list"])?.expect_error(2, "--quiet")?;
    env.run(&["frobnicate"])?.expect_error(2, "frobnicate")?;
    Ok(())
}

#[test]
fn help_and_version_exit_0_on_stdout() -> TestResult {
    let env = TestEnv::new()?;
    let out = env.run_raw(&["--help"])?;
    assert_eq!(out.code, 0, "{out:?}");
    let help = out.stdout.join("\n");
    for command in ["serve", "listen", "send", "list", "config"] {
        assert!(help.contains(command), "{help}");
    }
    let out = env.run_raw(&["--version"])?;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.first().is_some_and(|l| l.starts_with("socketctl ")), "{out:?}");
    Ok(())
}

#[test]
fn silent_server_times_out_with_5() -> TestResult {
    let mut env = TestEnv::new()?;
    env.set_env("SOCKET__DEFAULT_TIMEOUT", "0.3");
    // Something listens but never answers hello (the kernel accepts into the backlog).
    let _silent = std::os::unix::net::UnixListener::bind(env.socket_path("silent_ev"))?;
    env.run(&["send", "silent_ev", "--data", "{}"])?.expect_error(5, "did not answer hello")?;
    env.run(&["listen", "silent_ev"])?.expect_error(5, "did not answer hello")?;
    Ok(())
}

#[test]
fn numeric_options_out_of_range_exit_2_never_panic() -> TestResult {
    let env = TestEnv::new()?;
    let bad = ["1e30", "inf", "-inf", "NaN", "-1", "1e309", "18446744073709551616", "0x10", ""];
    let commands: [(&[&str], &str); 5] = [
        (&["listen", "num_ev"], "--timeout"),
        (&["listen", "num_ev"], "--count"),
        (&["serve", "num_ev"], "--max-connections"),
        (&["serve", "num_ev"], "--queue-size"),
        (&["list"], "--port"),
    ];
    for (command, option) in commands {
        for value in bad {
            // `--opt=value`, so that "-inf" is a value, not a flag.
            let arg = format!("{option}={value}");
            let args: Vec<&str> = command.iter().copied().chain([arg.as_str()]).collect();
            let out = env.run(&args)?;
            assert!(out.stderr.iter().all(|l| !l.contains("panicked")), "{args:?}: {out:?}");
            out.expect_error(2, option)?;
        }
    }
    // Valid by type, out of the documented range.
    env.run(&["listen", "num_ev", "--timeout", "31536001"])?.expect_error(2, "at most 31536000")?;
    env.run(&["serve", "num_ev", "--max-connections", "65537"])?.expect_error(2, "--max-connections")?;
    env.run(&["serve", "num_ev", "--queue-size", "1000001"])?.expect_error(2, "--queue-size")?;
    env.run(&["--port", "80", "list"])?.expect_error(2, "--port")?;
    Ok(())
}

#[test]
fn an_unusable_socket_directory_is_exit_2_in_every_command() -> TestResult {
    let env = TestEnv::new()?;
    let file = env.path("not-a-dir");
    std::fs::write(&file, "")?;
    for dir in [file.clone(), file.join("sub")] {
        let dir = dir.to_string_lossy().into_owned();
        for args in [
            vec!["serve", "dir_ev"],
            vec!["listen", "dir_ev"],
            vec!["listen", "dir_ev", "--wait", "--timeout", "5"],
            vec!["send", "dir_ev", "--data", "{}"],
            vec!["list"],
        ] {
            let args: Vec<&str> = args.into_iter().chain(["--socket-dir", dir.as_str()]).collect();
            env.run_raw(&args)?.expect_error(2, "socket")?;
        }
    }
    // A missing directory is not unusable: there is no server in it (exit 3), `list` shows
    // nothing, and `serve` creates it.
    let missing = env.socket_dir().join("missing");
    let missing = missing.to_string_lossy().into_owned();
    env.run_raw(&["send", "dir_ev", "--data", "{}", "--socket-dir", &missing])?.expect_error(3, "no server")?;
    env.run_raw(&["listen", "dir_ev", "--socket-dir", &missing])?.expect_error(3, "no server")?;
    Ok(())
}

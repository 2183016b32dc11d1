//! `socketctl config`: the effective configuration and its layers.

use crate::util::{fail, TestEnv, TestResult};

#[test]
fn config_json_is_nested_like_the_toml() -> TestResult {
    let env = TestEnv::new()?;
    let out = env.run(&["config", "--json"])?;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let [line] = out.stdout.as_slice() else { return Err(fail(format!("expected one line: {out:?}"))) };
    let json: serde_json::Value = serde_json::from_str(line)?;
    let root = json.as_object().ok_or("not an object")?;
    assert_eq!(root.keys().collect::<Vec<_>>(), ["socket"]);
    let socket = &json["socket"];
    assert!(socket["unix"].is_object() && socket["tcp"].is_object(), "{json}");
    assert_eq!(socket["transport"], "unix");
    assert_eq!(socket["socket_dir"], env.socket_dir().to_string_lossy().as_ref());
    assert_eq!(socket["default_timeout"], 5.0);
    assert_eq!(socket["message_queue_size"], 100);
    assert_eq!(socket["unix"]["max_connections"], 10);
    assert_eq!(socket["unix"]["socket_permissions"], "0600");
    assert_eq!(socket["tcp"]["host"], "127.0.0.1");
    assert_eq!(socket["tcp"]["port_range_start"], 9000);
    assert_eq!(socket["tcp"]["port_range_end"], 9100);
    Ok(())
}

#[test]
fn layers_file_env_and_command_line() -> TestResult {
    let mut env = TestEnv::new()?;
    let file = env.path("settings.toml");
    std::fs::write(
        &file,
        "[socket]\ntimezone = \"Europe/Berlin\"\nrelay = true\n[socket.unix]\nmax_connections = 3\n[socket.tcp]\nport_range_end = 9200\n",
    )?;
    env.set_env("SOCKET__UNIX__MAX_CONNECTIONS", "7");
    env.set_env("SOCKET__TCP__PORT_RANGE_END", "9300");
    let file_arg = file.to_string_lossy().into_owned();
    // Global options after the command, as the contract allows.
    let out =
        env.run(&["config", "--json", "--config", &file_arg, "--transport", "tcp", "--port", "9050", "--legacy"])?;
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(out.stdout.first().ok_or("no output")?)?;
    let s = &json["socket"];
    assert_eq!(s["timezone"], "Europe/Berlin", "file");
    assert_eq!(s["relay"], true, "file");
    assert_eq!(s["unix"]["max_connections"], 7, "env beats file");
    assert_eq!(s["tcp"]["port_range_end"], 9300, "env beats file");
    assert_eq!(s["transport"], "tcp", "command line");
    assert_eq!(s["tcp"]["port"], 9050, "command line");
    assert_eq!(s["legacy_server"], true, "command line");
    Ok(())
}

#[test]
fn xdg_config_file_is_found() -> TestResult {
    let env = TestEnv::new()?;
    std::fs::create_dir_all(env.path("socket"))?;
    std::fs::write(env.path("socket/settings.toml"), "[socket]\nmessage_queue_size = 42\n")?;
    let out = env.run(&["config", "--json"])?;
    let json: serde_json::Value = serde_json::from_str(out.stdout.first().ok_or("no output")?)?;
    assert_eq!(json["socket"]["message_queue_size"], 42);
    Ok(())
}

#[test]
fn config_without_json_prints_toml_that_loads_back() -> TestResult {
    let env = TestEnv::new()?;
    let out = env.run(&["--transport", "tcp", "config"])?;
    assert_eq!(out.code, 0, "{out:?}");
    let text = out.stdout.join("\n");
    assert!(text.starts_with("[socket]"), "{text}");
    assert!(text.contains("[socket.unix]") && text.contains("[socket.tcp]"), "{text}");
    let table: toml::Table = text.parse()?;
    assert_eq!(table["socket"]["transport"].as_str(), Some("tcp"));
    // What `config` prints is a valid configuration file.
    let file = env.path("printed.toml");
    std::fs::write(&file, &text)?;
    let again = env.run(&["config", "--config", &file.to_string_lossy()])?;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stdout.join("\n"), text);
    Ok(())
}

#[test]
fn invalid_configuration_exits_2() -> TestResult {
    let mut env = TestEnv::new()?;
    env.run(&["config", "--config", "/nonexistent/socketctl.toml"])?
        .expect_error(2, "configuration file /nonexistent/socketctl.toml does not exist")?;

    let file = env.path("bad.toml");
    std::fs::write(&file, "[socket]\nno_such_key = 1\n")?;
    env.run(&["config", "--config", &file.to_string_lossy()])?.expect_error(2, "no_such_key")?;

    std::fs::write(&file, "[socket.tcp]\nport_range_start = 9500\nport_range_end = 9100\n")?;
    env.run(&["list", "--config", &file.to_string_lossy()])?.expect_error(2, "port_range_start")?;

    env.set_env("SOCKET__UNIX__MAX_CONNECTIONS", "lots");
    env.run(&["config"])?.expect_error(2, "socket.unix.max_connections")?;
    Ok(())
}

#[test]
fn config_from_stdin_is_read() -> TestResult {
    let env = TestEnv::new()?;
    let mut proc = env.spawn(&["config", "--json", "--config", "/dev/stdin"])?;
    proc.write_line("[socket]\nmessage_queue_size = 42\n[socket.unix]\nmax_connections = 4")?;
    let out = proc.finish()?;
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(out.stdout.first().ok_or("no output")?)?;
    assert_eq!(json["socket"]["message_queue_size"], 42, "{json}");
    assert_eq!(json["socket"]["unix"]["max_connections"], 4, "{json}");
    Ok(())
}

#[test]
fn config_from_a_fifo_is_read() -> TestResult {
    let env = TestEnv::new()?;
    let fifo = env.path("generated.toml");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600))?;
    let proc = env.spawn(&["config", "--json", "--config", &fifo.to_string_lossy()])?;
    // What `--config <(generate)` does: a writer on the other end of a pipe. The open blocks
    // until socketctl opens the FIFO; the thread is left behind if it never does (the test
    // then fails on the exit code below, within Proc's deadline).
    let path = fifo.clone();
    std::thread::spawn(move || {
        if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = std::io::Write::write_all(&mut w, b"[socket]\nrelay = true\n");
        }
    });
    let out = proc.finish()?;
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(out.stdout.first().ok_or("no output")?)?;
    assert_eq!(json["socket"]["relay"], true, "{json}");
    Ok(())
}

#[test]
fn a_key_given_twice_is_an_error_naming_the_file() -> TestResult {
    let env = TestEnv::new()?;
    let file = env.path("twice.toml");
    std::fs::write(&file, "[socket]\nrelay = true\nrelay = false\n")?;
    let out = env.run(&["config", "--config", &file.to_string_lossy()])?;
    out.expect_error(2, "duplicate key")?;
    out.expect_error(2, &file.to_string_lossy())?;
    Ok(())
}

#[test]
fn config_errors_name_the_file_by_its_absolute_path() -> TestResult {
    let env = TestEnv::new()?;
    let relative = "no-such-dir-for-socketctl-tests/settings.toml";
    let absolute = std::env::current_dir()?.join(relative);
    env.run(&["config", "--config", relative])?.expect_error(2, &format!("{} does not exist", absolute.display()))?;
    // An invalid value in a file names the file too, absolute.
    let file = env.path("bad-value.toml");
    std::fs::write(&file, "[socket]\ninbound_queue_size = 1000000000\n")?;
    env.run(&["config", "--config", &file.to_string_lossy()])?
        .expect_error(2, &format!("socket.inbound_queue_size (from {})", file.display()))?;
    Ok(())
}

#[test]
fn a_config_file_over_1_mib_is_refused() -> TestResult {
    let env = TestEnv::new()?;
    let file = env.path("huge.toml");
    let mut text = "# padding\n".repeat((1 << 20) / 10 + 1);
    text.push_str("[socket]\nrelay = true\n");
    std::fs::write(&file, text)?;
    env.run(&["config", "--config", &file.to_string_lossy()])?.expect_error(2, "longer than 1048576 bytes")?;
    Ok(())
}

#[test]
fn socket_permissions_that_validate_also_bind() -> TestResult {
    let env = TestEnv::new()?;
    // 0400 used to validate and then fail at bind: now one rule refuses it up front.
    let file = env.path("perm.toml");
    std::fs::write(&file, "[socket.unix]\nsocket_permissions = \"0400\"\n")?;
    let file_arg = file.to_string_lossy().into_owned();
    env.run(&["config", "--config", &file_arg])?.expect_error(2, "socket.unix.socket_permissions")?;
    env.run(&["serve", "perm_ev", "--config", &file_arg])?.expect_error(2, "owner read and write")?;
    // 0660 validates and binds.
    std::fs::write(&file, "[socket.unix]\nsocket_permissions = \"0660\"\n")?;
    let mut serve = env.spawn(&["serve", "perm_ev", "--config", &file_arg])?;
    serve.expect_event("listening")?;
    serve.signal(rustix::process::Signal::TERM)?;
    assert_eq!(serve.wait()?, 0);
    Ok(())
}

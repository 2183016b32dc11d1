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

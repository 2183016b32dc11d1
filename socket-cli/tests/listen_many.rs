//! `socketctl listen EVENT...` with several events, `--format data`, and their bad input.

use rustix::process::Signal;
use serde_json::json;

use crate::util::{check_wire_keys, data, TestEnv, TestResult};

#[test]
fn several_events_share_one_stream_and_one_count() -> TestResult {
    let env = TestEnv::new()?;
    let mut cpu = env.spawn(&["serve", "many_cpu"])?;
    cpu.expect_event("listening")?;
    let mut wall = env.spawn(&["serve", "many_wall"])?;
    wall.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "many_cpu", "many_wall", "--count", "3"])?;
    cpu.expect_connected(listen.pid())?;
    wall.expect_connected(listen.pid())?;

    cpu.write_line(r#"{"cpu": 1}"#)?;
    let first = listen.json()?;
    check_wire_keys(&first, "many_cpu", "data")?;
    assert_eq!(data(&first), &json!({"cpu": 1}));
    wall.write_line(r#"{"path": "/a.png"}"#)?;
    let second = listen.json()?;
    check_wire_keys(&second, "many_wall", "data")?;
    assert_eq!(data(&second), &json!({"path": "/a.png"}));
    cpu.write_line(r#"{"cpu": 2}"#)?;
    let third = listen.json()?;
    check_wire_keys(&third, "many_cpu", "data")?;
    assert_eq!(data(&third), &json!({"cpu": 2}));
    // --count is over all events: three lines in all, then exit 0.
    assert_eq!(listen.wait()?, 0);
    assert!(listen.stdout_all()?.is_empty());
    Ok(())
}

#[test]
fn a_repeated_event_is_followed_once() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "twice_ev"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "twice_ev", "twice_ev", "--count", "2"])?;
    serve.expect_connected(listen.pid())?;
    serve.write_line(r#"{"n": 1}"#)?;
    serve.write_line(r#"{"n": 2}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"n": 1}));
    assert_eq!(data(&listen.json()?), &json!({"n": 2}), "each message once, not once per mention");
    assert_eq!(listen.wait()?, 0);
    // One connection only: the server saw no second client.
    serve.signal(Signal::TERM)?;
    assert_eq!(serve.wait()?, 0);
    let rest = serve.stdout_all()?;
    assert!(rest.iter().all(|l| !l.contains(r#""event":"connected""#)), "{rest:?}");
    Ok(())
}

#[test]
fn timeout_counts_over_all_events() -> TestResult {
    let env = TestEnv::new()?;
    let mut a = env.spawn(&["serve", "tmo_a"])?;
    a.expect_event("listening")?;
    let mut b = env.spawn(&["serve", "tmo_b"])?;
    b.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "tmo_a", "tmo_b", "--count", "3", "--timeout", "4"])?;
    a.expect_connected(listen.pid())?;
    b.expect_connected(listen.pid())?;
    a.write_line(r#"{"from": "a"}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"from": "a"}));
    b.write_line(r#"{"from": "b"}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"from": "b"}));
    assert_eq!(listen.wait()?, 5);
    let stderr = listen.stderr_all()?;
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].contains("timed out") && stderr[0].contains("2 of 3"), "{stderr:?}");
    Ok(())
}

#[test]
fn without_wait_one_missing_server_is_exit_3_naming_it() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "here_ev"])?;
    serve.expect_event("listening")?;
    env.run(&["listen", "here_ev", "gone_ev"])?.expect_error(3, "gone_ev")?;
    Ok(())
}

#[test]
fn with_wait_events_already_served_print_while_others_are_awaited() -> TestResult {
    let env = TestEnv::new()?;
    let mut early = env.spawn(&["serve", "early_ev"])?;
    early.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "early_ev", "late_ev", "--wait", "--count", "2", "--timeout", "20"])?;
    early.expect_connected(listen.pid())?;
    early.write_line(r#"{"early": true}"#)?;
    // Printed although late_ev has no server yet.
    let first = listen.json()?;
    check_wire_keys(&first, "early_ev", "data")?;
    let mut late = env.spawn(&["serve", "late_ev"])?;
    late.expect_event("listening")?;
    late.expect_connected(listen.pid())?;
    late.write_line(r#"{"late": true}"#)?;
    let second = listen.json()?;
    check_wire_keys(&second, "late_ev", "data")?;
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn each_event_reconnects_on_its_own() -> TestResult {
    let env = TestEnv::new()?;
    let mut stays = env.spawn(&["serve", "stays_ev"])?;
    stays.expect_event("listening")?;
    let mut restarts = env.spawn(&["serve", "restarts_ev"])?;
    restarts.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "stays_ev", "restarts_ev"])?;
    stays.expect_connected(listen.pid())?;
    restarts.expect_connected(listen.pid())?;
    restarts.write_line(r#"{"round": 1}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"round": 1}));

    restarts.signal(Signal::TERM)?;
    assert_eq!(restarts.wait()?, 0);
    // The other event is unaffected meanwhile.
    stays.write_line(r#"{"still": "here"}"#)?;
    let line = listen.json()?;
    check_wire_keys(&line, "stays_ev", "data")?;
    assert_eq!(data(&line), &json!({"still": "here"}));

    let mut again = env.spawn(&["serve", "restarts_ev"])?;
    again.expect_event("listening")?;
    again.expect_connected(listen.pid())?;
    again.write_line(r#"{"round": 2}"#)?;
    let line = listen.json()?;
    check_wire_keys(&line, "restarts_ev", "data")?;
    assert_eq!(data(&line), &json!({"round": 2}));
    assert!(listen.stderr_now().is_empty(), "a restart is not an error");
    Ok(())
}

#[test]
fn no_reconnect_ends_with_0_once_every_server_shut_down() -> TestResult {
    let env = TestEnv::new()?;
    let mut a = env.spawn(&["serve", "nr_a"])?;
    a.expect_event("listening")?;
    let mut b = env.spawn(&["serve", "nr_b"])?;
    b.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "nr_a", "nr_b", "--no-reconnect"])?;
    a.expect_connected(listen.pid())?;
    b.expect_connected(listen.pid())?;
    a.write_line(r#"{"a": 1}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"a": 1}));
    b.write_line(r#"{"b": 1}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"b": 1}));

    a.signal(Signal::TERM)?;
    assert_eq!(a.wait()?, 0);
    // One server gone, the other still serves: listen goes on.
    b.write_line(r#"{"b": 2}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"b": 2}));
    b.signal(Signal::TERM)?;
    assert_eq!(b.wait()?, 0);
    let out = listen.finish()?;
    assert_eq!((out.code, out.stdout.len(), out.stderr.len()), (0, 0, 0), "{out:?}");
    Ok(())
}

#[test]
fn no_reconnect_ends_with_1_when_one_connection_is_lost() -> TestResult {
    let env = TestEnv::new()?;
    let mut a = env.spawn(&["serve", "lost_a"])?;
    a.expect_event("listening")?;
    let mut b = env.spawn(&["serve", "lost_b"])?;
    b.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "lost_a", "lost_b", "--no-reconnect"])?;
    a.expect_connected(listen.pid())?;
    b.expect_connected(listen.pid())?;
    b.write_line(r#"{"b": 1}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"b": 1}));
    // Killed: no shutdown message, the connection is simply lost.
    a.signal(Signal::KILL)?;
    // Its exit status is "killed by a signal", which `wait` reports as an error.
    let _killed = a.wait();
    let out = listen.finish()?;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.len(), 1, "{out:?}");
    assert!(out.stderr[0].contains("connection lost"), "{out:?}");
    Ok(())
}

#[test]
fn format_data_prints_only_the_data_object() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "fmt_ev", "--relay"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "fmt_ev", "--format", "data", "--count", "2"])?;
    serve.expect_connected(listen.pid())?;
    serve.write_line(r#"{"text": "42%", "percentage": 42, "png": {"$binary": "iVBORw0KGgo="}}"#)?;
    let out = env.run(&["send", "fmt_ev", "--type", "error", "--data", r#"{"error": "disk full"}"#])?;
    assert_eq!(out.code, 0, "{out:?}");
    let first = listen.line()?;
    assert_eq!(first, r#"{"text":"42%","percentage":42,"png":{"$binary":"iVBORw0KGgo="}}"#, "keys in wire order");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listen.line()?)?, json!({"error": "disk full"}));
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn format_json_is_the_default_and_can_be_named() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "fmtj_ev"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "fmtj_ev", "--format", "json", "--count", "1"])?;
    serve.expect_connected(listen.pid())?;
    serve.write_line(r#"{"n": 1}"#)?;
    check_wire_keys(&listen.json()?, "fmtj_ev", "data")?;
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn bad_listen_usage_exits_2() -> TestResult {
    let env = TestEnv::new()?;
    // No event at all.
    env.run(&["listen"])?.expect_error(2, "EVENT")?;
    env.run(&["listen", "--count", "1"])?.expect_error(2, "EVENT")?;
    // A bad format name.
    env.run(&["listen", "fmt_ev", "--format", "yaml"])?.expect_error(2, "yaml")?;
    env.run(&["listen", "fmt_ev", "--format", ""])?.expect_error(2, "--format")?;
    // One bad name among good ones: nothing is connected, exit 2.
    env.run(&["listen", "good_ev", "bad/ev"])?.expect_error(2, "bad/ev")?;
    Ok(())
}

#[test]
fn completions_for_every_shell() -> TestResult {
    let env = TestEnv::new()?;
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef socketctl"),
        ("fish", "complete -c socketctl"),
        ("elvish", "edit:completion:arg-completer[socketctl]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = env.run_raw(&["completions", shell])?;
        assert_eq!((out.code, out.stderr.len()), (0, 0), "{shell}: {out:?}");
        let script = out.stdout.join("\n");
        assert!(script.contains(marker), "{shell}: no {marker:?} in the script");
        // Fish names long options without their dashes (`-l no-reconnect`).
        for word in ["listen", "no-reconnect", "format", "completions", "socket-dir"] {
            assert!(script.contains(word), "{shell}: the script does not know {word}");
        }
    }
    Ok(())
}

#[test]
fn completions_for_a_bash_that_really_loads_them() -> TestResult {
    // The bash script is valid bash: sourcing it registers the completion function.
    let env = TestEnv::new()?;
    let out = env.run_raw(&["completions", "bash"])?;
    assert_eq!(out.code, 0, "{out:?}");
    let file = env.path("socketctl.bash");
    std::fs::write(&file, out.stdout.join("\n") + "\n")?;
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p socketctl", file.display()))
        .output()?;
    assert!(check.status.success(), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("socketctl"), "{check:?}");
    Ok(())
}

#[test]
fn bad_completions_usage_exits_2() -> TestResult {
    let env = TestEnv::new()?;
    env.run_raw(&["completions", "tcsh"])?.expect_error(2, "tcsh")?;
    env.run_raw(&["completions"])?.expect_error(2, "SHELL")?;
    env.run_raw(&["completions", "bash", "zsh"])?.expect_error(2, "zsh")?;
    Ok(())
}

//! `--help` through the built binary: a command's own options first, then the global ones,
//! each with its default and environment variable.

use crate::util::{TestEnv, TestResult};

#[test]
fn command_help_lists_its_options_then_the_global_ones() -> TestResult {
    let env = TestEnv::new()?;
    for (command, own) in [
        ("serve", &["--relay", "--max-connections <N>", "[default: 10] [env: SOCKET__UNIX__MAX_CONNECTIONS"][..]),
        ("listen", &["--count <N>", "--format <FORMAT>", "[default: json]", "[env: SOCKET__AUTO_RECONNECT=false]"]),
        ("send", &["--type <MESSAGE_TYPE>", "[default: data]", "--data <JSON>"]),
        ("list", &["--json"]),
        ("config", &["--json"]),
        ("completions", &["<SHELL>", "bash", "powershell"]),
    ] {
        let out = env.run_raw(&[command, "--help"])?;
        assert_eq!((out.code, out.stderr.len()), (0, 0), "{command} --help: {out:?}");
        let help = out.stdout.join("\n");
        let global = help.find("Global options:").ok_or_else(|| format!("{command}: no global options\n{help}"))?;
        for text in own {
            let at = help.find(text).ok_or_else(|| format!("{command}: {text:?} missing\n{help}"))?;
            assert!(at < global, "{command}: {text:?} must come before the global options\n{help}");
        }
        for text in [
            "--socket-dir <DIR>",
            "[default: /tmp/sockets] [env: SOCKET__SOCKET_DIR]",
            "[default: unix] [env: SOCKET__TRANSPORT]",
            "[default: 127.0.0.1] [env: SOCKET__TCP__HOST]",
            "[env: SOCKET__TCP__PORT]",
            "[env: SOCKET_CONFIG]",
        ] {
            assert!(help[global..].contains(text), "{command}: {text:?} missing among the global options\n{help}");
        }
    }
    Ok(())
}

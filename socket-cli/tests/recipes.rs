//! The status-bar recipes of `docs/cli.md`, run end to end: each test reads the documented
//! command lines from the page, starts the server, runs them with the built `socketctl`
//! (through `sh`, as the bar would) and checks the lines the bar would read.

use std::path::PathBuf;

use serde_json::{json, Value as Json};

use crate::util::{fail, Proc, TestEnv, TestResult};

/// `docs/cli.md`.
fn cli_md() -> TestResult<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
    Ok(std::fs::read_to_string(path)?)
}

/// The text of the section under `heading` (up to the next heading of any level).
fn section<'a>(doc: &'a str, heading: &str) -> TestResult<&'a str> {
    let start = doc.find(&format!("\n{heading}\n")).ok_or_else(|| fail(format!("no {heading:?} in docs/cli.md")))?;
    let body = &doc[start + heading.len() + 2..];
    let end = body.find("\n#").unwrap_or(body.len());
    Ok(&body[..end])
}

/// The fenced code blocks of `lang` in `text`.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let Some(end) = body.find("```") else { break };
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

/// The event names a `socketctl listen ...` command line follows.
fn listened_events(command: &str) -> Vec<String> {
    command
        .split_whitespace()
        .skip_while(|w| *w != "listen")
        .skip(1)
        .take_while(|w| !w.starts_with('-') && *w != "|")
        .map(str::to_owned)
        .collect()
}

/// Starts `serve EVENT --relay < /dev/null`-style servers (stdin kept for broadcasts).
fn serve_all(env: &TestEnv, events: &[String]) -> TestResult<Vec<Proc>> {
    let mut servers = Vec::new();
    for event in events {
        let mut serve = env.spawn(&["serve", event, "--relay"])?;
        serve.expect_event("listening")?;
        servers.push(serve);
    }
    Ok(servers)
}

/// A JSON line a bar reads: one object.
fn bar_line(bar: &mut Proc) -> TestResult<Json> {
    let line = bar.line()?;
    let value: Json = serde_json::from_str(&line).map_err(|e| fail(format!("bar line {line:?} is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(fail(format!("bar line {line:?} is not an object")))
    }
}

#[test]
fn waybar_recipe_feeds_a_custom_module() -> TestResult {
    let doc = cli_md()?;
    let waybar = section(&doc, "### waybar")?;
    // The module definition, a JSON member: wrap it to parse it.
    let module = blocks(waybar, "json").first().copied().ok_or("no json block in the waybar recipe")?;
    let module: Json = serde_json::from_str(&format!("{{{module}}}"))?;
    let module = &module["custom/wallpaper"];
    assert_eq!(module["return-type"], "json", "waybar must parse each line as JSON");
    let exec = module["exec"].as_str().ok_or("no exec")?;
    let events = listened_events(exec);
    assert_eq!(events, ["wallpaper_progress"], "{exec}");
    let send = blocks(waybar, "sh").first().map(|b| b.trim().to_owned()).ok_or("no sh block with the daemon's send")?;
    assert!(send.starts_with("socketctl send wallpaper_progress "), "{send}");

    let env = TestEnv::new()?;
    // The bar starts first (--wait), the server with the session.
    let mut bar = env.spawn_shell(exec)?;
    let mut servers = serve_all(&env, &events)?;
    let serve = &mut servers[0];
    serve.expect_connected(bar.pid())?;

    // The daemon's documented send: waybar reads text, tooltip, percentage and class.
    let out = env.spawn_shell(&send)?.finish()?;
    assert_eq!((out.code, out.stderr.len()), (0, 0), "{send}: {out:?}");
    let line = bar_line(&mut bar)?;
    assert_eq!(line, json!({"text": "42%", "tooltip": "a.png", "percentage": 42, "class": "busy"}));
    assert!(line["text"].is_string(), "waybar needs a text string");

    // Every later message is one more line, at once.
    let out = env.spawn_shell(
        r#"socketctl send wallpaper_progress --data '{"text": "100%", "tooltip": "b.png", "percentage": 100, "class": "done"}'"#,
    )?;
    assert_eq!(out.finish()?.code, 0);
    let line = bar_line(&mut bar)?;
    assert_eq!((line["text"].as_str(), line["percentage"].as_u64()), (Some("100%"), Some(100)), "{line}");
    assert!(bar.stderr_now().is_empty());
    Ok(())
}

#[test]
fn eww_recipes_feed_deflisten_variables() -> TestResult {
    let doc = cli_md()?;
    let eww = section(&doc, "### eww")?;
    let lisp = blocks(eww, "lisp");
    assert_eq!(lisp.len(), 2, "two eww recipes");

    // 1. `--format data`: the variable is the data object the widget reads fields of.
    let (initial, command) = deflisten(lisp[0])?;
    let events = listened_events(&command);
    assert_eq!(events, ["system_status"], "{command}");
    assert!(lisp[0].contains("${status.cpu}") && lisp[0].contains("${status.mem}"));
    let send_at = eww.find("`socketctl send system_status").ok_or("no documented send for the eww recipe")?;
    let send = eww[send_at + 1..].split('`').next().ok_or("unterminated send")?;

    let env = TestEnv::new()?;
    let mut servers = serve_all(&env, &events)?;
    let mut bar = env.spawn_shell(&command)?;
    servers[0].expect_connected(bar.pid())?;
    let out = env.spawn_shell(send)?.finish()?;
    assert_eq!((out.code, out.stderr.len()), (0, 0), "{send}: {out:?}");
    let line = bar_line(&mut bar)?;
    assert_eq!(line, json!({"cpu": 12, "mem": 40}));
    // The :initial value has the same fields, so the widget never reads a missing one.
    let initial_keys: Vec<&String> = initial.as_object().ok_or("initial not an object")?.keys().collect();
    let line_keys: Vec<&String> = line.as_object().ok_or("line not an object")?.keys().collect();
    assert_eq!(initial_keys, line_keys);
    servers[0].write_line(r#"{"cpu": 99, "mem": 41}"#)?;
    assert_eq!(bar_line(&mut bar)?, json!({"cpu": 99, "mem": 41}));
    drop(bar);

    // 2. Whole messages of several events in one variable.
    let (_, command) = deflisten(lisp[1])?;
    let events = listened_events(&command);
    assert_eq!(events, ["wallpaper_change", "color-scheme-update"], "{command}");
    let mut servers = serve_all(&env, &events)?;
    let mut bar = env.spawn_shell(&command)?;
    for serve in &mut servers {
        serve.expect_connected(bar.pid())?;
    }
    servers[0].write_line(r#"{"path": "/walls/a.png"}"#)?;
    let line = bar_line(&mut bar)?;
    assert_eq!(
        (line["event_name"].as_str(), &line["data"]),
        (Some("wallpaper_change"), &json!({"path": "/walls/a.png"}))
    );
    servers[1].write_line(r#"{"scheme": "dark"}"#)?;
    let line = bar_line(&mut bar)?;
    assert_eq!((line["event_name"].as_str(), &line["data"]), (Some("color-scheme-update"), &json!({"scheme": "dark"})));
    Ok(())
}

/// The `:initial` value (as JSON) and the command of the `(deflisten NAME :initial "..." "COMMAND")`
/// in `block`.
fn deflisten(block: &str) -> TestResult<(Json, String)> {
    let start = block.find("(deflisten").ok_or("no deflisten")?;
    let strings = lisp_strings(&block[start..]);
    let [initial, command, ..] = strings.as_slice() else {
        return Err(fail(format!("deflisten without :initial and command: {block}")));
    };
    Ok((serde_json::from_str(initial)?, command.clone()))
}

/// The string literals of a lisp form, unescaped, in order.
fn lisp_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => s.extend(chars.next()),
                '"' => break,
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

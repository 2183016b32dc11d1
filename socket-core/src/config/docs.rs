//! The generated reference `docs/configuration.md`.

use std::fmt::Write as _;

use super::keys::{KeyInfo, KEYS};
use super::Config;

pub(super) fn lookup<'t>(table: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

pub(super) fn render_toml(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.1}"),
        other => other.to_string(),
    }
}

const DOC_INTRO: &str = r#"# Configuration reference

<!-- Generated from the key table of socket-core/src/config.rs (`socket_core::config::reference_markdown`).
     Do not edit by hand: run `cargo xtask codegen` (or `cargo run -p socket-core --example gen_config_docs > docs/configuration.md`). -->

Every setting lives under `[socket]` (with `[socket.unix]` and `[socket.tcp]`
for the two built-in transports, and `[socket.nats]` for the NATS bridge). Values are taken, lowest to highest
priority, from:

1. the defaults below;
2. a TOML file: the one given with `--config` (or `ConfigLoader::file`), else
   the one named by the environment variable `SOCKET_CONFIG`, else
   `$XDG_CONFIG_HOME/socket/settings.toml` (or `~/.config/socket/settings.toml`
   when `XDG_CONFIG_HOME` is unset) when that file exists; a file named
   explicitly or by `SOCKET_CONFIG` must exist;
3. environment variables: key `socket.a.b` is `SOCKET__A__B`, for instance
   `SOCKET__SOCKET_DIR` or `SOCKET__UNIX__MAX_CONNECTIONS`; values are parsed
   to the key's type (booleans `true`/`false`/`1`/`0`, lists
   comma-separated); an empty variable counts as unset (which also leaves an
   optional key absent);
4. values set in code (`ConfigLoader::set("socket.tcp.port", 9001)`) or on the
   command line of `socketctl`.

An unknown key, a value of the wrong type and a value outside its rule are
errors naming the key, the value, the rule and where the value came from.
Tables `[socket.<scheme>]` other than `unix`, `tcp` and `nats` belong to plug-in
transports: the core keeps them as they are and the transport registered
under that scheme validates them (the factory refuses a table whose scheme is
not registered).

The configuration of the original design loads unchanged:

```toml
[socket]
socket_dir = "/tmp/sockets"
default_timeout = 5
buffer_size = 4096
timezone = "UTC"
message_queue_size = 100
blocking_mode = false
allow_client_send = true

[socket.unix]
max_connections = 10
socket_permissions = "0600"
auto_remove_socket = true

[socket.tcp]
host = "127.0.0.1"
port_range_start = 9000
port_range_end = 9100
max_connections = 10
```
"#;

/// Renders `docs/configuration.md`: every key of [`KEYS`] with its type,
/// default, environment variable, rule and description.
pub fn reference_markdown() -> String {
    let defaults = Config::default().to_table().unwrap_or_default();
    let mut out = String::from(DOC_INTRO);
    let sections = [
        ("socket", "`[socket]`"),
        ("socket.unix", "`[socket.unix]`"),
        ("socket.tcp", "`[socket.tcp]`"),
        ("socket.nats", "`[socket.nats]` (the multi-host bridge, `docs/multi-host.md`)"),
    ];
    for (prefix, title) in sections {
        let _ = writeln!(out, "\n## {title}\n");
        out.push_str("| Key | Type | Default | Environment variable | Valid values |\n");
        out.push_str("|---|---|---|---|---|\n");
        let keys: Vec<&KeyInfo> =
            KEYS.iter().filter(|k| k.key.rsplit_once('.').map(|(table, _)| table) == Some(prefix)).collect();
        for k in &keys {
            let name = k.key.rsplit_once('.').map_or(k.key, |(_, n)| n);
            let default =
                lookup(&defaults, k.key).map_or_else(|| "absent".to_owned(), |v| format!("`{}`", render_toml(v)));
            let _ = writeln!(
                out,
                "| [`{name}`](#{anchor}) | {} | {default} | `{}` | {} |",
                k.ty.name(),
                k.env_var(),
                k.rule.replace('|', "\\|"),
                anchor = k.key.replace('.', ""),
            );
        }
        out.push('\n');
        for k in &keys {
            let _ = writeln!(out, "### `{}`\n\n{}\n", k.key, k.description);
        }
    }
    out.push_str(
        "## Plug-in transport tables\n\n\
         `[socket.<scheme>]` (for example `[socket.memory]`) holds the settings of the plug-in transport \
         registered under `<scheme>`; a plug-in's `max_connections` key is read by the core as that transport's \
         connection limit (default 10). Environment variables reach these tables too: \
         `SOCKET__MEMORY__MAX_CONNECTIONS` sets `socket.memory.max_connections`.\n",
    );
    out
}

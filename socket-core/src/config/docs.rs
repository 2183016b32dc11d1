//! The generated reference `docs/configuration.md`.

use std::fmt::Write as _;

use super::keys::KEYS;
use super::Config;
use super::KeySpec;

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

<!-- Generated from the core key table (socket-core/src/config/keys.rs) and the keys each registered
     transport declares (`Transport::settings`), by `socket_factory::reference_markdown`.
     Do not edit by hand: run `cargo xtask doc` (or `cargo run -p socket-factory --features unix,tcp --example gen_config_docs > docs/configuration.md`). -->

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

/// One row of the reference: a key with its type, default, variable, rule and help.
struct Row<'a> {
    key: String,
    ty: &'static str,
    default: Option<String>,
    env_var: String,
    rule: &'a str,
    description: &'a str,
}

fn core_rows(prefix: &str, defaults: &toml::Table) -> Vec<Row<'static>> {
    KEYS.iter()
        .filter(|k| k.key.rsplit_once('.').map(|(table, _)| table) == Some(prefix))
        .map(|k| Row {
            key: k.key.to_owned(),
            ty: k.ty.name(),
            default: lookup(defaults, k.key).map(render_toml),
            env_var: k.env_var(),
            rule: k.rule,
            description: k.description,
        })
        .collect()
}

fn transport_rows<'a>(scheme: &str, specs: &'a [KeySpec]) -> Vec<Row<'a>> {
    specs
        .iter()
        .map(|s| Row {
            key: s.key(scheme),
            ty: s.ty.name(),
            default: s.default_value().as_ref().map(render_toml),
            env_var: s.env_var(scheme),
            rule: s.rule,
            description: s.description,
        })
        .collect()
}

fn section(out: &mut String, title: &str, rows: &[Row<'_>]) {
    let _ = writeln!(out, "\n## {title}\n");
    out.push_str("| Key | Type | Default | Environment variable | Valid values |\n");
    out.push_str("|---|---|---|---|---|\n");
    for r in rows {
        let name = r.key.rsplit_once('.').map_or(r.key.as_str(), |(_, n)| n);
        let default = r.default.as_ref().map_or_else(|| "absent".to_owned(), |v| format!("`{v}`"));
        let _ = writeln!(
            out,
            "| [`{name}`](#{anchor}) | {} | {default} | `{}` | {} |",
            r.ty,
            r.env_var,
            r.rule.replace('|', "\\|"),
            anchor = r.key.replace('.', ""),
        );
    }
    out.push('\n');
    for r in rows {
        let _ = writeln!(out, "### `{}`\n\n{}\n", r.key, r.description);
    }
}

/// Renders `docs/configuration.md` from what `socket-core` alone knows: every key of
/// [`KEYS`] (the `[socket.unix]` and `[socket.tcp]` tables included) with its type, default,
/// environment variable, rule and description.
pub fn reference_markdown() -> String {
    render(None)
}

/// Renders `docs/configuration.md` from the core keys and the keys each transport declares
/// ([`Transport::settings`](crate::Transport::settings)): `transports` lists each scheme with
/// its keys, in the order of the sections. A plug-in's table is documented like a built-in one.
/// `socket_factory::reference_markdown` passes the transports of a registry.
pub fn reference_markdown_with(transports: &[(&str, &[KeySpec])]) -> String {
    render(Some(transports))
}

fn render(transports: Option<&[(&str, &[KeySpec])]>) -> String {
    let defaults = Config::default().to_table().unwrap_or_default();
    let mut out = String::from(DOC_INTRO);
    section(&mut out, "`[socket]`", &core_rows("socket", &defaults));
    match transports {
        Some(transports) => {
            for (scheme, specs) in transports {
                section(&mut out, &format!("`[socket.{scheme}]`"), &transport_rows(scheme, specs));
            }
        }
        None => {
            for prefix in ["socket.unix", "socket.tcp"] {
                section(&mut out, &format!("`[{prefix}]`"), &core_rows(prefix, &defaults));
            }
        }
    }
    let nats = core_rows("socket.nats", &defaults);
    section(&mut out, "`[socket.nats]` (the multi-host bridge, `docs/multi-host.md`)", &nats);
    out.push_str(
        "## Plug-in transport tables\n\n\
         `[socket.<scheme>]` (for example `[socket.memory]`) holds the settings of the plug-in transport \
         registered under `<scheme>`; a plug-in's `max_connections` key is read by the core as that transport's \
         connection limit (default 10). Environment variables reach these tables too: \
         `SOCKET__MEMORY__MAX_CONNECTIONS` sets `socket.memory.max_connections`. A plug-in that declares its \
         keys (`Transport::settings`) has them checked with the same errors as the keys above, and listed \
         in this reference when it is generated with that transport registered.\n",
    );
    out
}

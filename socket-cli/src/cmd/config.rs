//! `socketctl config`: print the effective configuration, as TOML or (`--json`) as JSON
//! nested like the TOML: `{"socket": {..., "unix": {...}, "tcp": {...}}}`.

use crate::args::{ConfigArgs, GlobalArgs};
use crate::exit::{describe, CliError, Exit};
use crate::output::{print_json, print_line};
use crate::settings::{load_config, Overrides};

/// Runs `config`.
///
/// # Errors
///
/// Exit 2 for an invalid configuration.
pub(crate) fn run(global: &GlobalArgs, args: &ConfigArgs) -> Result<Exit, CliError> {
    let config = load_config(global, &Overrides::new())?;
    // The transports' own tables, checked against the keys they declare, with their declared
    // defaults shown like those of the built-in tables.
    let registry = crate::transports::registry();
    socket_factory::check_settings(&registry, &config).map_err(|e| CliError::usage(describe(&e)))?;
    let config = socket_factory::with_declared_defaults(&registry, &config);
    if args.json {
        // Nested like the file, keys in the order of the settings structs, plug-in tables
        // included; unset optional keys are null.
        let json = serde_json::to_value(&config)
            .map_err(|e| CliError::runtime(format!("cannot print the configuration as JSON: {e}")))?;
        print_json(&json)?;
    } else {
        print_line(config.to_toml_string()?.trim_end())?;
    }
    Ok(Exit::Ok)
}

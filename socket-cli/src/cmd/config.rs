//! `socketctl config`: print the effective configuration, as TOML or (`--json`) as JSON
//! nested like the TOML: `{"socket": {..., "unix": {...}, "tcp": {...}}}`.

use crate::args::{ConfigArgs, GlobalArgs};
use crate::exit::{CliError, Exit};
use crate::output::{print_json, print_line};
use crate::settings::{load_config, Overrides};

/// Runs `config`.
///
/// # Errors
///
/// Exit 2 for an invalid configuration.
pub(crate) fn run(global: &GlobalArgs, args: &ConfigArgs) -> Result<Exit, CliError> {
    let config = load_config(global, &Overrides::new())?;
    if args.json {
        let json = serde_json::to_value(&config)
            .map_err(|e| CliError::runtime(format!("cannot print the configuration as JSON: {e}")))?;
        print_json(&json)?;
    } else {
        let text = toml::to_string(&config)
            .map_err(|e| CliError::runtime(format!("cannot print the configuration as TOML: {e}")))?;
        print_line(text.trim_end())?;
    }
    Ok(Exit::Ok)
}

//! Prints `docs/configuration.md`, generated from the key table of
//! `socket_core::config` (`cargo xtask codegen` writes it to the file).
//!
//! ```text
//! cargo run -p socket-core --example gen_config_docs > docs/configuration.md
//! ```

fn main() {
    print!("{}", socket_core::config::reference_markdown());
}

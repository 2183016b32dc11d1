//! Prints `docs/configuration.md`, generated from the core key table and the keys every
//! transport of the default registry declares (`cargo xtask doc` writes it to the file).
//!
//! ```text
//! cargo run -p socket-factory --features unix,tcp --example gen_config_docs > docs/configuration.md
//! ```

fn main() {
    print!("{}", socket_factory::reference_markdown(&socket_factory::default_registry()));
}

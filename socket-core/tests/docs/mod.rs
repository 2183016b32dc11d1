//! Generated documentation is current.

use std::path::PathBuf;

use socket_core::config::{reference_markdown, KEYS};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn configuration_md_is_generated_from_the_key_table() {
    let path = repo_file("docs/configuration.md");
    let expected = reference_markdown();
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/configuration.md is out of date with socket-core/src/config/: run `cargo xtask doc` \
         (or `cargo run -p socket-factory --features unix,tcp --example gen_config_docs > docs/configuration.md`)"
    );
}

#[test]
fn the_reference_lists_every_key_with_its_variable_default_and_rule() {
    let md = reference_markdown();
    for k in KEYS {
        let name = k.key.rsplit_once('.').unwrap().1;
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| [`{name}`](#{})", k.key.replace('.', ""))))
            .unwrap_or_else(|| panic!("no row for {}", k.key));
        assert!(row.contains(&format!("`{}`", k.env_var())), "{row}");
        assert!(row.contains(&k.rule.replace('|', "\\|")), "{row}");
        match k.default_toml() {
            Some(d) => assert!(row.contains(&format!("`{d}`")), "{row}"),
            None => assert!(row.contains("| absent |"), "{row}"),
        }
        assert!(md.contains(&format!("### `{}`\n\n{}", k.key, k.description)), "{}", k.key);
    }
}

#[test]
fn protocol_md_shows_the_golden_control_frame() {
    let doc = std::fs::read_to_string(repo_file("docs/protocol.md")).expect("docs/protocol.md exists");
    let frame = std::fs::read(crate::codec::golden_dir().join("control.frame")).unwrap();
    // The worked example prints the frame as rows of 16 hex bytes.
    for row in frame.chunks(16) {
        let hex = row.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
        assert!(doc.contains(&hex), "docs/protocol.md lacks the golden bytes {hex}");
    }
}

//! The README's connector option tables are generated from the connector registry: this test
//! fails when they drift, and rewrites them with `SLUICE_UPDATE_README=1`.

use sluice_engine::connector::{
    ConnectorSpec, JSON_OPTIONS, OptionDefault, OptionSpec, OptionType, Role, SINK_OPTIONS,
};
use sluice_pipeline::options::registry;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");

const BEGIN: &str = "<!-- connector options: generated from the connector registry by pipeline/tests/it/readme.rs -->\n";

const END: &str = "<!-- end of connector options -->\n";

const REGENERATE: &str = "SLUICE_UPDATE_README=1 cargo test --workspace --test it readme";

/// One table row per option.
fn table(options: &[OptionSpec]) -> String {
    let mut text = String::from("| Option | Type | Default | Meaning |\n|---|---|---|---|\n");
    for option in options {
        let name = match option.kind {
            OptionType::Prefix => format!("`{}.<key>`", option.name),
            _ => format!("`{}`", option.name),
        };
        let default = match option.default {
            OptionDefault::Required => "required".to_string(),
            OptionDefault::Value(value) => format!("`{value}`"),
            OptionDefault::Unset(text) => text.to_string(),
        };
        text += &format!(
            "| {name} | {} | {default} | {} |\n",
            option.kind.name(),
            option.doc
        );
    }
    text
}

/// A connector's section.
fn connector(spec: &ConnectorSpec) -> String {
    let mut text = format!(
        "#### `{}` {}\n\n{}.\n\n",
        spec.name,
        spec.role().name(),
        spec.doc
    );
    if spec.options.is_empty() {
        text += "No options of its own.\n";
    } else {
        text += &table(spec.options);
    }
    text
}

/// The generated part of the README.
fn expected() -> String {
    let specs: Vec<&ConnectorSpec> = registry().collect();
    let json_sources: Vec<String> = specs
        .iter()
        .filter(|s| s.role() == Role::Source && !s.common_options().is_empty())
        .map(|s| format!("`{}`", s.name))
        .collect();
    let mut text = format!(
        "Every source that decodes JSON ({}) also takes:\n\n{}\nEvery sink also takes:\n\n{}\n",
        json_sources.join(", "),
        table(JSON_OPTIONS),
        table(SINK_OPTIONS)
    );
    for role in [Role::Source, Role::Sink] {
        for spec in specs.iter().filter(|s| s.role() == role) {
            text += &connector(spec);
            text += "\n";
        }
    }
    text
}

#[test]
fn the_readme_connector_tables_match_the_registry() {
    let readme = std::fs::read_to_string(README).expect("README.md is readable");
    let (before, rest) = readme
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("README.md lacks the line {BEGIN}"));
    let (current, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("README.md lacks the line {END}"));
    let expected = expected();
    if current == expected {
        return;
    }
    if std::env::var_os("SLUICE_UPDATE_README").is_some() {
        std::fs::write(README, format!("{before}{BEGIN}{expected}{END}{after}"))
            .expect("README.md is writable");
        return;
    }
    panic!(
        "README.md's connector tables differ from the connector registry (the ConnectorSpec \
         declarations). Regenerate them with:\n\n    {REGENERATE}\n\nExpected:\n\n{expected}"
    );
}

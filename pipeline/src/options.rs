//! `WITH (…)` options: checked against the connector registry, typed, defaults filled in, none
//! left unused.
//!
//! Every connector a file may name is declared once, next to its code, as a
//! [`ConnectorSpec`] (see [`sluice_engine::connector`]); [`registry`] lists them. This module
//! checks a table's options against its connector's spec — unknown options, scoped options,
//! required options, each value's type — and reports errors at their line and column; the
//! connector then reads the typed [`Settings`].
//!
//! An option may be scoped to a connector with its name as a prefix (`'kafka.topic'`,
//! `'binance.url'`): it applies when the table uses that connector and is otherwise set
//! aside — after checking that it is one of that connector's options, so a typo is still an
//! error. This lets one file switch connectors with a variable
//! (`connector = '${TICKS_CONNECTOR:-kafka}'`) while every option stays validated.

use std::time::Duration;

use sluice_engine::connector::{
    ConnectorSpec, ErrorAt, OptionDefault, OptionError, OptionSpec, OptionType, OptionValue,
    Settings,
};

use crate::error::Located;
use crate::parse::Spanned;

pub use sluice_engine::connector::Role;

/// Every connector a pipeline file may name ([`sluice_connectors::CONNECTORS`]), in the
/// order messages list them.
pub fn registry() -> impl Iterator<Item = &'static ConnectorSpec> {
    sluice_connectors::CONNECTORS.iter().copied()
}

/// The connector `name` (lowercase) of `role`.
pub fn spec(name: &str, role: Role) -> Option<&'static ConnectorSpec> {
    registry().find(|spec| spec.name == name && spec.role() == role)
}

/// The options of a connector as messages list them: `connector`, its own, then the common
/// ones (a prefix ends with `.`).
pub fn known_options(spec: &ConnectorSpec) -> Vec<String> {
    std::iter::once("connector".to_string())
        .chain(spec.all_options().map(OptionSpec::listed_name))
        .collect()
}

/// Every connector name of a role, for messages.
pub fn connectors(role: Role) -> String {
    registry()
        .filter(|spec| spec.role() == role)
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The message for an option `key` that connector `name` of `role`, if there is one (`spec`),
/// does not have.
fn unknown(key: &str, role: Role, name: &str, spec: Option<&ConnectorSpec>) -> String {
    format!(
        "unknown option '{key}' for {} connector '{name}' (its options: {})",
        role.name(),
        spec.map(known_options).unwrap_or_default().join(", ")
    )
}

/// Options of one table being read by its connector.
#[derive(Debug)]
pub struct Options {
    table: Spanned<String>,
    spec: &'static ConnectorSpec,
    /// The options for this connector, scopes removed, `connector` left out.
    entries: Vec<(Spanned<String>, Spanned<String>)>,
}

impl Options {
    /// The options of `table` for `role`; the connector is the `connector` option. Scoped
    /// options of other connectors are checked here and set aside.
    pub fn new(
        table: &Spanned<String>,
        options: &[(Spanned<String>, Spanned<String>)],
        role: Role,
    ) -> Result<Self, Located> {
        let Some((_, connector)) = options.iter().find(|(k, _)| k.value == "connector") else {
            return Err(Located::new(
                table.position,
                format!(
                    "table {} has no connector: add connector = '…' to WITH ({})",
                    table.value,
                    connectors(role)
                ),
            ));
        };
        let name = connector.value.to_ascii_lowercase();
        let Some(spec) = spec(&name, role) else {
            return Err(Located::new(
                connector.position,
                format!(
                    "'{}' is not a {} connector (expected one of {})",
                    connector.value,
                    role.name(),
                    connectors(role)
                ),
            ));
        };
        let mut entries = Vec::new();
        for (key, value) in options {
            if key.value == "connector" {
                continue;
            }
            let scoped = key
                .value
                .split_once('.')
                .filter(|(prefix, _)| registry().any(|spec| spec.name == *prefix));
            match scoped {
                Some((prefix, rest)) if prefix == name => {
                    let key = Spanned {
                        value: rest.to_string(),
                        position: key.position,
                    };
                    entries.push((key, value.clone()));
                }
                Some((prefix, rest)) => {
                    // Checked against the connector of that name in this role, if any.
                    let other = self::spec(prefix, role);
                    let known = other.is_some_and(|o| {
                        rest == "connector" || o.all_options().any(|o| o.matches(rest))
                    });
                    if !known {
                        return Err(Located::new(
                            key.position,
                            unknown(rest, role, prefix, other),
                        ));
                    }
                }
                None => entries.push((key.clone(), value.clone())),
            }
        }
        Ok(Self {
            table: table.clone(),
            spec,
            entries,
        })
    }

    /// The connector's spec.
    pub fn spec(&self) -> &'static ConnectorSpec {
        self.spec
    }

    /// The connector's name, lowercased.
    pub fn connector(&self) -> &str {
        self.spec.name
    }

    /// The options typed as the connector declares them — the given ones first, in order,
    /// then the defaults of the others. Fails on an unknown option, a value of the wrong type,
    /// or a missing required option.
    pub fn settings(&self) -> Result<Settings, Located> {
        let mut settings = Settings::new();
        for (key, value) in &self.entries {
            if key.value == "connector" {
                // `'<connector>.connector'`: a known name, but not an option to read.
                return Err(Located::new(
                    key.position,
                    format!("option '{}' does not apply here", key.value),
                ));
            }
            let Some(option) = self.spec.all_options().find(|o| o.matches(&key.value)) else {
                return Err(Located::new(
                    key.position,
                    unknown(
                        &key.value,
                        self.spec.role(),
                        self.spec.name,
                        Some(self.spec),
                    ),
                ));
            };
            let typed = typed(option.kind, &value.value).map_err(|e| {
                Located::new(value.position, format!("option '{}': {e}", key.value))
            })?;
            settings.insert(key.value.clone(), typed);
        }
        for option in self.spec.all_options() {
            if self
                .entries
                .iter()
                .any(|(key, _)| option.matches(&key.value))
            {
                continue;
            }
            match option.default {
                OptionDefault::Required => {
                    return Err(Located::new(
                        self.table.position,
                        format!(
                            "table {}: connector '{}' needs option '{}'",
                            self.table.value, self.spec.name, option.name
                        ),
                    ));
                }
                OptionDefault::Value(text) => {
                    let typed = typed(option.kind, text).map_err(|e| {
                        Located::new(
                            self.table.position,
                            format!("option '{}': default '{text}': {e}", option.name),
                        )
                    })?;
                    settings.insert(option.name, typed);
                }
                OptionDefault::Unset(_) => {}
            }
        }
        Ok(settings)
    }

    /// Places a connector's error: at the value of the option it names (the table's name
    /// when the value is a default), or at the table's name.
    pub fn locate(&self, error: OptionError) -> Located {
        let position = match &error.at {
            ErrorAt::Value(key) => self
                .entries
                .iter()
                .find(|(k, _)| &k.value == key)
                .map_or(self.table.position, |(_, value)| value.position),
            ErrorAt::Table => self.table.position,
        };
        Located::new(position, error.message)
    }

    /// Fails on the first given option the connector did not read.
    pub fn finish(&self, settings: &Settings) -> Result<(), Located> {
        // `settings` holds the given options first, in order, then the defaults; a default
        // left unread means the connector ignores an option it declares.
        debug_assert!(
            settings.unused().all(|index| index < self.entries.len()),
            "connector '{}' does not read every option it declares",
            self.spec.name
        );
        match settings.unused().find_map(|index| self.entries.get(index)) {
            Some((key, _)) => Err(Located::new(
                key.position,
                format!("option '{}' does not apply here", key.value),
            )),
            None => Ok(()),
        }
    }
}

/// `text` read as `kind`.
fn typed(kind: OptionType, text: &str) -> Result<OptionValue, String> {
    Ok(match kind {
        OptionType::Text | OptionType::Prefix => OptionValue::Text(text.to_string()),
        OptionType::Count => OptionValue::Count(
            text.trim()
                .parse()
                .map_err(|_| format!("expected a non-negative integer, got '{text}'"))?,
        ),
        OptionType::Bool => OptionValue::Bool(parse_bool(text)?),
        OptionType::Duration => OptionValue::Duration(parse_interval(text)?),
        OptionType::List => OptionValue::List(split_list(text)),
    })
}

/// `true`/`false` (any case).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got '{value}'")),
    }
}

/// A Spark-style interval (`'10 seconds'`, `'1 minute'`, `'500 milliseconds'`).
pub fn parse_interval(value: &str) -> Result<Duration, String> {
    let micros = sluice_engine::parse_duration(value)?;
    u64::try_from(micros)
        .map(Duration::from_micros)
        .map_err(|_| format!("'{value}' is negative"))
}

/// `'a, b , c'` → `["a", "b", "c"]`.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

//! `WITH (…)` options: typed, checked against the connector's list, none left unused.
//!
//! An option may be scoped to a connector with its name as a prefix (`'kafka.topic'`,
//! `'binance.url'`): it applies when the table uses that connector and is otherwise set
//! aside — after checking that it is one of that connector's options, so a typo is still an
//! error. This lets one file switch connectors with a variable
//! (`connector = '${TICKS_CONNECTOR:-kafka}'`) while every option stays validated.

use std::time::Duration;

use crate::error::{Located, Position};
use crate::parse::Spanned;

/// Whether a table is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read by queries.
    Source,
    /// Written by an `INSERT INTO`.
    Sink,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Sink => "sink",
        }
    }
}

/// Options of JSON-decoding sources.
const JSON_SOURCE: &[&str] = &["format", "mode", "corrupt_record_column"];

/// The options of each connector and role; an entry ending in `.` is a prefix.
pub fn known_options(connector: &str, role: Role) -> Option<Vec<&'static str>> {
    let specific: &[&str] = match (connector, role) {
        ("kafka", Role::Source) => &[
            "topic",
            "topic_pattern",
            "assign",
            "bootstrap",
            "starting_offsets",
            "max_offsets_per_trigger",
            "fail_on_data_loss",
            "group_id",
            "include_metadata",
            "fetch_timeout",
            "properties.",
        ],
        ("binance" | "websocket", Role::Source) => &["url", "idle_timeout"],
        ("file", Role::Source) => &["path", "max_files_per_trigger"],
        ("memory", Role::Source) => &["max_rows_per_trigger"],
        ("postgres" | "sqlite", Role::Sink) => &[
            "url",
            "table",
            "primary_key",
            "index",
            "create_table",
            "notify",
        ],
        ("kafka", Role::Sink) => &["topic", "bootstrap", "key", "format", "properties."],
        ("file", Role::Sink) => &["path", "format"],
        ("console", Role::Sink) => &["num_rows", "truncate"],
        ("memory", Role::Sink) => &[],
        _ => return None,
    };
    let mut all = vec!["connector"];
    all.extend_from_slice(specific);
    match role {
        Role::Source if !matches!(connector, "memory") => all.extend_from_slice(JSON_SOURCE),
        Role::Source => {}
        Role::Sink => all.push("output_mode"),
    }
    Some(all)
}

/// Every connector name of a role, for messages.
pub fn connectors(role: Role) -> &'static str {
    match role {
        Role::Source => "kafka, binance, websocket, file, memory",
        Role::Sink => "postgres, sqlite, kafka, file, console, memory",
    }
}

fn is_known(known: &[&str], key: &str) -> bool {
    known
        .iter()
        .any(|k| *k == key || (k.ends_with('.') && key.starts_with(k) && key.len() > k.len()))
}

/// Options of one table being read by its connector.
#[derive(Debug)]
pub struct Options {
    table: String,
    connector: String,
    role: Role,
    entries: Vec<(Spanned<String>, Spanned<String>, bool)>,
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
        if known_options(&name, role).is_none() {
            return Err(Located::new(
                connector.position,
                format!(
                    "'{}' is not a {} connector (expected one of {})",
                    connector.value,
                    role.name(),
                    connectors(role)
                ),
            ));
        }
        let mut entries = Vec::new();
        for (key, value) in options {
            if key.value == "connector" {
                continue;
            }
            let scoped = key.value.split_once('.').filter(|(prefix, _)| {
                known_options(prefix, Role::Source).is_some()
                    || known_options(prefix, Role::Sink).is_some()
            });
            match scoped {
                Some((prefix, rest)) if prefix == name => {
                    let key = Spanned {
                        value: rest.to_string(),
                        position: key.position,
                    };
                    entries.push((key, value.clone(), false));
                }
                Some((prefix, rest)) => {
                    let known = known_options(prefix, role).unwrap_or_default();
                    if !is_known(&known, rest) {
                        return Err(Located::new(
                            key.position,
                            format!(
                                "unknown option '{rest}' for {} connector '{prefix}' (its options: {})",
                                role.name(),
                                known.join(", ")
                            ),
                        ));
                    }
                }
                None => entries.push((key.clone(), value.clone(), false)),
            }
        }
        Ok(Self {
            table: table.value.clone(),
            connector: name,
            role,
            entries,
        })
    }

    /// The connector's name, lowercased.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The raw value of `key`, marking it used.
    pub fn string(&mut self, key: &str) -> Option<Spanned<String>> {
        let entry = self.entries.iter_mut().find(|(k, _, _)| k.value == key)?;
        entry.2 = true;
        Some(entry.1.clone())
    }

    /// The value of a required option.
    pub fn required(&mut self, key: &str, at: Position) -> Result<Spanned<String>, Located> {
        self.string(key).ok_or_else(|| {
            Located::new(
                at,
                format!(
                    "table {}: connector '{}' needs option '{key}'",
                    self.table, self.connector
                ),
            )
        })
    }

    /// A value parsed by `parse`, whose error says what is expected.
    pub fn parsed<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Located> {
        let Some(value) = self.string(key) else {
            return Ok(None);
        };
        parse(&value.value)
            .map(Some)
            .map_err(|e| Located::new(value.position, format!("option '{key}': {e}")))
    }

    /// A non-negative integer.
    pub fn u64(&mut self, key: &str) -> Result<Option<u64>, Located> {
        self.parsed(key, |v| {
            v.trim()
                .parse()
                .map_err(|_| format!("expected a non-negative integer, got '{v}'"))
        })
    }

    /// `true` or `false`.
    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, Located> {
        self.parsed(key, parse_bool)
    }

    /// A duration such as `'10 seconds'` or `'1 minute'`.
    pub fn duration(&mut self, key: &str) -> Result<Option<Duration>, Located> {
        self.parsed(key, parse_interval)
    }

    /// A comma-separated list of column names.
    pub fn list(&mut self, key: &str) -> Option<Vec<String>> {
        self.string(key).map(|v| split_list(&v.value))
    }

    /// Every `prefix.*` option, with the prefix removed.
    pub fn prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        self.entries
            .iter_mut()
            .filter_map(|(k, v, used)| {
                let rest = k.value.strip_prefix(prefix)?;
                *used = true;
                Some((rest.to_string(), v.value.clone()))
            })
            .collect()
    }

    /// Fails on the first option no reader asked for.
    pub fn finish(self) -> Result<(), Located> {
        let Some((key, _, _)) = self.entries.iter().find(|(_, _, used)| !used) else {
            return Ok(());
        };
        let known = known_options(&self.connector, self.role).unwrap_or_default();
        let message = if is_known(&known, &key.value) {
            format!("option '{}' does not apply here", key.value)
        } else {
            format!(
                "unknown option '{}' for {} connector '{}' (its options: {})",
                key.value,
                self.role.name(),
                self.connector,
                known.join(", ")
            )
        };
        Err(Located::new(key.position, message))
    }
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

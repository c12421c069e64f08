//! Connector declarations: what a pipeline file may name in `connector = '…'`.
//!
//! Each connector declares a [`ConnectorSpec`] next to its code: its name, its [`Role`], its
//! options ([`OptionSpec`]: name, [`OptionType`], [`OptionDefault`], a one-line doc) and a
//! configure function. The pipeline crate finds a table's connector in the registry of specs,
//! checks the table's options against it (unknown, scoped, required, typed — errors located in
//! the file), fills in the defaults, and hands the typed [`Settings`] to the configure function,
//! which returns a [`SourceFactory`] or [`SinkFactory`]: the validated table, which builds a
//! fresh [`Source`] or [`Sink`] for each query. The README's connector tables are generated
//! from the same specs.
//!
//! The options every JSON-reading source and every sink take ([`JSON_OPTIONS`],
//! [`SINK_OPTIONS`]) are declared and read here, with the engine's JSON and output-mode types.
//!
//! The engine's built-in connectors (file, memory, console) are declared in the connectors
//! crate (`sluice_connectors::builtin`, one file), which lists the whole registry: this module
//! stays the spec types alone, and a built-in's declaration is written like any other
//! connector's. Only the memory source and sink implement the factory traits here (they are
//! their own factories, so the pipeline can hand their handles out by downcasting), since
//! only this crate may implement them for its own types.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;

use crate::{
    JsonOptions, MemorySink, MemorySource, OutputMode, ParseMode, Result, Sink, SluiceError, Source,
};

/// Whether a connector reads a table or writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read by queries.
    Source,
    /// Written by an `INSERT INTO`.
    Sink,
}

impl Role {
    /// `source` or `sink`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Sink => "sink",
        }
    }
}

/// How an option's text is read before the connector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// Any text (the connector may read it further, e.g. a URL or an enumeration).
    Text,
    /// A non-negative integer.
    Count,
    /// `true` or `false`.
    Bool,
    /// A Spark interval such as `'10 seconds'`.
    Duration,
    /// A comma-separated list of names.
    List,
    /// Any number of `<name>.<key>` options, passed on as text (e.g. librdkafka properties).
    Prefix,
}

impl OptionType {
    /// The type's name in the README.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text | Self::Prefix => "text",
            Self::Count => "integer",
            Self::Bool => "boolean",
            Self::Duration => "duration",
            Self::List => "list",
        }
    }
}

/// What happens when an option is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionDefault {
    /// The table is invalid without it.
    Required,
    /// This value is read as if it had been written.
    Value(&'static str),
    /// The option stays unset; the text says what that means (`"all"`, `"none"`, …).
    Unset(&'static str),
}

/// One option of a connector.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// Its name (for [`OptionType::Prefix`], the prefix without the dot).
    pub name: &'static str,
    /// How its value is read.
    pub kind: OptionType,
    /// What happens without it.
    pub default: OptionDefault,
    /// One line for the README.
    pub doc: &'static str,
}

impl OptionSpec {
    /// Whether `key` (as written, after any connector scope) names this option.
    pub fn matches(&self, key: &str) -> bool {
        match self.kind {
            OptionType::Prefix => key
                .strip_prefix(self.name)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|rest| !rest.is_empty()),
            _ => key == self.name,
        }
    }

    /// The name as option lists in messages show it (`properties.` for a prefix).
    pub fn listed_name(&self) -> String {
        match self.kind {
            OptionType::Prefix => format!("{}.", self.name),
            _ => self.name.to_string(),
        }
    }
}

/// Configures a source from its validated options.
pub type ConfigureSource =
    fn(&mut Settings, &SourceTable<'_>) -> OptionResult<Arc<dyn SourceFactory>>;

/// Configures a sink from its validated options.
pub type ConfigureSink = fn(&mut Settings, &SinkTable<'_>) -> OptionResult<Arc<dyn SinkFactory>>;

/// How a connector is configured, by role.
#[derive(Clone, Copy)]
pub enum Configure {
    /// A source; `reads_json` adds [`JSON_OPTIONS`] and the table's [`JsonOptions`].
    Source {
        /// Whether the source decodes JSON (and takes [`JSON_OPTIONS`]).
        reads_json: bool,
        /// Builds the factory.
        configure: ConfigureSource,
    },
    /// A sink (which takes [`SINK_OPTIONS`] too).
    Sink(ConfigureSink),
}

/// A connector as pipeline files see it.
#[derive(Clone, Copy)]
pub struct ConnectorSpec {
    /// The name in `connector = '…'`, lowercase.
    pub name: &'static str,
    /// One line for the README.
    pub doc: &'static str,
    /// Its own options, in the order messages list them.
    pub options: &'static [OptionSpec],
    /// How it is configured.
    pub configure: Configure,
}

impl ConnectorSpec {
    /// Whether it reads or writes.
    pub fn role(&self) -> Role {
        match self.configure {
            Configure::Source { .. } => Role::Source,
            Configure::Sink(_) => Role::Sink,
        }
    }

    /// The options every connector of its kind takes besides its own.
    pub fn common_options(&self) -> &'static [OptionSpec] {
        match self.configure {
            Configure::Source {
                reads_json: true, ..
            } => JSON_OPTIONS,
            Configure::Source { .. } => &[],
            Configure::Sink(_) => SINK_OPTIONS,
        }
    }

    /// Its own options, then the common ones.
    pub fn all_options(&self) -> impl Iterator<Item = &'static OptionSpec> {
        self.options.iter().chain(self.common_options())
    }
}

impl std::fmt::Debug for ConnectorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorSpec")
            .field("name", &self.name)
            .field("role", &self.role())
            .finish_non_exhaustive()
    }
}

/// A source table as its connector is configured: the table's name, its declared columns, its
/// JSON options, and the pipeline's variables.
pub struct SourceTable<'a> {
    /// The table's name.
    pub name: &'a str,
    /// The declared (physical) columns.
    pub schema: SchemaRef,
    /// How JSON values are decoded ([`JSON_OPTIONS`]).
    pub json: JsonOptions,
    /// Looks a variable up (the pipeline's overrides, then the environment).
    pub variable: &'a dyn Fn(&str) -> Option<String>,
}

/// A sink table as its connector is configured.
pub struct SinkTable<'a> {
    /// The table's name.
    pub name: &'a str,
    /// Looks a variable up (the pipeline's overrides, then the environment).
    pub variable: &'a dyn Fn(&str) -> Option<String>,
}

/// A validated source table: builds a fresh source for each query reading it.
pub trait SourceFactory: Any + Send + Sync {
    /// A new source.
    fn build(&self) -> Result<Box<dyn Source>>;
}

impl<F> SourceFactory for F
where
    F: Fn() -> Result<Box<dyn Source>> + Send + Sync + 'static,
{
    fn build(&self) -> Result<Box<dyn Source>> {
        self()
    }
}

/// A validated sink table: builds a fresh sink for each query writing it.
pub trait SinkFactory: Any + Send + Sync {
    /// A new sink for query `query` (which names, e.g., its row in a commit table).
    fn build(&self, query: &str) -> Result<Box<dyn Sink>>;
}

impl<F> SinkFactory for F
where
    F: Fn(&str) -> Result<Box<dyn Sink>> + Send + Sync + 'static,
{
    fn build(&self, query: &str) -> Result<Box<dyn Sink>> {
        self(query)
    }
}

/// The result of reading options.
pub type OptionResult<T> = std::result::Result<T, OptionError>;

/// Where an option error points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorAt {
    /// The table's name.
    Table,
    /// The value of this option (the table's name when the value is a default).
    Value(String),
}

/// A table's options do not make a valid connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// Where the error points.
    pub at: ErrorAt,
    /// What is wrong.
    pub message: String,
}

impl OptionError {
    /// An error about the table as a whole.
    pub fn table(message: impl Into<String>) -> Self {
        Self {
            at: ErrorAt::Table,
            message: message.into(),
        }
    }

    /// An error about the value of option `key`.
    pub fn value(key: &str, message: impl Into<String>) -> Self {
        Self {
            at: ErrorAt::Value(key.to_string()),
            message: message.into(),
        }
    }
}

/// The text of an engine error, without the variant's prefix for configuration errors.
pub fn config_message(error: SluiceError) -> String {
    match error {
        SluiceError::Config(message) => message,
        other => other.to_string(),
    }
}

/// An option's value, read as its [`OptionType`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// [`OptionType::Text`] and each [`OptionType::Prefix`] entry.
    Text(String),
    /// [`OptionType::Count`].
    Count(u64),
    /// [`OptionType::Bool`].
    Bool(bool),
    /// [`OptionType::Duration`].
    Duration(Duration),
    /// [`OptionType::List`].
    List(Vec<String>),
}

/// A Rust type an [`OptionValue`] is read as.
pub trait FromOptionValue: Sized {
    /// The value, if it has this type.
    fn from_value(value: &OptionValue) -> Option<Self>;
}

macro_rules! from_option_value {
    ($type:ty, $variant:ident) => {
        impl FromOptionValue for $type {
            fn from_value(value: &OptionValue) -> Option<Self> {
                match value {
                    OptionValue::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    };
}

from_option_value!(String, Text);
from_option_value!(u64, Count);
from_option_value!(bool, Bool);
from_option_value!(Duration, Duration);
from_option_value!(Vec<String>, List);

/// A table's options, typed, defaults filled in; reading one marks it used, so that the
/// pipeline can report a given option that the connector ignored.
#[derive(Debug, Default)]
pub struct Settings {
    entries: Vec<(String, OptionValue, bool)>,
}

impl Settings {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets option `key` (a prefixed option under its whole key, `properties.acks`).
    pub fn insert(&mut self, key: impl Into<String>, value: OptionValue) {
        self.entries.push((key.into(), value, false));
    }

    /// Option `key`, if set, marked used.
    pub fn get<T: FromOptionValue>(&mut self, key: &str) -> OptionResult<Option<T>> {
        let Some((_, value, used)) = self.entries.iter_mut().find(|(k, _, _)| k == key) else {
            return Ok(None);
        };
        *used = true;
        T::from_value(value).map(Some).ok_or_else(|| {
            OptionError::value(
                key,
                format!(
                    "option '{key}' is read as a {} by its connector",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// Option `key`, which has a value: it is required or has a default.
    pub fn value<T: FromOptionValue>(&mut self, key: &str) -> OptionResult<T> {
        self.get(key)?.ok_or_else(|| Self::missing(key))
    }

    /// Text option `key` read by `parse`, whose error says what is expected.
    pub fn parse<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> OptionResult<Option<T>> {
        let Some(text) = self.get::<String>(key)? else {
            return Ok(None);
        };
        parse(&text)
            .map(Some)
            .map_err(|e| OptionError::value(key, format!("option '{key}': {e}")))
    }

    /// [`Settings::parse`] of an option that has a value.
    pub fn parse_value<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> OptionResult<T> {
        self.parse(key, parse)?.ok_or_else(|| Self::missing(key))
    }

    /// Every `prefix.<key>` option as `(key, value)`, marked used.
    pub fn prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        self.entries
            .iter_mut()
            .filter_map(|(key, value, used)| {
                let rest = key.strip_prefix(prefix)?.strip_prefix('.')?;
                let OptionValue::Text(text) = value else {
                    return None;
                };
                *used = true;
                Some((rest.to_string(), text.clone()))
            })
            .collect()
    }

    /// The options no one read, by their index in the order they were inserted.
    pub fn unused(&self) -> impl Iterator<Item = usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (_, _, used))| !used)
            .map(|(index, _)| index)
    }

    fn missing(key: &str) -> OptionError {
        OptionError::table(format!("option '{key}' has no value"))
    }
}

/// The options of every source that decodes JSON.
pub static JSON_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "format",
        kind: OptionType::Text,
        default: OptionDefault::Value("json"),
        doc: "`json`, the only format sources read",
    },
    OptionSpec {
        name: "mode",
        kind: OptionType::Text,
        default: OptionDefault::Value("PERMISSIVE"),
        doc: "what a malformed record does: `PERMISSIVE` (a row of nulls), `DROPMALFORMED` or `FAILFAST`",
    },
    OptionSpec {
        name: "corrupt_record_column",
        kind: OptionType::Text,
        default: OptionDefault::Unset("none"),
        doc: "a column receiving the text of malformed records (`PERMISSIVE`)",
    },
    OptionSpec {
        name: "max_depth",
        kind: OptionType::Count,
        default: OptionDefault::Value("1000"),
        doc: "deepest nesting of arrays and objects in a record; deeper is malformed (Spark's parser limit)",
    },
    OptionSpec {
        name: "max_record_bytes",
        kind: OptionType::Count,
        default: OptionDefault::Value("16777216"),
        doc: "longest record in bytes; longer is malformed",
    },
    OptionSpec {
        name: "allow_numeric_strings",
        kind: OptionType::Bool,
        default: OptionDefault::Value("false"),
        doc: "`true`: a string holding a number converts into a numeric column (`\"0.5\"` into a DOUBLE); `false`, as Spark: such a record is malformed, its other fields kept",
    },
];

/// The options of every sink.
pub static SINK_OPTIONS: &[OptionSpec] = &[OptionSpec {
    name: "output_mode",
    kind: OptionType::Text,
    default: OptionDefault::Value("append"),
    doc: "what each batch carries: `append`, `update` or `complete` (Spark's output modes)",
}];

/// Reads [`JSON_OPTIONS`].
pub fn json_options(settings: &mut Settings) -> OptionResult<JsonOptions> {
    let format: String = settings.value("format")?;
    if !format.eq_ignore_ascii_case("json") {
        return Err(OptionError::value(
            "format",
            format!("format '{format}': sources read 'json'"),
        ));
    }
    Ok(JsonOptions {
        mode: settings.parse_value("mode", |v| v.parse::<ParseMode>().map_err(config_message))?,
        corrupt_record_column: settings.get("corrupt_record_column")?,
        max_depth: settings.value::<u64>("max_depth")? as usize,
        max_record_bytes: settings.value::<u64>("max_record_bytes")? as usize,
        allow_numeric_strings: settings.value("allow_numeric_strings")?,
        ..JsonOptions::default()
    })
}

/// Reads [`SINK_OPTIONS`].
pub fn output_mode(settings: &mut Settings) -> OptionResult<OutputMode> {
    settings.parse_value("output_mode", |v| {
        v.parse::<OutputMode>().map_err(config_message)
    })
}

/// The memory source is its own factory: every query reading the table shares its handle,
/// which the pipeline hands to the embedding program.
impl SourceFactory for MemorySource {
    fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.clone()))
    }
}

/// The memory sink is its own factory: every query writing the table shares its handle.
impl SinkFactory for MemorySink {
    fn build(&self, _query: &str) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
}

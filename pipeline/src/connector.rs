//! From a table's declaration and options to the engine's sources and sinks.
//!
//! Reading the options ([`SourceConfig::from_decl`], [`SinkConfig::from_decl`]) is pure and
//! happens when the file loads, so every mistake is reported before anything connects;
//! building ([`SourceConfig::build`], [`SinkConfig::build`]) creates a fresh connector for
//! each query.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use sluice_connectors::binance::client::ClientOptions;
use sluice_connectors::binance::{BinanceSource, MINI_TICKER_URL};
use sluice_connectors::kafka::{
    DEFAULT_BOOTSTRAP, KafkaSink, KafkaSource, StartingOffsets, Subscription, TopicPartition,
};
use sluice_connectors::relational::{DEFAULT_DATABASE_URL, RelationalSink};
use sluice_engine::ComputedColumns;
use sluice_engine::{
    ConsoleSink, FileFormat, FileSink, FileSource, JsonOptions, MemorySink, MemorySource,
    OutputMode, ParseMode, Sink, SluiceError, Source,
};

use crate::error::{Located, Position};
use crate::options::{Options, Role, parse_bool};
use crate::parse::TableDecl;

/// Looks a variable up (overrides first, then the environment).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The text of an engine error, without the variant's prefix for configuration errors.
fn message(error: SluiceError) -> String {
    match error {
        SluiceError::Config(message) => message,
        other => other.to_string(),
    }
}

/// Checks that the `format` option, if given, is `json` (the one format `what` handles).
fn json_format(options: &mut Options, what: &str) -> Result<(), Located> {
    match options.string("format") {
        Some(format) if !format.value.eq_ignore_ascii_case("json") => Err(Located::new(
            format.position,
            format!("format '{}': {what} 'json'", format.value),
        )),
        _ => Ok(()),
    }
}

/// A validated source table.
#[derive(Clone)]
pub struct SourceConfig {
    /// The table's name.
    pub name: String,
    /// The connector's name.
    pub connector: String,
    /// The decoded (physical) columns.
    pub schema: SchemaRef,
    /// `(name, SQL expression)` of the computed columns.
    pub computed: Vec<(String, String)>,
    /// The watermark's column and delay in ms.
    pub watermark: Option<(String, i64)>,
    json: JsonOptions,
    kind: SourceKind,
}

#[derive(Clone)]
enum SourceKind {
    Kafka {
        bootstrap: String,
        subscription: Subscription,
        starting: StartingOffsets,
        max_offsets_per_trigger: Option<u64>,
        fail_on_data_loss: bool,
        group: Option<String>,
        include_metadata: bool,
        fetch_timeout: Option<Duration>,
        properties: Vec<(String, String)>,
    },
    WebSocket {
        url: String,
        idle_timeout: Option<Duration>,
        raw_events: bool,
    },
    File {
        path: String,
        max_files_per_trigger: Option<u64>,
    },
    Memory(MemorySource),
}

impl SourceConfig {
    /// Reads and checks the declaration of a source table.
    pub fn from_decl(decl: &TableDecl, lookup: Lookup<'_>) -> Result<Self, Located> {
        let at = decl.name.position;
        let mut options = Options::new(&decl.name, &decl.options, Role::Source)?;
        if !decl.column_list || decl.columns.is_empty() {
            return Err(Located::new(
                at,
                format!(
                    "source table {} needs its columns, e.g. (symbol VARCHAR, price DOUBLE, ts TIMESTAMP(3))",
                    decl.name.value
                ),
            ));
        }
        let mut names: Vec<&crate::parse::Spanned<String>> = decl
            .columns
            .iter()
            .map(|c| &c.name)
            .chain(decl.computed.iter().map(|c| &c.name))
            .collect();
        names.sort_by(|a, b| a.value.cmp(&b.value).then(a.position.cmp(&b.position)));
        if let Some(pair) = names.windows(2).find(|p| p[0].value == p[1].value) {
            return Err(Located::new(
                pair[1].position,
                format!("column {} is declared twice", pair[1].value),
            ));
        }
        let watermark = match &decl.watermark {
            Some(w) if names.iter().any(|n| n.value == w.column.value) => {
                Some((w.column.value.clone(), w.delay_ms))
            }
            Some(w) => {
                return Err(Located::new(
                    w.column.position,
                    format!("watermark on unknown column {}", w.column.value),
                ));
            }
            None => None,
        };
        let schema = Arc::new(Schema::new(
            decl.columns
                .iter()
                .map(|c| Field::new(&c.name.value, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let connector = options.connector().to_string();
        let mut json = JsonOptions::default();
        if connector != "memory" {
            json_format(&mut options, "sources read")?;
            if let Some(mode) =
                options.parsed("mode", |v| v.parse::<ParseMode>().map_err(message))?
            {
                json.mode = mode;
            }
            json.corrupt_record_column = options.string("corrupt_record_column").map(|v| v.value);
        }
        let kind = match connector.as_str() {
            "kafka" => kafka_source(&mut options, at, lookup)?,
            "binance" | "websocket" => SourceKind::WebSocket {
                url: options
                    .string("url")
                    .map_or_else(|| MINI_TICKER_URL.to_string(), |v| v.value),
                idle_timeout: options.duration("idle_timeout")?,
                raw_events: connector == "websocket",
            },
            "file" => SourceKind::File {
                path: options.required("path", at)?.value,
                max_files_per_trigger: options.u64("max_files_per_trigger")?,
            },
            _ => {
                let mut source = MemorySource::new(&decl.name.value, schema.clone());
                if let Some(rows) = options.u64("max_rows_per_trigger")? {
                    source = source.with_max_rows_per_trigger(rows);
                }
                SourceKind::Memory(source)
            }
        };
        options.finish()?;
        Ok(Self {
            name: decl.name.value.clone(),
            connector,
            schema,
            computed: decl
                .computed
                .iter()
                .map(|c| (c.name.value.clone(), c.expr.value.clone()))
                .collect(),
            watermark,
            json,
            kind,
        })
    }

    /// The memory source's handle, for programs that feed it.
    pub fn memory(&self) -> Option<&MemorySource> {
        match &self.kind {
            SourceKind::Memory(source) => Some(source),
            _ => None,
        }
    }

    /// A new source for one query, with its computed columns planned in `session`.
    pub fn build(&self, session: &SessionContext) -> Result<Box<dyn Source>, SluiceError> {
        let name = &self.name;
        let source: Box<dyn Source> = match &self.kind {
            SourceKind::Kafka {
                bootstrap,
                subscription,
                starting,
                max_offsets_per_trigger,
                fail_on_data_loss,
                group,
                include_metadata,
                fetch_timeout,
                properties,
            } => {
                let mut source = KafkaSource::new(name, bootstrap, subscription.clone())?
                    .starting_offsets(starting.clone())
                    .fail_on_data_loss(*fail_on_data_loss)
                    .include_metadata(*include_metadata)
                    .json(self.schema.clone(), self.json.clone());
                if let Some(n) = max_offsets_per_trigger {
                    source = source.max_offsets_per_trigger(*n);
                }
                if let Some(group) = group {
                    source = source.commit_to_group(group);
                }
                if let Some(timeout) = fetch_timeout {
                    source = source.fetch_timeout(*timeout);
                }
                for (key, value) in properties {
                    source = source.property(key, value);
                }
                Box::new(source)
            }
            SourceKind::WebSocket {
                url,
                idle_timeout,
                raw_events,
            } => {
                let mut client = ClientOptions::new(url);
                if let Some(timeout) = idle_timeout {
                    client.idle_timeout = *timeout;
                }
                let source =
                    BinanceSource::new(name, client, self.schema.clone(), self.json.clone());
                Box::new(if *raw_events {
                    source.raw_events()
                } else {
                    source
                })
            }
            SourceKind::File {
                path,
                max_files_per_trigger,
            } => {
                let mut source =
                    FileSource::new(name, path, self.schema.clone(), self.json.clone())?;
                if let Some(n) = max_files_per_trigger {
                    source = source.with_max_files_per_trigger(*n);
                }
                Box::new(source)
            }
            SourceKind::Memory(source) => Box::new(source.clone()),
        };
        if self.computed.is_empty() {
            Ok(source)
        } else {
            Ok(Box::new(ComputedColumns::new(
                source,
                session,
                &self.computed,
            )?))
        }
    }
}

fn kafka_source(
    options: &mut Options,
    at: Position,
    lookup: Lookup<'_>,
) -> Result<SourceKind, Located> {
    let topic = options.string("topic");
    let pattern = options.string("topic_pattern");
    let assign = options.string("assign");
    let subscription = match (topic, pattern, assign) {
        (Some(topic), None, None) => Subscription::Topics(crate::options::split_list(&topic.value)),
        (None, Some(pattern), None) => Subscription::Pattern(pattern.value),
        (None, None, Some(assign)) => Subscription::Assign(
            parse_assign(&assign.value)
                .map_err(|e| Located::new(assign.position, format!("option 'assign': {e}")))?,
        ),
        _ => {
            return Err(Located::new(
                at,
                "a Kafka source takes exactly one of 'topic', 'topic_pattern' or 'assign'",
            ));
        }
    };
    Ok(SourceKind::Kafka {
        bootstrap: bootstrap(options, lookup),
        subscription,
        starting: options
            .parsed("starting_offsets", |v| {
                v.parse::<StartingOffsets>().map_err(message)
            })?
            .unwrap_or_default(),
        max_offsets_per_trigger: options.u64("max_offsets_per_trigger")?,
        fail_on_data_loss: options.bool("fail_on_data_loss")?.unwrap_or(true),
        group: options.string("group_id").map(|v| v.value),
        include_metadata: options.bool("include_metadata")?.unwrap_or(false),
        fetch_timeout: options.duration("fetch_timeout")?,
        properties: options.prefixed("properties."),
    })
}

/// The `bootstrap` option, else `KAFKA_BOOTSTRAP`, else `localhost:9092`.
fn bootstrap(options: &mut Options, lookup: Lookup<'_>) -> String {
    options
        .string("bootstrap")
        .map(|v| v.value)
        .or_else(|| lookup("KAFKA_BOOTSTRAP").filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string())
}

/// Spark's `assign` JSON: `{"topic":[0,1]}`.
fn parse_assign(text: &str) -> Result<Vec<TopicPartition>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("expected JSON like {{\"topic\":[0,1]}}: {e}"))?;
    let topics = value
        .as_object()
        .ok_or("expected a JSON object like {\"topic\":[0,1]}")?;
    let mut partitions = Vec::new();
    for (topic, list) in topics {
        let list = list
            .as_array()
            .ok_or_else(|| format!("topic {topic}: expected an array of partitions"))?;
        for partition in list {
            let partition = partition
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| format!("topic {topic}: '{partition}' is not a partition number"))?;
            partitions.push(TopicPartition::new(topic, partition));
        }
    }
    if partitions.is_empty() {
        return Err("no partitions".into());
    }
    Ok(partitions)
}

/// A validated sink table.
#[derive(Clone)]
pub struct SinkConfig {
    /// The table's name.
    pub name: String,
    /// The connector's name.
    pub connector: String,
    /// What the sink receives each batch.
    pub output_mode: OutputMode,
    kind: SinkKind,
}

#[derive(Clone)]
enum SinkKind {
    Relational {
        url: String,
        table: String,
        primary_key: Option<Vec<String>>,
        index: Option<Vec<String>>,
        create_table: bool,
        notify: Option<String>,
    },
    Kafka {
        bootstrap: String,
        topic: String,
        key: Option<Vec<String>>,
        properties: Vec<(String, String)>,
    },
    File {
        path: String,
        format: FileFormat,
    },
    Console {
        num_rows: Option<usize>,
        truncate: Option<bool>,
    },
    Memory(MemorySink),
}

impl SinkConfig {
    /// Reads and checks the declaration of a sink table.
    pub fn from_decl(decl: &TableDecl, lookup: Lookup<'_>) -> Result<Self, Located> {
        let at = decl.name.position;
        if decl.column_list {
            return Err(Located::new(
                at,
                format!(
                    "sink table {} takes no column list: its columns are the query's",
                    decl.name.value
                ),
            ));
        }
        let mut options = Options::new(&decl.name, &decl.options, Role::Sink)?;
        let connector = options.connector().to_string();
        let output_mode = options
            .parsed("output_mode", |v| v.parse::<OutputMode>().map_err(message))?
            .unwrap_or(OutputMode::Append);
        let kind = match connector.as_str() {
            "postgres" | "sqlite" => {
                let url = match options.string("url") {
                    Some(url) => url,
                    None if connector == "sqlite" => crate::parse::Spanned {
                        value: DEFAULT_DATABASE_URL.to_string(),
                        position: at,
                    },
                    None => options.required("url", at)?,
                };
                let scheme = url.value.split_once("://").map(|(s, _)| s).unwrap_or("");
                let fits = match connector.as_str() {
                    "postgres" => matches!(scheme, "postgres" | "postgresql"),
                    _ => scheme == "sqlite",
                };
                if !fits {
                    return Err(Located::new(
                        url.position,
                        format!(
                            "connector '{connector}' needs a {connector}:// URL, got '{}'",
                            sluice_connectors::relational::redact_url(&url.value)
                        ),
                    ));
                }
                let notify = match options.string("notify") {
                    Some(v) if connector == "sqlite" => {
                        return Err(Located::new(
                            v.position,
                            "option 'notify' needs PostgreSQL (SQLite readers poll sluice_commits)",
                        ));
                    }
                    Some(v) if v.value.is_empty() || v.value.eq_ignore_ascii_case("false") => {
                        Some(String::new())
                    }
                    Some(v) => Some(v.value),
                    None => None,
                };
                SinkKind::Relational {
                    url: url.value,
                    table: options
                        .string("table")
                        .map_or_else(|| decl.name.value.clone(), |v| v.value),
                    primary_key: options.list("primary_key"),
                    index: options.list("index"),
                    create_table: options.bool("create_table")?.unwrap_or(true),
                    notify,
                }
            }
            "kafka" => {
                json_format(&mut options, "the Kafka sink writes")?;
                SinkKind::Kafka {
                    bootstrap: bootstrap(&mut options, lookup),
                    topic: options.required("topic", at)?.value,
                    key: options.list("key"),
                    properties: options.prefixed("properties."),
                }
            }
            "file" => SinkKind::File {
                path: options.required("path", at)?.value,
                format: options
                    .parsed("format", |v| match v.to_ascii_lowercase().as_str() {
                        "json" => Ok(FileFormat::JsonLines),
                        "parquet" => Ok(FileFormat::Parquet),
                        _ => Err(format!("expected 'json' or 'parquet', got '{v}'")),
                    })?
                    .unwrap_or(FileFormat::JsonLines),
            },
            "console" => SinkKind::Console {
                num_rows: options
                    .u64("num_rows")?
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                truncate: options.parsed("truncate", parse_bool)?,
            },
            _ => SinkKind::Memory(MemorySink::new()),
        };
        options.finish()?;
        Ok(Self {
            name: decl.name.value.clone(),
            connector,
            output_mode,
            kind,
        })
    }

    /// The memory sink's handle, for programs that read it.
    pub fn memory(&self) -> Option<&MemorySink> {
        match &self.kind {
            SinkKind::Memory(sink) => Some(sink),
            _ => None,
        }
    }

    /// A new sink for one query; `query` names its row in `sluice_commits`.
    pub fn build(&self, query: &str) -> Result<Box<dyn Sink>, SluiceError> {
        Ok(match &self.kind {
            SinkKind::Relational {
                url,
                table,
                primary_key,
                index,
                create_table,
                notify,
            } => {
                let mut sink = RelationalSink::new(url, table)
                    .map_err(|e| SluiceError::Config(e.to_string()))?
                    .create_table(*create_table)
                    .commit_name(query);
                if let Some(key) = primary_key {
                    sink = sink.primary_key(key.clone());
                }
                if let Some(index) = index {
                    sink = sink.index(index.clone());
                }
                if let Some(channel) = notify {
                    sink = sink.notify_channel((!channel.is_empty()).then(|| channel.clone()));
                }
                Box::new(sink)
            }
            SinkKind::Kafka {
                bootstrap,
                topic,
                key,
                properties,
            } => {
                let mut sink = KafkaSink::new(bootstrap, topic);
                if let Some(key) = key {
                    sink = sink.key_columns(key.clone());
                }
                for (k, v) in properties {
                    sink = sink.property(k, v);
                }
                Box::new(sink)
            }
            SinkKind::File { path, format } => Box::new(FileSink::new(path, *format)?),
            SinkKind::Console { num_rows, truncate } => {
                let mut sink = ConsoleSink::stdout();
                if let Some(n) = num_rows {
                    sink = sink.with_num_rows(*n);
                }
                if let Some(truncate) = truncate {
                    sink = sink.with_truncate(*truncate);
                }
                Box::new(sink)
            }
            SinkKind::Memory(sink) => Box::new(sink.clone()),
        })
    }
}

//! The engine's built-in connectors — the file source and sink, the memory source and sink,
//! the console sink — declared to pipeline files like every other connector.
//!
//! They live in `sluice-engine`; their declarations are here, in one file, so that the engine
//! holds only the spec types ([`sluice_engine::connector`]) and every declaration is written
//! alike. The memory source and sink are their own factories (their trait impls are in the
//! engine).

use std::sync::Arc;

use sluice_engine::connector::{Configure, ConnectorSpec, OptionDefault, OptionSpec, OptionType};
use sluice_engine::{
    ConsoleSink, FileFormat, FileSink, FileSource, MemorySink, MemorySource, Result, Sink, Source,
};

/// The file source ([`FileSource`]).
pub static FILE_SOURCE: ConnectorSpec = ConnectorSpec {
    name: "file",
    doc: "JSON-lines files appearing in a directory or under an object-store URL (Spark's file source)",
    options: &[
        OptionSpec {
            name: "path",
            kind: OptionType::Text,
            default: OptionDefault::Required,
            doc: "a directory of JSON-lines files or an object-store URL",
        },
        OptionSpec {
            name: "max_files_per_trigger",
            kind: OptionType::Count,
            default: OptionDefault::Unset("all"),
            doc: "files admitted per micro-batch at most",
        },
    ],
    configure: Configure::Source {
        reads_json: true,
        configure: |settings, table| {
            let name = table.name.to_string();
            let path: String = settings.value("path")?;
            let max_files: Option<u64> = settings.get("max_files_per_trigger")?;
            let (schema, json) = (table.schema.clone(), table.json.clone());
            Ok(Arc::new(move || -> Result<Box<dyn Source>> {
                let mut source = FileSource::new(&name, &path, schema.clone(), json.clone())?;
                if let Some(n) = max_files {
                    source = source.with_max_files_per_trigger(n);
                }
                Ok(Box::new(source))
            }))
        },
    },
};

/// The memory source ([`MemorySource`]): every query reading the table shares one handle.
pub static MEMORY_SOURCE: ConnectorSpec = ConnectorSpec {
    name: "memory",
    doc: "Rows fed by the embedding program (`Pipeline::memory_source`)",
    options: &[OptionSpec {
        name: "max_rows_per_trigger",
        kind: OptionType::Count,
        default: OptionDefault::Unset("all"),
        doc: "rows admitted per micro-batch at most",
    }],
    configure: Configure::Source {
        reads_json: false,
        configure: |settings, table| {
            let mut source = MemorySource::new(table.name, table.schema.clone());
            if let Some(rows) = settings.get("max_rows_per_trigger")? {
                source = source.with_max_rows_per_trigger(rows);
            }
            Ok(Arc::new(source))
        },
    },
};

/// The file sink ([`FileSink`]).
pub static FILE_SINK: ConnectorSpec = ConnectorSpec {
    name: "file",
    doc: "One file per micro-batch, JSON lines or Parquet, in a directory or under an object-store URL",
    options: &[
        OptionSpec {
            name: "path",
            kind: OptionType::Text,
            default: OptionDefault::Required,
            doc: "a directory or an object-store URL",
        },
        OptionSpec {
            name: "format",
            kind: OptionType::Text,
            default: OptionDefault::Value("json"),
            doc: "`json` (JSON lines) or `parquet`",
        },
    ],
    configure: Configure::Sink(|settings, _| {
        let path: String = settings.value("path")?;
        let format = settings.parse_value("format", |v| match v.to_ascii_lowercase().as_str() {
            "json" => Ok(FileFormat::JsonLines),
            "parquet" => Ok(FileFormat::Parquet),
            _ => Err(format!("expected 'json' or 'parquet', got '{v}'")),
        })?;
        Ok(Arc::new(move |_: &str| -> Result<Box<dyn Sink>> {
            Ok(Box::new(FileSink::new(&path, format)?))
        }))
    }),
};

/// The console sink ([`ConsoleSink`]), on standard output.
pub static CONSOLE_SINK: ConnectorSpec = ConnectorSpec {
    name: "console",
    doc: "Each batch printed as a table on standard output (Spark's console sink)",
    options: &[
        OptionSpec {
            name: "num_rows",
            kind: OptionType::Count,
            default: OptionDefault::Value("20"),
            doc: "rows printed per batch at most",
        },
        OptionSpec {
            name: "truncate",
            kind: OptionType::Bool,
            default: OptionDefault::Value("true"),
            doc: "whether long values are cut to 20 characters",
        },
    ],
    configure: Configure::Sink(|settings, _| {
        let num_rows: u64 = settings.value("num_rows")?;
        let num_rows = usize::try_from(num_rows).unwrap_or(usize::MAX);
        let truncate: bool = settings.value("truncate")?;
        Ok(Arc::new(move |_: &str| -> Result<Box<dyn Sink>> {
            Ok(Box::new(
                ConsoleSink::stdout()
                    .with_num_rows(num_rows)
                    .with_truncate(truncate),
            ))
        }))
    }),
};

/// The memory sink ([`MemorySink`]): every query writing the table shares one handle.
pub static MEMORY_SINK: ConnectorSpec = ConnectorSpec {
    name: "memory",
    doc: "Rows kept for the embedding program (`Pipeline::memory_sink`)",
    options: &[],
    configure: Configure::Sink(|_, _| Ok(Arc::new(MemorySink::new()))),
};

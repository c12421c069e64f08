//! The relational sink as pipeline files declare it (`connector = 'postgres'` or
//! `'sqlite'`): its options and how validated options become a [`RelationalSink`] per query.

use std::sync::Arc;

use sluice_engine::connector::{
    Configure, ConnectorSpec, OptionDefault, OptionError, OptionResult, OptionSpec, OptionType,
    Settings, SinkFactory, SinkTable,
};
use sluice_engine::{Result, Sink, SluiceError};

use super::commits::NOTIFY_CHANNEL;
use super::connect::DEFAULT_DATABASE_URL;
use super::error::redact_url;
use super::sink::RelationalSink;

const TABLE: OptionSpec = OptionSpec {
    name: "table",
    kind: OptionType::Text,
    default: OptionDefault::Unset("the declared name"),
    doc: "the table written, `name` or `schema.name`",
};

const PRIMARY_KEY: OptionSpec = OptionSpec {
    name: "primary_key",
    kind: OptionType::List,
    default: OptionDefault::Unset("the query's group keys"),
    doc: "the key upserted on in update mode, and the primary key of a created table",
};

const INDEX: OptionSpec = OptionSpec {
    name: "index",
    kind: OptionType::List,
    default: OptionDefault::Unset("none"),
    doc: "the columns of an index created if missing",
};

const CREATE_TABLE: OptionSpec = OptionSpec {
    name: "create_table",
    kind: OptionType::Bool,
    default: OptionDefault::Value("true"),
    doc: "whether a missing table is created (else it is an error at start)",
};

/// The PostgreSQL sink.
pub static POSTGRES_SINK: ConnectorSpec = ConnectorSpec {
    name: "postgres",
    doc: "A PostgreSQL table, exactly-once per batch: binary `COPY`, upserts in update mode, \
          `NOTIFY` on commit",
    options: &[
        OptionSpec {
            name: "url",
            kind: OptionType::Text,
            default: OptionDefault::Required,
            doc: "`postgres://user:password@host/database` (or `postgresql://`)",
        },
        TABLE,
        PRIMARY_KEY,
        INDEX,
        CREATE_TABLE,
        OptionSpec {
            name: "notify",
            kind: OptionType::Text,
            default: OptionDefault::Value(NOTIFY_CHANNEL),
            doc: "the channel notified after each committed batch; `false` (or empty) turns \
                  notifications off",
        },
    ],
    configure: Configure::Sink(|settings, table| configure(settings, table, "postgres")),
};

/// The SQLite sink, the embedded default.
pub static SQLITE_SINK: ConnectorSpec = ConnectorSpec {
    name: "sqlite",
    doc: "A SQLite table, exactly-once per batch; readers poll `sluice_commits`",
    options: &[
        OptionSpec {
            name: "url",
            kind: OptionType::Text,
            default: OptionDefault::Value(DEFAULT_DATABASE_URL),
            doc: "`sqlite://path` (the file and its directory are created)",
        },
        TABLE,
        PRIMARY_KEY,
        INDEX,
        CREATE_TABLE,
        OptionSpec {
            name: "notify",
            kind: OptionType::Text,
            default: OptionDefault::Unset("—"),
            doc: "PostgreSQL only: refused here",
        },
    ],
    configure: Configure::Sink(|settings, table| configure(settings, table, "sqlite")),
};

/// Either connector, named `connector`.
fn configure(
    settings: &mut Settings,
    table: &SinkTable<'_>,
    connector: &str,
) -> OptionResult<Arc<dyn SinkFactory>> {
    let url: String = settings.value("url")?;
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    let fits = match connector {
        "postgres" => matches!(scheme, "postgres" | "postgresql"),
        _ => scheme == "sqlite",
    };
    if !fits {
        return Err(OptionError::value(
            "url",
            format!(
                "connector '{connector}' needs a {connector}:// URL, got '{}'",
                redact_url(&url)
            ),
        ));
    }
    let notify = match settings.get::<String>("notify")? {
        Some(_) if connector == "sqlite" => {
            return Err(OptionError::value(
                "notify",
                "option 'notify' needs PostgreSQL (SQLite readers poll sluice_commits)",
            ));
        }
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("false") => None,
        Some(v) => Some(v),
        None => None,
    };
    let table_name = settings
        .get::<String>("table")?
        .unwrap_or_else(|| table.name.to_string());
    let primary_key: Option<Vec<String>> = settings.get("primary_key")?;
    let index: Option<Vec<String>> = settings.get("index")?;
    let create_table: bool = settings.value("create_table")?;
    Ok(Arc::new(move |query: &str| -> Result<Box<dyn Sink>> {
        let mut sink = RelationalSink::new(&url, &table_name)
            .map_err(|e| SluiceError::Config(e.to_string()))?
            .create_table(create_table)
            .commit_name(query)
            .notify_channel(notify.clone());
        if let Some(key) = &primary_key {
            sink = sink.primary_key(key.clone());
        }
        if let Some(index) = &index {
            sink = sink.index(index.clone());
        }
        Ok(Box::new(sink))
    }))
}

//! From a table's declaration and options to the engine's sources and sinks.
//!
//! Reading the options ([`SourceConfig::from_decl`], [`SinkConfig::from_decl`]) is pure and
//! happens when the file loads, so every mistake is reported before anything connects: the
//! options are checked against the connector's spec ([`crate::options`]), then the connector's
//! own configure function reads them into a factory. Building ([`SourceConfig::build`],
//! [`SinkConfig::build`]) creates a fresh connector for each query.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use sluice_engine::connector::{
    Configure, SinkFactory, SinkTable, SourceFactory, SourceTable, json_options, output_mode,
};
use sluice_engine::{
    ComputedColumns, JsonOptions, MemorySink, MemorySource, OutputMode, Sink, SluiceError, Source,
};

use sluice_connectors::kafka::KafkaSourceFactory;

use crate::error::Located;
use crate::options::{Options, Role};
use crate::parse::TableDecl;

/// Looks a variable up (overrides first, then the environment).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
    /// `DEDUPLICATE ON (…)`: the key columns, and whether `WITHIN WATERMARK`.
    pub dedup: Option<(Vec<String>, bool)>,
    factory: Arc<dyn SourceFactory>,
}

impl SourceConfig {
    /// Reads and checks the declaration of a source table.
    pub fn from_decl(decl: &TableDecl, lookup: Lookup<'_>) -> Result<Self, Located> {
        let at = decl.name.position;
        let options = Options::new(&decl.name, &decl.options, Role::Source)?;
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
        let dedup = match &decl.dedup {
            Some(d) => {
                if let Some(unknown) = d
                    .columns
                    .iter()
                    .find(|c| !names.iter().any(|n| n.value == c.value))
                {
                    return Err(Located::new(
                        unknown.position,
                        format!("DEDUPLICATE ON an unknown column {}", unknown.value),
                    ));
                }
                if d.within_watermark && watermark.is_none() {
                    return Err(Located::new(
                        d.position,
                        "DEDUPLICATE … WITHIN WATERMARK needs the table's WATERMARK FOR",
                    ));
                }
                Some((
                    d.columns.iter().map(|c| c.value.clone()).collect(),
                    d.within_watermark,
                ))
            }
            None => None,
        };
        let schema = Arc::new(Schema::new(
            decl.columns
                .iter()
                .map(|c| Field::new(&c.name.value, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let Configure::Source {
            reads_json,
            configure,
        } = options.spec().configure
        else {
            return Err(Located::new(at, "the connector does not read tables"));
        };
        let mut settings = options.settings()?;
        let json = if reads_json {
            json_options(&mut settings).map_err(|e| options.locate(e))?
        } else {
            JsonOptions::default()
        };
        let table = SourceTable {
            name: &decl.name.value,
            schema: schema.clone(),
            json,
            variable: lookup,
        };
        let factory = configure(&mut settings, &table).map_err(|e| options.locate(e))?;
        options.finish(&settings)?;
        Ok(Self {
            name: decl.name.value.clone(),
            connector: options.connector().to_string(),
            schema,
            computed: decl
                .computed
                .iter()
                .map(|c| (c.name.value.clone(), c.expr.value.clone()))
                .collect(),
            watermark,
            dedup,
            factory,
        })
    }

    /// The memory source's handle, for programs that feed it.
    pub fn memory(&self) -> Option<&MemorySource> {
        let factory: &dyn Any = &*self.factory;
        factory.downcast_ref()
    }

    /// The Kafka source's factory, if the table is a Kafka source.
    pub fn kafka(&self) -> Option<&KafkaSourceFactory> {
        let factory: &dyn Any = &*self.factory;
        factory.downcast_ref()
    }

    /// A new source for one query, or for its task `task` (partition `task` of the Kafka
    /// topics) when it is distributed, with its computed columns planned in `session`.
    pub fn build(
        &self,
        session: &SessionContext,
        task: Option<i32>,
    ) -> Result<Box<dyn Source>, SluiceError> {
        let source = match (task, self.kafka()) {
            (None, _) => self.factory.build()?,
            (Some(task), Some(kafka)) => kafka.build_task(task)?,
            (Some(_), None) => {
                return Err(SluiceError::Config(format!(
                    "source {} is not a Kafka source: it cannot be split into tasks",
                    self.name
                )));
            }
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

/// A validated sink table.
#[derive(Clone)]
pub struct SinkConfig {
    /// The table's name.
    pub name: String,
    /// The connector's name.
    pub connector: String,
    /// What the sink receives each batch.
    pub output_mode: OutputMode,
    factory: Arc<dyn SinkFactory>,
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
        let options = Options::new(&decl.name, &decl.options, Role::Sink)?;
        let Configure::Sink(configure) = options.spec().configure else {
            return Err(Located::new(at, "the connector does not write tables"));
        };
        let mut settings = options.settings()?;
        let output_mode = output_mode(&mut settings).map_err(|e| options.locate(e))?;
        let table = SinkTable {
            name: &decl.name.value,
            variable: lookup,
        };
        let factory = configure(&mut settings, &table).map_err(|e| options.locate(e))?;
        options.finish(&settings)?;
        Ok(Self {
            name: decl.name.value.clone(),
            connector: options.connector().to_string(),
            output_mode,
            factory,
        })
    }

    /// The memory sink's handle, for programs that read it.
    pub fn memory(&self) -> Option<&MemorySink> {
        let factory: &dyn Any = &*self.factory;
        factory.downcast_ref()
    }

    /// A new sink for one query; `query` names its row in `sluice_commits`.
    pub fn build(&self, query: &str) -> Result<Box<dyn Sink>, SluiceError> {
        self.factory.build(query)
    }
}

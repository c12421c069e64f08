//! A loaded pipeline file: its tables, settings and queries, ready to explain or start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use datafusion::common::TableReference;
use sluice_engine::{
    MemorySink, MemorySource, OutputMode, QueryListener, StreamingQuery, StreamingQueryBuilder,
    Trigger, WatermarkPolicy,
};

use crate::connector::{SinkConfig, SourceConfig};
use crate::error::{Located, PipelineError, Position, Result};
use crate::include::{ReadFile, SourceMap, load, read_from_disk};
use crate::options::{parse_bool, parse_interval};
use crate::parse::{Spanned, Statement, TableDecl, ViewDecl};
use crate::worker::{TaskPlan, TaskQuery, Worker, check_not_distributed};

/// Where checkpoints go when the file does not `SET checkpoint`: `<dir>/<query name>`.
pub const DEFAULT_CHECKPOINT_DIR: &str = "data/checkpoints";

/// Variables for `${…}`: explicit values first, then (optionally) the process environment.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
    environment: bool,
}

impl Variables {
    /// The process environment only.
    pub fn from_env() -> Self {
        Self {
            values: BTreeMap::new(),
            environment: true,
        }
    }

    /// No variables at all (tests).
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets `name` (it wins over the environment).
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .cloned()
            .or_else(|| self.environment.then(|| std::env::var(name).ok()).flatten())
    }
}

/// Query settings, from `SET` statements before the `INSERT`.
#[derive(Debug, Clone)]
struct Settings {
    trigger: Trigger,
    checkpoint: Option<String>,
    query_name: Option<String>,
    foreach_batch: bool,
    watermark_policy: WatermarkPolicy,
    retained_batches: Option<u64>,
    /// `SET parallelism`: partitions of the query (default: the machine's cores).
    parallelism: Option<usize>,
    /// `SET http_listen`: process-wide, so one value per file (checked at load).
    http_listen: Option<HttpListen>,
    /// `SET distribution`: one process, or tasks over Kafka partitions.
    distribution: Distribution,
}

/// How a query's work is spread, as `SET distribution` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distribution {
    /// `'spark'` (the default): one query in one process, over all the sources' partitions,
    /// with Spark's global watermark.
    #[default]
    Spark,
    /// `'kafka_partitions'`: one task per Kafka partition number, run by the workers (`sluice
    /// run` processes) of the query's consumer group, each task with its own checkpoint,
    /// state and watermark ([`crate::worker`]).
    KafkaPartitions,
}

/// Where `sluice run` serves its HTTP endpoint (metrics, health, queries), as
/// `SET http_listen = 'host:port'` (or `'off'`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    /// No endpoint.
    Off,
    /// Listen on this address.
    At(SocketAddr),
}

impl std::str::FromStr for HttpListen {
    type Err = String;

    /// `off` (or `none`), or `host:port` with an IP address.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(HttpListen::Off),
            _ => text.parse().map(HttpListen::At).map_err(|_| {
                format!("expected 'off' or an address such as '127.0.0.1:9464', got '{text}'")
            }),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            trigger: Trigger::Default,
            checkpoint: Some(DEFAULT_CHECKPOINT_DIR.to_string()),
            query_name: None,
            foreach_batch: false,
            watermark_policy: WatermarkPolicy::Min,
            retained_batches: None,
            parallelism: None,
            http_listen: None,
            distribution: Distribution::Spark,
        }
    }
}

/// The settings `SET` accepts.
pub const SETTINGS: &[&str] = &[
    "trigger",
    "checkpoint",
    "query_name",
    "foreach_batch",
    "watermark_policy",
    "retained_batches",
    "parallelism",
    "http_listen",
    "distribution",
];

impl Settings {
    fn set(&mut self, key: &Spanned<String>, value: &Spanned<String>) -> Result<(), Located> {
        let v = value.value.as_str();
        let bad = |e: String| Located::new(value.position, format!("SET {}: {e}", key.value));
        match key.value.as_str() {
            "trigger" => self.trigger = match v.to_ascii_lowercase().as_str() {
                "default" => Trigger::Default,
                "available_now" | "availablenow" => Trigger::AvailableNow,
                _ => Trigger::ProcessingTime(parse_interval(v).map_err(|e| {
                    bad(format!(
                        "{e}; expected 'default', 'available_now' or an interval such as '1 second'"
                    ))
                })?),
            },
            "checkpoint" => {
                self.checkpoint = match v {
                    "" | "none" => None,
                    dir => Some(dir.trim_end_matches('/').to_string()),
                }
            }
            "query_name" => {
                if v.is_empty() {
                    return Err(bad("a query name cannot be empty".into()));
                }
                check_query_name(v).map_err(bad)?;
                self.query_name = Some(v.to_string());
            }
            "foreach_batch" => self.foreach_batch = parse_bool(v).map_err(bad)?,
            "watermark_policy" => {
                self.watermark_policy = match v.to_ascii_lowercase().as_str() {
                    "min" => WatermarkPolicy::Min,
                    "max" => WatermarkPolicy::Max,
                    _ => return Err(bad(format!("expected 'min' or 'max', got '{v}'"))),
                }
            }
            "retained_batches" => {
                self.retained_batches = Some(
                    v.parse()
                        .map_err(|_| bad(format!("expected a positive integer, got '{v}'")))?,
                )
            }
            "parallelism" => {
                self.parallelism = Some(match v.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => n,
                    _ => {
                        return Err(bad(format!(
                            "expected a number of partitions from 1 to 1024, got '{v}'"
                        )));
                    }
                })
            }
            "distribution" => {
                self.distribution = match v.to_ascii_lowercase().as_str() {
                    "spark" => Distribution::Spark,
                    "kafka_partitions" => Distribution::KafkaPartitions,
                    _ => {
                        return Err(bad(format!(
                            "expected 'spark' (one process) or 'kafka_partitions' (tasks over \
                             the Kafka partitions, run by every worker of the query), got '{v}'"
                        )));
                    }
                }
            }
            "http_listen" => {
                let listen: HttpListen = v.parse().map_err(bad)?;
                if self.http_listen.is_some_and(|set| set != listen) {
                    return Err(bad(
                        "the endpoint is one per process: set it once per file".into()
                    ));
                }
                self.http_listen = Some(listen);
            }
            other => {
                return Err(Located::new(
                    key.position,
                    format!(
                        "unknown setting '{other}' (settings: {})",
                        SETTINGS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One `INSERT INTO`: a streaming query.
#[derive(Clone)]
struct QueryDecl {
    name: String,
    /// Where its sink is named, in the pipeline's numbering (see [`SourceMap`]).
    position: Position,
    sql: String,
    /// The views it reads, directly or through other views, as (name, SQL) in file order.
    views: Vec<(String, String)>,
    sources: Vec<String>,
    sink: SinkConfig,
    settings: Settings,
}

/// What a query (or a view) reads: sources in the order first read, and views as indices
/// into the file's views, in file order (a view's own reads included).
#[derive(Debug, Clone, Default)]
struct Reads {
    sources: Vec<String>,
    views: Vec<usize>,
}

impl Reads {
    fn add_source(&mut self, name: &str) {
        if !self.sources.iter().any(|s| s == name) {
            self.sources.push(name.to_string());
        }
    }

    /// Adds view `index`, which reads `reads`.
    fn add_view(&mut self, index: usize, reads: &Reads) {
        for source in &reads.sources {
            self.add_source(source);
        }
        for &view in reads.views.iter().chain([&index]) {
            if let Err(at) = self.views.binary_search(&view) {
                self.views.insert(at, view);
            }
        }
    }
}

/// A pipeline file, parsed and validated: every option of every table, every setting, and
/// which tables each query reads. Nothing has connected yet.
#[derive(Clone)]
pub struct Pipeline {
    /// The file given and the files it includes.
    files: SourceMap,
    sources: BTreeMap<String, SourceConfig>,
    /// Where each view is named, for the errors of its query.
    view_positions: BTreeMap<String, Position>,
    queries: Vec<QueryDecl>,
    /// `SET http_listen`, if the file says.
    http_listen: Option<HttpListen>,
    /// Told of every query's start, progress and end.
    listeners: Vec<Arc<dyn QueryListener>>,
}

impl Pipeline {
    /// Reads and validates the file at `path` (and the files it includes).
    pub fn load(path: impl AsRef<Path>, variables: &Variables) -> Result<Self> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| PipelineError::Read {
            file: file.clone(),
            error,
        })?;
        Self::parse(&file, &text, variables)
    }

    /// Validates pipeline `text`; `file` names it in errors, and the files it includes are
    /// read from disk, relative to `file`'s directory.
    pub fn parse(file: &str, text: &str, variables: &Variables) -> Result<Self> {
        Self::parse_with(file, text, variables, &read_from_disk)
    }

    /// As [`Pipeline::parse`], with the included files read by `read` (given the path
    /// joined to the including file's directory), e.g. from files compiled into the program.
    pub fn parse_with(
        file: &str,
        text: &str,
        variables: &Variables,
        read: ReadFile<'_>,
    ) -> Result<Self> {
        let lookup = |name: &str| variables.get(name);
        let (statements, files) = load(file, text, &lookup, read)?;
        let at = |error: Located| files.error(error);

        let mut tables: BTreeMap<String, TableDecl> = BTreeMap::new();
        let mut views: Vec<ViewDecl> = Vec::new();
        let mut inserts = Vec::new();
        let mut settings = Settings::default();
        for statement in statements {
            match statement {
                Statement::Set { key, value } => settings.set(&key, &value).map_err(&at)?,
                Statement::CreateTable(table) => {
                    if let Some(first) = tables.get(&table.name.value) {
                        return Err(at(Located::new(
                            table.name.position,
                            format!(
                                "table {} is already declared at {}",
                                table.name.value,
                                files.mention(first.name.position, table.name.position)
                            ),
                        )));
                    }
                    tables.insert(table.name.value.clone(), table);
                }
                Statement::CreateView(view) => {
                    if let Some(first) = views.iter().find(|v| v.name.value == view.name.value) {
                        return Err(at(Located::new(
                            view.name.position,
                            format!(
                                "view {} is already declared at {}",
                                view.name.value,
                                files.mention(first.name.position, view.name.position)
                            ),
                        )));
                    }
                    views.push(view);
                }
                Statement::Insert(insert) => inserts.push((insert, settings.clone())),
            }
        }
        if let Some(view) = views.iter().find(|v| tables.contains_key(&v.name.value)) {
            return Err(at(Located::new(
                view.name.position,
                format!(
                    "view {0} has the name of table {0}, declared at {1}",
                    view.name.value,
                    files.mention(tables[&view.name.value].name.position, view.name.position)
                ),
            )));
        }
        if inserts.is_empty() {
            return Err(at(Located::new(
                Position { line: 1, column: 1 },
                "the file has no INSERT INTO: nothing would run",
            )));
        }

        let targets: BTreeMap<&str, Position> = inserts
            .iter()
            .map(|(insert, _)| (insert.target.value.as_str(), insert.target.position))
            .collect();
        let mut sources = BTreeMap::new();
        let mut sinks = BTreeMap::new();
        for (name, decl) in &tables {
            if targets.contains_key(name.as_str()) {
                sinks.insert(
                    name.clone(),
                    SinkConfig::from_decl(decl, &lookup).map_err(&at)?,
                );
            } else {
                sources.insert(
                    name.clone(),
                    SourceConfig::from_decl(decl, &lookup).map_err(&at)?,
                );
            }
        }

        let session = sluice_engine::streaming_session();
        let state = session.state();
        let dialect = state.config().options().sql_parser.dialect;
        // What a query's text reads: the sources, and the views with what they read in turn.
        let reads = |query: &str, position: Position, views: &[(ViewDecl, Reads)]| {
            let statement = state
                .sql_to_statement(query, &dialect)
                .map_err(|e| Located::new(position, e.to_string()))?;
            let references = state
                .resolve_table_references(&statement)
                .map_err(|e| Located::new(position, e.to_string()))?;
            let mut reads = Reads::default();
            for reference in references {
                let TableReference::Bare { table } = &reference else {
                    continue;
                };
                if sinks.contains_key(table.as_ref()) {
                    return Err(Located::new(
                        position,
                        format!("the query reads {table}, which is a sink of this file"),
                    ));
                }
                if sources.contains_key(table.as_ref()) {
                    reads.add_source(table);
                } else if let Some(index) = views.iter().position(|(v, _)| v.name.value == **table)
                {
                    reads.add_view(index, &views[index].1);
                }
            }
            Ok(reads)
        };
        // Views may read the sources and the views declared before them.
        let mut resolved: Vec<(ViewDecl, Reads)> = Vec::new();
        for view in views {
            let read = reads(&view.query, view.query_position, &resolved).map_err(&at)?;
            resolved.push((view, read));
        }
        let mut queries: Vec<QueryDecl> = Vec::new();
        for (insert, settings) in inserts {
            let target = &insert.target;
            let Some(sink) = sinks.get(&target.value) else {
                return Err(at(Located::new(
                    target.position,
                    format!(
                        "INSERT INTO {0}: table {0} is not declared (CREATE TABLE {0} WITH (connector = …))",
                        target.value
                    ),
                )));
            };
            let reads = reads(&insert.query, insert.query_position, &resolved).map_err(&at)?;
            let read = reads.sources;
            if read.is_empty() {
                return Err(at(Located::new(
                    insert.query_position,
                    format!(
                        "the query of INSERT INTO {} reads none of the declared sources ({})",
                        target.value,
                        sources.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )));
            }
            let name = match &settings.query_name {
                Some(name) => name.clone(),
                None => {
                    check_query_name(&target.value).map_err(|e| {
                        at(Located::new(
                            target.position,
                            format!("{e}; SET query_name before the INSERT"),
                        ))
                    })?;
                    target.value.clone()
                }
            };
            if settings.distribution == Distribution::KafkaPartitions {
                check_distributable(&read, &sources, sink, &settings)
                    .map_err(|e| at(Located::new(target.position, e)))?;
            }
            if let Some(other) = queries.iter().find(|q| q.name == name) {
                return Err(at(Located::new(
                    target.position,
                    format!(
                        "two queries are named '{name}' (the other at {}): SET query_name before each INSERT",
                        files.mention(other.position, target.position)
                    ),
                )));
            }
            let views = reads
                .views
                .iter()
                .map(|&i| {
                    (
                        resolved[i].0.name.value.clone(),
                        resolved[i].0.query.clone(),
                    )
                })
                .collect();
            queries.push(QueryDecl {
                name,
                position: target.position,
                sql: insert.query,
                views,
                sources: read,
                sink: sink.clone(),
                settings,
            });
        }
        if let Some((view, _)) = resolved.iter().find(|(v, _)| {
            !queries
                .iter()
                .any(|q| q.views.iter().any(|(n, _)| *n == v.name.value))
        }) {
            return Err(at(Located::new(
                view.name.position,
                format!("view {} is declared but no query reads it", view.name.value),
            )));
        }
        if let Some(unused) = sources
            .keys()
            .find(|name| !queries.iter().any(|q| q.sources.contains(name)))
        {
            return Err(at(Located::new(
                tables[unused].name.position,
                format!("table {unused} is declared but no query reads or writes it"),
            )));
        }
        let view_positions = resolved
            .into_iter()
            .map(|(view, _)| (view.name.value, view.name.position))
            .collect();
        Ok(Self {
            files,
            sources,
            view_positions,
            queries,
            http_listen: settings.http_listen,
            listeners: Vec::new(),
        })
    }

    /// The names of the queries, in file order.
    pub fn query_names(&self) -> Vec<&str> {
        self.queries.iter().map(|q| q.name.as_str()).collect()
    }

    /// How query `name` is spread (`SET distribution`): [`Distribution::Spark`] queries are
    /// started by [`Pipeline::start`], [`Distribution::KafkaPartitions`] ones by
    /// [`Pipeline::start_workers`].
    pub fn distribution(&self, name: &str) -> Option<Distribution> {
        self.queries
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.settings.distribution)
    }

    /// The SQL of query `name` (its `INSERT`'s query), e.g. to embed it with
    /// [`sluice_engine::StreamingQueryBuilder`] and other connectors.
    pub fn query_sql(&self, name: &str) -> Option<&str> {
        self.queries
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.sql.trim_start())
    }

    /// The handle of memory source `table`, to feed it from the embedding program.
    pub fn memory_source(&self, table: &str) -> Option<MemorySource> {
        self.sources.get(table)?.memory().cloned()
    }

    /// The handle of memory sink `table`, to read what the queries wrote.
    pub fn memory_sink(&self, table: &str) -> Option<MemorySink> {
        self.queries
            .iter()
            .find(|q| q.sink.name == table)?
            .sink
            .memory()
            .cloned()
    }

    /// Where the file asks the process to serve its HTTP endpoint (`SET http_listen`), if
    /// it says.
    pub fn http_listen(&self) -> Option<HttpListen> {
        self.http_listen
    }

    /// Adds a listener to every query this pipeline starts (Spark's
    /// `StreamingQueryListener`, see [`sluice_engine::listener`]).
    pub fn add_listener(&mut self, listener: Arc<dyn QueryListener>) {
        self.listeners.push(listener);
    }

    /// Runs every query with `trigger` instead of the file's (e.g. available-now for a
    /// bounded run).
    pub fn override_trigger(&mut self, trigger: Trigger) {
        for query in &mut self.queries {
            query.settings.trigger = trigger;
        }
    }

    /// The error `error` of `query`, at its `INSERT` (at the view's `CREATE VIEW` when it
    /// is a view's).
    fn query_error(&self, query: &QueryDecl, error: sluice_engine::SluiceError) -> PipelineError {
        let position = match &error {
            sluice_engine::SluiceError::View { view, .. } => self
                .view_positions
                .get(view)
                .copied()
                .unwrap_or(query.position),
            _ => query.position,
        };
        self.files.query_error(position, &query.name, error)
    }

    /// The builder of `query`, or of its task `task` when it is distributed: the task reads
    /// partition `task` of its topics, keeps its checkpoint in `<checkpoint>/<query>/tasks/
    /// <task>` and its sinks' commits under `<query>/task-<task>`.
    fn builder(&self, query: &QueryDecl, task: Option<i32>) -> Result<StreamingQueryBuilder> {
        let settings = &query.settings;
        let mut builder = StreamingQueryBuilder::new();
        // Before the sources: their computed columns may use it too.
        builder
            .session()
            .register_udf(sluice_connectors::kafka::kafka_header_function());
        for name in &query.sources {
            let config = &self.sources[name];
            let source = config
                .build(builder.session(), task)
                .map_err(|e| self.query_error(query, e))?;
            builder = builder.source(name, source);
            if let Some((column, delay)) = &config.watermark {
                let delay = std::time::Duration::from_millis(u64::try_from(*delay).unwrap_or(0));
                builder = builder.watermark(name, column, delay);
            }
            builder = match &config.dedup {
                Some((columns, false)) => builder.drop_duplicates(name, columns.iter().cloned()),
                Some((columns, true)) => {
                    builder.drop_duplicates_within_watermark(name, columns.iter().cloned())
                }
                None => builder,
            };
        }
        let name = match task {
            None => query.name.clone(),
            Some(task) => format!("{}/task-{task}", query.name),
        };
        let sink = query
            .sink
            .build(&name)
            .map_err(|e| self.query_error(query, e))?;
        for (name, sql) in &query.views {
            builder = builder.view(name, sql.clone());
        }
        builder = builder
            .sql(query.sql.clone())
            .sink(sink)
            .output_mode(query.sink.output_mode)
            .trigger(settings.trigger)
            .watermark_policy(settings.watermark_policy)
            .query_name(&name);
        if settings.foreach_batch {
            builder = builder.foreach_batch();
        }
        for listener in &self.listeners {
            builder = builder.listener(listener.clone());
        }
        if let Some(dir) = &settings.checkpoint {
            builder = builder.checkpoint_location(match task {
                None => format!("{dir}/{}", query.name),
                Some(task) => format!("{dir}/{}/tasks/{task}", query.name),
            });
        }
        if let Some(n) = settings.retained_batches {
            builder = builder.retained_batches(n);
        }
        if let Some(n) = settings.parallelism {
            builder = builder.parallelism(n);
        }
        Ok(builder)
    }

    /// The streaming plan of every query (sources, watermarks, stateful operators, output
    /// mode, sink, trigger), planned without connecting or touching checkpoints.
    pub async fn explain(&self) -> Result<String> {
        let mut out = String::new();
        for query in &self.queries {
            let builder = self.builder(query, None)?;
            let plan = builder
                .explain()
                .await
                .map_err(|e| self.query_error(query, e))?;
            let mut checkpoint = query.settings.checkpoint.as_ref().map_or_else(
                || "none (in memory)".to_string(),
                |d| format!("{d}/{}", query.name),
            );
            let distribution = match query.settings.distribution {
                Distribution::Spark => "spark (one process)".to_string(),
                Distribution::KafkaPartitions => {
                    let tasks = self.task_plan(query).await?;
                    checkpoint += "/tasks/<partition>";
                    format!(
                        "kafka_partitions: one task per partition of {}, run by the workers \
                         of the query's consumer group",
                        tasks.topics.join(", "),
                    )
                }
            };
            out.push_str(&format!(
                "== query {} ({}) ==\nsink: {} (connector '{}')\ncheckpoint: {checkpoint}\n\
                 distribution: {distribution}\n{plan}\n",
                query.name,
                self.files.site(query.position),
                query.sink.name,
                query.sink.connector
            ));
        }
        Ok(out)
    }

    /// Starts a worker of every distributed query (`SET distribution = 'kafka_partitions'`),
    /// which runs the tasks its consumer group assigns it ([`crate::worker`]). If one cannot
    /// start, those already started are stopped and the error names the query.
    pub async fn start_workers(&self) -> Result<Vec<Worker>> {
        let mut started: Vec<Worker> = Vec::new();
        for query in self.distributed(true) {
            let started_worker = match self.task_plan(query).await {
                Ok(plan) => Worker::start(self.task_query(query), plan).await,
                Err(e) => Err(e),
            };
            match started_worker {
                Ok(worker) => started.push(worker),
                Err(error) => {
                    for worker in &mut started {
                        if let Err(e) = worker.stop().await {
                            tracing::warn!("stopping worker of {}: {e}", worker.name());
                        }
                    }
                    return Err(error);
                }
            }
        }
        Ok(started)
    }

    /// How distributed `query` splits into tasks, checked (Kafka sources with their
    /// `partitioned_by` columns, stateful operators grouping by them).
    async fn task_plan(&self, query: &QueryDecl) -> Result<TaskPlan> {
        let sources: Vec<_> = query
            .sources
            .iter()
            .map(|name| (name.clone(), self.sources[name].kafka()))
            .collect();
        TaskPlan::new(&sources, self.builder(query, None)?)
            .await
            .map_err(|e| self.query_error(query, e))
    }

    /// What a worker of distributed `query` needs of it.
    fn task_query(&self, query: &QueryDecl) -> TaskQuery {
        let (pipeline, decl) = (Arc::new(self.clone()), Arc::new(query.clone()));
        let (for_errors, decl_for_errors) = (pipeline.clone(), decl.clone());
        TaskQuery {
            name: query.name.clone(),
            checkpoint: query.settings.checkpoint.clone(),
            available_now: query.settings.trigger == Trigger::AvailableNow,
            build: Arc::new(move |task| pipeline.builder(&decl, Some(task))),
            error: Arc::new(move |e| for_errors.query_error(&decl_for_errors, e)),
        }
    }

    /// The queries that are distributed (`true`) or not.
    fn distributed(&self, distributed: bool) -> impl Iterator<Item = &QueryDecl> {
        self.queries.iter().filter(move |q| {
            (q.settings.distribution == Distribution::KafkaPartitions) == distributed
        })
    }

    /// Starts every query that runs in one process (`distribution = 'spark'`, the default;
    /// the distributed ones are started by [`Pipeline::start_workers`]). If one cannot start,
    /// those already started are stopped and the error names the query and its `INSERT`.
    pub async fn start(&self) -> Result<Vec<StreamingQuery>> {
        let mut started: Vec<StreamingQuery> = Vec::new();
        for query in self.distributed(false) {
            let result = match check_not_distributed(
                query.settings.checkpoint.as_deref(),
                &query.name,
            )
            .await
            {
                Err(e) => Err(self.query_error(query, e)),
                Ok(()) => match self.builder(query, None) {
                    Ok(builder) => builder
                        .start()
                        .await
                        .map_err(|e| self.query_error(query, e)),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(running) => started.push(running),
                Err(error) => {
                    for running in &started {
                        if let Err(e) = running.stop().await {
                            tracing::warn!("stopping query {:?}: {e}", running.name());
                        }
                    }
                    return Err(error);
                }
            }
        }
        Ok(started)
    }
}

/// Why a query cannot be distributed over Kafka partitions, if it cannot: every source must be
/// a Kafka source reading `topic`s, the checkpoint must be shared by the workers (set), and
/// the sink must take one writer per task.
fn check_distributable(
    read: &[String],
    sources: &BTreeMap<String, SourceConfig>,
    sink: &SinkConfig,
    settings: &Settings,
) -> Result<(), String> {
    for name in read {
        let kafka = sources[name].kafka().ok_or_else(|| {
            format!(
                "distribution = 'kafka_partitions' spreads Kafka partitions over workers: source \
                 {name} is a '{}' source",
                sources[name].connector
            )
        })?;
        kafka.topics().map_err(|e| e.to_string())?;
    }
    if settings.checkpoint.is_none() {
        return Err(
            "distribution = 'kafka_partitions' needs a checkpoint every worker reaches \
                    (SET checkpoint = 's3://bucket/prefix', or a shared directory)"
                .into(),
        );
    }
    if sink.output_mode == OutputMode::Complete {
        return Err(
            "distribution = 'kafka_partitions': in complete mode each batch replaces the \
                    whole table, which one task's groups cannot do; use update or append"
                .into(),
        );
    }
    if sink.connector == "file" {
        return Err(
            "distribution = 'kafka_partitions': the file sink keeps one batch log per \
                    directory, which tasks cannot share; write to PostgreSQL, SQLite or Kafka"
                .into(),
        );
    }
    Ok(())
}

/// Longest query name: it names a directory and a row of `sluice_commits`.
const MAX_QUERY_NAME: usize = 128;

/// Checks that `name` can name the query's checkpoint directory `<checkpoint>/<name>`: letters,
/// digits, `_`, `-` and `.`, not starting with `.` (so never `..` or a hidden directory), at
/// most 128 bytes. Anything else could write the checkpoint outside the checkpoint location.
fn check_query_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.len() > MAX_QUERY_NAME || name.starts_with('.') || !name.chars().all(allowed) {
        return Err(format!(
            "query name '{name}' cannot name a checkpoint directory: use at most \
             {MAX_QUERY_NAME} letters, digits, '_', '-' or '.', not starting with '.'"
        ));
    }
    Ok(())
}

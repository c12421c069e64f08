//! Golden tests of streaming SQL: each `engine/tests/golden/*.slt` file is one scenario fed
//! batch by batch, with the expected output of every micro-batch (no-data batches included).
//!
//! Format (one directive per line; blocks end at a blank line):
//!
//! ```text
//! # comment
//! source NAME (COL TYPE, ...) [watermark COL DELAY]   TYPE: string, double, bigint, timestamp
//! second_source NAME (COL TYPE, ...) [watermark …]     a second stream (for joins)
//! mode append|update|complete
//! dedup COL, ...                                       dropDuplicates on NAME's columns
//! dedup_within_watermark COL, ...                      dropDuplicatesWithinWatermark
//! query
//! SELECT ...                                           (until a blank line)
//! input [NAME]                                         JSON lines for NAME (default: the first
//! {"col": ...}                                         source), then triggers run until idle
//! stage NAME                                           JSON lines for NAME, without running
//!                                                      (the next `input` runs both)
//! output N                                             batch N's rows: a header line, then
//! a | b                                                one sorted line per row; or `(no rows)`
//! dropped N COUNT                                      batch N's numRowsDroppedByWatermark
//! restart                                              rebuild the query from its checkpoint
//! error TEXT                                           starting the query fails with TEXT
//! ```
//!
//! Every scenario runs three times: with parallelism 1, with 4, and with 1 until its first
//! `restart` and 4 after it (the checkpoint's state re-partitioned); each run must give the
//! expected rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_engine::parse_duration;
use sluice_engine::{
    JsonDecoder, JsonOptions, MemorySink, MemorySource, MicroBatchExecution, OutputMode,
    StreamingQueryBuilder,
};

struct Scenario {
    source: String,
    schema: SchemaRef,
    watermark: Option<(String, Duration)>,
    second: SourceSpec,
    mode: OutputMode,
    sql: String,
    dedup: Option<(Vec<String>, bool)>,
    parallelism: usize,
}

impl Scenario {
    async fn build(
        &self,
        sources: &[MemorySource],
        sink: &MemorySink,
        checkpoint: &Path,
    ) -> sluice_engine::Result<MicroBatchExecution> {
        let mut builder = StreamingQueryBuilder::new()
            .source(self.source.clone(), sources[0].clone())
            .sql(self.sql.clone())
            .sink(sink.clone())
            .output_mode(self.mode)
            .parallelism(self.parallelism)
            .checkpoint_location(checkpoint.to_str().expect("utf-8 path"));
        if let Some((column, delay)) = &self.watermark {
            builder = builder.watermark(self.source.clone(), column.clone(), *delay);
        }
        if let (Some((name, _, watermark)), Some(source)) = (&self.second, sources.get(1)) {
            builder = builder.source(name.clone(), source.clone());
            if let Some((column, delay)) = watermark {
                builder = builder.watermark(name.clone(), column.clone(), *delay);
            }
        }
        builder = match &self.dedup {
            Some((columns, false)) => builder.drop_duplicates(self.source.clone(), columns.clone()),
            Some((columns, true)) => {
                builder.drop_duplicates_within_watermark(self.source.clone(), columns.clone())
            }
            None => builder,
        };
        builder.build().await
    }
}

impl Scenario {
    /// A memory source per declared source (the first, then the second if any).
    fn memory_sources(&self) -> Vec<MemorySource> {
        std::iter::once(MemorySource::new(&self.source, self.schema.clone()))
            .chain(
                self.second
                    .iter()
                    .map(|(name, schema, _)| MemorySource::new(name, schema.clone())),
            )
            .collect()
    }
}

fn data_type(name: &str) -> DataType {
    match name.to_ascii_lowercase().as_str() {
        "string" => DataType::Utf8,
        "double" => DataType::Float64,
        "bigint" => DataType::Int64,
        "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, None),
        other => panic!("unknown type {other}"),
    }
}

/// `NAME (a string, b timestamp) [watermark b 10 minutes]`
fn parse_source(spec: &str) -> (String, SchemaRef, Option<(String, Duration)>) {
    let (name, rest) = spec.split_once('(').expect("source NAME (columns)");
    let (columns, rest) = rest.split_once(')').expect("closing parenthesis");
    let fields: Vec<Field> = columns
        .split(',')
        .map(|c| {
            let (column, ty) = c.trim().split_once(' ').expect("COL TYPE");
            Field::new(column, data_type(ty.trim()), true)
        })
        .collect();
    let watermark = rest.trim().strip_prefix("watermark ").map(|w| {
        let (column, delay) = w.split_once(' ').expect("watermark COL DELAY");
        let micros = parse_duration(delay).expect("delay");
        (column.to_string(), Duration::from_micros(micros as u64))
    });
    (
        name.trim().to_string(),
        Arc::new(Schema::new(fields)),
        watermark,
    )
}

/// Renders rows as `a | b` lines under a header line, data lines sorted so that expectations
/// do not depend on group order.
fn sorted_table(batches: &[arrow::array::RecordBatch]) -> String {
    let Some(first) = batches.iter().find(|b| b.num_rows() > 0) else {
        return "(no rows)".into();
    };
    let header: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    rows.sort_unstable();
    std::iter::once(header.join(" | "))
        .chain(rows)
        .collect::<Vec<_>>()
        .join("\n")
}

type SourceSpec = Option<(String, SchemaRef, Option<(String, Duration)>)>;

/// The scenario declared so far.
fn scenario_of(
    source: &SourceSpec,
    second: &SourceSpec,
    mode: OutputMode,
    sql: &str,
    dedup: &Option<(Vec<String>, bool)>,
    parallelism: usize,
) -> Scenario {
    let (source, schema, watermark) = source.clone().expect("a source line first");
    Scenario {
        source,
        schema,
        watermark,
        second: second.clone(),
        mode,
        sql: sql.to_string(),
        dedup: dedup.clone(),
        parallelism,
    }
}

/// Runs one scenario with parallelism `before` until its first restart and `after` from it.
async fn run_file(path: &Path, (before, after): (usize, usize)) {
    let text = std::fs::read_to_string(path).expect("golden file");
    let name = format!(
        "{} (parallelism {before}, then {after})",
        path.file_name().unwrap().to_string_lossy()
    );
    let mut parallelism = before;
    let mut lines = text.lines().peekable();
    let mut scenario: Option<Scenario> = None;
    let (mut source_spec, mut mode, mut sql) = (None, OutputMode::Append, String::new());
    let mut second_spec: SourceSpec = None;
    let mut dedup = None;
    let checkpoint = tempfile::tempdir().unwrap();
    let sink = MemorySink::new();
    let mut memory: Vec<MemorySource> = Vec::new();
    let mut execution: Option<MicroBatchExecution> = None;
    let mut dropped: BTreeMap<u64, u64> = BTreeMap::new();
    let block = |lines: &mut std::iter::Peekable<std::str::Lines<'_>>| {
        let mut out = Vec::new();
        while let Some(line) = lines.peek() {
            if line.trim().is_empty() {
                break;
            }
            out.push(lines.next().unwrap().to_string());
        }
        out
    };
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (directive, argument) = line.split_once(' ').unwrap_or((line, ""));
        match directive {
            "source" => {
                source_spec = Some(parse_source(argument));
                second_spec = None;
            }
            "second_source" => second_spec = Some(parse_source(argument)),
            "mode" => mode = argument.parse().unwrap(),
            "dedup" | "dedup_within_watermark" => {
                let columns = argument.split(',').map(|c| c.trim().to_string()).collect();
                dedup = Some((columns, directive == "dedup_within_watermark"));
            }
            "query" => sql = block(&mut lines).join("\n"),
            "error" => {
                let s = scenario_of(&source_spec, &second_spec, mode, &sql, &dedup, parallelism);
                let error = s
                    .build(&s.memory_sources(), &sink, checkpoint.path())
                    .await
                    .err();
                let error = error.map(|e| e.to_string()).unwrap_or_default();
                assert!(
                    error.contains(argument),
                    "{name}: expected an error containing '{argument}', got '{error}'"
                );
            }
            "input" | "stage" => {
                if scenario.is_none() {
                    let s =
                        scenario_of(&source_spec, &second_spec, mode, &sql, &dedup, parallelism);
                    memory = s.memory_sources();
                    execution = Some(
                        s.build(&memory, &sink, checkpoint.path())
                            .await
                            .unwrap_or_else(|e| panic!("{name}: {e}")),
                    );
                    scenario = Some(s);
                }
                let s = scenario.as_ref().unwrap();
                let target = match (argument, &s.second) {
                    ("", _) => 0,
                    (named, _) if named == s.source => 0,
                    (named, Some((second, _, _))) if named == second => 1,
                    (named, _) => panic!("{name}: no source {named}"),
                };
                let schema = if target == 0 {
                    s.schema.clone()
                } else {
                    s.second.as_ref().unwrap().1.clone()
                };
                let mut decoder = JsonDecoder::new(schema, JsonOptions::default()).unwrap();
                for row in block(&mut lines) {
                    decoder.push(row.as_bytes()).unwrap();
                }
                for batch in decoder.finish().unwrap().batches {
                    memory[target].add_batch(batch).unwrap();
                }
                if directive == "stage" {
                    continue;
                }
                let exec = execution.as_mut().unwrap();
                while exec
                    .run_trigger()
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                {
                    let progress = exec.recent_progress().pop().unwrap();
                    let count = progress
                        .state_operators
                        .first()
                        .map_or(0, |s| s.num_rows_dropped_by_watermark);
                    dropped.insert(progress.batch_id, count);
                }
            }
            "restart" => {
                drop(execution.take());
                parallelism = after;
                let s = scenario.as_mut().expect("restart after input");
                s.parallelism = after;
                execution = Some(s.build(&memory, &sink, checkpoint.path()).await.unwrap());
            }
            "output" => {
                let batch: u64 = argument.parse().expect("output N");
                let expected = block(&mut lines).join("\n");
                let actual = sink
                    .batches()
                    .get(&batch)
                    .map_or_else(|| "(missing batch)".to_string(), |b| sorted_table(b));
                assert_eq!(actual, expected, "{name}: output of batch {batch}");
            }
            "dropped" => {
                let (batch, count) = argument.split_once(' ').expect("dropped N COUNT");
                let batch: u64 = batch.parse().unwrap();
                assert_eq!(
                    dropped.get(&batch).copied(),
                    Some(count.parse().unwrap()),
                    "{name}: dropped rows of batch {batch}"
                );
            }
            "batches" => {
                let expected: usize = argument.parse().unwrap();
                assert_eq!(sink.batches().len(), expected, "{name}: number of batches");
            }
            other => panic!("{name}: unknown directive '{other}'"),
        }
    }
}

#[tokio::test]
async fn golden_scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        for parallelism in [(1, 1), (4, 4), (1, 4)] {
            run_file(&file, parallelism).await;
        }
    }
}

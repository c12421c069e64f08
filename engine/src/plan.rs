//! Planning a streaming SQL query once and running it on every micro-batch.
//!
//! Each source is registered in DataFusion as a table whose scan reads from a slot the engine
//! fills with the batch's rows. The SQL is planned to a physical plan once, at start; each
//! batch then only fills the slots and re-executes that plan (after resetting per-execution
//! state such as dynamic filters), which costs tens of microseconds instead of a re-plan.
//!
//! `now()` / `current_timestamp` return the batch's timestamp from the offset log (Spark's
//! `batchTimestampMs`), not the time of planning, so a re-run batch computes the same values.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::view::ViewTable;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec,
};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

use crate::distribution::PartitionedBy;
use crate::error::{Result, SluiceError};
use crate::functions::register_spark_aggregates;
use crate::operator::StatefulOperator;
use crate::operator::aggregate::StatefulAggregate;
use crate::operator::dedup::Deduplicator;
use crate::operator::first_per_key::FirstPerKey;
use crate::operator::join::{StreamJoin, as_inner, match_plan, plan_stream_join};
use crate::output_mode::OutputMode;
use crate::slot::{BatchSlot, collect_in_order};
use crate::watermark::{BatchWatermarks, WatermarkSpec};
use crate::window::{expand_sliding_windows, window_functions};

/// A DataFusion session configured for micro-batches. Plans are made with one partition per
/// thread of the query's parallelism (set when the query is planned, `docs/semantics.md` §12);
/// the engine reads partitions back in order, so that rows keep their input order.
pub fn streaming_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(true);
    SessionContext::new_with_config(config)
}

/// `now()` and `current_timestamp`, returning the micro-batch's timestamp.
#[derive(Debug)]
struct BatchTimestamp {
    signature: Signature,
    aliases: Vec<String>,
    millis: Arc<AtomicI64>,
}

impl PartialEq for BatchTimestamp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.millis, &other.millis)
    }
}

impl Eq for BatchTimestamp {}

impl Hash for BatchTimestamp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.millis).hash(state);
    }
}

const UTC: &str = "+00:00";

impl ScalarUDFImpl for BatchTimestamp {
    fn name(&self) -> &str {
        "now"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into())))
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let nanos = self
            .millis
            .load(Ordering::Relaxed)
            .saturating_mul(1_000_000);
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
            Some(nanos),
            Some(UTC.into()),
        )))
    }
}

/// A streaming query planned once over its source tables, with its stateful operators: the
/// sources' deduplications, applied to their rows before the SQL, and the aggregation kept
/// across batches.
pub(crate) struct StreamPlan {
    ctx: SessionContext,
    slots: BTreeMap<String, Arc<BatchSlot>>,
    plan: Arc<dyn ExecutionPlan>,
    batch_timestamp_ms: Arc<AtomicI64>,
    /// Deduplications by source, in the order the sources were registered.
    dedups: Vec<(String, Deduplicator)>,
    /// The aggregation kept across batches, unless the query runs per batch.
    aggregate: Option<StatefulAggregate>,
    /// A per-batch `DISTINCT ON`, run by hashing after the plan.
    first_per_key: Option<FirstPerKey>,
    /// The join of two streams, whose rows it stores across batches.
    join: Option<StreamJoin>,
    /// How many partitions the plan runs in.
    parallelism: usize,
    /// The query as written (before the per-batch and sliding-window rewrites), for checks
    /// on its shape.
    written: LogicalPlan,
}

/// What a query declares besides its SQL: its sources (name → schema), its views (name →
/// SQL, in order: each may read the sources and the views before it) and the sources'
/// watermarks.
pub(crate) struct Declared<'a> {
    pub(crate) sources: &'a [(String, SchemaRef)],
    pub(crate) views: &'a [(String, String)],
    pub(crate) watermarks: &'a BTreeMap<String, WatermarkSpec>,
}

impl StreamPlan {
    /// Registers one table per declared source and the declared views in `ctx`, and plans
    /// `sql` over them, for output mode `mode`; `dedups` deduplicate sources' rows before the
    /// SQL sees them.
    ///
    /// Only queries are accepted: DDL, DML and other statements are rejected with an error.
    /// With `per_batch`, the SQL runs on each micro-batch alone (Spark's `foreachBatch`);
    /// otherwise an aggregation keeps its state across batches.
    ///
    /// The plan runs in `parallelism` partitions: each source's rows are cut into that many
    /// runs, and an aggregation keeps that many state partitions. A join of two streams runs
    /// in one.
    pub(crate) async fn new(
        ctx: SessionContext,
        declared: Declared<'_>,
        sql: &str,
        per_batch: bool,
        mode: OutputMode,
        dedups: Vec<(String, Deduplicator)>,
        parallelism: usize,
    ) -> Result<Self> {
        let parallelism = parallelism.max(1);
        let Declared {
            sources,
            views,
            watermarks,
        } = declared;
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .target_partitions = parallelism;
        let mut slots = BTreeMap::new();
        for (name, schema) in sources {
            let slot = BatchSlot::partitioned(schema.clone(), parallelism);
            let table = StreamingTable::try_new(schema.clone(), slot.streams())?;
            // A previous plan of the same builder (`explain`) left its source tables: replace
            // them, but never a table the user registered under a source's name.
            if let Some(existing) = ctx.deregister_table(name.as_str())?
                && existing.downcast_ref::<StreamingTable>().is_none()
            {
                ctx.register_table(name.as_str(), existing)?;
                return Err(SluiceError::Config(format!(
                    "source '{name}' has the name of a table registered in the session"
                )));
            }
            ctx.register_table(name.as_str(), Arc::new(table))?;
            slots.insert(name.clone(), slot);
        }
        let batch_timestamp_ms = Arc::new(AtomicI64::new(0));
        ctx.register_udf(ScalarUDF::new_from_impl(BatchTimestamp {
            signature: Signature::nullary(Volatility::Volatile),
            aliases: vec!["current_timestamp".into()],
            millis: batch_timestamp_ms.clone(),
        }));
        for function in window_functions() {
            ctx.register_udf(function);
        }
        register_spark_aggregates(&ctx)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        for (name, view_sql) in views {
            register_view(&ctx, name, view_sql, options)
                .await
                .map_err(|error| SluiceError::View {
                    view: name.clone(),
                    error: Box::new(error),
                })?;
        }
        check_operator_chains(sql)?;
        // DataFusion expands each view read into its plan here, over the same source tables.
        let (state, logical) = ctx.sql_with_options(sql, options).await?.into_parts();
        let written = logical.clone();
        let (logical, first_per_key) = match per_batch {
            true => match FirstPerKey::plan(&logical)? {
                Some((rewritten, operator)) => (rewritten, Some(operator)),
                None => (logical, None),
            },
            false => (logical, None),
        };
        if !per_batch {
            refuse_distinct_aggregates(&logical)?;
        }
        let logical = expand_sliding_windows(logical)?;
        let mut join = match per_batch {
            true => None,
            false => plan_stream_join(&state.optimize(&logical)?, sources, watermarks)?,
        };
        if join.is_some() && sources.len() > 2 {
            return Err(SluiceError::Config(
                "a query joining two streams reads those two sources only (for now)".into(),
            ));
        }
        if join.is_some() && parallelism > 1 {
            // The join keeps both sides' rows in one partition: plan it again in one.
            let declared = Declared {
                sources,
                views,
                watermarks,
            };
            return Box::pin(Self::new(ctx, declared, sql, per_batch, mode, dedups, 1)).await;
        }
        let mut logical = logical;
        if let Some(join) = &mut join
            && join.kind() != JoinType::Inner
        {
            let (left, right) = join.sources();
            let (left, right) = (left.to_string(), right.to_string());
            let inner = as_inner(logical.clone(), &left, &right)?;
            let schema = |name: &str| {
                sources
                    .iter()
                    .find(|(source, _)| source == name)
                    .map(|(_, schema)| schema)
                    .ok_or_else(|| SluiceError::Config(format!("unknown source '{name}'")))
            };
            // Matches are found on the join as written (outer), optimized: a WHERE on the
            // nullable side stays above it there, as it must for the matched flags.
            let matches = match_plan(
                &state,
                &state.optimize(&logical)?,
                (&left, schema(&left)?),
                (&right, schema(&right)?),
            )
            .await?;
            if join.kind() == JoinType::LeftSemi {
                // The semi join runs as written; the matches say which rows are done.
                join.set_matching(matches, None);
            } else {
                // The query as written gives the outer rows; its inner form runs each batch.
                let outer = DataFrame::new(state.clone(), logical)
                    .create_physical_plan()
                    .await?;
                logical = inner;
                join.set_matching(matches, Some(outer));
            }
        }
        let plan = DataFrame::new(state, logical)
            .create_physical_plan()
            .await?;
        let aggregate = if per_batch {
            None
        } else {
            StatefulAggregate::split(&plan, mode, parallelism)?
        };
        if let (Some(join), Some(aggregate)) = (&mut join, &aggregate) {
            if join.output_watermark(0).is_none() {
                return Err(SluiceError::Config(
                    "an aggregation after a stream-stream join needs a join condition bounding \
                     both sides' event times (a range between them), from which its output \
                     watermark follows"
                        .into(),
                ));
            }
            // An outer join's outer rows go through the query as written's partial
            // aggregation, to be aggregated with the matches.
            if let Some(outer) = join.outer_plan().cloned() {
                let outer = StatefulAggregate::split(&outer, mode, 1)?.ok_or_else(|| {
                    SluiceError::Config("the outer join's query lost its aggregation".into())
                })?;
                let schema = aggregate.first_partial().schema();
                let outer_partial = outer.first_partial();
                let same = |a: &SchemaRef, b: &SchemaRef| {
                    a.fields().len() == b.fields().len()
                        && a.fields()
                            .iter()
                            .zip(b.fields())
                            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
                };
                if !same(&schema, &outer_partial.schema()) {
                    return Err(SluiceError::Config(
                        "internal: the outer join's aggregation does not plan as its inner form \
                         does; aggregate its output in a second query"
                            .into(),
                    ));
                }
                join.aggregate_outer_rows(outer_partial, schema);
            }
        }
        Ok(Self {
            ctx,
            slots,
            plan,
            batch_timestamp_ms,
            dedups,
            aggregate,
            first_per_key,
            join,
            parallelism,
            written,
        })
    }

    /// Checks that the query can run as one task per partition of its sources, partitioned
    /// as `by` says (see [`crate::distribution`]).
    pub(crate) fn check_partitioned(&self, by: &PartitionedBy) -> Result<()> {
        // Optimized (views inlined) only here, as few queries are distributed.
        let written = self.ctx.state().optimize(&self.written)?;
        crate::distribution::check(&written, by).map_err(SluiceError::Config)?;
        for (source, dedup) in &self.dedups {
            let keys = dedup.key_names();
            if let Some(column) = by.get(source)
                && !keys.contains(column)
            {
                return Err(SluiceError::Config(format!(
                    "distribution = 'kafka_partitions' runs one task per partition: the \
                     deduplication of {source} on ({}) must include its partitioning column \
                     {column}, or one key's duplicates could be in two tasks",
                    keys.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// How many partitions the plan runs in (one for a join of two streams), for `explain`.
    pub(crate) fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// The join of two streams, if the query has one.
    pub(crate) fn stream_join(&self) -> Option<&StreamJoin> {
        self.join.as_ref()
    }

    /// The schema of the query's output.
    pub(crate) fn schema(&self) -> SchemaRef {
        if self.aggregate.is_none()
            && let Some(schema) = self.join.as_ref().and_then(StreamJoin::outer_schema)
        {
            return schema;
        }
        match &self.first_per_key {
            Some(operator) => operator.schema(),
            None => self.plan.schema(),
        }
    }

    /// The physical plan, indented.
    pub(crate) fn display(&self) -> String {
        let plan = displayable(self.plan.as_ref()).indent(true).to_string();
        if let Some(join) = &self.join {
            return format!("{}\n{plan}", join.describe());
        }
        match &self.first_per_key {
            Some(_) => format!("FirstPerKey (DISTINCT ON, by hashing, per batch)\n{plan}"),
            None => plan,
        }
    }

    /// The aggregation kept across batches, if any.
    pub(crate) fn aggregate(&self) -> Option<&StatefulAggregate> {
        self.aggregate.as_ref()
    }

    /// The stateful operators, in the order they process a batch's rows: the deduplications,
    /// the join of two streams, then the aggregation's stages.
    pub(crate) fn operators(&self) -> Vec<&dyn StatefulOperator> {
        let dedups = self.dedups.iter().map(|(_, d)| d as &dyn StatefulOperator);
        let aggregate = self
            .aggregate
            .iter()
            .flat_map(|a| a.stages())
            .map(|a| a as &dyn StatefulOperator);
        let join = self.join.iter().map(|j| j as &dyn StatefulOperator);
        dedups.chain(join).chain(aggregate).collect()
    }

    /// The stateful operators, mutably (to restore their state), in the same order.
    pub(crate) fn operators_mut(&mut self) -> Vec<&mut dyn StatefulOperator> {
        let dedups = self
            .dedups
            .iter_mut()
            .map(|(_, d)| d as &mut dyn StatefulOperator);
        let aggregate = self
            .aggregate
            .iter_mut()
            .flat_map(|a| a.stages_mut())
            .map(|a| a as &mut dyn StatefulOperator);
        let join = self.join.iter_mut().map(|j| j as &mut dyn StatefulOperator);
        dedups.chain(join).chain(aggregate).collect()
    }

    /// Checks the query's joins against Spark's rules for streams: a stream may join a static
    /// table (inner, or outer keeping the stream's side); two streams join through the
    /// [`StreamJoin`] operator, checked when it was planned. Not checked for per-batch
    /// queries, whose SQL sees each batch as a static table.
    pub(crate) fn check_joins(&self) -> Result<()> {
        let mut problem = None;
        let streams_join = self.join.is_some();
        self.plan.apply(|node| {
            if let Some(message) = join_problem(node.as_ref(), streams_join) {
                problem = Some(message);
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        problem.map_or(Ok(()), |message| Err(SluiceError::Config(message)))
    }

    /// Whether the query sorts its output (above a stateful aggregation, if there is one).
    pub(crate) fn sorts(&self) -> bool {
        if let Some(aggregate) = &self.aggregate {
            return aggregate.sorts();
        }
        let mut sorts = false;
        let _ = self.plan.apply(|node| {
            sorts |= node.downcast_ref::<SortExec>().is_some();
            Ok(TreeNodeRecursion::Continue)
        });
        sorts
    }

    /// Runs the plan over one micro-batch: `inputs` maps source names to their rows, and the
    /// stateful operators judge lateness and evict with `watermarks`. Returns the output rows.
    pub(crate) async fn execute(
        &mut self,
        mut inputs: BTreeMap<String, Vec<RecordBatch>>,
        batch_timestamp_ms: i64,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<Vec<RecordBatch>> {
        for (source, dedup) in &mut self.dedups {
            let rows = inputs.remove(source.as_str()).unwrap_or_default();
            inputs.insert(source.clone(), dedup.apply(rows, watermarks)?);
        }
        self.batch_timestamp_ms
            .store(batch_timestamp_ms, Ordering::Relaxed);
        let context = self.ctx.task_ctx();
        if let Some(join) = &mut self.join {
            let result = match &mut self.aggregate {
                // The join's passes run the aggregation's partial phase; the aggregation
                // then judges lateness and closes windows with the join's output watermark.
                Some(aggregate) => {
                    let partial = aggregate.first_partial();
                    match join
                        .run(
                            &self.slots,
                            &partial,
                            inputs,
                            Arc::clone(&context),
                            watermarks,
                        )
                        .await
                    {
                        Ok(fresh) => {
                            let watermarks = watermarks.map(|w| BatchWatermarks {
                                late: join.output_watermark(w.late).unwrap_or(w.late),
                                eviction: join.output_watermark(w.eviction).unwrap_or(w.eviction),
                            });
                            aggregate.run(Some(fresh), context, watermarks).await
                        }
                        Err(e) => Err(e),
                    }
                }
                None => {
                    join.run(&self.slots, &self.plan, inputs, context, watermarks)
                        .await
                }
            };
            for slot in self.slots.values() {
                slot.set(Vec::new());
            }
            return result;
        }
        for (name, slot) in &self.slots {
            slot.set(inputs.remove(name).unwrap_or_default());
        }
        let result = match &mut self.aggregate {
            Some(aggregate) => aggregate.run(None, context, watermarks).await,
            None => match collect_in_order(&self.plan, context).await {
                Ok(rows) => match &self.first_per_key {
                    Some(operator) => operator.apply(rows),
                    None => Ok(rows),
                },
                Err(e) => Err(e),
            },
        };
        for slot in self.slots.values() {
            slot.set(Vec::new());
        }
        result
    }
}

/// Refuses `COUNT(DISTINCT …)` and other distinct aggregates, as Spark does on streams:
/// DataFusion would plan them as two chained aggregations, which do not mean the same across
/// batches (and not at all with sessions).
fn refuse_distinct_aggregates(plan: &datafusion::logical_expr::LogicalPlan) -> Result<()> {
    use datafusion::logical_expr::{Expr, LogicalPlan, expr::AggregateFunction};
    let mut distinct = false;
    plan.apply(|node| {
        if let LogicalPlan::Aggregate(aggregate) = node {
            for expr in &aggregate.aggr_expr {
                expr.apply(|e| {
                    if let Expr::AggregateFunction(AggregateFunction { params, .. }) = e {
                        distinct |= params.distinct;
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if distinct {
        return Err(SluiceError::Config(
            "Distinct aggregations are not supported on streaming DataFrames/Datasets. Consider \
             using approx_distinct (approx_count_distinct) instead"
                .into(),
        ));
    }
    Ok(())
}

/// Registers view `name` = `sql` in `ctx` (replacing the one a previous plan of the same
/// builder left, never a source or another table of the session).
async fn register_view(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    options: SQLOptions,
) -> Result<()> {
    if let Some(existing) = ctx.deregister_table(name)?
        && existing.downcast_ref::<ViewTable>().is_none()
    {
        ctx.register_table(name, existing)?;
        return Err(SluiceError::Config(format!(
            "'{name}' is already a source or a table of the session"
        )));
    }
    check_operator_chains(sql)?;
    let plan = ctx
        .sql_with_options(sql, options)
        .await?
        .into_unoptimized_plan();
    ctx.register_table(name, Arc::new(ViewTable::new(plan, Some(sql.to_string()))))?;
    Ok(())
}

/// The most binary operators one expression may chain (`a + b + …`, `x = 1 AND …`).
pub(crate) const MAX_OPERATOR_CHAIN: usize = 128;

/// Refuses a query with a longer chain of binary operators than [`MAX_OPERATOR_CHAIN`] at one
/// level (between commas and parentheses). The SQL parser reads such chains without
/// recursing, but they become expression trees as deep as they are long, which DataFusion
/// walks recursively in places (naming columns, for one): a 2,000-term sum would overflow the
/// stack and abort the process. Nested parentheses and calls are bounded by the parser's own
/// recursion limit. A byte-level token scan, so it costs nothing against planning.
fn check_operator_chains(sql: &str) -> Result<()> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

    // Unreadable text is left to the planner, which reports it with its position.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    // One count per open parenthesis (and the top level), reset by commas.
    let mut chains = vec![0usize];
    for token in tokens {
        let operator = match &token {
            Token::LParen => {
                chains.push(0);
                false
            }
            Token::RParen => {
                if chains.len() > 1 {
                    chains.pop();
                }
                false
            }
            Token::Comma => {
                if let Some(chain) = chains.last_mut() {
                    *chain = 0;
                }
                false
            }
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq => true,
            Token::Word(word) => matches!(word.keyword, Keyword::AND | Keyword::OR),
            _ => false,
        };
        let Some(chain) = chains.last_mut().filter(|_| operator) else {
            continue;
        };
        *chain += 1;
        if *chain > MAX_OPERATOR_CHAIN {
            return Err(SluiceError::Config(format!(
                "an expression of the query chains more than {MAX_OPERATOR_CHAIN} operators at \
                 one level (e.g. a + b + …): split it into parts"
            )));
        }
    }
    Ok(())
}

/// Whether a plan reads a streaming source (one of the engine's batch slots).
fn is_streaming(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut streaming = false;
    let _ = plan.apply(|node| {
        streaming |= node.downcast_ref::<StreamingTableExec>().is_some();
        Ok(if streaming {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    streaming
}

/// Why a join node is not supported on streams, if it is not.
fn join_problem(node: &dyn ExecutionPlan, streams_join: bool) -> Option<String> {
    let join_type = if let Some(join) = node.downcast_ref::<HashJoinExec>() {
        *join.join_type()
    } else if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() {
        *join.join_type()
    } else if let Some(join) = node.downcast_ref::<SortMergeJoinExec>() {
        join.join_type()
    } else if node.downcast_ref::<CrossJoinExec>().is_some() {
        JoinType::Inner
    } else {
        return None;
    };
    let children = node.children();
    let (left, right) = (is_streaming(children[0]), is_streaming(children[1]));
    if left && right && streams_join {
        return None;
    }
    if left && right {
        return Some(
            "Stream-stream joins are not supported yet: join a stream with a static table".into(),
        );
    }
    // The side whose unmatched rows a join keeps must not be static: those rows could never be
    // final while the stream goes on.
    let keeps_static = match join_type {
        JoinType::Inner => false,
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => right,
        JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => left,
        JoinType::Full => left || right,
    };
    keeps_static.then(|| {
        format!(
            "{join_type} join with a streaming DataFrame/Dataset on the side it does not keep is not \
             supported: put the stream on the kept side (e.g. stream LEFT JOIN static)"
        )
    })
}

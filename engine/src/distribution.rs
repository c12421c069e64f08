//! Whether a query can run as independent tasks, one per partition of its sources.
//!
//! Scaled out over Kafka partitions (`SET distribution = 'kafka_partitions'`), each task runs
//! the query over one partition of its sources with its own state. That gives the same result
//! as one query over all partitions only when every group of rows that a stateful operator
//! keeps together lives in a single partition: when the operator's keys include the column
//! the producer keyed the messages by (the source's declared partitioning column). This module
//! checks that on the query's logical plan:
//!
//! - an aggregation (`GROUP BY`, `DISTINCT`, `DISTINCT ON`, a per-batch deduplication) has a
//!   key that is the partitioning column of a source it reads, unchanged (renamed or not);
//! - a join of two sources has an equality between the two sources' partitioning columns, so
//!   matching rows are in the same partition of both (co-partitioned topics).
//!
//! - a window function (`OVER`) partitions by the partitioning column;
//! - there is no `LIMIT` over the stream (each task would keep its own).
//!
//! Anything else, including a key computed from the partitioning column, or one taken from
//! the side of an outer join that may be null, is refused: the check is conservative.
//! Stateless queries always pass.

use std::collections::BTreeMap;

use datafusion::common::Column;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};

/// Which column each source's partitions are keyed by: source name → column name.
pub type PartitionedBy = BTreeMap<String, String>;

/// Checks that every stateful operator of `plan` (optimized: views inlined) keeps each of its
/// groups within one partition of the sources, given how they are partitioned; the error says
/// which operator does not, and how to re-key the stream.
pub(crate) fn check(plan: &LogicalPlan, by: &PartitionedBy) -> Result<(), String> {
    let mut refusal = None;
    plan.apply(|node| {
        let problem = match node {
            LogicalPlan::Aggregate(aggregate) => keyed(
                &aggregate.input,
                &aggregate.group_expr,
                by,
                "the aggregation",
            ),
            LogicalPlan::Distinct(Distinct::On(on)) => {
                keyed(&on.input, &on.on_expr, by, "DISTINCT ON")
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let columns: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                keyed(input, &columns, by, "DISTINCT")
            }
            // Each task would keep its own rows up to the limit.
            LogicalPlan::Limit(limit) => limited(&limit.input, by),
            LogicalPlan::Sort(sort) if sort.fetch.is_some() => limited(&sort.input, by),
            LogicalPlan::Window(window) => window.window_expr.iter().find_map(|expr| {
                let Expr::WindowFunction(function) = unalias(expr) else {
                    return None;
                };
                let partition_by = &function.params.partition_by;
                keyed(&window.input, partition_by, by, "a window function (OVER)")
            }),
            LogicalPlan::Join(join) => {
                let reads = |side: &LogicalPlan| !sources_read(side, by).is_empty();
                let co_partitioned = join.on.iter().any(|(left, right)| {
                    partition_column(&join.left, left, by).is_some()
                        && partition_column(&join.right, right, by).is_some()
                });
                (reads(&join.left) && reads(&join.right) && !co_partitioned).then(|| {
                    format!(
                        "the join of {} and {} has no equality between their partitioning \
                         columns ({}), so matching rows can be in different tasks",
                        sources_read(&join.left, by).join(", "),
                        sources_read(&join.right, by).join(", "),
                        declared(by)
                    )
                })
            }
            _ => None,
        };
        match problem {
            Some(problem) => {
                refusal = Some(problem);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    })
    .map_err(|e| e.to_string())?;
    match refusal {
        None => Ok(()),
        Some(problem) => Err(format!(
            "distribution = 'kafka_partitions' runs one task per partition, each with its own \
             state: {problem}. Re-key the stream in two steps: (1) a first query writes the \
             rows to another topic with a Kafka sink keyed by a grouping column, e.g. \
             CREATE TABLE rekeyed WITH (connector = 'kafka', topic = 'rekeyed', key = 'col'); \
             INSERT INTO rekeyed SELECT * FROM source; (2) this query reads that topic, \
             declared with partitioned_by = 'col'"
        )),
    }
}

/// `None` when one of `keys` is a source's partitioning column (or `input` reads no source),
/// else why `what` cannot be partitioned.
fn keyed(input: &LogicalPlan, keys: &[Expr], by: &PartitionedBy, what: &str) -> Option<String> {
    let sources = sources_read(input, by);
    if sources.is_empty()
        || keys
            .iter()
            .any(|key| partition_column(input, key, by).is_some())
    {
        return None;
    }
    let keys: Vec<String> = keys.iter().map(|k| k.schema_name().to_string()).collect();
    Some(format!(
        "{what} groups by ({}), which does not include the partitioning column of {} ({})",
        keys.join(", "),
        sources.join(", "),
        declared(by)
    ))
}

/// Why a `LIMIT` over `input` cannot be split into tasks, if `input` reads a source.
fn limited(input: &LogicalPlan, by: &PartitionedBy) -> Option<String> {
    (!sources_read(input, by).is_empty())
        .then(|| "a LIMIT would keep that many rows per task (one per partition)".to_string())
}

/// The declared partitioning, `source.partitioned_by = 'column'`, for messages.
fn declared(by: &PartitionedBy) -> String {
    by.iter()
        .map(|(source, column)| format!("{source}: partitioned_by = '{column}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The partitioned sources that `plan` scans, sorted.
fn sources_read(plan: &LogicalPlan, by: &PartitionedBy) -> Vec<String> {
    let mut read = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let table = scan.table_name.table().to_string();
            if by.contains_key(&table) && !read.contains(&table) {
                read.push(table);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    read.sort();
    read
}

/// The source whose partitioning column `expr` (over `plan`'s output) is, unchanged.
fn partition_column(plan: &LogicalPlan, expr: &Expr, by: &PartitionedBy) -> Option<String> {
    let Expr::Column(column) = unalias(expr) else {
        return None;
    };
    let (source, name) = trace(plan, column)?;
    (by.get(&source) == Some(&name)).then_some(source)
}

fn unalias(mut expr: &Expr) -> &Expr {
    while let Expr::Alias(alias) = expr {
        expr = &alias.expr;
    }
    expr
}

/// The source table and column that output `column` of `plan` is, when it passes through
/// unchanged (projections that rename it, filters, sorts, limits, subquery aliases, joins,
/// group keys).
fn trace(plan: &LogicalPlan, column: &Column) -> Option<(String, String)> {
    let index = plan.schema().index_of_column(column).ok()?;
    let through = |input: &LogicalPlan, expr: &Expr| match unalias(expr) {
        Expr::Column(inner) => trace(input, inner),
        _ => None,
    };
    match plan {
        LogicalPlan::TableScan(scan) => Some((
            scan.table_name.table().to_string(),
            scan.projected_schema.field(index).name().clone(),
        )),
        LogicalPlan::Projection(projection) => projection
            .expr
            .get(index)
            .and_then(|expr| through(&projection.input, expr)),
        LogicalPlan::Aggregate(aggregate) => aggregate
            .group_expr
            .get(index)
            .and_then(|key| through(&aggregate.input, key)),
        // The same columns under another qualifier.
        LogicalPlan::SubqueryAlias(alias) => {
            let (qualifier, field) = alias.input.schema().qualified_field(index);
            trace(&alias.input, &Column::new(qualifier.cloned(), field.name()))
        }
        // A column of a side that an outer join may fill with nulls is not the partitioning
        // column any more: its null rows come from every partition.
        LogicalPlan::Join(join) => {
            let (left, right) = match join.join_type {
                JoinType::Inner => (true, true),
                JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                    (true, false)
                }
                JoinType::Right
                | JoinType::RightSemi
                | JoinType::RightAnti
                | JoinType::RightMark => (false, true),
                JoinType::Full => (false, false),
            };
            [(&join.left, left), (&join.right, right)]
                .into_iter()
                .find(|(side, _)| side.schema().has_column(column))
                .filter(|(_, preserved)| *preserved)
                .and_then(|(side, _)| trace(side, column))
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Window(_)
        | LogicalPlan::Distinct(Distinct::All(_)) => trace(plan.inputs()[0], column),
        _ => None,
    }
}

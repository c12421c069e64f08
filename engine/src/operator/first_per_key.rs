//! `SELECT DISTINCT ON (keys) …` in a per-batch query (Spark's `dropDuplicates(keys)` inside
//! `foreachBatch`): the first row of each key in the micro-batch, by hashing, in input order.
//!
//! DataFusion plans `DISTINCT ON` as an aggregation that takes `first_value` of every selected
//! column, ordered: a sort-free but costly plan (a state per column and group). The seed job
//! runs exactly this on every batch, so the plan is rewritten ([`FirstPerKey::plan`]) into the
//! query's selection followed by the key expressions as extra columns; this operator then keeps
//! the first row of each key and drops the key columns. Keys compare as Arrow's row format
//! does: nulls equal to each other (as Spark groups them), values by their bytes — so, unlike
//! Spark, which normalizes them in grouping keys, `-0.0` and `0.0` are two keys, and so are
//! NaNs of different bit patterns.
//!
//! Stateless: it remembers nothing across batches, which is what `foreachBatch` means.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::{Distinct, LogicalPlan, LogicalPlanBuilder};

use crate::error::Result;

/// Prefix of the key columns the rewritten plan appends.
const KEY_PREFIX: &str = "__sluice_distinct_on_";

/// The first row per key of a per-batch `DISTINCT ON` query.
#[derive(Debug)]
pub(crate) struct FirstPerKey {
    /// How many key columns the rewritten plan appends after the selection.
    keys: usize,
    /// The query's output: the rewritten plan's schema without the key columns.
    schema: SchemaRef,
}

impl FirstPerKey {
    /// When `plan` is a `DISTINCT ON` without `ORDER BY` at the top: the plan of its selection
    /// followed by its keys, and the operator that finishes it. `None` leaves the plan as is.
    pub(crate) fn plan(plan: &LogicalPlan) -> Result<Option<(LogicalPlan, Self)>> {
        let LogicalPlan::Distinct(Distinct::On(on)) = plan else {
            return Ok(None);
        };
        if on.sort_expr.is_some() {
            return Ok(None);
        }
        let keys = on.on_expr.len();
        let selection = on.select_expr.iter().cloned().chain(
            on.on_expr
                .iter()
                .enumerate()
                .map(|(i, key)| key.clone().alias(format!("{KEY_PREFIX}{i}"))),
        );
        let rewritten = LogicalPlanBuilder::from(on.input.as_ref().clone())
            .project(selection)?
            .build()?;
        let fields = rewritten.schema().fields();
        let schema = Arc::new(Schema::new(fields[..fields.len() - keys].to_vec()));
        Ok(Some((rewritten, Self { keys, schema })))
    }

    /// The query's output schema (without the key columns).
    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The first row of each key among `batches` (the rewritten plan's output, in input
    /// order), without the key columns.
    pub(crate) fn apply(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let Some(first) = batches.first() else {
            return Ok(Vec::new());
        };
        let width = first.num_columns();
        let key_columns = width - self.keys..width;
        let fields = key_columns
            .clone()
            .map(|i| SortField::new(first.schema().field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut rows = converter.empty_rows(total, total * 16);
        for batch in &batches {
            converter.append(&mut rows, &batch.columns()[key_columns.clone()])?;
        }
        let mut seen = HashSet::with_capacity(total);
        let mut next = 0;
        let mut out = Vec::with_capacity(batches.len());
        for batch in &batches {
            let keep: BooleanArray = (next..next + batch.num_rows())
                .map(|i| Some(seen.insert(rows.row(i))))
                .collect();
            next += batch.num_rows();
            let kept = filter_record_batch(batch, &keep)?;
            let columns = kept.columns()[..width - self.keys].to_vec();
            out.push(RecordBatch::try_new_with_options(
                self.schema.clone(),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(kept.num_rows())),
            )?);
        }
        Ok(out)
    }
}

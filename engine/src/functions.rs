//! Spark's aggregate names that streaming users rely on and DataFusion spells differently:
//! `min_by(value, ordering)` / `max_by(value, ordering)` (the value at the smallest / largest
//! ordering, e.g. the open and close of a candle), `first` / `last` (aliases of DataFusion's
//! `first_value` / `last_value`) and `approx_count_distinct` (DataFusion's `approx_distinct`).
//! All other DataFusion aggregates keep their names.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::{SortOptions, sort_to_indices};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

type DfResult<T> = datafusion::error::Result<T>;

/// `min_by` or `max_by`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExtremeBy {
    name: &'static str,
    /// The ordering that wins: `Less` for `min_by`, `Greater` for `max_by`.
    wins: Ordering,
    signature: Signature,
}

impl AggregateUDFImpl for ExtremeBy {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(ExtremeByAccumulator {
            wins: self.wins,
            value: ScalarValue::try_from(args.expr_fields[0].data_type())?,
            key: ScalarValue::try_from(args.expr_fields[1].data_type())?,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[value]", args.name),
                args.input_fields[0].data_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[key]", args.name),
                args.input_fields[1].data_type().clone(),
                true,
            )),
        ])
    }
}

/// Keeps the value whose key wins so far; an earlier batch's value wins ties.
#[derive(Debug)]
struct ExtremeByAccumulator {
    wins: Ordering,
    value: ScalarValue,
    key: ScalarValue,
}

impl ExtremeByAccumulator {
    /// Offers the row whose key is the batch's extreme (found by a top-1 sort, not row by row).
    fn offer(&mut self, values: &ArrayRef, keys: &ArrayRef) -> DfResult<()> {
        let options = SortOptions {
            descending: self.wins == Ordering::Greater,
            nulls_first: false,
        };
        let best = sort_to_indices(keys, Some(options), Some(1))?;
        let Some(row) = best.values().first().map(|&i| i as usize) else {
            return Ok(());
        };
        if keys.is_null(row) {
            return Ok(());
        }
        let key = ScalarValue::try_from_array(keys, row)?;
        if self.key.is_null() || key.partial_cmp(&self.key) == Some(self.wins) {
            self.value = ScalarValue::try_from_array(values, row)?;
            self.key = key;
        }
        Ok(())
    }
}

impl Accumulator for ExtremeByAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.offer(&values[0], &values[1])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.offer(&states[0], &states[1])
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), self.key.clone()])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.value.size() + self.key.size()
    }
}

/// Registers `min_by`, `max_by`, `first`, `last` and `approx_count_distinct` in `ctx`.
pub fn register_spark_aggregates(ctx: &SessionContext) -> DfResult<()> {
    for (name, wins) in [("min_by", Ordering::Less), ("max_by", Ordering::Greater)] {
        ctx.register_udaf(AggregateUDF::new_from_impl(ExtremeBy {
            name,
            wins,
            signature: Signature::any(2, Volatility::Immutable),
        }));
    }
    for (existing, alias) in [
        ("first_value", "first"),
        ("last_value", "last"),
        ("approx_distinct", "approx_count_distinct"),
    ] {
        let function = ctx.state().udaf(existing)?;
        ctx.register_udaf(function.as_ref().clone().with_aliases([alias]));
    }
    Ok(())
}

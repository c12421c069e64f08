//! Spark's aggregate names that streaming users rely on and DataFusion spells differently:
//! `min_by(value, ordering)` / `max_by(value, ordering)` (the value at the smallest / largest
//! ordering, e.g. the open and close of a candle), `first` / `last` (aliases of DataFusion's
//! `first_value` / `last_value`) and `approx_count_distinct` (DataFusion's `approx_distinct`).
//! All other DataFusion aggregates keep their names.

use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, internal_err};
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::first_last::{first_value, last_value};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

type DfResult<T> = datafusion::error::Result<T>;

/// `min_by` or `max_by`, planned as DataFusion's `first_value` / `last_value` ordered by the
/// key, whose grouped accumulators are fast and whose states merge across batches.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExtremeBy {
    name: &'static str,
    /// `max_by` (the value at the largest key) rather than `min_by`.
    max: bool,
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

    fn accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        internal_err!(
            "{}() is rewritten into first_value/last_value before planning",
            self.name
        )
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let (name, max) = (self.name, self.max);
        Some(Box::new(move |function, _| {
            let [value, key]: [Expr; 2] = function.params.args.try_into().map_err(|_| {
                DataFusionError::Plan(format!("{name}() takes a value and an ordering key"))
            })?;
            // Ascending, nulls last: a null key never wins unless every key is null.
            let order = vec![key.sort(true, false)];
            Ok(if max {
                last_value(value, order)
            } else {
                first_value(value, order)
            })
        }))
    }
}

/// Registers `min_by`, `max_by`, `first`, `last` and `approx_count_distinct` in `ctx`.
pub fn register_spark_aggregates(ctx: &SessionContext) -> DfResult<()> {
    for (name, max) in [("min_by", false), ("max_by", true)] {
        ctx.register_udaf(AggregateUDF::new_from_impl(ExtremeBy {
            name,
            max,
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

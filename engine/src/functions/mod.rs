//! Spark's aggregate names that streaming users rely on and DataFusion spells differently:
//! `min_by(value, ordering)` / `max_by(value, ordering)` (the value at the smallest / largest
//! ordering, e.g. the open and close of a candle), `first` / `last` (aliases of DataFusion's
//! `first_value` / `last_value`) and `approx_count_distinct` (DataFusion's `approx_distinct`).
//! All other DataFusion aggregates keep their names.

use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::SessionContext;

mod extreme_by;

use extreme_by::ExtremeBy;

type DfResult<T> = datafusion::error::Result<T>;

/// Registers `min_by`, `max_by`, `first`, `last` and `approx_count_distinct` in `ctx`.
pub fn register_spark_aggregates(ctx: &SessionContext) -> DfResult<()> {
    for (name, max) in [("min_by", false), ("max_by", true)] {
        ctx.register_udaf(AggregateUDF::new_from_impl(ExtremeBy::new(name, max)));
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

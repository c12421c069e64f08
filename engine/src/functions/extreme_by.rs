//! `min_by(value, key)` / `max_by(value, key)`: the value of the row with the smallest /
//! largest key, with Spark's semantics (`MaxMinBy`): rows whose key is null are ignored (so
//! all-null keys give null), the value itself may be null, and of rows with equal keys the
//! later one wins (within a batch, input order; across partial states, merge order).
//!
//! Keys of a primitive type (integers, floats in Spark's order — `-0.0` equals `0.0`, NaN is
//! the largest —, dates, times, timestamps, durations) are compared natively by [`ExtremeByGroups`], which remembers per group where
//! its winning row is and gathers the values only when emitting: values of any type work, and
//! a candle's open and close cost one comparison per row. Other key types (strings, decimals,
//! booleans, …) are planned as DataFusion's `first_value` / `last_value` ordered by the key,
//! with the null-key rows filtered out; there, ties go to either row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, new_null_array};
use arrow::compute::kernels::boolean::{not, or};
use arrow::compute::{cast, interleave, is_null, nullif, prep_null_mask_filter};
use arrow::datatypes::{
    ArrowNativeTypeOp, ArrowPrimitiveType, DataType, Field, FieldRef, Float64Type, Int64Type,
};
use datafusion::common::{DataFusionError, ScalarValue, plan_err};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature, Volatility,
};

use datafusion::error::Result as DfResult;

/// `min_by` or `max_by`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ExtremeBy {
    name: &'static str,
    /// `max_by` (the value at the largest key) rather than `min_by`.
    max: bool,
    signature: Signature,
}

impl ExtremeBy {
    pub(super) fn new(name: &'static str, max: bool) -> Self {
        Self {
            name,
            max,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    fn groups(&self, args: &AccumulatorArgs) -> DfResult<Box<dyn Extremes>> {
        let [value, key] = args.expr_fields else {
            return plan_err!("{}() takes a value and an ordering key", self.name);
        };
        let (value, key) = (value.data_type().clone(), key.data_type().clone());
        Ok(match NativeKey::of(&key) {
            Some(NativeKey::Integer) => {
                Box::new(ExtremeByGroups::<Int64Type>::new(self.max, value, key))
            }
            Some(NativeKey::Float) => {
                Box::new(ExtremeByGroups::<Float64Type>::new(self.max, value, key))
            }
            None => {
                return plan_err!(
                    "{}() cannot compare keys of type {key} natively (it is planned as \
                     first_value/last_value when the optimizer knows the type)",
                    self.name
                );
            }
        })
    }
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

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let [value, key] = args.input_fields else {
            return plan_err!("{}() takes a value and an ordering key", self.name);
        };
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                value.data_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "key"),
                key.data_type().clone(),
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let mut groups = self.groups(&args)?;
        groups.ensure(1);
        Ok(Box::new(OneGroup(groups)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Grouped(self.groups(&args)?)))
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let (name, max) = (self.name, self.max);
        Some(Box::new(move |function, context| {
            let Some(key) = function.params.args.get(1) else {
                return plan_err!("{name}() takes a value and an ordering key");
            };
            if context
                .get_data_type(key)
                .is_ok_and(|t| NativeKey::of(&t).is_some())
            {
                return Ok(Expr::AggregateFunction(function));
            }
            let params = function.params;
            let [value, key]: [Expr; 2] = params.args.try_into().map_err(|_| {
                DataFusionError::Plan(format!("{name}() takes a value and an ordering key"))
            })?;
            let known = key.clone().is_not_null();
            let filter = match params.filter {
                Some(filter) => filter.and(known),
                None => known,
            };
            Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
                if max {
                    last_value_udaf()
                } else {
                    first_value_udaf()
                },
                vec![value],
                params.distinct,
                Some(Box::new(filter)),
                vec![key.sort(true, false)],
                params.null_treatment,
            )))
        }))
    }
}

/// How a key type is compared natively.
enum NativeKey {
    /// Cast to `Int64`, which keeps the order.
    Integer,
    /// Cast to `Float64`, compared in IEEE total order.
    Float,
}

impl NativeKey {
    fn of(key: &DataType) -> Option<Self> {
        use DataType::*;
        match key {
            Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Duration(_) => Some(Self::Integer),
            Float16 | Float32 | Float64 => Some(Self::Float),
            _ => None,
        }
    }
}

/// The operations both accumulator interfaces are built on.
trait Extremes: Send + Sync + std::fmt::Debug {
    /// Makes room for `groups` groups.
    fn ensure(&mut self, groups: usize);
    /// Takes part in the contest of each row's group: `columns` are (value, key), from the
    /// input or from partial states alike.
    fn update(
        &mut self,
        columns: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
    ) -> DfResult<()>;
    /// The winning (value, key) of the first `n` groups, which are then forgotten.
    fn take(&mut self, n: usize) -> DfResult<[ArrayRef; 2]>;
    /// Number of groups.
    fn len(&self) -> usize;
    /// Memory used, in bytes.
    fn size(&self) -> usize;
}

/// A key type compared natively, in Spark's order.
trait Key: ArrowPrimitiveType + std::fmt::Debug {
    /// The key as compared: Spark takes `-0.0` for `0.0` and every NaN as the largest value.
    fn spark_order(key: Self::Native) -> Self::Native;
}

impl Key for Int64Type {
    fn spark_order(key: i64) -> i64 {
        key
    }
}

impl Key for Float64Type {
    fn spark_order(key: f64) -> f64 {
        if key == 0.0 {
            0.0
        } else if key.is_nan() {
            // Positive: above infinity in the total order used to compare.
            f64::NAN
        } else {
            key
        }
    }
}

/// Input columns kept for the winners before they are compacted into one (bounds the memory
/// of an aggregation over many batches to its groups plus this many batches).
const RETAINED_ARRAYS: usize = 16;

/// The contest of every group, with keys compared as `T`.
#[derive(Debug)]
struct ExtremeByGroups<T: Key> {
    max: bool,
    /// Each group's best key so far (meaningless while it has no winner).
    best: Vec<T::Native>,
    /// Where each group's winning row is: (array, row) in `values` / `keys`; `(0, 0)` (a
    /// null) while it has none.
    winners: Vec<(usize, usize)>,
    /// The value and key columns seen since the groups were last emitted, after a null.
    values: Vec<ArrayRef>,
    keys: Vec<ArrayRef>,
}

impl<T: Key> ExtremeByGroups<T> {
    fn new(max: bool, value: DataType, key: DataType) -> Self {
        Self {
            max,
            best: Vec::new(),
            winners: Vec::new(),
            values: vec![new_null_array(&value, 1)],
            keys: vec![new_null_array(&key, 1)],
        }
    }

    /// The (value, key) at each of `winners`.
    fn gather(&self, winners: &[(usize, usize)]) -> DfResult<[ArrayRef; 2]> {
        let gather = |arrays: &[ArrayRef]| {
            let arrays: Vec<&dyn Array> = arrays.iter().map(AsRef::as_ref).collect();
            interleave(&arrays, winners)
        };
        Ok([gather(&self.values)?, gather(&self.keys)?])
    }

    /// Replaces the retained columns by one holding just the current winners.
    fn compact(&mut self) -> DfResult<()> {
        let [values, keys] = self.gather(&self.winners)?;
        self.values.truncate(1);
        self.keys.truncate(1);
        self.values.push(values);
        self.keys.push(keys);
        for (group, winner) in self.winners.iter_mut().enumerate() {
            if winner.0 != 0 {
                *winner = (1, group);
            }
        }
        Ok(())
    }
}

impl<T: Key> Extremes for ExtremeByGroups<T> {
    fn ensure(&mut self, groups: usize) {
        if groups > self.winners.len() {
            self.best.resize(groups, T::Native::default());
            self.winners.resize(groups, (0, 0));
        }
    }

    fn update(
        &mut self,
        columns: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
    ) -> DfResult<()> {
        let [value, key] = columns else {
            return plan_err!("min_by/max_by take a value and an ordering key");
        };
        let compared = cast(key, &T::DATA_TYPE)?;
        let compared = compared.as_primitive::<T>();
        let array = self.values.len();
        let mut won = false;
        for (row, &group) in groups.iter().enumerate() {
            if compared.is_null(row) || filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            let candidate = T::spark_order(compared.value(row));
            let best = self.best[group];
            // Spark keeps the earlier row only if strictly better: a tie goes to the later.
            let wins = self.winners[group].0 == 0
                || if self.max {
                    candidate.is_ge(best)
                } else {
                    candidate.is_le(best)
                };
            if wins {
                self.best[group] = candidate;
                self.winners[group] = (array, row);
                won = true;
            }
        }
        if won {
            self.values.push(Arc::clone(value));
            self.keys.push(Arc::clone(key));
            if self.values.len() > RETAINED_ARRAYS {
                self.compact()?;
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> DfResult<[ArrayRef; 2]> {
        let winners: Vec<_> = self.winners.drain(..n).collect();
        self.best.drain(..n);
        let taken = self.gather(&winners)?;
        if self.winners.is_empty() {
            self.values.truncate(1);
            self.keys.truncate(1);
        }
        Ok(taken)
    }

    fn len(&self) -> usize {
        self.winners.len()
    }

    fn size(&self) -> usize {
        let columns: usize = self
            .values
            .iter()
            .chain(&self.keys)
            .map(|a| a.get_array_memory_size())
            .sum();
        columns
            + self.best.capacity() * size_of::<T::Native>()
            + self.winners.capacity() * size_of::<(usize, usize)>()
    }
}

/// The grouped accumulator DataFusion drives in `GROUP BY` queries.
#[derive(Debug)]
struct Grouped(Box<dyn Extremes>);

impl GroupsAccumulator for Grouped {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.0.ensure(total_num_groups);
        self.0.update(values, group_indices, opt_filter)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        // A partial state is a (value, key) row: merging is the same contest.
        self.update_batch(values, group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        // Each row is its own group: it wins unless its key is null or it is filtered out.
        let [value, key] = values else {
            return plan_err!("min_by/max_by take a value and an ordering key");
        };
        let mut out = is_null(key)?;
        if let Some(filter) = opt_filter {
            out = or(&out, &not(&prep_null_mask_filter(filter))?)?;
        }
        Ok(vec![nullif(value, &out)?, nullif(key, &out)?])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let [value, _] = self.0.take(emitted(emit_to, self.0.len()))?;
        Ok(value)
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        Ok(self.0.take(emitted(emit_to, self.0.len()))?.to_vec())
    }

    fn size(&self) -> usize {
        self.0.size()
    }
}

fn emitted(emit_to: EmitTo, groups: usize) -> usize {
    match emit_to {
        EmitTo::All => groups,
        EmitTo::First(n) => n.min(groups),
    }
}

/// The accumulator of an aggregate without `GROUP BY`: the contest of one group.
#[derive(Debug)]
struct OneGroup(Box<dyn Extremes>);

impl OneGroup {
    /// The winner as scalars, keeping it (DataFusion may ask for the state, then evaluate).
    fn winner(&mut self) -> DfResult<[ScalarValue; 2]> {
        let [value, key] = self.0.take(1)?;
        self.0.ensure(1);
        self.0
            .update(&[Arc::clone(&value), Arc::clone(&key)], &[0], None)?;
        Ok([
            ScalarValue::try_from_array(&value, 0)?,
            ScalarValue::try_from_array(&key, 0)?,
        ])
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update(values, &vec![0; rows], None)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.update_batch(states)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let [value, _] = self.winner()?;
        Ok(value)
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(self.winner()?.to_vec())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.0.size()
    }
}

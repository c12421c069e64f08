//! Event-time windows: Spark's `window`, sliding windows and `window_time`.
//!
//! The arithmetic ([`WindowSpec`]) is a plain function of a timestamp, in microseconds as in
//! Spark (`docs/semantics.md` §5): windows are half-open `[start, end)`,
//! aligned to the epoch plus `startTime`, and a row belongs to the ⌈size/slide⌉ windows that
//! contain it. The SQL functions:
//!
//! - `window(ts, '1 minute')`, `window(ts, '10 minutes', '5 minutes'[, '2 minutes'])`: the
//!   window as a struct `{start, end}` of microsecond timestamps (the time zone of `ts`). A
//!   tumbling window works anywhere; a sliding window is only meaningful as a `GROUP BY` key,
//!   where the planner expands each row into every window containing it (see
//!   [`expand_sliding_windows`]). Rows with a null timestamp belong to no window and are
//!   dropped by the aggregation.
//! - `session_window(ts, '30 seconds')`: a session of activity: each row opens
//!   `[ts, ts + gap)` and, per group key, sessions that overlap merge (the stateful
//!   aggregation merges them across batches, see the aggregation operator). The gap may be an
//!   expression of the row (`CASE WHEN symbol = 'BTCUSDT' THEN '5 seconds' ELSE '30 seconds'
//!   END`), as Spark's dynamic gap: a row whose gap is null, unreadable or not greater than 0
//!   has no session and is left out, as Spark filters it out.
//! - `window_time(w)`: `w.end - 1 microsecond`, the event time of a window's result.
//!
//! Durations are Spark interval strings (`'10 minutes'`, `'1 hour 30 minutes'`, units from
//! `microsecond` to `week`, singular or plural) or SQL interval literals (`INTERVAL '1' MINUTE`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, ListArray, StructArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit, TimestampMicrosecondType};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, col,
};

type DfResult<T> = datafusion::error::Result<T>;

const MICROS_PER_MILLI: i64 = 1_000;

/// Name of the column holding the expanded sliding windows, inside a rewritten aggregation.
const EXPANDED_WINDOW: &str = "__sluice_window";

/// The most windows one row may fall in (`⌈size / slide⌉`): a sliding window whose slide is
/// tiny against its size (`'1 day'` every `'1 microsecond'`) would otherwise copy each row
/// billions of times.
pub const MAX_WINDOWS_PER_ROW: i64 = 10_000;

/// A window definition, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length.
    pub size: i64,
    /// Distance between window starts (equal to `size` for tumbling windows).
    pub slide: i64,
    /// Offset of window starts from the epoch.
    pub start: i64,
}

impl WindowSpec {
    /// Validates a definition with Spark's rules.
    pub fn new(size: i64, slide: i64, start: i64) -> Result<Self, String> {
        if size <= 0 {
            return Err(format!(
                "the window duration ({size} µs) must be greater than 0"
            ));
        }
        if slide <= 0 {
            return Err(format!(
                "the slide duration ({slide} µs) must be greater than 0"
            ));
        }
        if slide > size {
            return Err(
                "the slide duration must be less than or equal to the window duration".into(),
            );
        }
        if start.abs() >= slide {
            return Err(
                "the absolute value of the start time must be less than the slide duration".into(),
            );
        }
        let windows = (size - 1) / slide + 1;
        if windows > MAX_WINDOWS_PER_ROW {
            return Err(format!(
                "each row would fall in {windows} windows (window duration / slide duration); \
                 at most {MAX_WINDOWS_PER_ROW} are supported: use a longer slide"
            ));
        }
        Ok(Self { size, slide, start })
    }

    /// Whether windows do not overlap.
    pub fn is_tumbling(&self) -> bool {
        self.size == self.slide
    }

    /// The `(start, end)` of every window containing `ts`, by ascending start. Windows whose
    /// bounds do not fit in an `i64` (at the ends of the time line) are left out.
    pub fn windows(&self, ts: i64) -> impl Iterator<Item = (i64, i64)> + use<> {
        let spec = *self;
        let last_start = ts
            .checked_sub(spec.start)
            .map(|shifted| shifted.rem_euclid(spec.slide))
            .and_then(|offset| ts.checked_sub(offset));
        let count = (spec.size - 1) / spec.slide + 1;
        (0..count)
            .rev()
            .filter_map(move |i| {
                let start = last_start?.checked_sub(i.checked_mul(spec.slide)?)?;
                Some((start, start.checked_add(spec.size)?))
            })
            .filter(move |&(start, end)| start <= ts && ts < end)
    }
}

/// Parses a Spark interval string such as `10 minutes` or `1 hour 30 seconds` into µs.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let words = match words.first() {
        Some(first) if first.eq_ignore_ascii_case("interval") => &words[1..],
        _ => &words[..],
    };
    if words.is_empty() || words.len() % 2 != 0 {
        return Err(format!(
            "invalid duration '{text}': expected pairs like '10 minutes'"
        ));
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        let amount: i64 = pair[0]
            .parse()
            .map_err(|_| format!("invalid duration '{text}': '{}' is not an integer", pair[0]))?;
        let unit = pair[1].to_ascii_lowercase();
        let micros = match unit.trim_end_matches('s') {
            "microsecond" | "us" => 1,
            "millisecond" | "ms" => MICROS_PER_MILLI,
            "second" | "sec" => 1_000_000,
            "minute" | "min" => 60_000_000,
            "hour" => 3_600_000_000,
            "day" => 86_400_000_000,
            "week" => 604_800_000_000,
            _ => {
                return Err(format!(
                    "invalid duration '{text}': unknown unit '{}'",
                    pair[1]
                ));
            }
        };
        total = amount
            .checked_mul(micros)
            .and_then(|m| total.checked_add(m))
            .ok_or_else(|| format!("duration '{text}' overflows"))?;
    }
    Ok(total)
}

/// A duration argument: a Spark interval string or a SQL interval without months.
fn duration_arg(value: Option<&ScalarValue>, what: &str) -> DfResult<i64> {
    let parsed = match value {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => parse_duration(s),
        Some(ScalarValue::IntervalMonthDayNano(Some(v))) if v.months == 0 => {
            days_plus(v.days, v.nanoseconds / 1_000)
        }
        Some(ScalarValue::IntervalDayTime(Some(v))) => {
            days_plus(v.days, i64::from(v.milliseconds) * MICROS_PER_MILLI)
        }
        _ => Err(format!(
            "the {what} must be a constant duration such as '10 minutes'"
        )),
    };
    parsed.map_err(|e| DataFusionError::Plan(format!("window(): {e}")))
}

/// `days` days plus `micros` µs, in µs, or an error when it does not fit in an `i64`.
fn days_plus(days: i32, micros: i64) -> Result<i64, String> {
    i64::from(days)
        .checked_mul(86_400_000_000)
        .and_then(|d| d.checked_add(micros))
        .ok_or_else(|| format!("a duration of {days} days overflows"))
}

/// Reads the window definition from the constant arguments of a `window(...)` call.
fn spec_from_args(args: &[Option<&ScalarValue>]) -> DfResult<WindowSpec> {
    if !(2..=4).contains(&args.len()) {
        return plan_err!(
            "window() takes a timestamp and 1 to 3 durations, got {} arguments",
            args.len()
        );
    }
    let size = duration_arg(args[1], "window duration")?;
    let slide = match args.get(2) {
        Some(arg) => duration_arg(*arg, "slide duration")?,
        None => size,
    };
    let start = match args.get(3) {
        Some(arg) => duration_arg(*arg, "start time")?,
        None => 0,
    };
    WindowSpec::new(size, slide, start).map_err(|e| DataFusionError::Plan(format!("window(): {e}")))
}

fn scalars(args: &[ColumnarValue]) -> Vec<Option<&ScalarValue>> {
    args.iter()
        .map(|a| match a {
            ColumnarValue::Scalar(s) => Some(s),
            ColumnarValue::Array(_) => None,
        })
        .collect()
}

/// The time zone of a timestamp field, or an error for other types.
fn timestamp_zone(field: &Field) -> DfResult<Option<Arc<str>>> {
    match field.data_type() {
        DataType::Timestamp(_, tz) => Ok(tz.clone()),
        other => plan_err!("window(): the time column must be a timestamp, not {other}"),
    }
}

/// The struct type of a window whose bounds are in time zone `tz`.
pub fn window_type(tz: Option<Arc<str>>) -> DataType {
    let bound = DataType::Timestamp(TimeUnit::Microsecond, tz);
    DataType::Struct(Fields::from(vec![
        Field::new("start", bound.clone(), true),
        Field::new("end", bound, true),
    ]))
}

/// Whether `data_type` is a window struct (`{start, end}` timestamps).
pub fn is_window_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(fields) => {
            fields.len() == 2
                && fields[0].name() == "start"
                && fields[1].name() == "end"
                && fields
                    .iter()
                    .all(|f| matches!(f.data_type(), DataType::Timestamp(TimeUnit::Microsecond, _)))
        }
        _ => false,
    }
}

/// The timestamps as microseconds since the epoch.
fn micros(array: &ArrayRef) -> DfResult<TimestampMicrosecondArray> {
    let tz = match array.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        other => return exec_err!("window(): the time column must be a timestamp, not {other}"),
    };
    let cast = arrow::compute::cast(array, &DataType::Timestamp(TimeUnit::Microsecond, tz))?;
    Ok(cast.as_primitive::<TimestampMicrosecondType>().clone())
}

fn window_struct(
    starts: TimestampMicrosecondArray,
    ends: TimestampMicrosecondArray,
    tz: Option<Arc<str>>,
) -> StructArray {
    let DataType::Struct(fields) = window_type(tz.clone()) else {
        unreachable!("window_type is a struct")
    };
    let nulls = starts.nulls().cloned();
    StructArray::new(
        fields,
        vec![
            Arc::new(starts.with_timezone_opt(tz.clone())),
            Arc::new(ends.with_timezone_opt(tz)),
        ],
        nulls,
    )
}

/// `window(ts, size[, slide[, start]])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowFunc {
    signature: Signature,
}

impl ScalarUDFImpl for WindowFunc {
    fn name(&self) -> &str {
        "window"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal(
            "window(): return_field_from_args is used".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        spec_from_args(args.scalar_arguments)?;
        let tz = timestamp_zone(&args.arg_fields[0])?;
        Ok(Arc::new(Field::new("window", window_type(tz), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let spec = spec_from_args(&scalars(&args.args))?;
        if !spec.is_tumbling() {
            return exec_err!(
                "window(): a sliding window can only be a GROUP BY key of a streaming aggregation"
            );
        }
        let times = args.args[0].to_array(args.number_rows)?;
        let tz = timestamp_zone(&args.arg_fields[0])?;
        let ts = micros(&times)?;
        let starts: TimestampMicrosecondArray =
            ts.unary_opt(|t| spec.windows(t).next().map(|(s, _)| s));
        let ends: TimestampMicrosecondArray = starts.unary(|s| s.saturating_add(spec.size));
        Ok(ColumnarValue::Array(Arc::new(window_struct(
            starts, ends, tz,
        ))))
    }
}

/// Internal: every window containing each timestamp, as a list (expanded by `UNNEST`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowsFunc {
    signature: Signature,
}

impl ScalarUDFImpl for WindowsFunc {
    fn name(&self) -> &str {
        "__sluice_windows"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal(
            "__sluice_windows(): return_field_from_args is used".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let tz = timestamp_zone(&args.arg_fields[0])?;
        let item = Field::new("item", window_type(tz), true);
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::List(Arc::new(item)),
            false,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let spec = spec_from_args(&scalars(&args.args))?;
        let times = args.args[0].to_array(args.number_rows)?;
        let tz = timestamp_zone(&args.arg_fields[0])?;
        let ts = micros(&times)?;
        let mut starts = TimestampMicrosecondBuilder::new();
        let mut ends = TimestampMicrosecondBuilder::new();
        let mut offsets = Vec::with_capacity(ts.len() + 1);
        offsets.push(0i32);
        for t in ts.iter() {
            for (start, end) in t.into_iter().flat_map(|t| spec.windows(t)) {
                starts.append_value(start);
                ends.append_value(end);
            }
            offsets.push(
                i32::try_from(starts.len())
                    .map_err(|_| DataFusionError::Execution("too many windows".into()))?,
            );
        }
        let item = window_struct(starts.finish(), ends.finish(), tz.clone());
        let field = Arc::new(Field::new("item", window_type(tz), true));
        let list = ListArray::try_new(
            field,
            OffsetBuffer::new(offsets.into()),
            Arc::new(item),
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// `session_window(ts, gap)`: the row's own session `[ts, ts + gap)`, merged with the
/// overlapping sessions of its group by the aggregation.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionWindowFunc {
    signature: Signature,
}

/// The name of the session window function, by which the aggregation recognizes it.
pub const SESSION_WINDOW: &str = "session_window";

/// The gap of `session_window(ts, gap)`: a constant (checked: greater than 0), or `None` when
/// it is an expression, evaluated row by row (a string or an interval).
fn gap_from_args(args: &[Option<&ScalarValue>], types: &[DataType]) -> DfResult<Option<i64>> {
    if args.len() != 2 {
        return plan_err!(
            "session_window() takes a timestamp and a gap duration, got {} arguments",
            args.len()
        );
    }
    let Some(constant) = args[1] else {
        return match &types[1] {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Interval(_) => {
                Ok(None)
            }
            other => plan_err!(
                "session_window(): the gap must be a duration such as '10 seconds' (a constant, \
                 or an expression giving a string or an interval), got {other}"
            ),
        };
    };
    let gap = duration_arg(Some(constant), "gap duration")?;
    if gap <= 0 {
        return plan_err!("session_window(): the gap duration must be greater than 0");
    }
    Ok(Some(gap))
}

/// Each row's gap from an expression's values: `None` where it is null, unreadable or not
/// greater than 0 (such a row has no session, as in Spark, which filters it out).
fn row_gaps(gaps: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    let valid = |gap: Result<i64, String>| gap.ok().filter(|gap| *gap > 0);
    // Strings (the usual form) are parsed once per distinct text.
    if let Ok(texts) = arrow::compute::cast(gaps, &DataType::Utf8)
        && matches!(
            gaps.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    {
        let mut parsed: std::collections::HashMap<&str, Option<i64>> = Default::default();
        return Ok(texts
            .as_string::<i32>()
            .iter()
            .map(|text| {
                let text = text?;
                *parsed
                    .entry(text)
                    .or_insert_with(|| valid(parse_duration(text)))
            })
            .collect());
    }
    (0..gaps.len())
        .map(|i| {
            if gaps.is_null(i) {
                return Ok(None);
            }
            let value = ScalarValue::try_from_array(gaps, i)?;
            Ok(duration_arg(Some(&value), "gap duration")
                .ok()
                .filter(|gap| *gap > 0))
        })
        .collect()
}

impl ScalarUDFImpl for SessionWindowFunc {
    fn name(&self) -> &str {
        SESSION_WINDOW
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Err(DataFusionError::Internal(
            "session_window(): return_field_from_args is used".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        gap_from_args(args.scalar_arguments, &types)?;
        let tz = timestamp_zone(&args.arg_fields[0])?;
        Ok(Arc::new(Field::new(
            "session_window",
            window_type(tz),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(|a| a.data_type()).collect();
        let gap = gap_from_args(&scalars(&args.args), &types)?;
        let times = args.args[0].to_array(args.number_rows)?;
        let tz = timestamp_zone(&args.arg_fields[0])?;
        let starts = micros(&times)?;
        let (starts, ends) = match gap {
            Some(gap) => {
                let ends: TimestampMicrosecondArray = starts.unary(|s| s.saturating_add(gap));
                (starts, ends)
            }
            None => {
                let gaps = row_gaps(&args.args[1].to_array(args.number_rows)?)?;
                let starts: TimestampMicrosecondArray = starts
                    .iter()
                    .zip(&gaps)
                    .map(|(start, gap)| start.filter(|_| gap.is_some()))
                    .collect();
                let ends: TimestampMicrosecondArray = starts
                    .iter()
                    .zip(&gaps)
                    .map(|(start, gap)| Some(start?.saturating_add((*gap)?)))
                    .collect();
                (starts, ends)
            }
        };
        Ok(ColumnarValue::Array(Arc::new(window_struct(
            starts, ends, tz,
        ))))
    }
}

/// `window_time(w)`: the last microsecond of window `w`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowTimeFunc {
    signature: Signature,
}

impl ScalarUDFImpl for WindowTimeFunc {
    fn name(&self) -> &str {
        "window_time"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args {
            [DataType::Struct(fields)] if is_window_type(&args[0]) => {
                Ok(fields[1].data_type().clone())
            }
            _ => plan_err!("window_time() takes a window struct, got {args:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let windows = args.args[0].to_array(args.number_rows)?;
        let end = windows
            .as_struct()
            .column(1)
            .as_primitive::<TimestampMicrosecondType>();
        let time = end
            .unary::<_, TimestampMicrosecondType>(|e| e - 1)
            .with_timezone_opt(match end.data_type() {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            });
        Ok(ColumnarValue::Array(Arc::new(time)))
    }
}

/// The window SQL functions: `window`, `session_window` and `window_time`.
pub fn window_functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(WindowFunc {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(SessionWindowFunc {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(WindowTimeFunc {
            signature: Signature::any(1, Volatility::Immutable),
        }),
    ]
}

/// The constant arguments of a sliding `window(...)` call, if `expr` is one.
fn sliding_window_call(expr: &Expr) -> Option<&ScalarFunction> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::ScalarFunction(call) = expr else {
        return None;
    };
    if call.name() != "window" {
        return None;
    }
    let constants: Vec<Option<&ScalarValue>> = call
        .args
        .iter()
        .map(|a| match a {
            Expr::Literal(value, _) => Some(value),
            _ => None,
        })
        .collect();
    let spec = spec_from_args(&constants).ok()?;
    (!spec.is_tumbling()).then_some(call)
}

/// Rewrites each aggregation grouped by a sliding `window(...)` so that its input holds one
/// row per (row, window containing it): the input gains the list of windows, unnested, and the
/// aggregation groups by that column under the original expression's name.
pub fn expand_sliding_windows(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up(|node| {
        let LogicalPlan::Aggregate(aggregate) = &node else {
            return Ok(Transformed::no(node));
        };
        let sliding: Vec<usize> = (0..aggregate.group_expr.len())
            .filter(|&i| sliding_window_call(&aggregate.group_expr[i]).is_some())
            .collect();
        let [position] = sliding[..] else {
            if sliding.len() > 1 {
                return plan_err!("an aggregation can group by at most one sliding window");
            }
            return Ok(Transformed::no(node));
        };
        let group = &aggregate.group_expr[position];
        let Some(call) = sliding_window_call(group) else {
            return Ok(Transformed::no(node));
        };
        let name = group.schema_name().to_string();
        let windows = ScalarUDF::new_from_impl(WindowsFunc {
            signature: Signature::variadic_any(Volatility::Immutable),
        });
        let mut columns: Vec<Expr> = aggregate
            .input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        columns.push(
            Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(windows),
                call.args.clone(),
            ))
            .alias(EXPANDED_WINDOW),
        );
        let input = LogicalPlanBuilder::from(aggregate.input.as_ref().clone())
            .project(columns)?
            .unnest_column(EXPANDED_WINDOW)?
            .build()?;
        let mut group_expr = aggregate.group_expr.clone();
        group_expr[position] = col(EXPANDED_WINDOW).alias(name);
        let rewritten =
            Aggregate::try_new(Arc::new(input), group_expr, aggregate.aggr_expr.clone())?;
        Ok(Transformed::yes(LogicalPlan::Aggregate(rewritten)))
    })
    .map(|t| t.data)
}

//! The pure rules behind stateful SQL: window arithmetic, durations, watermark tracking and
//! output-mode checks, tested without any query.

use std::collections::BTreeMap;

use sluice_engine::internals::WindowSpec;
use sluice_engine::internals::{BatchWatermarks, EventTimeStats, WatermarkTracker};
use sluice_engine::internals::{QueryShape, check_output_mode};
use sluice_engine::parse_duration;
use sluice_engine::{OutputMode, WatermarkPolicy};

const MINUTE: i64 = 60_000_000;

#[test]
fn tumbling_windows_are_epoch_aligned_and_half_open() {
    let spec = WindowSpec::new(MINUTE, MINUTE, 0).unwrap();
    assert_eq!(spec.windows(0).collect::<Vec<_>>(), [(0, MINUTE)]);
    assert_eq!(spec.windows(MINUTE - 1).collect::<Vec<_>>(), [(0, MINUTE)]);
    assert_eq!(
        spec.windows(MINUTE).collect::<Vec<_>>(),
        [(MINUTE, 2 * MINUTE)]
    );
    // Before the epoch the remainder is taken non-negative.
    assert_eq!(spec.windows(-1).collect::<Vec<_>>(), [(-MINUTE, 0)]);
}

#[test]
fn sliding_windows_hold_each_row_in_size_over_slide_windows() {
    let spec = WindowSpec::new(10 * MINUTE, 5 * MINUTE, 0).unwrap();
    let t = 12 * 60 * MINUTE + 7 * MINUTE; // 12:07
    let windows: Vec<_> = spec.windows(t).collect();
    assert_eq!(
        windows,
        [
            (t - 7 * MINUTE, t + 3 * MINUTE),
            (t - 2 * MINUTE, t + 8 * MINUTE)
        ]
    );
    // 3-minute slide over 10 minutes: ⌈10/3⌉ = 4 candidate windows, those containing t kept.
    let spec = WindowSpec::new(10 * MINUTE, 3 * MINUTE, 0).unwrap();
    for t in [0, MINUTE, 7 * MINUTE + 1, 59 * MINUTE] {
        let windows: Vec<_> = spec.windows(t).collect();
        assert!((3..=4).contains(&windows.len()), "{t}: {windows:?}");
        assert!(
            windows
                .iter()
                .all(|&(s, e)| s <= t && t < e && e - s == 10 * MINUTE)
        );
    }
    // A start time shifts the alignment.
    let spec = WindowSpec::new(MINUTE, MINUTE, 15_000_000).unwrap();
    assert_eq!(
        spec.windows(0).collect::<Vec<_>>(),
        [(15_000_000 - MINUTE, 15_000_000)]
    );
}

#[test]
fn window_definitions_follow_sparks_rules() {
    assert!(
        WindowSpec::new(0, 1, 0)
            .unwrap_err()
            .contains("greater than 0")
    );
    assert!(
        WindowSpec::new(MINUTE, 2 * MINUTE, 0)
            .unwrap_err()
            .contains("less than or equal")
    );
    assert!(
        WindowSpec::new(MINUTE, MINUTE, MINUTE)
            .unwrap_err()
            .contains("start time")
    );
}

#[test]
fn a_window_is_bounded_in_windows_per_row_and_never_overflows() {
    // '1 day' every '1 microsecond' would put each row in 86,400,000,000 windows.
    let error = WindowSpec::new(1440 * MINUTE, 1, 0).unwrap_err();
    assert!(error.contains("86400000000 windows"), "{error}");
    assert!(
        WindowSpec::new(10_000 * MINUTE, MINUTE, 0).is_ok(),
        "10,000 is allowed"
    );
    assert!(WindowSpec::new(10_001 * MINUTE, MINUTE, 0).is_err());
    // At the ends of the time line, windows that do not fit are left out instead of wrapping.
    let huge = WindowSpec::new(i64::MAX / 2, i64::MAX / 4, 0).unwrap();
    assert!(huge.windows(i64::MAX - 1).all(|(start, end)| start < end));
    assert_eq!(
        WindowSpec::new(MINUTE, MINUTE, 0)
            .unwrap()
            .windows(i64::MAX)
            .count(),
        0
    );
}

#[tokio::test]
async fn a_window_duration_that_overflows_is_an_error_at_planning() {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        true,
    )]));
    let error = sluice_engine::StreamingQueryBuilder::new()
        .source("t", sluice_engine::MemorySource::new("t", schema))
        .sql("SELECT window(ts, INTERVAL '200000000' DAY) AS w, count(*) FROM t GROUP BY 1")
        .sink(sluice_engine::MemorySink::new())
        .explain()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("overflows"), "{error}");
}

#[test]
fn durations_parse_like_spark_interval_strings() {
    assert_eq!(parse_duration("10 minutes"), Ok(10 * MINUTE));
    assert_eq!(
        parse_duration("1 hour 30 seconds"),
        Ok(60 * MINUTE + 30_000_000)
    );
    assert_eq!(parse_duration("interval 1 day"), Ok(1440 * MINUTE));
    assert_eq!(parse_duration("250 milliseconds"), Ok(250_000));
    assert!(
        parse_duration("ten minutes")
            .unwrap_err()
            .contains("not an integer")
    );
    assert!(
        parse_duration("5 fortnights")
            .unwrap_err()
            .contains("unknown unit")
    );
}

fn stats(max: i64) -> EventTimeStats {
    EventTimeStats {
        max,
        min: max,
        sum: i128::from(max),
        count: 1,
    }
}

#[test]
fn watermark_moves_forward_only_by_the_slowest_source_by_default() {
    let delays = BTreeMap::from([("a".to_string(), 10), ("b".to_string(), 0)]);
    let mut tracker = WatermarkTracker::new(WatermarkPolicy::Min, delays.clone(), 0);
    tracker.observe("a", &stats(1_000));
    assert_eq!(
        tracker.advance(),
        0,
        "b has produced nothing yet: it counts as 0"
    );
    tracker.observe("b", &stats(500));
    assert_eq!(tracker.advance(), 500);
    tracker.observe("a", &stats(100));
    tracker.observe("b", &stats(100));
    assert_eq!(tracker.advance(), 500, "never backwards");

    let mut fastest = WatermarkTracker::new(WatermarkPolicy::Max, delays, 0);
    fastest.observe("a", &stats(1_000));
    assert_eq!(fastest.advance(), 990);
}

#[test]
fn restarted_tracker_resumes_from_the_checkpointed_watermark() {
    let mut tracker = WatermarkTracker::new(
        WatermarkPolicy::Min,
        BTreeMap::from([("a".to_string(), 10)]),
        0,
    );
    tracker.reset(5_000);
    tracker.observe("a", &stats(4_000));
    assert_eq!(tracker.advance(), 5_000);
    tracker.observe("a", &stats(6_000));
    assert_eq!(tracker.advance(), 5_990);
}

#[test]
fn a_batch_judges_lateness_with_the_previous_watermark_and_evicts_with_its_own() {
    let mut tracker = WatermarkTracker::new(
        WatermarkPolicy::Min,
        BTreeMap::from([("a".to_string(), 10_000)]),
        0,
    );
    // Batch 0 runs with watermark 0; its rows move the watermark to 50 s.
    assert_eq!(
        tracker.batch_watermarks(0),
        Some(BatchWatermarks {
            late: 0,
            eviction: 0
        })
    );
    tracker.observe("a", &stats(60_000));
    assert_eq!(tracker.finish_batch(0), 50_000);
    // Batch 1 is logged with 50 s: input is late against batch 0's watermark (0), state is
    // evicted with its own.
    let batch = tracker.batch_watermarks(50_000).unwrap();
    assert_eq!(
        batch,
        BatchWatermarks {
            late: 0,
            eviction: 50_000
        }
    );
    // Windows end exclusively, in µs; event times and expiries are in ms; both boundaries
    // are inclusive ("at or before").
    assert!(batch.window_is_late(0) && !batch.window_is_late(1));
    assert!(batch.window_is_closed(50_000_000) && !batch.window_is_closed(50_000_001));
    assert!(batch.row_is_late(0) && !batch.row_is_late(1));
    assert!(batch.key_expired(50_000) && !batch.key_expired(50_001));
}

#[test]
fn a_no_data_batch_runs_only_when_the_watermark_moved_for_a_waiting_operator() {
    let mut tracker = WatermarkTracker::new(
        WatermarkPolicy::Min,
        BTreeMap::from([("a".to_string(), 0)]),
        0,
    );
    assert!(!tracker.runs_no_data_batch(true), "nothing moved yet");
    tracker.observe("a", &stats(1_000));
    tracker.finish_batch(0);
    assert!(
        tracker.runs_no_data_batch(true),
        "1 s is past the 0 batch 0 ran with"
    );
    assert!(
        !tracker.runs_no_data_batch(false),
        "no operator waits on it"
    );
    tracker.finish_batch(1_000);
    assert!(
        !tracker.runs_no_data_batch(true),
        "the last batch ran with it"
    );

    let none = WatermarkTracker::new(WatermarkPolicy::Min, BTreeMap::new(), 0);
    assert!(!none.runs_no_data_batch(true), "no watermark declared");
    assert_eq!(none.batch_watermarks(0), None);
}

#[test]
fn output_mode_rules() {
    let aggregation = QueryShape {
        aggregation: true,
        window_key: true,
        watermark: true,
        ..Default::default()
    };
    for mode in [OutputMode::Append, OutputMode::Update, OutputMode::Complete] {
        assert!(check_output_mode(aggregation, mode).is_ok(), "{mode}");
        assert!(
            check_output_mode(QueryShape::default(), mode).is_ok()
                != (mode == OutputMode::Complete)
        );
    }
    let without_watermark = QueryShape {
        watermark: false,
        ..aggregation
    };
    assert!(check_output_mode(without_watermark, OutputMode::Append).is_err());
    assert!(check_output_mode(without_watermark, OutputMode::Update).is_ok());
    let session = QueryShape {
        session_window: true,
        ..aggregation
    };
    assert!(check_output_mode(session, OutputMode::Update).is_err());
    let sorted = QueryShape {
        sort: true,
        ..aggregation
    };
    assert!(check_output_mode(sorted, OutputMode::Complete).is_ok());
    assert!(check_output_mode(sorted, OutputMode::Update).is_err());
    assert_eq!("UPDATE".parse::<OutputMode>().unwrap(), OutputMode::Update);
}

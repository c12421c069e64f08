-- projet_bdcc — the seed project's Spark job, row for row.
--
-- Reads the normalized ticker messages (one JSON object per symbol per Binance mini-ticker
-- frame) from Kafka topic `projet-bdcc`, derives
--   timestamp_ts  the event time as a timestamp, from `timestamp` (ms since the epoch),
--                 truncated to the second as the seed's `from_unixtime(timestamp / 1000)`,
--   spread        high_price - low_price,
--   mid_price     (high_price + low_price) / 2,
-- drops duplicates on (timestamp_ts, symbol) within each micro-batch (the seed called
-- `dropDuplicates` inside `foreachBatch`; the first occurrence wins; null keys are equal, so
-- a batch keeps one row per symbol and second, and one of the rows whose symbol or timestamp
-- is null), and appends the rows to table `projet_bdcc` every second, exactly once per batch.
-- As in the seed, rows with a null symbol or timestamp are kept — a record that does not
-- parse is a row of nulls (PERMISSIVE), counted in progress as malformed.
--
-- Variables (one file for production, the demo and tests):
--   TICKS_CONNECTOR        kafka (default) | binance | file
--   TICKS_TOPIC            Kafka topic, default projet-bdcc (broker from KAFKA_BOOTSTRAP)
--   TICKS_MAX_PER_TRIGGER  Kafka offsets per micro-batch at most, default 200000
--   BINANCE_WS_URL         WebSocket stream when TICKS_CONNECTOR=binance
--   TICKS_PATH             directory of JSON-lines files when TICKS_CONNECTOR=file
--   TIMESTAMP_PRECISION    second (default, the seed's) | millisecond: the precision of
--                          timestamp_ts, hence of the dedup key
--   DROP_NULL_KEYS         false (default, the seed's) | true: leave out the rows whose symbol
--                          or timestamp is null (the records that did not parse among them)
--   SINK_CONNECTOR         postgres (default) | sqlite
--   DATABASE_URL           default postgres://sluice:sluice@127.0.0.1:5432/sluice
--   CHECKPOINT_DIR         default data/checkpoints (this query's is CHECKPOINT_DIR/projet_bdcc)
--   DISTRIBUTION           spark (default: one process) | kafka_partitions: every `sluice run`
--                          of the file is a worker running its share of the topic's partitions
--                          (README, "Scaling out"); the dedup key holds symbol, the key
--                          the producer partitions by
--
--   sluice run queries/projet_bdcc.sql

SET trigger = '1 second';
SET checkpoint = '${CHECKPOINT_DIR:-data/checkpoints}';
SET distribution = '${DISTRIBUTION:-spark}';
SET foreach_batch = true;

CREATE TABLE ticks (
    symbol       VARCHAR,
    close_price  DOUBLE,
    open_price   DOUBLE,
    high_price   DOUBLE,
    low_price    DOUBLE,
    volume       DOUBLE,
    quote_volume DOUBLE,
    "timestamp"  BIGINT
) WITH (
    connector = '${TICKS_CONNECTOR:-kafka}',
    format = 'json',
    'kafka.topic' = '${TICKS_TOPIC:-projet-bdcc}',
    'kafka.starting_offsets' = 'earliest',
    'kafka.partitioned_by' = 'symbol',
    'kafka.max_offsets_per_trigger' = '${TICKS_MAX_PER_TRIGGER:-200000}',
    'binance.url' = '${BINANCE_WS_URL:-wss://stream.binance.com:9443/ws/!miniTicker@arr}',
    'file.path' = '${TICKS_PATH:-data/ticks}'
);

CREATE TABLE projet_bdcc WITH (
    connector = '${SINK_CONNECTOR:-postgres}',
    url = '${DATABASE_URL:-postgres://sluice:sluice@127.0.0.1:5432/sluice}',
    index = 'symbol, timestamp_ts',
    output_mode = 'append'
);

INSERT INTO projet_bdcc
SELECT DISTINCT ON (date_trunc('${TIMESTAMP_PRECISION:-second}', to_timestamp_millis("timestamp")), symbol)
    symbol,
    close_price,
    open_price,
    high_price,
    low_price,
    volume,
    quote_volume,
    date_trunc('${TIMESTAMP_PRECISION:-second}', to_timestamp_millis("timestamp")) AS timestamp_ts,
    high_price - low_price AS spread,
    (high_price + low_price) / 2 AS mid_price
FROM ticks
WHERE NOT ${DROP_NULL_KEYS:-false} OR (symbol IS NOT NULL AND "timestamp" IS NOT NULL);

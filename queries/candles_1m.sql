-- candles_1m — 1-minute OHLC candles per symbol, upserted while the minute is open.
--
-- Event time `ts` is the ticker's `timestamp` (ms). A tumbling 1-minute window per symbol:
--   open   the first close price of the minute (min_by on event time),
--   high   the highest close price, low the lowest,
--   close  the last close price (max_by on event time),
--   volume / quote_volume  the 24 h rolling volumes at the minute's last ticker (Binance's
--          mini ticker carries rolling 24 h volumes, not per-trade ones),
--   ticks  how many tickers the minute received.
-- Watermark: 10 seconds behind the latest event time. Update mode: each batch upserts the
-- candles it changed, keyed on (symbol, window_start, window_end); tickers more than 10 s
-- late for a closed minute are dropped and counted (numRowsDroppedByWatermark), as in Spark.
--
-- Scaling out: with DISTRIBUTION=kafka_partitions, every `sluice run` of this file is a worker
-- of the query, running its share of the topic's partitions (README, "Scaling out"); the
-- checkpoint must then be shared by the workers (CHECKPOINT_DIR=s3://bucket/prefix).
--
-- Variables: as in projet_bdcc.sql (TICKS_CONNECTOR, TICKS_TOPIC, BINANCE_WS_URL, TICKS_PATH,
-- SINK_CONNECTOR, DATABASE_URL, CHECKPOINT_DIR), and DISTRIBUTION ('spark', the default, or
-- 'kafka_partitions').
--
--   sluice run queries/candles_1m.sql

SET trigger = '1 second';
SET checkpoint = '${CHECKPOINT_DIR:-data/checkpoints}';
SET distribution = '${DISTRIBUTION:-spark}';

INCLUDE 'include/ticks.sql';

CREATE TABLE candles_1m WITH (
    connector = '${SINK_CONNECTOR:-postgres}',
    url = '${DATABASE_URL:-postgres://sluice:sluice@127.0.0.1:5432/sluice}',
    output_mode = 'update'
);

INSERT INTO candles_1m
SELECT
    symbol,
    window(ts, '1 minute') AS window,
    min_by(close_price, ts) AS open,
    max(close_price) AS high,
    min(close_price) AS low,
    max_by(close_price, ts) AS close,
    max_by(volume, ts) AS volume,
    max_by(quote_volume, ts) AS quote_volume,
    count(*) AS ticks
FROM ticks
WHERE symbol IS NOT NULL AND ts IS NOT NULL
GROUP BY symbol, window(ts, '1 minute');

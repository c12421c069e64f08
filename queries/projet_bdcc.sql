-- projet_bdcc: the seed project's Spark job, stateless part, run per micro-batch (foreachBatch).
--
-- Input: table `ticks`, the normalized ticker messages produced from Binance's
-- `!miniTicker@arr` stream (symbol, close/open/high/low prices, volume, quote_volume and
-- `timestamp`, the event time in ms since the epoch).
-- Output: the rows of PostgreSQL table `projet_bdcc`: the same columns plus
--   timestamp_ts  the event time as a timestamp (from `timestamp`, ms),
--   spread        high_price - low_price,
--   mid_price     (high_price + low_price) / 2,
-- with duplicates on (timestamp_ts, symbol) dropped within each micro-batch (the seed called
-- `dropDuplicates` inside `foreachBatch`; the first occurrence wins). Records that did not parse
-- (null symbol or timestamp in PERMISSIVE mode) are left out: they are counted in progress.
SELECT DISTINCT ON (to_timestamp_millis("timestamp"), symbol)
    symbol,
    close_price,
    open_price,
    high_price,
    low_price,
    volume,
    quote_volume,
    to_timestamp_millis("timestamp") AS timestamp_ts,
    high_price - low_price AS spread,
    (high_price + low_price) / 2 AS mid_price
FROM ticks
WHERE symbol IS NOT NULL AND "timestamp" IS NOT NULL

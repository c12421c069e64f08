-- volatility_5m — sliding 5-minute windows every minute: how much each symbol moves.
--
-- Per symbol and window (each ticker falls into 5 overlapping windows):
--   mean_close           average close price,
--   stddev_close         sample standard deviation of the close price,
--   relative_volatility  stddev_close / mean_close,
--   mean_spread          average 24 h spread (high_price - low_price),
--   pct_change           (last close - first close) / first close × 100,
--   ticks                tickers in the window.
-- Watermark 10 s; update mode, upserted on (symbol, window_start, window_end).
--
-- Variables: as in projet_bdcc.sql.
--
--   sluice run queries/volatility_5m.sql

SET trigger = '1 second';
SET checkpoint = '${CHECKPOINT_DIR:-data/checkpoints}';
SET distribution = '${DISTRIBUTION:-spark}';

INCLUDE 'include/ticks.sql';

CREATE TABLE volatility_5m WITH (
    connector = '${SINK_CONNECTOR:-postgres}',
    url = '${DATABASE_URL:-postgres://sluice:sluice@127.0.0.1:5432/sluice}',
    output_mode = 'update'
);

INSERT INTO volatility_5m
SELECT
    symbol,
    window,
    mean_close,
    stddev_close,
    stddev_close / mean_close AS relative_volatility,
    mean_spread,
    (last_close - first_close) / first_close * 100 AS pct_change,
    ticks
FROM (
    SELECT
        symbol,
        window(ts, '5 minutes', '1 minute') AS window,
        avg(close_price) AS mean_close,
        stddev(close_price) AS stddev_close,
        avg(high_price - low_price) AS mean_spread,
        min_by(close_price, ts) AS first_close,
        max_by(close_price, ts) AS last_close,
        count(*) AS ticks
    FROM ticks
    WHERE symbol IS NOT NULL AND ts IS NOT NULL
    GROUP BY symbol, window(ts, '5 minutes', '1 minute')
);

-- market_sessions — sessions of activity per symbol (session windows).
--
-- Binance's all-market mini-ticker stream only carries the symbols whose ticker changed in the
-- last second, so a symbol's tickers come in bursts. A session is a run of tickers of one
-- symbol with no pause longer than 5 seconds; per session:
--   session_start / session_end  first ticker, and last ticker + 5 s (Spark's session end),
--   ticks                        tickers in the session,
--   first_close / last_close     close price at its first and last ticker,
--   pct_change                   (last_close - first_close) / first_close × 100.
-- Watermark 10 s; append mode: a session is written once, when the watermark passes its end
-- (Spark's rule for session windows in append mode).
--
-- Variables: as in projet_bdcc.sql.
--
--   sluice run queries/market_sessions.sql

SET trigger = '1 second';
SET checkpoint = '${CHECKPOINT_DIR:-data/checkpoints}';
SET distribution = '${DISTRIBUTION:-spark}';

INCLUDE 'include/ticks.sql';

CREATE TABLE market_sessions WITH (
    connector = '${SINK_CONNECTOR:-postgres}',
    url = '${DATABASE_URL:-postgres://sluice:sluice@127.0.0.1:5432/sluice}',
    output_mode = 'append'
);

INSERT INTO market_sessions
SELECT
    symbol,
    session,
    ticks,
    first_close,
    last_close,
    (last_close - first_close) / first_close * 100 AS pct_change
FROM (
    SELECT
        symbol,
        session_window(ts, '5 seconds') AS session,
        count(*) AS ticks,
        min_by(close_price, ts) AS first_close,
        max_by(close_price, ts) AS last_close
    FROM ticks
    WHERE symbol IS NOT NULL AND ts IS NOT NULL
    GROUP BY symbol, session_window(ts, '5 seconds')
);

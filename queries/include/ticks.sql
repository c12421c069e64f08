-- ticks — the normalized Binance mini-ticker messages, with their event time: the source that
-- candles_1m.sql, volatility_5m.sql and market_sessions.sql include
-- (INCLUDE 'include/ticks.sql'). It holds no INSERT, so it is not a pipeline by itself: it sits
-- in queries/include/ so that `sluice run queries/*.sql` does not pick it up.
--
-- Event time `ts` is the ticker's `timestamp` (ms since the epoch); the watermark trails the
-- latest event time by 10 seconds. The producer keys each message by its symbol
-- (`partitioned_by`), which lets the queries that group by symbol scale out over the topic's
-- partitions (SET distribution = 'kafka_partitions'). projet_bdcc.sql declares the same source without event
-- time, as the seed job (no watermark, no state).
--
-- Variables: as in projet_bdcc.sql (TICKS_CONNECTOR, TICKS_TOPIC, TICKS_MAX_PER_TRIGGER,
-- BINANCE_WS_URL, TICKS_PATH).

CREATE TABLE ticks (
    symbol       VARCHAR,
    close_price  DOUBLE,
    open_price   DOUBLE,
    high_price   DOUBLE,
    low_price    DOUBLE,
    volume       DOUBLE,
    quote_volume DOUBLE,
    "timestamp"  BIGINT,
    ts AS to_timestamp_millis("timestamp"),
    WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
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

# Runs the scenarios of engine/tests/golden/*.slt on real Spark (pip install pyspark==4.0.1,
# Java 17): one input file per step, processAllAvailable after each, and prints every batch's
# output (sorted rows) and numRowsDroppedByWatermark, to compare with the .slt expectations.
# Usage: python3 engine/tests/spark/check_golden.py
import json, os, shutil, sys, time
from pyspark.sql import SparkSession, functions as F
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled","false")
         .config("spark.sql.shuffle.partitions","2").config("spark.sql.session.timeZone","UTC").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")

def run2(name, schemas, steps, build, mode):
    """One or more streams: each step writes one file per stream (a stream without rows gets
    none)."""
    base = f"/tmp/sluice-spark-check/{name}"; shutil.rmtree(base, ignore_errors=True)
    out = []
    def collect(df, batch_id):
        rows = sorted(" | ".join(str(v) for v in r) for r in df.collect())
        out.append((batch_id, rows))
    streams = []
    for i, schema in enumerate(schemas):
        os.makedirs(f"{base}/in{i}")
        streams.append(spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).json(f"{base}/in{i}"))
    q = (build(*streams).writeStream.outputMode(mode).foreachBatch(collect)
         .option("checkpointLocation", base + "/ckpt").trigger(processingTime="1 second").start())
    for step, rows_per_stream in enumerate(steps):
        # All of a step's files are written first, then renamed in one go, so that one
        # trigger sees them together.
        paths = []
        for i, rows in enumerate(rows_per_stream):
            if not rows: continue
            path = f"{base}/in{i}/{step:03}.json"
            with open(path + ".tmp", "w") as f:
                f.write("\n".join(json.dumps(r) for r in rows) + "\n")
            paths.append(path)
        for path in paths:
            os.rename(path + ".tmp", path)
        q.processAllAvailable(); time.sleep(3)
    q.stop()
    print("==", name)
    for batch_id, rows in out:
        print(batch_id, rows)
    for p in q.recentProgress:
        ops = p["stateOperators"]
        if ops: print("progress batch", p["batchId"], "dropped", ops[0]["numRowsDroppedByWatermark"], "rows", p["numInputRows"])

def run(name, schema, steps, build, mode):
    """One stream: each step writes one file."""
    run2(name, [schema], [[rows] for rows in steps], build, mode)

# The stream-stream join scenarios: impressions (watermark 10 s) joined with the clicks
# (watermark 20 s) within a minute after them.
AD_SCHEMAS = ["ad STRING, its TIMESTAMP", "ad STRING, ct TIMESTAMP"]
WITHIN_A_MINUTE = "i.ad = c.ad AND c.ct >= i.its AND c.ct <= i.its + interval 1 minute"

def ad_join(name, steps, how, condition=WITHIN_A_MINUTE, columns=("i.ad", "i.its", "c.ct"), where=None):
    def build(i, c):
        joined = i.withWatermark("its", "10 seconds").alias("i").join(
            c.withWatermark("ct", "20 seconds").alias("c"), F.expr(condition), how)
        if where:
            joined = joined.where(where)
        return joined.select(*columns)
    run2(name, AD_SCHEMAS, steps, build, "append")

def imp(ad, t): return {"ad": ad, "its": "2026-01-01T" + t}
def click(ad, t): return {"ad": ad, "ct": "2026-01-01T" + t}

ad_join("join_inner", [
    ([imp("a1", "12:00:00"), imp("a2", "12:00:10")], [click("a1", "12:00:30")]),
    ([imp("a3", "12:01:00")], [click("a2", "12:00:50"), click("a3", "12:01:05"), click("a1", "12:01:30")]),
    ([imp("a4", "12:02:00"), imp("a0", "12:00:30")], [click("a4", "12:02:10"), click("a2", "12:00:55")]),
], "inner")

OUTER_STEPS = [
    ([imp("a1", "12:00:00"), imp("a2", "12:00:10")], [click("a1", "12:00:30")]),
    ([imp("a3", "12:01:00")], [click("a3", "12:01:05"), click("a9", "12:01:20")]),
    ([imp("a4", "12:02:30")], [click("a4", "12:03:00")]),
    ([], [click("zz", "12:05:00")]),
]
ad_join("join_left_outer", OUTER_STEPS, "left_outer")
ad_join("join_full_outer", OUTER_STEPS, "full_outer")
ad_join("join_unmatched_only", OUTER_STEPS[:3], "left_outer", columns=("i.ad", "i.its"), where="c.ad IS NULL")
ad_join("join_left_semi", [
    ([imp("a1", "12:00:00"), imp("a2", "12:00:10")], [click("a1", "12:00:30"), click("a1", "12:00:40")]),
    ([imp("a3", "12:01:00")], [click("a3", "12:01:05"), click("a2", "12:00:50")]),
    ([imp("a4", "12:02:30")], [click("a2", "12:01:00")]),
    ([], [click("zz", "12:05:00")]),
], "left_semi", columns=("i.ad", "i.its"))
# The eviction boundary: x sits exactly at watermark - 1 minute when the watermark is
# 12:01:10 (with `<` instead of `<=`, Spark outputs x a batch earlier).
ad_join("join_boundary", [
    ([imp("x", "12:00:10"), imp("z", "12:01:20")], [click("y", "12:01:30")]),
    ([], [click("w", "12:02:00")]),
    ([imp("v", "12:01:30")], []),
], "left_outer")

run("dedup_then_window", "id STRING, ts TIMESTAMP", [
    [{"id":"a","ts":"2026-01-01T12:00:05"},{"id":"a","ts":"2026-01-01T12:00:05"},{"id":"b","ts":"2026-01-01T12:00:20"}],
    [{"id":"a","ts":"2026-01-01T12:00:05"},{"id":"c","ts":"2026-01-01T12:01:30"}],
    [{"id":"d","ts":"2026-01-01T12:00:40"},{"id":"e","ts":"2026-01-01T12:01:35"},{"id":"f","ts":"2026-01-01T12:02:30"}],
], lambda s: s.withWatermark("ts","10 seconds").dropDuplicates(["id","ts"]).groupBy(F.window("ts","1 minute").alias("w")).count(), "append")

run("chained_windows", "sym STRING, ts TIMESTAMP", [
    [{"sym":"a","ts":"2026-01-01T12:00:01"},{"sym":"a","ts":"2026-01-01T12:00:05"},{"sym":"b","ts":"2026-01-01T12:00:12"}],
    [{"sym":"a","ts":"2026-01-01T12:00:31"},{"sym":"b","ts":"2026-01-01T12:00:58"}],
    [{"sym":"a","ts":"2026-01-01T12:01:25"},{"sym":"a","ts":"2026-01-01T12:00:20"}],
    [{"sym":"b","ts":"2026-01-01T12:02:30"}],
], lambda s: s.withWatermark("ts","10 seconds").groupBy(F.window("ts","10 seconds").alias("w"), "sym").agg(F.count("*").alias("n"))
   .groupBy(F.window(F.window_time("w"), "1 minute").alias("w2")).agg(F.sum("n").alias("total"), F.count("*").alias("windows")), "append")

def join_then_window(i, c):
    joined = i.withWatermark("its", "10 seconds").alias("i").join(
        c.withWatermark("ct", "20 seconds").alias("c"), F.expr(WITHIN_A_MINUTE), "inner")
    return joined.groupBy(F.window("i.its", "1 minute").alias("w")).agg(F.count("*").alias("clicks"))
run2("join_then_window", AD_SCHEMAS, [
    ([imp("a1", "12:00:00"), imp("a2", "12:00:10")], [click("a1", "12:00:30")]),
    ([imp("a3", "12:01:00")], [click("a2", "12:00:50"), click("a3", "12:01:05"), click("a1", "12:01:30")]),
    ([imp("a4", "12:02:00")], [click("a4", "12:02:10"), click("a2", "12:00:55")]),
    ([imp("a5", "12:03:30")], [click("a5", "12:04:00")]),
    ([imp("a6", "12:05:30")], [click("a6", "12:06:00")]),
], join_then_window, "append")

def outer_then_window(i, c):
    joined = i.withWatermark("its", "10 seconds").alias("i").join(
        c.withWatermark("ct", "20 seconds").alias("c"), F.expr(WITHIN_A_MINUTE), "left_outer")
    return joined.groupBy(F.window("i.its", "1 minute").alias("w")).agg(
        F.count("*").alias("impressions"), F.count("c.ct").alias("clicks"))
run2("outer_join_then_window", AD_SCHEMAS, [
    ([imp("a1", "12:00:00"), imp("a2", "12:00:10")], [click("a1", "12:00:30")]),
    ([imp("a3", "12:01:00")], [click("a3", "12:01:05"), click("a9", "12:01:20")]),
    ([imp("a4", "12:02:30")], [click("a4", "12:03:00")]),
    ([imp("a5", "12:04:30")], [click("a5", "12:05:00")]),
    ([imp("a6", "12:06:30")], [click("a6", "12:07:00")]),
], outer_then_window, "append")

run("guide", "word STRING, ts TIMESTAMP", [
    [{"word":"dog","ts":"2026-01-01T12:07:00"},{"word":"owl","ts":"2026-01-01T12:08:00"}],
    [{"word":"dog","ts":"2026-01-01T12:14:00"},{"word":"cat","ts":"2026-01-01T12:09:00"}],
    [{"word":"cat","ts":"2026-01-01T12:15:00"},{"word":"donkey","ts":"2026-01-01T12:08:00"},{"word":"owl","ts":"2026-01-01T12:21:00"}],
    [{"word":"owl","ts":"2026-01-01T12:17:00"},{"word":"donkey","ts":"2026-01-01T12:04:00"}],
], lambda s: s.withWatermark("ts","10 minutes").groupBy(F.window("ts","10 minutes","5 minutes").alias("w"), "word").count(), "append")

run("update", "symbol STRING, price DOUBLE, ts TIMESTAMP", [
    [{"symbol":"A","price":1,"ts":"2026-01-01T12:00:10"},{"symbol":"A","price":2,"ts":"2026-01-01T12:01:10"}],
    [{"symbol":"A","price":10,"ts":"2026-01-01T12:00:30"},{"symbol":"A","price":5,"ts":"2026-01-01T12:03:00"}],
    [{"symbol":"A","price":100,"ts":"2026-01-01T12:00:40"},{"symbol":"A","price":100,"ts":"2026-01-01T12:01:40"}],
], lambda s: s.withWatermark("ts","1 minute").groupBy(F.window("ts","1 minute").alias("w"), "symbol").agg(F.sum("price").alias("total")), "update")

run("complete", "symbol STRING, price DOUBLE, ts TIMESTAMP", [
    [{"symbol":"A","price":1,"ts":"2026-01-01T12:00:10"},{"symbol":"A","price":1,"ts":"2026-01-01T12:10:00"}],
    [{"symbol":"A","price":1,"ts":"2026-01-01T12:00:20"}],
], lambda s: s.withWatermark("ts","1 minute").groupBy(F.window("ts","1 minute").alias("w")).agg(F.count("*").alias("n")).orderBy("w"), "complete")

run("tumbling", "symbol STRING, price DOUBLE, ts TIMESTAMP", [
    [{"symbol":"BTC","price":10,"ts":"2026-01-01T12:00:05"},{"symbol":"BTC","price":12,"ts":"2026-01-01T12:00:35"},{"symbol":"ETH","price":3,"ts":"2026-01-01T12:00:10"}],
    [{"symbol":"BTC","price":9,"ts":"2026-01-01T12:00:50"},{"symbol":"BTC","price":11,"ts":"2026-01-01T12:01:02"}],
    [{"symbol":"ETH","price":4,"ts":"2026-01-01T12:00:20"}],
], lambda s: s.groupBy(F.window("ts","1 minute").alias("w"), "symbol").agg(F.count("*").alias("n"), F.min("price").alias("low"), F.max("price").alias("high"), F.min_by("price","ts").alias("open"), F.max_by("price","ts").alias("close")), "update")

run("dedup", "id STRING, ts TIMESTAMP", [
    [{"id":"a","ts":"2026-01-01T12:00:00"},{"id":"a","ts":"2026-01-01T12:00:00"},{"id":"b","ts":"2026-01-01T12:00:05"}],
    [{"id":"a","ts":"2026-01-01T12:00:00"},{"id":"c","ts":"2026-01-01T12:00:20"}],
    [{"id":"a","ts":"2026-01-01T12:00:00"},{"id":"d","ts":"2026-01-01T12:00:21"}],
], lambda s: s.withWatermark("ts","10 seconds").dropDuplicates(["id","ts"]), "append")

run("dedup_within", "id STRING, ts TIMESTAMP", [
    [{"id":"a","ts":"2026-01-01T12:00:00"},{"id":"b","ts":"2026-01-01T12:00:01"}],
    [{"id":"a","ts":"2026-01-01T12:00:05"},{"id":"c","ts":"2026-01-01T12:00:30"}],
    [{"id":"a","ts":"2026-01-01T12:00:25"}],
], lambda s: s.withWatermark("ts","10 seconds").dropDuplicatesWithinWatermark(["id"]), "append")

run("session", "user STRING, ts TIMESTAMP", [
    [{"user":"u1","ts":"2026-01-01T12:00:00"},{"user":"u1","ts":"2026-01-01T12:00:20"},{"user":"u2","ts":"2026-01-01T12:00:05"}],
    [{"user":"u1","ts":"2026-01-01T12:00:45"},{"user":"u2","ts":"2026-01-01T12:01:30"}],
    [{"user":"u2","ts":"2026-01-01T12:01:00"},{"user":"u3","ts":"2026-01-01T12:03:00"}],
], lambda s: s.withWatermark("ts","10 seconds").groupBy(F.session_window("ts","30 seconds").alias("s"), "user").count(), "append")

run("session_dynamic_gap", "user STRING, ts TIMESTAMP, gap STRING", [
    [{"user":"u1","ts":"2026-01-01T12:00:00","gap":"5 seconds"},{"user":"u1","ts":"2026-01-01T12:00:04","gap":"1 second"},
     {"user":"u1","ts":"2026-01-01T12:00:20","gap":"0 seconds"},{"user":"u1","ts":"2026-01-01T12:00:30"},
     {"user":"u1","ts":"2026-01-01T12:00:40","gap":"-5 seconds"},{"user":"u1","ts":"2026-01-01T12:00:50","gap":"soon"},
     {"user":"u2","ts":"2026-01-01T12:00:00","gap":"20 seconds"},{"user":"u2","ts":"2026-01-01T12:00:15","gap":"1 second"}],
    [{"user":"u1","ts":"2026-01-01T12:00:45","gap":"1 minute"},{"user":"u2","ts":"2026-01-01T12:00:25","gap":"5 seconds"},
     {"user":"u3","ts":"2026-01-01T12:01:30","gap":"1 second"}],
    [{"user":"u3","ts":"2026-01-01T12:02:00","gap":"2 seconds"}],
], lambda s: s.withWatermark("ts","10 seconds").groupBy(F.session_window("ts", F.col("gap")).alias("s"), "user").count(), "append")

run("tumbling_append_candles", "symbol STRING, price DOUBLE, ts TIMESTAMP", [
    [{"symbol":"BTC","price":10,"ts":"2026-01-01T12:00:05"},{"symbol":"BTC","price":14,"ts":"2026-01-01T12:00:50"},{"symbol":"BTC","price":8,"ts":"2026-01-01T12:00:30"}],
    [{"symbol":"BTC","price":12,"ts":"2026-01-01T12:01:05"}],
    [{"symbol":"BTC","price":13,"ts":"2026-01-01T12:01:20"}],
], lambda s: s.withWatermark("ts","10 seconds").groupBy(F.window("ts","1 minute").alias("w"), "symbol").agg(
    F.min_by("price","ts").alias("open"), F.max("price").alias("high"), F.min("price").alias("low"),
    F.max_by("price","ts").alias("close"), F.first("price").alias("first_seen"), F.last("price").alias("last_seen"),
    F.count("*").alias("n"), F.round(F.stddev("price"), 3).alias("sd"),
    F.approx_count_distinct(F.col("price").cast("string")).alias("prices")), "append")

run("sliding_complete", "symbol STRING, price DOUBLE, ts TIMESTAMP", [
    [{"symbol":"A","price":1,"ts":"2026-01-01T12:00:30"},{"symbol":"A","price":2,"ts":"2026-01-01T12:01:30"}],
    [{"symbol":"A","price":4,"ts":"2026-01-01T12:00:45"}],
], lambda s: s.groupBy(F.window("ts","2 minutes","1 minute").alias("w")).agg(F.sum("price").alias("total")).orderBy("w"), "complete")

run("session_complete", "user STRING, ts TIMESTAMP", [
    [{"user":"u1","ts":"2026-01-01T12:00:00"},{"user":"u1","ts":"2026-01-01T12:00:15"}],
    [{"user":"u1","ts":"2026-01-01T12:00:08"}],
], lambda s: s.groupBy(F.session_window("ts","10 seconds").alias("s"), "user").count(), "complete")

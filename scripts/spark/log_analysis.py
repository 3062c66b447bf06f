"""The log analyses of dataflows/log-analysis.toml written for Spark Structured Streaming, the
peer `scripts/bench spark` measures logflow against. Run with the venv scripts/bench makes
(.tools/spark-venv, pyspark 4.0.1, Java 17):

    python scripts/spark/log_analysis.py INPUT_DIR CHECKPOINT_DIR
    python scripts/spark/log_analysis.py kafka://HOST:PORT/TOPIC CHECKPOINT_DIR --jars A.jar,B.jar
                                         [--collect error_rate]

local[2] (the machine's 2 cores), file source over INPUT_DIR (the generated JSONL file) or
Spark's Kafka source over TOPIC (`readStream.format("kafka")`, startingOffsets earliest, every
partition; each record's value is one line, parsed with the same schema; the jars of
spark-sql-kafka go in `--jars`, handed to Spark as `spark.jars`), trigger availableNow (read
what is there, then stop), noop sink: every analysis that Spark's
streaming engine accepts runs as its own streaming query, all at once, as a Spark job with
several outputs would. Exact distinct counts are written as size(collect_set(x)), because
Spark rejects count(DISTINCT x) on a stream. The detectors that look at previous windows
(response_time_anomalies: avg/stddev over the previous 10 windows; error_rate_spikes: lag)
and count(DISTINCT) itself are tried too: Spark refuses to start them, and the error it gives
is reported.

`--collect NAME` writes that analysis to Spark's memory sink instead of noop (its rows are few:
one per window and key) so the caller can check them against logflow's.

Prints one JSON line: seconds from the first query's start to the last one's end, the input
rows each query read, the refused queries with Spark's error, and the collected rows
(`window_start` in epoch seconds).
"""

import argparse
import json
import time
from urllib.parse import urlsplit

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

SCHEMA = StructType([
    StructField("timestamp", StringType()),
    StructField("level", StringType()),
    StructField("service", StringType()),
    StructField("message", StringType()),
    StructField("ip_address", StringType()),
    StructField("user_id", StringType()),
    StructField("request_id", StringType()),
    StructField("response_time", DoubleType()),
    StructField("status_code", LongType()),
    StructField("error_code", StringType()),
    # PERMISSIVE parsing keeps a line whose field has the wrong type, with that field null;
    # this column then holds the raw line, and such a line is bad input.
    StructField("_corrupt_record", StringType()),
])
# Date, time and zone, as logflow requires; try_to_timestamp alone takes "2026-11-24" and
# zone-less times.
RFC3339 = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
           r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")


def event_time(ts):
    """docs/design.md section 2: an RFC 3339 string or epoch milliseconds; anything else is bad
    input (null here, dropped)."""
    return (F.when(ts.rlike("^[0-9]+$"), F.timestamp_millis(ts.cast("long")))
            .when(ts.rlike(RFC3339), F.try_to_timestamp(ts)))


# Spark's JSON reader turns "200" into 200 for a numeric field; logflow's contract refuses it.
QUOTED_NUMBER = r'"(status_code|response_time)"\s*:\s*"'


def parse(lines):
    """The events logflow takes (docs/design.md section 2) out of a column `line` of raw lines,
    with their event time `ts`; the rest is what logflow writes to its dead-letter output.
    PERMISSIVE parsing: a line that is not JSON or has a field of the wrong type gets a
    `_corrupt_record` or no `ts`; the JSON reader replaces bytes that are not UTF-8, hence the
    test before it."""
    return (lines.where(F.is_valid_utf8("line") & ~F.col("line").rlike(QUOTED_NUMBER))
            .select(F.from_json("line", SCHEMA).alias("e")).select("e.*")
            .withColumn("ts", event_time(F.col("timestamp")))
            .where(F.col("ts").isNotNull() & F.col("_corrupt_record").isNull())
            .drop("_corrupt_record"))


def analyses(events):
    """name -> streaming DataFrame, as in dataflows/log-analysis.toml (docs/design.md section 5)."""
    def windowed(size, delay, *keys):
        return (events.withWatermark("ts", delay)
                .groupBy(F.window("ts", size).alias("w"), *keys))

    def bounds(df):
        return df.select(F.col("w.start").alias("window_start"),
                         F.col("w.end").alias("window_end"), "*").drop("w")

    errors = F.sum(F.when(F.col("status_code") >= 400, 1).otherwise(0))
    out = {}
    out["response_time"] = bounds(windowed("1 minute", "5 minutes", "service").agg(
        F.count("*").alias("request_count"),
        F.avg("response_time").alias("avg_response_time"),
        F.max("response_time").alias("max_response_time"),
        F.min("response_time").alias("min_response_time"),
        F.stddev_samp("response_time").alias("stddev_response_time"),
        F.percentile_approx("response_time", 0.5).alias("p50_response_time"),
        F.percentile_approx("response_time", 0.95).alias("p95_response_time"),
        F.percentile_approx("response_time", 0.99).alias("p99_response_time")))
    out["error_rate"] = bounds(windowed("1 minute", "5 minutes", "service").agg(
        F.count("*").alias("total_requests"), errors.alias("error_count"))
        .withColumn("error_rate", F.col("error_count") * 100.0 / F.col("total_requests")))
    out["ip_patterns"] = bounds(windowed("5 minutes", "10 minutes", "ip_address").agg(
        F.count("*").alias("request_count"),
        F.size(F.collect_set("user_id")).alias("unique_users"),
        F.array_sort(F.collect_set("service")).alias("services_used")))
    out["suspicious_ips"] = out["ip_patterns"].where(
        (F.col("request_count") > 1000) & (F.size("services_used") > 5))
    out["ddos"] = bounds(windowed("1 minute", "5 minutes", "ip_address").agg(
        F.count("*").alias("request_count"),
        F.size(F.collect_set("user_id")).alias("unique_users"))
        .where((F.col("request_count") > 100) & (F.col("unique_users") < 5)))
    out["sla"] = bounds(windowed("1 minute", "5 minutes", "service").agg(
        F.count("*").alias("total_requests"),
        F.sum(F.when(F.col("response_time") <= 1.0, 1).otherwise(0)).alias("fast_requests"),
        F.sum(F.when(F.col("status_code") == 200, 1).otherwise(0)).alias("successful_requests"))
        .withColumn("availability", F.col("successful_requests") * 100.0 / F.col("total_requests"))
        .withColumn("performance", F.col("fast_requests") * 100.0 / F.col("total_requests")))
    out["user_activity"] = bounds(windowed("5 minutes", "10 minutes", "user_id").agg(
        F.count("*").alias("activity_count"),
        F.size(F.collect_set("service")).alias("services_used"),
        F.avg("response_time").alias("avg_response_time")))
    out["service_popularity"] = bounds(windowed("1 minute", "5 minutes", "service").agg(
        F.count("*").alias("request_count"),
        F.size(F.collect_set("user_id")).alias("unique_users")))
    rate = F.col("error_count") * 100.0 / F.col("total_requests")
    out["system_health"] = bounds(windowed("1 minute", "5 minutes").agg(
        F.count("*").alias("total_requests"),
        F.size(F.collect_set("service")).alias("active_services"),
        F.size(F.collect_set("user_id")).alias("active_users"),
        F.avg("response_time").alias("avg_response_time"),
        errors.alias("error_count"))
        .withColumn("error_rate", rate)
        .withColumn("health_score", F.when(rate < 1, 100).when(rate < 5, 80)
                    .when(rate < 10, 60).otherwise(40)))
    return out


def refused(events, out):
    """What Spark's streaming engine does not run: name -> streaming DataFrame."""
    prev10 = Window.partitionBy("service").orderBy("window_start").rowsBetween(-10, -1)
    prev = Window.partitionBy("service").orderBy("window_start")
    return {
        "response_time_anomalies": out["response_time"]
        .withColumn("baseline_mean", F.avg("avg_response_time").over(prev10))
        .withColumn("baseline_stddev", F.stddev_samp("avg_response_time").over(prev10))
        .withColumn("z_score", (F.col("avg_response_time") - F.col("baseline_mean"))
                    / F.col("baseline_stddev"))
        .where(F.abs("z_score") > 2),
        "error_rate_spikes": out["error_rate"]
        .withColumn("prev_error_rate", F.lag("error_rate").over(prev))
        .withColumn("error_rate_change", F.col("error_rate") - F.col("prev_error_rate"))
        .where(F.col("error_rate_change") > 10),
        "count_distinct (exact, as service_popularity.unique_users)": events
        .withWatermark("ts", "5 minutes")
        .groupBy(F.window("ts", "1 minute"), "service")
        .agg(F.countDistinct("user_id").alias("unique_users")),
    }


def start(df, name, checkpoints, sink="noop"):
    return (df.writeStream.format(sink).outputMode("append")
            .trigger(availableNow=True).queryName(name.split(" ")[0])
            .option("checkpointLocation", f"{checkpoints}/{name.split(' ')[0]}").start())


def lines_of(spark, source):
    """The raw lines (column `line`) of `source`, a directory of JSONL files or
    kafka://HOST:PORT/TOPIC (a record's value is a line): the one place the sources differ."""
    if not source.startswith("kafka://"):
        return spark.readStream.text(source).withColumnRenamed("value", "line")
    url = urlsplit(source)
    return (spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", url.netloc)
            .option("subscribe", url.path.lstrip("/"))
            .option("startingOffsets", "earliest")
            .load()
            .select(F.col("value").cast("string").alias("line")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source", help="a directory of JSONL files, or kafka://HOST:PORT/TOPIC")
    ap.add_argument("checkpoints")
    ap.add_argument("--jars", default="", help="comma-separated jars for spark.jars")
    ap.add_argument("--collect", action="append", default=[],
                    help="an analysis to write to the memory sink and print")
    a = ap.parse_args()
    builder = (SparkSession.builder.master("local[2]").appName("log-analysis")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.ui.enabled", "false"))
    if a.jars:
        builder = builder.config("spark.jars", a.jars)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    events = parse(lines_of(spark, a.source))
    out = analyses(events)
    unknown = set(a.collect) - set(out)
    if unknown:
        ap.error(f"--collect: no analysis {sorted(unknown)} (there are {sorted(out)})")
    errors = {}
    for name, df in refused(events, out).items():
        try:
            q = start(df, name, a.checkpoints)
            q.stop()
            errors[name] = None
        except Exception as e:  # noqa: BLE001 - the message is the result
            errors[name] = str(e).strip().splitlines()[0]
    t0 = time.monotonic()
    queries = {name: start(df, name, a.checkpoints,
                           "memory" if name in a.collect else "noop")
               for name, df in out.items()}
    for q in queries.values():
        q.awaitTermination()
    seconds = time.monotonic() - t0
    rows = {name: sum(p["numInputRows"] for p in q.recentProgress)
            for name, q in queries.items()}
    collected = {name: [r.asDict() for r in spark.table(name)
                        .withColumn("window_start", F.col("window_start").cast("long"))
                        .withColumn("window_end", F.col("window_end").cast("long")).collect()]
                 for name in a.collect}
    print(json.dumps({"seconds": seconds, "input_rows": rows, "refused": errors,
                      "collected": collected}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()

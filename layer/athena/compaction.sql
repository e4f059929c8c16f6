-- Compaction: rewrite one function's day of the NDJSON archive (sluice_logs,
-- logs_ndjson.sql) as Parquet in the Parquet table (sluice_logs_parquet,
-- logs_parquet.sql, created over a prefix of its own). See README.md,
-- "Small files and compaction", for when it pays and how to schedule it.
--
-- Run it once per function and day, after the day is complete: at least one
-- hour after UTC midnight, so that late telemetry (logs of an invocation can
-- arrive at the environment's SHUTDOWN) and batches waiting out their age
-- bound have landed. Running it twice for the same day duplicates the day:
-- INSERT INTO appends.
--
-- Athena writes Hive-style partition paths (function=.../dt=.../hour=...)
-- under the table's LOCATION. That is exactly the table's
-- storage.location.template, so partition projection finds the new files
-- without any ALTER TABLE. One statement writes at most 24 partitions (the
-- day's hours), well under Athena's limit of 100 per INSERT INTO.
--
-- The columns are listed in the Parquet table's order, partition keys last,
-- as INSERT INTO requires; "time" becomes a timestamp on the way.
--
-- name: compact_day
INSERT INTO sluice_logs_parquet
SELECT
  CAST(from_iso8601_timestamp("time") AS timestamp) AS "time",
  type,
  version,
  request_id,
  level,
  message,
  status,
  error_type,
  duration_ms,
  billed_duration_ms,
  init_duration_ms,
  restore_duration_ms,
  memory_size_mb,
  max_memory_used_mb,
  produced_bytes,
  fields,
  "function",
  dt,
  hour
FROM sluice_logs
WHERE "function" = '<FUNCTION>'
  AND dt = '<DT>';

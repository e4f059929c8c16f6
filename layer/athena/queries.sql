-- Example Athena queries over the sluice archive, in either format.
--
-- Create the view sluice_logs_v first, once: with the statement named
-- sluice_logs_v over the NDJSON table (logs_ndjson.sql), or the one named
-- sluice_logs_v_parquet over the Parquet table (logs_parquet.sql). Both give
-- the same columns with "time" a timestamp, so every other query below runs
-- unchanged on either format. Athena expands a view into the query before it
-- prunes partitions, so filters on "function", dt and hour still select the
-- partitions to read.
--
-- Each query starts with a "-- name:" line; athena_test.go runs every one of
-- them against files written by the extension's own code, in each format.
-- Replace the quoted
-- placeholders before running: '<FUNCTION>' (a function name; function is an
-- injected partition key, so every query must name the function or list
-- several with IN), '<REQUEST_ID>', and '<DT_FROM>' / '<DT_TO>' (UTC days,
-- 'YYYY-MM-DD', inclusive). Filters on dt (and hour) keep Athena from listing
-- every projected day since 2024-01-01.

-- name: sluice_logs_v
-- The NDJSON table with "time" as a proper timestamp (timestamp(3), UTC wall
-- clock). The table keeps it a string so that a row can never fail to parse;
-- string comparison on it is chronological too, as the format is fixed-width.
CREATE OR REPLACE VIEW sluice_logs_v AS
SELECT
  CAST(from_iso8601_timestamp("time") AS timestamp) AS "time",
  type,
  "function",
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
  dt,
  hour
FROM sluice_logs;

-- name: sluice_logs_v_parquet
-- The same view over the Parquet table, whose "time" already is a
-- timestamp(3). Run this one instead of the above for a Parquet archive.
CREATE OR REPLACE VIEW sluice_logs_v AS
SELECT
  "time",
  type,
  "function",
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
  dt,
  hour
FROM sluice_logs_parquet;

-- name: errors_last_hour
-- Errors of one function in the last hour: log lines at ERROR or above,
-- invocations and init phases that did not succeed, and the rows that say
-- telemetry was lost or damaged. Text-format lines carry no level column,
-- so their level is read from the usual runtime prefixes
-- ("[ERROR]\t..." from Python, "...\tERROR\t..." from Node.js).
SELECT "time", type, request_id, level, status, error_type, message, fields
FROM sluice_logs_v
WHERE "function" = '<FUNCTION>'
  AND dt >= date_format(current_timestamp - INTERVAL '1' HOUR, '%Y-%m-%d')
  AND "time" >= current_timestamp - INTERVAL '1' HOUR
  AND (
       level IN ('ERROR', 'FATAL', 'CRITICAL')
    OR status IN ('failure', 'error', 'timeout')
    OR type IN ('platform.logsDropped', 'sluice.malformed', 'sluice.truncated')
    OR (type = 'function' AND level IS NULL
        AND regexp_like(message, '(^|\t)\[?(ERROR|FATAL|CRITICAL)\]?(\t|\s|:|$)'))
  )
ORDER BY "time";

-- name: request_lines
-- Every row of one invocation, in order. JSON-format lines and platform
-- events carry request_id; text-format lines do not, and are matched when
-- the runtime printed the id into the line (Node.js and Python's logging
-- prefix do; a bare print() does not, and is not found).
SELECT "time", type, level, status, message, fields
FROM sluice_logs_v
WHERE "function" = '<FUNCTION>'
  AND dt BETWEEN '<DT_FROM>' AND '<DT_TO>'
  AND (request_id = '<REQUEST_ID>'
       OR (request_id IS NULL AND strpos(message, '<REQUEST_ID>') > 0))
ORDER BY "time";

-- name: cold_starts
-- Cold starts per function and day: platform.report carries
-- init_duration_ms only for the first invocation of an environment.
SELECT "function", dt,
       count(*) AS invocations,
       count(init_duration_ms) AS cold_starts,
       avg(init_duration_ms) AS avg_init_ms,
       max(init_duration_ms) AS max_init_ms
FROM sluice_logs_v
WHERE "function" IN ('<FUNCTION>')
  AND dt BETWEEN '<DT_FROM>' AND '<DT_TO>'
  AND type = 'platform.report'
GROUP BY "function", dt
ORDER BY "function", dt;

-- name: init_phases
-- Init phases per function, day, outcome and initialization type, from
-- platform.initReport (duration_ms is the whole init phase, extensions
-- included).
SELECT "function", dt, status,
       json_extract_scalar(fields, '$.initializationType') AS initialization_type,
       count(*) AS inits,
       avg(duration_ms) AS avg_init_ms,
       max(duration_ms) AS max_init_ms
FROM sluice_logs_v
WHERE "function" IN ('<FUNCTION>')
  AND dt BETWEEN '<DT_FROM>' AND '<DT_TO>'
  AND type = 'platform.initReport'
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4;

-- name: cost_per_function_day
-- Billed GB-seconds and Lambda cost per function and day, from
-- platform.report (one per invocation; sluice never samples platform rows).
-- The archive does not record the architecture: set it in params. Prices are
-- us-east-1 on-demand (x86_64 $0.0000166667 per GB-s, arm64 $0.0000133334,
-- $0.20 per million requests), without free tier, ephemeral storage or
-- provisioned concurrency. Rows without memory_size_mb (Lambda Managed
-- Instances report only durationMs) count as requests but add no GB-s.
WITH params AS (
  SELECT 'x86_64' AS architecture  -- or 'arm64'
),
prices AS (
  SELECT CASE architecture
           WHEN 'arm64' THEN CAST(0.0000133334 AS double)
           ELSE CAST(0.0000166667 AS double)
         END AS usd_per_gb_second,
         CAST(0.20 AS double) / 1000000 AS usd_per_request
  FROM params
),
usage AS (
  SELECT "function", dt,
         count(*) AS requests,
         sum(billed_duration_ms / 1000.0 * memory_size_mb / 1024.0) AS gb_seconds
  FROM sluice_logs_v
  WHERE "function" IN ('<FUNCTION>')
    AND dt BETWEEN '<DT_FROM>' AND '<DT_TO>'
    AND type = 'platform.report'
  GROUP BY "function", dt
)
SELECT u."function", u.dt, u.requests, u.gb_seconds,
       u.gb_seconds * p.usd_per_gb_second AS compute_usd,
       u.requests * p.usd_per_request AS request_usd,
       u.gb_seconds * p.usd_per_gb_second + u.requests * p.usd_per_request AS total_usd
FROM usage u CROSS JOIN prices p
ORDER BY u."function", u.dt;

-- name: lost_telemetry
-- What did not reach the archive intact, per function and day: records
-- Lambda dropped (platform.logsDropped) and POST bodies that did not parse
-- (sluice.malformed, kept verbatim in message).
SELECT "function", dt,
       sum(CASE WHEN type = 'platform.logsDropped'
                THEN CAST(json_extract_scalar(fields, '$.droppedRecords') AS bigint) END) AS dropped_records,
       sum(CASE WHEN type = 'platform.logsDropped'
                THEN CAST(json_extract_scalar(fields, '$.droppedBytes') AS bigint) END) AS dropped_bytes,
       count_if(type = 'sluice.malformed') AS malformed_bodies
FROM sluice_logs_v
WHERE "function" IN ('<FUNCTION>')
  AND dt BETWEEN '<DT_FROM>' AND '<DT_TO>'
  AND type IN ('platform.logsDropped', 'sluice.malformed')
GROUP BY "function", dt
ORDER BY "function", dt;

-- name: savings_per_function_day
-- What sluice saved, per function and day, from its own sluice.stats rows
-- (each counts since the previous row of its environment, so they add up):
-- the CloudWatch Logs ingestion avoided (the lines' bytes plus CloudWatch's
-- 26 bytes per event), less what sluice cost instead: S3 PUTs, a month of
-- S3 Standard storage for what was archived, and the Lambda duration it
-- added after the function finished (GB-s at the function's memory and
-- architecture). Prices are us-east-1 list prices (README, "What sluice
-- costs"): edit the prices CTE for another region, or 0.25 for CloudWatch's
-- Infrequent Access class. Rows written before a field existed count 0.
WITH prices AS (
  SELECT CAST(0.50 AS double) AS cloudwatch_usd_per_gb,
         CAST(26 AS bigint) AS cloudwatch_event_overhead_bytes,
         CAST(0.005 AS double) / 1000 AS s3_usd_per_put,
         CAST(0.023 AS double) AS s3_usd_per_gb_month,
         CAST(0.0000166667 AS double) AS x86_64_usd_per_gb_second,
         CAST(0.0000133334 AS double) AS arm64_usd_per_gb_second,
         CAST(1073741824 AS double) AS bytes_per_gb
),
stats AS (
  SELECT "function", dt,
         coalesce(CAST(json_extract_scalar(fields, '$.lines_seen') AS bigint), 0) AS lines_seen,
         coalesce(CAST(json_extract_scalar(fields, '$.bytes_seen') AS bigint), 0) AS bytes_seen,
         coalesce(CAST(json_extract_scalar(fields, '$.objects_written') AS bigint), 0) AS objects_written,
         coalesce(CAST(json_extract_scalar(fields, '$.stored_bytes') AS bigint), 0) AS stored_bytes,
         coalesce(CAST(json_extract_scalar(fields, '$.added_ms') AS double), 0) AS added_ms,
         coalesce(CAST(json_extract_scalar(fields, '$.memory_mb') AS double), 0) AS memory_mb,
         coalesce(json_extract_scalar(fields, '$.arch'), 'x86_64') AS arch
  FROM sluice_logs_v
  WHERE "function" IN ('<FUNCTION>')
    AND dt BETWEEN '<DT_FROM>' AND '<DT_TO>'
    AND type = 'sluice.stats'
),
daily AS (
  SELECT s."function", s.dt,
         sum(s.bytes_seen) / p.bytes_per_gb AS gb_seen,
         sum(s.stored_bytes) / p.bytes_per_gb AS gb_archived,
         sum(s.bytes_seen + s.lines_seen * p.cloudwatch_event_overhead_bytes) / p.bytes_per_gb * p.cloudwatch_usd_per_gb AS cloudwatch_usd_avoided,
         sum(s.objects_written) * p.s3_usd_per_put AS s3_put_usd,
         sum(s.stored_bytes) / p.bytes_per_gb * p.s3_usd_per_gb_month AS s3_storage_usd_month,
         sum(s.added_ms / 1000.0 * s.memory_mb / 1024.0) AS lambda_gb_seconds_added,
         sum(s.added_ms / 1000.0 * s.memory_mb / 1024.0 *
             CASE s.arch WHEN 'arm64' THEN p.arm64_usd_per_gb_second ELSE p.x86_64_usd_per_gb_second END) AS lambda_usd_added
  FROM stats s CROSS JOIN prices p
  GROUP BY s."function", s.dt, p.bytes_per_gb, p.cloudwatch_event_overhead_bytes, p.cloudwatch_usd_per_gb,
           p.s3_usd_per_put, p.s3_usd_per_gb_month
)
SELECT "function", dt, gb_seen, gb_archived, cloudwatch_usd_avoided, s3_put_usd, s3_storage_usd_month,
       lambda_gb_seconds_added, lambda_usd_added,
       cloudwatch_usd_avoided - s3_put_usd - s3_storage_usd_month - lambda_usd_added AS net_saving_usd
FROM daily
ORDER BY "function", dt;

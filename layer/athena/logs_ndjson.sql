-- sluice archive: one row per telemetry event, zstd-compressed NDJSON objects
-- written by the extension at
--   s3://<BUCKET>/<PREFIX>/function=NAME/dt=YYYY-MM-DD/hour=HH/<start>-<env>-<seq>.json.zst
--
-- Before running: replace <BUCKET> and <PREFIX> (twice each: LOCATION and
-- storage.location.template) with the bucket and SLUICE_S3_PREFIX; with no
-- prefix, delete "<PREFIX>/" so the path starts with function=. See README.md.
--
-- The data column "function" that every row carries is deliberately absent:
-- it always equals the function= partition of its object, and Athena refuses a
-- partition key with the name of a data column. The partition key gives it,
-- and a filter on it prunes partitions. "time" stays a string (see README.md;
-- the sluice_logs_v view in queries.sql exposes it as a timestamp).
CREATE EXTERNAL TABLE IF NOT EXISTS sluice_logs (
  `time`                string  COMMENT 'event time, RFC 3339 UTC with milliseconds: 2026-11-30T22:09:38.123Z',
  `type`                string  COMMENT 'function, extension, platform.*, sluice.*',
  `version`             string  COMMENT 'function version ($LATEST or a number)',
  `request_id`          string,
  `level`               string  COMMENT 'upper case: INFO, WARN, ERROR, ...',
  `message`             string,
  `status`              string  COMMENT 'success | failure | error | timeout',
  `error_type`          string,
  `duration_ms`         double,
  `billed_duration_ms`  double,
  `init_duration_ms`    double,
  `restore_duration_ms` double,
  `memory_size_mb`      bigint,
  `max_memory_used_mb`  bigint,
  `produced_bytes`      bigint,
  `fields`              string  COMMENT 'JSON text of the other members of the record'
)
PARTITIONED BY (
  `function` string,
  `dt`       string,
  `hour`     string
)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
LOCATION 's3://<BUCKET>/<PREFIX>/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.function.type' = 'injected',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = 's3://<BUCKET>/<PREFIX>/function=${function}/dt=${dt}/hour=${hour}/'
);

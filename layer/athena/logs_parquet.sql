-- sluice archive in Parquet: one row per telemetry event, zstd-compressed
-- Parquet objects written by the extension with SLUICE_FORMAT=parquet at
--   s3://<BUCKET>/<PREFIX>/function=NAME/dt=YYYY-MM-DD/hour=HH/<start>-<env>-<seq>.parquet
-- or by compaction.sql from the NDJSON table.
--
-- Before running: replace <BUCKET> and <PREFIX> (twice each: LOCATION and
-- storage.location.template). The prefix must hold Parquet objects only: a
-- table reads every object under its partitions, so NDJSON and Parquet
-- archives need prefixes of their own (see README.md).
--
-- Columns are those of logs_ndjson.sql, typed: "time" is a timestamp (the
-- file stores INT64 TIMESTAMP(MILLIS) in UTC) where the NDJSON table has a
-- string. "function" is again the partition key only; the files carry it
-- too, and Athena maps Parquet columns by name, so it is simply not read.
-- 'parquet.compression' only matters when Athena writes to the table
-- (compaction.sql); reading takes each file's own codec.
CREATE EXTERNAL TABLE IF NOT EXISTS sluice_logs_parquet (
  `time`                timestamp COMMENT 'event time, UTC, millisecond precision',
  `type`                string    COMMENT 'function, extension, platform.*, sluice.*',
  `version`             string    COMMENT 'function version ($LATEST or a number)',
  `request_id`          string,
  `level`               string    COMMENT 'upper case: INFO, WARN, ERROR, ...',
  `message`             string,
  `status`              string    COMMENT 'success | failure | error | timeout',
  `error_type`          string,
  `duration_ms`         double,
  `billed_duration_ms`  double,
  `init_duration_ms`    double,
  `restore_duration_ms` double,
  `memory_size_mb`      bigint,
  `max_memory_used_mb`  bigint,
  `produced_bytes`      bigint,
  `fields`              string    COMMENT 'JSON text of the other members of the record'
)
PARTITIONED BY (
  `function` string,
  `dt`       string,
  `hour`     string
)
STORED AS PARQUET
LOCATION 's3://<BUCKET>/<PREFIX>/'
TBLPROPERTIES (
  'parquet.compression' = 'ZSTD',
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

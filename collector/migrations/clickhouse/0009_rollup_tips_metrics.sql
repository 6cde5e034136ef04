-- Per-device rollups of tip and metric events, the same as SQLite's
-- (migrations/0011_rollup_tips_metrics.sql), kept by materialized views as AggregatingMergeTree
-- states read with -Merge: the tip-effect and seed-metric reports read one row per device and tip
-- (or metric) instead of scanning every event for its type. Only order-independent state (the
-- value of the least or greatest (event time, event id)), so resends, out-of-order inserts and
-- this migration's own backfill (which may overlap rows the views already saw) give the rows a
-- recompute gives.
--
-- 18.16 reads the props with visitParamExtract*, which looks for the key anywhere in the JSON
-- text: exact for the flat props the SDK sends (a nested object holding a `tipId`, `milestone`,
-- `value` or `valueMs` key before the top-level one would be read instead). A one-element
-- ARRAY JOIN names each extracted value once, for the view, `rollup rebuild` and `rollup verify`
-- alike (the collector's `ROLLUPS` table holds the same expressions).

-- Per device, tip (`tipId` prop, a JSON string) and tip event name: (no milestone?, milestone,
-- ts, id) of the earliest event by (no milestone?, ts, id), i.e. of the earliest that names a
-- milestone (a JSON string) if any does.
CREATE TABLE IF NOT EXISTS {db}.{rollup_tips} (
    project      String,
    anonymous_id String,
    user_id      String,
    tip_id       String,
    name         String,
    milestone    AggregateFunction(argMin, Tuple(UInt8, String, Int64, String), Tuple(UInt8, Int64, String))
) ENGINE = AggregatingMergeTree
ORDER BY (project, anonymous_id, user_id, tip_id, name);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{rollup_tips}_mv TO {db}.{rollup_tips} AS
SELECT project, anonymous_id, user_id, tip_id, name,
       argMinState((no_milestone, visitParamExtractString(props, 'milestone'), ts, id), (no_milestone, ts, id)) AS milestone
FROM {db}.{events}
ARRAY JOIN [visitParamExtractString(props, 'tipId')] AS tip_id, [toUInt8(substring(visitParamExtractRaw(props, 'milestone'), 1, 1) != '"')] AS no_milestone
WHERE type = 'tip' AND substring(visitParamExtractRaw(props, 'tipId'), 1, 1) = '"'
GROUP BY project, anonymous_id, user_id, tip_id, name;

-- Per device and seed metric: the first and the latest (value, ts, id) by (ts, id), over the
-- metric events whose value prop (`value` for core_task_completion, `valueMs` for the durations)
-- is a JSON number; the value is kept as its JSON text and parsed by the collector.
CREATE TABLE IF NOT EXISTS {db}.{rollup_metrics} (
    project      String,
    anonymous_id String,
    user_id      String,
    name         String,
    first        AggregateFunction(argMin, Tuple(String, Int64, String), Tuple(Int64, String)),
    latest       AggregateFunction(argMax, Tuple(String, Int64, String), Tuple(Int64, String))
) ENGINE = AggregatingMergeTree
ORDER BY (project, anonymous_id, user_id, name);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{rollup_metrics}_mv TO {db}.{rollup_metrics} AS
SELECT project, anonymous_id, user_id, name, argMinState((value, ts, id), (ts, id)) AS first, argMaxState((value, ts, id), (ts, id)) AS latest
FROM {db}.{events}
ARRAY JOIN [multiIf(name = 'core_task_completion', visitParamExtractRaw(props, 'value'), name IN ('first_session_length', 'return_interval'), visitParamExtractRaw(props, 'valueMs'), '')] AS value
WHERE type = 'metric' AND match(value, '^-?[0-9]')
GROUP BY project, anonymous_id, user_id, name;

-- Events stored before this migration (long-running: the collector gives INSERTs of a migration
-- the rebuild's time limit, not an ordinary statement's 60 s).
INSERT INTO {db}.{rollup_tips}
SELECT project, anonymous_id, user_id, tip_id, name,
       argMinState((no_milestone, visitParamExtractString(props, 'milestone'), ts, id), (no_milestone, ts, id))
FROM {db}.{events}
ARRAY JOIN [visitParamExtractString(props, 'tipId')] AS tip_id, [toUInt8(substring(visitParamExtractRaw(props, 'milestone'), 1, 1) != '"')] AS no_milestone
WHERE type = 'tip' AND substring(visitParamExtractRaw(props, 'tipId'), 1, 1) = '"'
GROUP BY project, anonymous_id, user_id, tip_id, name;

INSERT INTO {db}.{rollup_metrics}
SELECT project, anonymous_id, user_id, name, argMinState((value, ts, id), (ts, id)), argMaxState((value, ts, id), (ts, id))
FROM {db}.{events}
ARRAY JOIN [multiIf(name = 'core_task_completion', visitParamExtractRaw(props, 'value'), name IN ('first_session_length', 'return_interval'), visitParamExtractRaw(props, 'valueMs'), '')] AS value
WHERE type = 'metric' AND match(value, '^-?[0-9]')
GROUP BY project, anonymous_id, user_id, name;

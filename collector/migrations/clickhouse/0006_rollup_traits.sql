-- Per-user rollup: the latest value of each identify trait (sign-up time included: ingest stores
-- `signedUpAt` normalised to ms), the same rollup as SQLite's (migrations/0008_rollup_traits.sql),
-- so reports read one row per user and trait instead of every identify event.
--
-- ClickHouse 18.16 cannot list a JSON object's keys, so the collector writes each identify's
-- traits beside its props as two arrays (keys, and values as JSON text); other events leave them
-- empty. The view unrolls them with ARRAY JOIN into an argMax state by (event time, event id):
-- order-independent, so resends, out-of-order inserts and the collector's backfill of identifies
-- stored before this migration (it writes them again with their arrays; see
-- `backfill_traits`) all give the rows a recompute gives. Keyed by the ids the identify carried;
-- identity links fold devices into users at query time, the latest (ts, id) winning.

ALTER TABLE {db}.{events} ADD COLUMN trait_keys Array(String);

ALTER TABLE {db}.{events} ADD COLUMN trait_values Array(String);

CREATE TABLE IF NOT EXISTS {db}.{rollup_traits} (
    project      String,
    anonymous_id String,
    user_id      String,
    key          String,
    latest       AggregateFunction(argMax, Tuple(String, Int64, String), Tuple(Int64, String))  -- (value, ts, id) by (ts, id)
) ENGINE = AggregatingMergeTree
ORDER BY (project, anonymous_id, user_id, key);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{rollup_traits}_mv TO {db}.{rollup_traits} AS
SELECT project, anonymous_id, user_id, key, argMaxState((value, ts, id), (ts, id)) AS latest
FROM {db}.{events} ARRAY JOIN trait_keys AS key, trait_values AS value
WHERE type = 'identify' GROUP BY project, anonymous_id, user_id, key;

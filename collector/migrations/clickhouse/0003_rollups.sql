-- Per-device rollups, kept by materialized views as events are inserted: reports read one row
-- per device (and per event type and name) instead of every event. The same rollups as SQLite's
-- (migrations/0005_rollups.sql), as AggregatingMergeTree states read with -Merge. Only
-- order-independent state (min, max, the set of distinct event ids), so resends, out-of-order
-- inserts and this migration's own backfill (which may overlap rows the views already saw) all
-- give the rows a recompute gives. Keyed by the ids events carry; identity links fold devices
-- into users at query time. Each view sees every inserted copy of an event: a resend whose
-- corrected time differs (a different clock offset) widens first/last by that difference.

CREATE TABLE IF NOT EXISTS {db}.{rollup_devices} (
    project      String,
    anonymous_id String,
    user_id      String,
    first_ts     AggregateFunction(min, Int64),
    last_ts      AggregateFunction(max, Int64)
) ENGINE = AggregatingMergeTree
ORDER BY (project, anonymous_id, user_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{rollup_devices}_mv TO {db}.{rollup_devices} AS
SELECT project, anonymous_id, user_id, minState(ts) AS first_ts, maxState(ts) AS last_ts
FROM {db}.{events} GROUP BY project, anonymous_id, user_id;

CREATE TABLE IF NOT EXISTS {db}.{rollup_events} (
    project      String,
    type         String,
    name         String,
    anonymous_id String,
    user_id      String,
    first_ts     AggregateFunction(min, Int64),
    last_ts      AggregateFunction(max, Int64),
    ids          AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree
ORDER BY (project, type, name, anonymous_id, user_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{rollup_events}_mv TO {db}.{rollup_events} AS
SELECT project, type, name, anonymous_id, user_id, minState(ts) AS first_ts, maxState(ts) AS last_ts, uniqExactState(id) AS ids
FROM {db}.{events} GROUP BY project, type, name, anonymous_id, user_id;

-- Events stored before this migration.
INSERT INTO {db}.{rollup_devices}
SELECT project, anonymous_id, user_id, minState(ts), maxState(ts)
FROM {db}.{events} GROUP BY project, anonymous_id, user_id;

INSERT INTO {db}.{rollup_events}
SELECT project, type, name, anonymous_id, user_id, minState(ts), maxState(ts), uniqExactState(id)
FROM {db}.{events} GROUP BY project, type, name, anonymous_id, user_id;

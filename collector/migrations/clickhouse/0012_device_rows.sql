-- Each device's part of its users' rows (`rollup_users`, migration 10), keyed by device in
-- small granules, so that the collector can recompute every user a batch touches from the
-- rows of those users' devices alone: per (device, user id) one `seen` row (first and last
-- time), one `trait` row per identify trait key (its latest value by (time, event id)) and one
-- `milestone` row per milestone name (its first time). The same rows the per-device rollups
-- hold (`rollup_devices`, `rollup_traits`, the milestones of `rollup_events`), which are
-- keyed for the reports (by name first, in 8192-row granules) and would cost a granule per
-- device per milestone name to read for a few hundred devices.
--
-- With a recompute at every insert, several collectors writing to one server keep exact rows
-- (users.rs): each row is computed from data read after its version, never merged into a
-- stored row another collector may be rewriting at the same moment. Versions now come from
-- `rollup_clock` (below); the collector rewrites every `rollup_users` row after this migration
-- (the same fold as `rollup rebuild`), so no row keeps a version of the former scale.
CREATE TABLE IF NOT EXISTS {db}.{device_rows} (
    project      String,
    anonymous_id String,
    user_id      String,
    part         String,  -- 'seen', 'trait' or 'milestone'
    key          String,  -- the trait key or milestone name ('' for seen)
    first_ts     AggregateFunction(min, Int64),
    last_ts      AggregateFunction(max, Int64),
    latest       AggregateFunction(argMax, Tuple(String, Int64, String), Tuple(Int64, String))  -- (value, ts, id) by (ts, id)
) ENGINE = AggregatingMergeTree
ORDER BY (project, anonymous_id, user_id, part, key)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{device_rows}_mv TO {db}.{device_rows} AS
SELECT project, anonymous_id, user_id, part, key, minState(ts) AS first_ts, maxState(ts) AS last_ts, argMaxState((value, ts, id), (ts, id)) AS latest
FROM {db}.{events}
ARRAY JOIN
    arrayConcat(['seen'], if(type = 'identify', arrayMap(k -> 'trait', trait_keys), emptyArrayString()), if(type = 'milestone', ['milestone'], emptyArrayString())) AS part,
    arrayConcat([''], if(type = 'identify', trait_keys, emptyArrayString()), if(type = 'milestone', [name], emptyArrayString())) AS key,
    arrayConcat([''], if(type = 'identify', trait_values, emptyArrayString()), if(type = 'milestone', [''], emptyArrayString())) AS value
GROUP BY project, anonymous_id, user_id, part, key;

-- The clock of `rollup_users` versions: before computing rows, a collector inserts a tick and
-- takes the newest block number of this table as their version. A MergeTree numbers a table's
-- parts in the order they are committed, so any insert that finished before a tick has a
-- smaller number than it (users.rs). Every tick has the same key: merges keep one row.
CREATE TABLE IF NOT EXISTS {db}.rollup_clock (
    tick UInt8
) ENGINE = ReplacingMergeTree
ORDER BY tick;

INSERT INTO {db}.{device_rows}
SELECT project, anonymous_id, user_id, part, key, minState(ts), maxState(ts), argMaxState((value, ts, id), (ts, id))
FROM {db}.{events}
ARRAY JOIN
    arrayConcat(['seen'], if(type = 'identify', arrayMap(k -> 'trait', trait_keys), emptyArrayString()), if(type = 'milestone', ['milestone'], emptyArrayString())) AS part,
    arrayConcat([''], if(type = 'identify', trait_keys, emptyArrayString()), if(type = 'milestone', [name], emptyArrayString())) AS key,
    arrayConcat([''], if(type = 'identify', trait_values, emptyArrayString()), if(type = 'milestone', [''], emptyArrayString())) AS value
GROUP BY project, anonymous_id, user_id, part, key;

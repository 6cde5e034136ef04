-- The per-user rollup (as SQLite's `rollup_users`, migrations/0012_rollup_users.sql): one row
-- per project and user key with what a report reads of the user (identified, first and last
-- seen, the latest value of each identify trait and the first time of each milestone, both
-- packed in RowBinary layout; `user_rows::UserRow`), so a report reads one row per user
-- instead of every device, trait and milestone row with the identity join.
--
-- A row is a function of the per-device rollups and the identity links, which a view cannot
-- compute (an anonymous event arrives before its device's link; a late earlier identify moves
-- a device to another user). So the collector writes it: after each insert it folds the new
-- events into their users' rows, recomputes from the per-device rollups the users a moved link
-- changed, and inserts the rows with `version`, the sum over the rollup tables of their newest block number (read
-- before the rollups are), which grows with every insert and deletion: the row computed from
-- the newest data wins (ReplacingMergeTree, read with FINAL). A key left with no device gets a
-- row with `deleted` = 1. The migration's rows are written by the collector after it (the same
-- fold as `rollup rebuild`).
CREATE TABLE IF NOT EXISTS {db}.rollup_users (
    project    String,
    user_key   String,
    version    UInt64,
    deleted    UInt8,
    identified UInt8,
    first_seen Int64,
    last_seen  Int64,
    traits     String,
    milestones String
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project, user_key)
SETTINGS index_granularity = 256;

-- Each device of each user id, ordered by user: which devices a user key's row folds (a key's
-- devices are the ones that carried its user id, and its own anonymous id's).
CREATE TABLE IF NOT EXISTS {db}.{user_devices} (
    project      String,
    user_id      String,
    anonymous_id String,
    first_ts     AggregateFunction(min, Int64)
) ENGINE = AggregatingMergeTree
ORDER BY (project, user_id, anonymous_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{user_devices}_mv TO {db}.{user_devices} AS
SELECT project, user_id, anonymous_id, minState(ts) AS first_ts
FROM {db}.{events} WHERE user_id != '' GROUP BY project, user_id, anonymous_id;

INSERT INTO {db}.{user_devices}
SELECT project, user_id, anonymous_id, minState(ts)
FROM {db}.{events} WHERE user_id != '' GROUP BY project, user_id, anonymous_id;

-- Each device's link (as `links`: the user of its first event by time, then id, with a user
-- id), in small granules: the collector reads the links of a batch's devices before and after
-- inserting it (which devices it moved), a few hundred rows each rather than 8192 per device.
CREATE TABLE IF NOT EXISTS {db}.{device_links} (
    project      String,
    anonymous_id String,
    first_user   AggregateFunction(argMin, String, Tuple(Int64, String))
) ENGINE = AggregatingMergeTree
ORDER BY (project, anonymous_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{device_links}_mv TO {db}.{device_links} AS
SELECT project, anonymous_id, argMinState(user_id, (ts, id)) AS first_user
FROM {db}.{events} WHERE user_id != '' GROUP BY project, anonymous_id;

INSERT INTO {db}.{device_links}
SELECT project, anonymous_id, argMinState(user_id, (ts, id))
FROM {db}.{events} WHERE user_id != '' GROUP BY project, anonymous_id;

-- The per-user rollup split into partitions by a hash of the user key, so a report reads it as
-- several streams. ClickHouse 18.16 reads `FINAL` as one stream (it merges every part of the
-- table into one sorted stream), so a report counted over `rollup_users FINAL` ran on one core
-- however many the server had. Every version of a key lands in the same partition (`shard` is
-- a function of the key), so each partition's `FINAL` keeps exactly the rows the whole table's
-- would; a report reads the partitions as branches of a `UNION ALL` (`shard = k`, which skips
-- the other partitions' parts), which ClickHouse runs in parallel and aggregates together
-- (`clickhouse::report`, whose `USER_SHARDS` is this `% 8`).
--
-- A partition key cannot be changed in place: the table is created again with the same
-- columns and its rows are written again by the collector after this migration (the same fold
-- as `rollup rebuild`, from `device_rows`, versioned by `rollup_clock`). The rows are derived
-- data, so nothing is lost; until the fold ends a report counts only the rows written so far.
-- `shard` is MATERIALIZED: writers' INSERTs name their columns and never write it.
DROP TABLE IF EXISTS {db}.rollup_users;

CREATE TABLE IF NOT EXISTS {db}.rollup_users (
    project         String,
    user_key        String,
    version         UInt64,
    deleted         UInt8,
    identified      UInt8,
    first_seen      Int64,
    last_seen       Int64,
    traits          String,
    milestones      String,
    signup_known    UInt8,
    signup          Int64,
    milestone_names Array(String),
    milestone_times Array(Int64),
    trait_keys      Array(String),
    trait_texts     Array(String),
    shard           UInt8 MATERIALIZED cityHash64(user_key) % 8
) ENGINE = ReplacingMergeTree(version)
PARTITION BY shard
ORDER BY (project, user_key)
SETTINGS index_granularity = 256

-- Every accepted event. {events} is `events` on a single server and `events_local` on each
-- shard of a cluster (with a Distributed `events` over them; see docs/SCALING.md).
--
-- Sorted by (project, anonymous_id, id): one device's events are contiguous, which is the scan a
-- funnel does, and the event id in the key lets ReplacingMergeTree fold resends into one row
-- (reads use FINAL, so counts are exact before background merges catch up).
-- Partitioned by the month of the *client* time: a resend carries the same client time but may
-- get a different corrected `ts`, and ReplacingMergeTree only folds rows within one partition.
-- ClickHouse 18.16 has no DateTime64, so times are Unix milliseconds in Int64 columns.
CREATE TABLE IF NOT EXISTS {db}.{events} (
    project      String,
    anonymous_id String,
    id           String,
    type         String,
    name         String,
    user_id      String,  -- '' before identify (the wire format refuses empty user ids)
    ts           Int64,   -- client time corrected for clock skew
    client_ts    Int64,   -- as sent
    sent_at      Int64,   -- the batch's client send time
    received_at  Int64,   -- collector clock
    props        String,  -- JSON object, verbatim
    first_seen   UInt64   -- 2^64-1 - arrival (receive ms << 20 | row in insert): the highest version survives, so the first arrival wins, as in SQLite
) ENGINE = ReplacingMergeTree(first_seen)
PARTITION BY toYYYYMM(toDateTime(intDiv(client_ts, 1000)))
ORDER BY (project, anonymous_id, id);

-- Which user each anonymous id belongs to. The latest link wins, as in SQLite: the version is
-- the arrival (receive ms << 20 | row in insert), i.e. commit order.
CREATE TABLE IF NOT EXISTS {db}.{identities} (
    project      String,
    anonymous_id String,
    user_id      String,
    linked_at    UInt64  -- arrival, as above (a version column must be unsigned)
) ENGINE = ReplacingMergeTree(linked_at)
ORDER BY (project, anonymous_id);

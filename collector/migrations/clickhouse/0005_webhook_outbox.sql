-- The webhook outbox, as in SQLite's 0007_webhook_outbox.sql, in two tables because a
-- ReplacingMergeTree keeps either the first or the last row of a key, and the outbox needs
-- both: the notification itself keeps its first copy (one per project, kind and user, however
-- many collectors enqueue it), and its delivery state keeps its latest.
CREATE TABLE IF NOT EXISTS {db}.{webhook_outbox} (
    id         String,
    project    String,
    kind       String,
    user       String,
    payload    String,
    created_at Int64,
    first      UInt64  -- 2^64-1 - created_at: the highest version survives, so the first copy wins
) ENGINE = ReplacingMergeTree(first)
ORDER BY (project, kind, user);

CREATE TABLE IF NOT EXISTS {db}.{webhook_attempts} (
    id              String,
    attempts        UInt64,  -- the version: each attempt writes a row with one more
    next_attempt_at Int64,
    delivered_at    Int64,   -- 0 while not delivered
    failed_at       Int64,   -- 0 while not given up
    last_error      String
) ENGINE = ReplacingMergeTree(attempts)
ORDER BY id;

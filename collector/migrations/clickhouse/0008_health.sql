-- Customer health, as in SQLite's 0010_health.sql. A snapshot per (project, kind, id, day): the
-- latest computation of the day wins (version computed_at). Transitions are kept once per
-- (project, kind, id, at, what). No Nullable (its RowBinary differs): score -1 and band '' mean
-- "no score".
CREATE TABLE IF NOT EXISTS {db}.{health_snapshots} (
    project     String,
    kind        String,   -- user | account
    id          String,
    day         Int64,    -- UTC days since 1970-01-01
    computed_at Int64,    -- collector clock, Unix ms
    score       Int64,    -- 0–100, or -1
    band        String,   -- red | yellow | green, or ''
    stage       String,
    detail      String    -- JSON breakdown
) ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (project, kind, id, day);

CREATE TABLE IF NOT EXISTS {db}.{health_transitions} (
    project String,
    kind    String,
    id      String,
    at      Int64,
    what    String,   -- band | stage
    from_state String,
    to_state   String,
    detail  String    -- the webhook payload
) ENGINE = ReplacingMergeTree
ORDER BY (project, kind, id, at, what);

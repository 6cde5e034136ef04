-- Customer health (collector/src/health): one snapshot per user or account and UTC day (a later
-- computation that day replaces it), so history and trends can be read; and every band or stage
-- change found, once, with its breakdown.
CREATE TABLE health_snapshots (
    project     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,  -- user | account
    id          TEXT    NOT NULL,
    day         INTEGER NOT NULL,  -- UTC days since 1970-01-01
    computed_at INTEGER NOT NULL,  -- collector clock, Unix ms
    score       INTEGER,           -- 0–100; NULL when no measure had data
    band        TEXT,              -- red | yellow | green
    stage       TEXT    NOT NULL,
    detail      TEXT    NOT NULL,  -- JSON breakdown
    PRIMARY KEY (project, kind, id, day)
) WITHOUT ROWID;
CREATE TABLE health_transitions (
    project TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    what    TEXT    NOT NULL,  -- band | stage
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    detail  TEXT    NOT NULL,  -- the webhook payload
    PRIMARY KEY (project, kind, id, at, what)
) WITHOUT ROWID;
CREATE INDEX health_transitions_at ON health_transitions (project, at);

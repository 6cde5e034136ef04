-- Every accepted event, once: the event id is the primary key, so a resend is ignored.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    project      TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    anonymous_id TEXT    NOT NULL,
    user_id      TEXT,
    ts           INTEGER NOT NULL,  -- client time corrected for clock skew, Unix ms
    client_ts    INTEGER NOT NULL,  -- as sent
    sent_at      INTEGER NOT NULL,  -- the batch's client send time
    received_at  INTEGER NOT NULL,  -- collector clock
    props        TEXT    NOT NULL   -- JSON object, verbatim
) WITHOUT ROWID;

CREATE INDEX events_by_user ON events (project, anonymous_id, ts);
CREATE INDEX events_by_name ON events (project, name, ts);

-- Which user each anonymous id belongs to, learned from identify events.
CREATE TABLE identities (
    project      TEXT NOT NULL,
    anonymous_id TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    PRIMARY KEY (project, anonymous_id)
) WITHOUT ROWID;

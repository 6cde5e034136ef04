-- Event ids are unique per project, not across projects: with `id` alone as the key, the same id
-- sent to project A and then to B was acknowledged twice and stored once (A's), and B lost its
-- event. The table is rebuilt with (project, id) as its key; every index is recreated as 0004
-- left it. (0005 is the per-user rollups' migration.)
CREATE TABLE events_keyed (
    id           TEXT    NOT NULL,
    project      TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    anonymous_id TEXT    NOT NULL,
    user_id      TEXT,
    ts           INTEGER NOT NULL,  -- client time corrected for clock skew, Unix ms
    client_ts    INTEGER NOT NULL,  -- as sent
    sent_at      INTEGER NOT NULL,  -- the batch's client send time
    received_at  INTEGER NOT NULL,  -- collector clock
    props        TEXT    NOT NULL,  -- JSON object, verbatim
    PRIMARY KEY (project, id)
) WITHOUT ROWID;

INSERT INTO events_keyed (id, project, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props)
SELECT id, project, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props FROM events;

DROP TABLE events;
ALTER TABLE events_keyed RENAME TO events;

CREATE INDEX events_by_user ON events (project, anonymous_id, ts);
CREATE INDEX events_by_type ON events (project, type, name, ts);
CREATE INDEX events_by_user_id ON events (project, user_id, anonymous_id, ts);
CREATE INDEX events_by_name ON events (project, name, ts, user_id, anonymous_id, type);

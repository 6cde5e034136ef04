-- Per-device rollups, maintained by the writer in the same transaction as the events they sum
-- up, so reports read one row per device (and per event name) instead of every event.
--
-- Keyed by the ids an event carries (`user_id` is '' when it has none), never by the resolved
-- user: identity links fold rows at query time with MIN/MAX, so a late identify needs no
-- rewrite. Only order-independent state (MIN, MAX, a count of distinct stored events), so
-- resends, duplicates and out-of-order batches give the same rows as a recompute
-- (`onramp-collector rollup verify`). The store fills them from existing events when this
-- migration is applied (`rollup rebuild` does the same on demand).

-- When each device of each user was first and last seen.
CREATE TABLE rollup_devices (
    project      TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    anonymous_id TEXT    NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    PRIMARY KEY (project, user_id, anonymous_id)
) WITHOUT ROWID;

-- Per device and event (type, name): first and last time, and how many distinct events.
CREATE TABLE rollup_events (
    project      TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    anonymous_id TEXT    NOT NULL,
    first_ts     INTEGER NOT NULL,
    last_ts      INTEGER NOT NULL,
    events       INTEGER NOT NULL,
    PRIMARY KEY (project, type, name, user_id, anonymous_id)
) WITHOUT ROWID;


-- Identity, one way: an anonymous id belongs to the user of its first event (by event time, then
-- event id) that carried a user id. Arrival order no longer matters, so a late or resent batch
-- cannot move a device to another user. Existing links are recomputed from the events.
ALTER TABLE identities ADD COLUMN linked_ts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE identities ADD COLUMN link_event TEXT NOT NULL DEFAULT '';
DELETE FROM identities;
INSERT INTO identities (project, anonymous_id, user_id, linked_ts, link_event)
SELECT project, anonymous_id, user_id, ts, id FROM (
    SELECT project, anonymous_id, user_id, ts, id,
           ROW_NUMBER() OVER (PARTITION BY project, anonymous_id ORDER BY ts, id) AS n
    FROM events WHERE user_id IS NOT NULL
) WHERE n = 1;

-- Per-device rollups of tip and metric events, so the tip-effect and seed-metric reports read one
-- row per device (and tip, or metric) instead of every tip and metric event with its props.
-- Maintained by the writer in the transaction that stores the events, only for newly stored
-- events; keyed, like the other rollups, by the ids the event carried (`user_id` '' when none),
-- identity links folding devices into users at query time. Only order-independent state (the
-- value of the least or greatest (event time, event id)), so resends and out-of-order batches
-- give a recompute's rows (`onramp-collector rollup verify`). The store fills them from existing
-- events when this migration is applied.

-- Per device, tip (`tipId` prop, a string) and tip event name: the `milestone` prop (a string) of
-- the earliest (ts, event) such event that has one, NULLs when none has.
CREATE TABLE rollup_tips (
    project         TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    anonymous_id    TEXT    NOT NULL,
    tip_id          TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    milestone       TEXT,
    milestone_ts    INTEGER,
    milestone_event TEXT,
    PRIMARY KEY (project, user_id, anonymous_id, tip_id, name)
) WITHOUT ROWID;

-- Per device and seed metric: the first and the latest (ts, event) value, over the metric events
-- whose value prop (`value` for core_task_completion, `valueMs` for the durations) is a number.
CREATE TABLE rollup_metrics (
    project      TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    anonymous_id TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    first_ts     INTEGER NOT NULL,
    first_event  TEXT    NOT NULL,
    first_value  REAL    NOT NULL,
    last_ts      INTEGER NOT NULL,
    last_event   TEXT    NOT NULL,
    last_value   REAL    NOT NULL,
    PRIMARY KEY (project, user_id, anonymous_id, name)
) WITHOUT ROWID;

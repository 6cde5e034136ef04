-- Per-user rollup: the latest value of each identify trait (sign-up time included: ingest stores
-- `signedUpAt` normalised to ms), so reports read one row per user and trait instead of every
-- identify event. Maintained by the writer in the transaction that stores the events.
--
-- Keyed, like the other rollups, by the ids the identify carried (`user_id` '' when it had
-- none, which the wire format allows): identity links fold devices into users at query time,
-- the latest (ts, event) per trait winning. Only order-independent state (the value of the
-- greatest (event time, event id)), so resends and out-of-order batches give a recompute's rows
-- (`onramp-collector rollup verify`). The store fills it from existing events when this
-- migration is applied.
CREATE TABLE rollup_traits (
    project      TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    anonymous_id TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    value        TEXT    NOT NULL,  -- JSON
    ts           INTEGER NOT NULL,  -- corrected time of the identify that set it
    event        TEXT    NOT NULL,  -- and its id (ties)
    PRIMARY KEY (project, user_id, anonymous_id, key)
) WITHOUT ROWID;

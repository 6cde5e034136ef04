-- Per-user rollup: one row per project and user key (the user id; else, for a device without
-- one, the user its link names; else its anonymous id), so a report reads one row per user
-- instead of every device, trait and milestone row of the per-device rollups (about 2.9 M rows
-- at 10 M events against 450 k). Maintained by the writer in the transaction that stores the
-- events; the store fills it from the per-device rollups when this migration is applied.
--
-- It is a function of the per-device rollups and the identity links: the fold, over the key's
-- devices, of first and last seen (MIN, MAX), whether any device is identified, the latest
-- (ts, event) value of each identify trait and the first time of each milestone. New events
-- fold in with those order-independent merges; when a link moves a device from one key to
-- another (a first identify, or an earlier link arriving late), both keys are recomputed from
-- the per-device rollups. So resends, duplicates, out-of-order batches and identity merges give
-- a recompute's rows (`onramp-collector rollup verify`).
CREATE TABLE rollup_users (
    project    TEXT    NOT NULL,
    user_key   TEXT    NOT NULL,
    identified INTEGER NOT NULL,  -- 0: a visitor who never identified
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    traits     BLOB    NOT NULL,  -- per trait key (ascending): key, ts, event, value JSON (see sqlite_users.rs)
    milestones BLOB    NOT NULL,  -- per milestone name (ascending): name, first time
    PRIMARY KEY (project, user_key)
) WITHOUT ROWID;

-- A user's linked devices, for recomputing their row (and for erasure).
CREATE INDEX identities_by_user ON identities (project, user_id);

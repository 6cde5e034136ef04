-- Identity, one way: an anonymous id belongs to the user of its first event (by event time, then
-- event id) that carried a user id, kept as an argMin state so arrival order does not matter (the
-- same rule as SQLite's identities table). Replaces `identities`, whose latest arrival won.
CREATE TABLE IF NOT EXISTS {db}.{links} (
    project      String,
    anonymous_id String,
    first_user   AggregateFunction(argMin, String, Tuple(Int64, String))
) ENGINE = AggregatingMergeTree
ORDER BY (project, anonymous_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{links}_mv TO {db}.{links} AS
SELECT project, anonymous_id, argMinState(user_id, (ts, id)) AS first_user
FROM {db}.{events} WHERE user_id != '' GROUP BY project, anonymous_id;

INSERT INTO {db}.{links}
SELECT project, anonymous_id, argMinState(user_id, (ts, id))
FROM {db}.{events} WHERE user_id != '' GROUP BY project, anonymous_id;

DROP TABLE IF EXISTS {db}.identities;

DROP TABLE IF EXISTS {db}.{identities};

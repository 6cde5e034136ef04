-- Every plan a project has published (PUT /v1/plan, a rollback, a --plan file at start), so the
-- dashboard can show who changed onboarding, when and why, and restore an older version.
-- `plans` stays the current copy (written in the same transaction), so readers of the current
-- plan are unchanged.
CREATE TABLE plan_versions (
    project     TEXT    NOT NULL,
    number      INTEGER NOT NULL,  -- 1, 2, … per project; the newest is current
    body        TEXT    NOT NULL,
    version     TEXT    NOT NULL,  -- the plan's own "version"
    etag        TEXT    NOT NULL,  -- what GET /v1/plan answers while this version is current
    author_kind TEXT    NOT NULL,  -- editor | admin | file | unknown
    author      TEXT    NOT NULL,  -- the editor token's name, which admin token, the file
    message     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,  -- collector clock, Unix ms
    rollback_of INTEGER,           -- the version a rollback restored
    PRIMARY KEY (project, number)
) WITHOUT ROWID;

-- A plan stored before versions were kept becomes version 1. Its ETag is recomputed on read
-- (the column cannot run FNV-1a), so it is left empty here and filled by the collector.
INSERT INTO plan_versions (project, number, body, version, etag, author_kind, author, message, created_at, rollback_of)
SELECT project, 1, body, version, '', 'unknown', '', 'stored before version history was kept', updated_at, NULL FROM plans;

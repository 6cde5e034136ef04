-- Every plan a project has published, as in SQLite's 0009_plan_versions.sql. The newest number
-- is current. A plain MergeTree: versions are never replaced, and should two collectors give
-- the same number at once both rows stay (ordered by created_at, then etag).
CREATE TABLE IF NOT EXISTS {db}.{plan_versions} (
    project     String,
    number      UInt64,
    body        String,
    version     String,   -- the plan's own "version"
    etag        String,
    author_kind String,   -- editor | admin | file | unknown
    author      String,
    message     String,
    created_at  UInt64,   -- collector clock, Unix ms
    rollback_of UInt64    -- the version a rollback restored; 0 for none
) ENGINE = MergeTree
ORDER BY (project, number, created_at);

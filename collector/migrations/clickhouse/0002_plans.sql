-- Each project's current onboarding plan (validated JSON text), as in SQLite's 0003_plans.sql.
-- The latest PUT wins: reads use FINAL, and the version is the collector's clock.
CREATE TABLE IF NOT EXISTS {db}.{plans} (
    project    String,
    body       String,
    version    String,  -- the plan's own "version", for operators reading the table
    updated_at UInt64   -- collector clock, Unix ms
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY project;

-- Each project's current onboarding plan, as the PM stored it (validated JSON text). The SDK
-- fetches it from GET /v1/plan; a PUT replaces it with no redeploy.
CREATE TABLE plans (
    project    TEXT PRIMARY KEY,
    body       TEXT    NOT NULL,
    version    TEXT    NOT NULL,  -- the plan's own "version", for operators reading the table
    updated_at INTEGER NOT NULL   -- collector clock, Unix ms
) WITHOUT ROWID;

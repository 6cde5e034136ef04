-- Health reads aggregated in SQL (collector/src/store/sqlite_health.rs). The latest
-- computation's records are found by computed_at; the first index lists them worst first
-- (score, then id: its order, so a page of N rows reads about N entries and starts with a
-- seek), the second counts them by band and stage, and bands per run, without sorting, the
-- third finds an account's users (`account`: the breakdown's, kept beside it). None reads a
-- breakdown.
ALTER TABLE health_snapshots ADD COLUMN account TEXT;
UPDATE health_snapshots SET account = json_extract(detail, '$.account') WHERE json_valid(detail);
CREATE INDEX health_snapshots_current ON health_snapshots (project, kind, computed_at, score, id, band, stage, account);
CREATE INDEX health_snapshots_counts ON health_snapshots (project, kind, computed_at, band, stage);
CREATE INDEX health_snapshots_account ON health_snapshots (project, kind, computed_at, account);

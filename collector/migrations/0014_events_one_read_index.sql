-- One index for the reads by type and name instead of two. Every event is written into its
-- table and each index, so at ingest the writer spent most of its time in those five B-trees
-- (a perf profile under `wrk -c32`: B-tree inserts were 55 % of its CPU). Reports read the
-- rollups now; what still reads events by name asks for a type too (`EventFilter::reaching`,
-- health's milestone, feature and survey reads, the rollup rebuild by (type, name)), so
-- `events_by_name` (project, name, …) served nothing `events_by_type` (project, type, name, ts)
-- could not, except carrying user_id and anonymous_id: the new `events_by_type` carries them,
-- so those reads still never visit the table. The window read (every type, a ts range) scans it
-- as it scanned `events_by_name`.
DROP INDEX events_by_name;
DROP INDEX events_by_type;
CREATE INDEX events_by_type ON events (project, type, name, ts, user_id, anonymous_id);

-- The per-user rollup's report columns: what `rollup_users` holds packed (sign-up trait, first
-- time of each milestone, latest traits), also as columns ClickHouse computes on, so a report's
-- sections are counted inside the engine (GROUP BY cohort, exact quantiles of sorted arrays,
-- stalls ordered with LIMIT; `clickhouse::report`) and the collector receives rows per bucket
-- instead of one per user.
--
-- `signup` is the `signedUpAt` trait read by the shared definition (`onramp::core::time::
-- parse_time`, at or after 2000-01-01), `signup_known` whether there is one; the report adds
-- the `now` + 1 day bound. `milestone_names`/`milestone_times` are the first time of each
-- milestone, `trait_keys`/`trait_texts` each latest trait as a filter compares it (strings as
-- they are, other values as JSON). Written by the collector with the packed columns
-- (`user_rows::ReportColumns`); applying this migration rewrites every row (`rollup rebuild`'s
-- fold), and `rollup verify` checks the columns against the packed row.
ALTER TABLE {db}.rollup_users ADD COLUMN signup_known UInt8;
ALTER TABLE {db}.rollup_users ADD COLUMN signup Int64;
ALTER TABLE {db}.rollup_users ADD COLUMN milestone_names Array(String);
ALTER TABLE {db}.rollup_users ADD COLUMN milestone_times Array(Int64);
ALTER TABLE {db}.rollup_users ADD COLUMN trait_keys Array(String);
ALTER TABLE {db}.rollup_users ADD COLUMN trait_texts Array(String);

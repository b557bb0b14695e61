-- Job results out of line and uncompressed: compressing an embeddings result (about 30 KB of
-- numbers) with pglz took 28% of all CPU samples of `palaver-bench jobs` on PostgreSQL, which
-- ran the whole machine's busiest process; stored as it is, 710 -> 1,017 jobs/s end to end
-- (lz4 compression gave 979/s, and needs a server built with it). The cost is disk: a result
-- takes its full size.
ALTER TABLE jobs ALTER COLUMN result SET STORAGE EXTERNAL;

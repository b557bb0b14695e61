-- The `jobs` table is the queue itself when there is no Redis: a job is due when it is
-- waiting, delayed past its `run_at`, or active under a lease that has expired (its worker
-- died). Workers claim due jobs of their queue (`JOB_QUEUE`) oldest first, through this
-- index, with `FOR UPDATE SKIP LOCKED` so that instances never claim the same job.
-- NULL for jobs stored before this migration: the queue they were meant for was a setting, not
-- data, so each process adopts the unfinished ones into its own queue at start-up.
ALTER TABLE jobs ADD COLUMN queue TEXT;

DROP INDEX jobs_unfinished;
CREATE INDEX jobs_queued ON jobs (queue, created_at) WHERE status IN ('waiting', 'active', 'delayed');

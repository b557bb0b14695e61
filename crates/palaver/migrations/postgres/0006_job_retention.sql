-- Finished jobs are pruned once older than the retention (`JobStore::prune_finished`): this
-- index finds the oldest completed and failed jobs without reading the unfinished ones.
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE status IN ('completed', 'failed');

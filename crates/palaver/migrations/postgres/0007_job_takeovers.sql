-- How many times a claim took this job over from a worker whose lease had expired (the
-- worker died mid-attempt: killed, out of memory, crashed; or lost the database for a whole
-- lease). A takeover re-runs the same attempt without counting it, so a job that kills
-- every worker running it would be re-run at each lease expiry for ever: the claim that
-- would be its `max_attempts`-th takeover fails it instead (`JobStore::claim`).
ALTER TABLE jobs ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;

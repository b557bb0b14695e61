-- `generate-title` jobs: queued by Palaver after the first exchange of an untitled
-- conversation. SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- with the same columns and indexes and its rows copied (no other table refers to it).
CREATE TABLE jobs_rebuilt (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('generate-completion', 'generate-embeddings', 'generate-title')),
    data            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('waiting', 'active', 'completed', 'failed', 'delayed')),
    progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    result          TEXT,
    error           TEXT,
    -- The conversation a completion job writes to, once created or resolved (a title job's
    -- from the start).
    conversation_id TEXT,
    -- When a delayed job is due.
    run_at          TEXT,
    -- The lease of the running attempt: a token unique to it, and its expiry.
    locked_by       TEXT,
    locked_until    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    queue           TEXT,
    takeovers       INTEGER NOT NULL DEFAULT 0
);

INSERT INTO jobs_rebuilt (id, user_id, kind, data, status, progress, attempts, max_attempts,
                          result, error, conversation_id, run_at, locked_by, locked_until,
                          created_at, updated_at, queue, takeovers)
SELECT id, user_id, kind, data, status, progress, attempts, max_attempts,
       result, error, conversation_id, run_at, locked_by, locked_until,
       created_at, updated_at, queue, takeovers
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;

CREATE INDEX jobs_user_created ON jobs (user_id, created_at);
CREATE INDEX jobs_queued ON jobs (queue, created_at) WHERE status IN ('waiting', 'active', 'delayed');
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE status IN ('completed', 'failed');

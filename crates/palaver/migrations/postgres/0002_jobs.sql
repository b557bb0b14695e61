-- Background jobs (the `ai-tasks` queue): the state `GET /ai/jobs/:id` reads on any instance.
-- The queue backend (apalis) only carries `{jobId, attempt}`; this table decides what runs.
CREATE TABLE jobs (
    id              UUID PRIMARY KEY,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('generate-completion', 'generate-embeddings')),
    data            JSONB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('waiting', 'active', 'completed', 'failed', 'delayed')),
    progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    result          JSONB,
    error           TEXT,
    -- The conversation a completion job writes to, once created or resolved.
    conversation_id UUID,
    -- When a delayed job is due.
    run_at          TIMESTAMPTZ,
    -- The lease of the running attempt: a token unique to it, and its expiry.
    locked_by       TEXT,
    locked_until    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX jobs_user_created ON jobs (user_id, created_at);
CREATE INDEX jobs_unfinished ON jobs (status, updated_at) WHERE status IN ('waiting', 'active', 'delayed');

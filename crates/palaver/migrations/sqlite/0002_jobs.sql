-- Background jobs (the `ai-tasks` queue): the state `GET /ai/jobs/:id` reads on any instance.
-- The queue backend (apalis) only carries `{jobId, attempt}`; this table decides what runs.
-- Times are fixed-width RFC 3339 UTC text (`2026-01-01T00:00:00.000000Z`), so they compare as text.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('generate-completion', 'generate-embeddings')),
    data            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('waiting', 'active', 'completed', 'failed', 'delayed')),
    progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    result          TEXT,
    error           TEXT,
    -- The conversation a completion job writes to, once created or resolved.
    conversation_id TEXT,
    -- When a delayed job is due.
    run_at          TEXT,
    -- The lease of the running attempt: a token unique to it, and its expiry.
    locked_by       TEXT,
    locked_until    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE INDEX jobs_user_created ON jobs (user_id, created_at);
CREATE INDEX jobs_unfinished ON jobs (status, updated_at) WHERE status IN ('waiting', 'active', 'delayed');

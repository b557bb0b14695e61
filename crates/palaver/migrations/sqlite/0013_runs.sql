-- Every exchange is a run: its status, and the sequence number of the last event it emitted.
-- A conversation's live run is read from here (`activeRunId`), not kept on the conversation,
-- so starting and ending a run never writes the conversation row.
CREATE TABLE runs (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    -- The reply's id (stored when the run ends, or checkpointed while it streams).
    message_id      TEXT NOT NULL,
    user_message_id TEXT,
    status          TEXT NOT NULL CHECK (status IN
                        ('queued', 'in_progress', 'completed', 'stopped', 'failed', 'interrupted')),
    last_seq        INTEGER NOT NULL DEFAULT 0,
    error_code      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE INDEX runs_user_status ON runs (user_id, status, created_at);
CREATE INDEX runs_conversation ON runs (conversation_id, status);

CREATE TRIGGER conversations_delete_runs AFTER DELETE ON conversations
BEGIN
    DELETE FROM runs WHERE conversation_id = OLD.id;
END;

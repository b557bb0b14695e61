-- Every exchange is a run: its status, and the sequence number of the last event it emitted.
-- A conversation's live run is read from here (`activeRunId`), not kept on the conversation,
-- so starting and ending a run never writes the conversation row.
CREATE TABLE runs (
    id              UUID PRIMARY KEY,
    user_id         TEXT NOT NULL,
    conversation_id UUID NOT NULL,
    -- The reply's id (stored when the run ends, or checkpointed while it streams).
    message_id      UUID NOT NULL,
    user_message_id UUID,
    status          TEXT NOT NULL CHECK (status IN
                        ('queued', 'in_progress', 'completed', 'stopped', 'failed', 'interrupted')),
    last_seq        BIGINT NOT NULL DEFAULT 0,
    error_code      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX runs_user_status ON runs (user_id, status, created_at);
CREATE INDEX runs_conversation ON runs (conversation_id, status);

CREATE FUNCTION palaver_conversation_deletes_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM runs WHERE conversation_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER conversations_delete_runs AFTER DELETE ON conversations
    FOR EACH ROW EXECUTE FUNCTION palaver_conversation_deletes_runs();

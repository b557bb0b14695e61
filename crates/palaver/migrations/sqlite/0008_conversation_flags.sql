-- Archived and pinned conversations: a listing shows one kind (`?archived=`), pinned ones
-- first, then latest activity first; the index serves that order and every per-user lookup.
ALTER TABLE conversations ADD COLUMN archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1));
ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1));

DROP INDEX conversations_user_updated;
CREATE INDEX conversations_user_listing
    ON conversations (user_id, archived, pinned DESC, updated_at DESC, id DESC);

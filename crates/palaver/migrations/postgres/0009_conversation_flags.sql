-- Archived and pinned conversations: a listing shows one kind (`?archived=`), pinned ones
-- first, then latest activity first; the index serves that order and every per-user lookup.
ALTER TABLE conversations ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE conversations ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT FALSE;

DROP INDEX conversations_user_updated;
CREATE INDEX conversations_user_listing
    ON conversations (user_id, archived, pinned DESC, updated_at DESC, id DESC);

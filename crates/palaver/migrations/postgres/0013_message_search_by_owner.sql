-- Search inside one user's messages, and inside words (`GET /ai/conversations?q=`, issue #16).
-- Each message carries its conversation's owner (set on insert, from the conversation), so
-- that both GIN indexes below hold the user id beside the words (btree_gin) and a query
-- intersects that user's entries inside the index, instead of fetching every user's matches
-- from the table. The trigram index (pg_trgm) finds a word inside another (`ndex` in
-- `index`); the btree serves a user's newest messages first.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Nullable: a message for a conversation that does not exist must still fail on its
-- foreign key (the store reports that as not found), not on this column.
ALTER TABLE messages ADD COLUMN user_id TEXT;

UPDATE messages m SET user_id = c.user_id FROM conversations c WHERE c.id = m.conversation_id;

CREATE FUNCTION palaver_message_takes_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT user_id INTO NEW.user_id FROM conversations WHERE id = NEW.conversation_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER messages_take_owner BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION palaver_message_takes_owner();

DROP INDEX messages_content_tsv;
CREATE INDEX messages_search_words ON messages USING GIN (user_id, content_tsv);
CREATE INDEX messages_search_substrings ON messages USING GIN (user_id, content gin_trgm_ops);
-- A user's messages newest first, by `-seq`: an order the primary key cannot serve, so that
-- the planner cannot walk every user's newer messages backwards instead.
CREATE INDEX messages_user_newest ON messages (user_id, (-seq));

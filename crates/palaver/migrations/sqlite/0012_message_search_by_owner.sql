-- Search inside one user's messages (`GET /ai/conversations?q=`, issue #16): `message_search`
-- replaces `messages_fts` and indexes, beside each message's text, its owner as one token
-- (`u` + the hex of the user id, in a column of its own), so that a query intersects the
-- owner's entries inside the index instead of joining every user's matches to their
-- conversations. Its content is the view below (still nothing stored twice). Prefix indexes
-- of 1 to 3 characters make a short last word (searched as a prefix) one entry instead of a
-- merge of every word it starts.
CREATE VIEW message_search_rows AS
SELECT m.seq AS seq, m.content AS content, 'u' || hex(c.user_id) AS owner
  FROM messages m JOIN conversations c ON c.id = m.conversation_id;

CREATE VIRTUAL TABLE message_search USING fts5(
    content,
    owner,
    content = 'message_search_rows',
    content_rowid = 'seq',
    prefix = '1 2 3',
    tokenize = 'unicode61 remove_diacritics 2'
);

INSERT INTO message_search (message_search) VALUES ('rebuild');

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
DROP TABLE messages_fts;

CREATE TRIGGER message_search_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO message_search (rowid, content, owner)
    SELECT NEW.seq, NEW.content, 'u' || hex(user_id) FROM conversations WHERE id = NEW.conversation_id;
END;

-- A deleted conversation takes its messages out of the index first: its row is gone by the
-- time the cascade deletes the messages, and the index needs the owner to remove them. The
-- message trigger below then finds no conversation and does nothing.
CREATE TRIGGER message_search_conversation_delete BEFORE DELETE ON conversations
BEGIN
    INSERT INTO message_search (message_search, rowid, content, owner)
    SELECT 'delete', seq, content, 'u' || hex(OLD.user_id) FROM messages WHERE conversation_id = OLD.id;
END;

CREATE TRIGGER message_search_delete AFTER DELETE ON messages
BEGIN
    INSERT INTO message_search (message_search, rowid, content, owner)
    SELECT 'delete', OLD.seq, OLD.content, 'u' || hex(user_id) FROM conversations WHERE id = OLD.conversation_id;
END;

CREATE TRIGGER message_search_update AFTER UPDATE OF content ON messages
BEGIN
    INSERT INTO message_search (message_search, rowid, content, owner)
    SELECT 'delete', OLD.seq, OLD.content, 'u' || hex(user_id) FROM conversations WHERE id = OLD.conversation_id;
    INSERT INTO message_search (rowid, content, owner)
    SELECT NEW.seq, NEW.content, 'u' || hex(user_id) FROM conversations WHERE id = NEW.conversation_id;
END;

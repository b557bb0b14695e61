-- A reply that is still streaming is checkpointed to its row about once a second (issue #17):
-- indexing each checkpoint for search rewrote the whole growing text into the index (and
-- merged its segments) every second per stream, most of the writer's work under 200 streams.
-- A message whose metadata says `streaming` is left out of the search index (and of the view
-- it is built from) until its last write, which indexes the final text once.
DROP VIEW message_search_rows;
CREATE VIEW message_search_rows AS
SELECT m.seq AS seq, m.content AS content, 'u' || hex(c.user_id) AS owner
  FROM messages m JOIN conversations c ON c.id = m.conversation_id
 WHERE json_extract(m.metadata, '$.streaming') IS NULL;

DROP TRIGGER message_search_insert;
DROP TRIGGER message_search_conversation_delete;
DROP TRIGGER message_search_delete;
DROP TRIGGER message_search_update;

CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN json_extract(NEW.metadata, '$.streaming') IS NULL
BEGIN
    INSERT INTO message_search (rowid, content, owner)
    SELECT NEW.seq, NEW.content, 'u' || hex(user_id) FROM conversations WHERE id = NEW.conversation_id;
END;

CREATE TRIGGER message_search_conversation_delete BEFORE DELETE ON conversations
BEGIN
    INSERT INTO message_search (message_search, rowid, content, owner)
    SELECT 'delete', seq, content, 'u' || hex(OLD.user_id) FROM messages
     WHERE conversation_id = OLD.id AND json_extract(metadata, '$.streaming') IS NULL;
END;

CREATE TRIGGER message_search_delete AFTER DELETE ON messages
WHEN json_extract(OLD.metadata, '$.streaming') IS NULL
BEGIN
    INSERT INTO message_search (message_search, rowid, content, owner)
    SELECT 'delete', OLD.seq, OLD.content, 'u' || hex(user_id) FROM conversations WHERE id = OLD.conversation_id;
END;

-- Out of the index as it was (when it was in it), back in as it is (when it belongs there).
CREATE TRIGGER message_search_update AFTER UPDATE OF content, metadata ON messages
WHEN json_extract(OLD.metadata, '$.streaming') IS NULL OR json_extract(NEW.metadata, '$.streaming') IS NULL
BEGIN
    INSERT INTO message_search (message_search, rowid, content, owner)
    SELECT 'delete', OLD.seq, OLD.content, 'u' || hex(user_id) FROM conversations
     WHERE id = OLD.conversation_id AND json_extract(OLD.metadata, '$.streaming') IS NULL;
    INSERT INTO message_search (rowid, content, owner)
    SELECT NEW.seq, NEW.content, 'u' || hex(user_id) FROM conversations
     WHERE id = NEW.conversation_id AND json_extract(NEW.metadata, '$.streaming') IS NULL;
END;

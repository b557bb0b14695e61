-- Conversations as trees. Every message names its parent (NULL for a first message); the
-- conversation names its active leaf, the end of the branch its owner sees, on every device.
-- The self-reference takes no action on delete: a subtree is deleted in one statement (the
-- constraint is checked at its end), so no cascade runs as deep as the tree.
ALTER TABLE messages ADD COLUMN parent_id TEXT REFERENCES messages (id);
-- When the content was last edited in place (`PATCH /ai/messages/:id`); NULL if never.
ALTER TABLE messages ADD COLUMN edited_at TEXT;
ALTER TABLE conversations ADD COLUMN active_leaf_id TEXT;

-- The conversations stored so far are linear: each message follows the one before it.
UPDATE messages SET parent_id = (
    SELECT p.id FROM messages p
     WHERE p.conversation_id = messages.conversation_id
       AND (p.created_at < messages.created_at
            OR (p.created_at = messages.created_at AND p.seq < messages.seq))
     ORDER BY p.created_at DESC, p.seq DESC LIMIT 1);

UPDATE conversations SET active_leaf_id = (
    SELECT m.id FROM messages m WHERE m.conversation_id = conversations.id
     ORDER BY m.created_at DESC, m.seq DESC LIMIT 1);

-- A message's children (and, with a NULL parent, a conversation's first messages), in the
-- order they were written (the rowid ends every SQLite index). It also serves the
-- self-reference's check when a message is deleted.
CREATE INDEX messages_parent ON messages (parent_id, conversation_id);

-- A new message is the end of the branch it was written on.
DROP TRIGGER messages_move_conversation;
CREATE TRIGGER messages_move_conversation AFTER INSERT ON messages
BEGIN
    UPDATE conversations
       SET message_count = message_count + 1,
           updated_at = MAX(updated_at, NEW.created_at),
           active_leaf_id = NEW.id
     WHERE id = NEW.conversation_id;
END;

-- Earlier contents of messages edited in place, oldest first.
CREATE TABLE message_revisions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    content    TEXT NOT NULL,
    tokens     INTEGER NOT NULL,
    -- When this content was written (the message's creation, or the edit before).
    written_at  TEXT NOT NULL,
    replaced_at TEXT NOT NULL
);

CREATE INDEX message_revisions_message ON message_revisions (message_id, seq);

-- Conversations as trees. Every message names its parent (NULL for a first message); the
-- conversation names its active leaf, the end of the branch its owner sees, on every device.
-- The self-reference takes no action on delete: a subtree is deleted in one statement (the
-- constraint is checked at its end), so no cascade runs as deep as the tree.
ALTER TABLE messages ADD COLUMN parent_id UUID REFERENCES messages (id);
-- When the content was last edited in place (`PATCH /ai/messages/:id`); NULL if never.
ALTER TABLE messages ADD COLUMN edited_at TIMESTAMPTZ;
ALTER TABLE conversations ADD COLUMN active_leaf_id UUID;

-- The conversations stored so far are linear: each message follows the one before it.
UPDATE messages m SET parent_id = p.prev
  FROM (SELECT seq, LAG(id) OVER (PARTITION BY conversation_id ORDER BY created_at, seq) AS prev
          FROM messages) p
 WHERE p.seq = m.seq AND p.prev IS NOT NULL;

UPDATE conversations c SET active_leaf_id = l.id
  FROM (SELECT DISTINCT ON (conversation_id) conversation_id, id FROM messages
         ORDER BY conversation_id, created_at DESC, seq DESC) l
 WHERE l.conversation_id = c.id;

-- A message's children (and, with a NULL parent, a conversation's first messages), in the
-- order they were written. It also serves the self-reference's check on delete.
CREATE INDEX messages_parent ON messages (parent_id, conversation_id, seq);

-- A new message is the end of the branch it was written on.
CREATE OR REPLACE FUNCTION palaver_message_moves_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations
       SET message_count = message_count + 1,
           updated_at = GREATEST(updated_at, NEW.created_at),
           active_leaf_id = NEW.id
     WHERE id = NEW.conversation_id;
    RETURN NULL;
END
$$;

-- Earlier contents of messages edited in place, oldest first.
CREATE TABLE message_revisions (
    seq         BIGSERIAL PRIMARY KEY,
    message_id  UUID NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    content     TEXT NOT NULL,
    tokens      BIGINT NOT NULL,
    -- When this content was written (the message's creation, or the edit before).
    written_at  TIMESTAMPTZ NOT NULL,
    replaced_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX message_revisions_message ON message_revisions (message_id, seq);

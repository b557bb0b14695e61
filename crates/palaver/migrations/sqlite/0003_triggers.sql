-- Derived columns kept by the database itself, so that storing a message or a usage record
-- is one statement: a message moves its conversation, a usage record adds to its user.
CREATE TRIGGER messages_move_conversation AFTER INSERT ON messages
BEGIN
    UPDATE conversations
       SET message_count = message_count + 1,
           updated_at = MAX(updated_at, NEW.created_at)
     WHERE id = NEW.conversation_id;
END;

CREATE TRIGGER usage_records_add_to_user AFTER INSERT ON usage_records
BEGIN
    INSERT INTO users (id, total_tokens_used, created_at)
    VALUES (NEW.user_id, NEW.prompt_tokens + NEW.completion_tokens, NEW.created_at)
    ON CONFLICT (id) DO UPDATE SET total_tokens_used = total_tokens_used + excluded.total_tokens_used;
END;

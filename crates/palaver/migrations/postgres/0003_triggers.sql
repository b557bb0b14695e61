-- Derived columns kept by the database itself, so that storing a message or a usage record
-- is one statement: a message moves its conversation, a usage record adds to its user.
CREATE FUNCTION palaver_message_moves_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations
       SET message_count = message_count + 1,
           updated_at = GREATEST(updated_at, NEW.created_at)
     WHERE id = NEW.conversation_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_move_conversation AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION palaver_message_moves_conversation();

CREATE FUNCTION palaver_usage_adds_to_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO users (id, total_tokens_used, created_at)
    VALUES (NEW.user_id, NEW.prompt_tokens + NEW.completion_tokens, NEW.created_at)
    ON CONFLICT (id) DO UPDATE SET total_tokens_used = users.total_tokens_used + EXCLUDED.total_tokens_used;
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_records_add_to_user AFTER INSERT ON usage_records
    FOR EACH ROW EXECUTE FUNCTION palaver_usage_adds_to_user();

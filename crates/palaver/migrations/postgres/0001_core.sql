-- Core tables.
CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    total_tokens_used BIGINT NOT NULL DEFAULT 0,
    created_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE conversations (
    id            UUID PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    system_prompt TEXT,
    model         TEXT,
    metadata      JSONB NOT NULL DEFAULT '{}',
    message_count BIGINT NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- Listing: a user's conversations, latest activity first.
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at DESC, id);

-- `seq` breaks ties between messages stored within the same microsecond.
CREATE TABLE messages (
    seq             BIGSERIAL PRIMARY KEY,
    id              UUID NOT NULL UNIQUE,
    conversation_id UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('USER', 'ASSISTANT', 'SYSTEM')),
    content         TEXT NOT NULL,
    tokens          BIGINT NOT NULL DEFAULT 0,
    model           TEXT,
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX messages_conversation_time ON messages (conversation_id, created_at, seq);

-- One row per provider request (chat, embeddings, failed calls).
CREATE TABLE usage_records (
    id                UUID PRIMARY KEY,
    user_id           TEXT NOT NULL,
    conversation_id   UUID,
    kind              TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_usd          DOUBLE PRECISION NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL
);

CREATE INDEX usage_records_user_time ON usage_records (user_id, created_at);

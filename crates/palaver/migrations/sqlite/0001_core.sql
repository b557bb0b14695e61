-- Core tables. Ids are hyphenated UUID text; times are fixed-width RFC 3339 UTC text
-- (`2026-01-01T00:00:00.000000Z`), so they sort and compare as text.
CREATE TABLE users (
    id                TEXT PRIMARY KEY NOT NULL,
    total_tokens_used INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL
);

CREATE TABLE conversations (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    system_prompt TEXT,
    model         TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    message_count INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- Listing: a user's conversations, latest activity first.
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at DESC, id);

-- `seq` (the rowid) breaks ties between messages stored within the same microsecond.
CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('USER', 'ASSISTANT', 'SYSTEM')),
    content         TEXT NOT NULL,
    tokens          INTEGER NOT NULL DEFAULT 0,
    model           TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL
);

CREATE INDEX messages_conversation_time ON messages (conversation_id, created_at, seq);

-- One row per provider request (chat, embeddings, failed calls).
CREATE TABLE usage_records (
    id                TEXT PRIMARY KEY NOT NULL,
    user_id           TEXT NOT NULL,
    conversation_id   TEXT,
    kind              TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd          REAL NOT NULL,
    created_at        TEXT NOT NULL
);

CREATE INDEX usage_records_user_time ON usage_records (user_id, created_at);

-- API keys (`pal_…`): a user's long-lived bearer secrets for OpenAI-compatible clients.
-- Only the SHA-256 of the secret is kept (a 256-bit random secret needs no slow hash);
-- `prefix` is the secret's first characters, shown in lists so keys can be told apart.
CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY NOT NULL,
    user_id               TEXT NOT NULL,
    name                  TEXT NOT NULL,
    prefix                TEXT NOT NULL,
    secret_hash           TEXT NOT NULL UNIQUE,
    -- A JSON array of the model names the key may use; NULL: every model.
    models                TEXT,
    expires_at            TEXT,
    rate_limit_per_minute INTEGER,
    token_quota_per_day   INTEGER,
    created_at            TEXT NOT NULL,
    revoked_at            TEXT
);

CREATE INDEX api_keys_user ON api_keys (user_id, created_at);

-- Which key paid for a provider call, and the end user named behind a shared key
-- (`user`, `X-OpenWebUI-User-Id`).
ALTER TABLE usage_records ADD COLUMN api_key_id TEXT;
ALTER TABLE usage_records ADD COLUMN end_user TEXT;

-- A key's tokens today (its `token_quota_per_day`).
CREATE INDEX usage_records_key_time ON usage_records (api_key_id, created_at)
    WHERE api_key_id IS NOT NULL;

-- Full-text search over message text (`GET /ai/conversations?q=`): a generated tsvector
-- ('simple': lower-cased words, no stemming, like SQLite's unicode61) with a GIN index.
ALTER TABLE messages
    ADD COLUMN content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;

CREATE INDEX messages_content_tsv ON messages USING GIN (content_tsv);

-- Full-text search over message text (`GET /ai/conversations?q=`): an FTS5 index whose
-- content is the messages table itself (nothing stored twice), kept by triggers. Case and
-- diacritics are folded (`unicode61 remove_diacritics 2`).
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);

INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (NEW.seq, NEW.content);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', OLD.seq, OLD.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', OLD.seq, OLD.content);
    INSERT INTO messages_fts (rowid, content) VALUES (NEW.seq, NEW.content);
END;

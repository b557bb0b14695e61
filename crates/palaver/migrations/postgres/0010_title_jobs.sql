-- `generate-title` jobs: queued by Palaver after the first exchange of an untitled
-- conversation. The constraint keeps its name (a hand-edited database may have dropped it).
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('generate-completion', 'generate-embeddings', 'generate-title'));

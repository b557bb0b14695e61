-- Prompt templates, per user, every version kept: a PATCH inserts the next version, and the
-- template is its newest one. `definition` is the template's JSON (system, messages,
-- variables, model, temperature, maxTokens); `created_at` is the template's (copied to
-- each version), `version_created_at` the version's.
CREATE TABLE prompt_templates (
    id                 TEXT NOT NULL,
    version            INTEGER NOT NULL CHECK (version >= 1),
    user_id            TEXT NOT NULL,
    name               TEXT NOT NULL,
    definition         TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    version_created_at TEXT NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE INDEX prompt_templates_user ON prompt_templates (user_id, id, version);

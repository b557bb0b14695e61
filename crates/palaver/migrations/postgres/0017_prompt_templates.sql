-- Prompt templates, per user, every version kept: a PATCH inserts the next version, and the
-- template is its newest one. `definition` is the template's JSON (system, messages,
-- variables, model, temperature, maxTokens); `created_at` is the template's (copied to
-- each version), `version_created_at` the version's.
CREATE TABLE prompt_templates (
    id                 UUID NOT NULL,
    version            BIGINT NOT NULL CHECK (version >= 1),
    user_id            TEXT NOT NULL,
    name               TEXT NOT NULL,
    definition         JSONB NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    version_created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE INDEX prompt_templates_user ON prompt_templates (user_id, id, version);

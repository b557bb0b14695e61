-- The usage rollup: one row per user, UTC day and model, kept by the database in the same
-- statement (so the same transaction) as the usage record it counts. `/ai/usage` and the daily
-- quota read it instead of scanning every record; raw records can then be pruned
-- (`USAGE_RETENTION_DAYS`) without changing what a user has spent.
CREATE TABLE usage_daily (
    user_id           TEXT NOT NULL,
    day               DATE NOT NULL, -- the UTC day of the records' created_at
    model             TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_usd          DOUBLE PRECISION NOT NULL,
    last_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, day, model)
);

INSERT INTO usage_daily (user_id, day, model, requests, prompt_tokens, completion_tokens, cost_usd, last_at)
SELECT user_id, (created_at AT TIME ZONE 'UTC')::date, model, COUNT(*), SUM(prompt_tokens),
       SUM(completion_tokens), SUM(cost_usd), MAX(created_at)
  FROM usage_records
 GROUP BY user_id, (created_at AT TIME ZONE 'UTC')::date, model;

CREATE FUNCTION palaver_usage_rolls_up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily (user_id, day, model, requests, prompt_tokens, completion_tokens, cost_usd, last_at)
    VALUES (NEW.user_id, (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.model, 1, NEW.prompt_tokens,
            NEW.completion_tokens, NEW.cost_usd, NEW.created_at)
    ON CONFLICT (user_id, day, model) DO UPDATE SET
        requests = usage_daily.requests + 1,
        prompt_tokens = usage_daily.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = usage_daily.completion_tokens + EXCLUDED.completion_tokens,
        cost_usd = usage_daily.cost_usd + EXCLUDED.cost_usd,
        last_at = GREATEST(usage_daily.last_at, EXCLUDED.last_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_records_roll_up AFTER INSERT ON usage_records
    FOR EACH ROW EXECUTE FUNCTION palaver_usage_rolls_up();

-- Retention sweeps delete the oldest records first, across users.
CREATE INDEX usage_records_time ON usage_records (created_at);

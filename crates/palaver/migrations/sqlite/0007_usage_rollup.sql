-- The usage rollup: one row per user, UTC day and model, kept by the database in the same
-- statement (so the same transaction) as the usage record it counts. `/ai/usage` and the daily
-- quota read it instead of scanning every record; raw records can then be pruned
-- (`USAGE_RETENTION_DAYS`) without changing what a user has spent.
CREATE TABLE usage_daily (
    user_id           TEXT NOT NULL,
    day               TEXT NOT NULL, -- `YYYY-MM-DD`, the UTC day of the records' created_at
    model             TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd          REAL NOT NULL,
    last_at           TEXT NOT NULL,
    PRIMARY KEY (user_id, day, model)
) WITHOUT ROWID;

INSERT INTO usage_daily (user_id, day, model, requests, prompt_tokens, completion_tokens, cost_usd, last_at)
SELECT user_id, substr(created_at, 1, 10), model, COUNT(*), SUM(prompt_tokens),
       SUM(completion_tokens), SUM(cost_usd), MAX(created_at)
  FROM usage_records
 GROUP BY user_id, substr(created_at, 1, 10), model;

CREATE TRIGGER usage_records_roll_up AFTER INSERT ON usage_records
BEGIN
    INSERT INTO usage_daily (user_id, day, model, requests, prompt_tokens, completion_tokens, cost_usd, last_at)
    VALUES (NEW.user_id, substr(NEW.created_at, 1, 10), NEW.model, 1, NEW.prompt_tokens,
            NEW.completion_tokens, NEW.cost_usd, NEW.created_at)
    ON CONFLICT (user_id, day, model) DO UPDATE SET
        requests = requests + 1,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens,
        cost_usd = cost_usd + excluded.cost_usd,
        last_at = MAX(last_at, excluded.last_at);
END;

-- Retention sweeps delete the oldest records first, across users.
CREATE INDEX usage_records_time ON usage_records (created_at);

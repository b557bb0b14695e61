-- A live run's producer holds a lease on it, renewed while it runs (and with each checkpoint
-- of its partial reply). A run whose lease expired lost its producer (its instance died):
-- any instance marks it `interrupted`, its checkpointed partial reply kept.
ALTER TABLE runs ADD COLUMN lease_until TIMESTAMPTZ;
-- The client's key of the request that started the run (`Idempotency-Key`, `clientRequestId`):
-- a retry with the same key attaches to this run instead of starting (and paying for) another.
ALTER TABLE runs ADD COLUMN request_key TEXT;

CREATE UNIQUE INDEX runs_request_key ON runs (user_id, request_key) WHERE request_key IS NOT NULL;
-- Only live runs are in it: the sweep for expired leases reads a handful of rows.
CREATE INDEX runs_live_lease ON runs (lease_until) WHERE status IN ('queued', 'in_progress');

-- Runs left live by an earlier version (which held no lease) are taken for lost an hour after
-- their last change.
UPDATE runs SET lease_until = updated_at + interval '1 hour'
 WHERE status IN ('queued', 'in_progress');

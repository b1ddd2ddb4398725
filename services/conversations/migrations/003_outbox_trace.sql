-- Up Migration

-- The W3C trace context of the request that wrote the event, so the relay's
-- publish (and every consumer after it) joins that request's trace.
ALTER TABLE outbox ADD COLUMN trace_context jsonb;

-- Down Migration
ALTER TABLE outbox DROP COLUMN trace_context;

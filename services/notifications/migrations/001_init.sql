-- Up Migration

CREATE TABLE preferences (
  user_id                 text PRIMARY KEY,
  enabled                 boolean NOT NULL DEFAULT true,
  muted_conversation_ids  text[] NOT NULL DEFAULT '{}',
  updated_at              timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Down Migration
DROP TABLE preferences;

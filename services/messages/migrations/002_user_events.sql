-- Up Migration

-- Each user's durable event log: seq is per user, +1 each, never reused.
-- last_seq is allocated under this row's lock, held to the end of the
-- transaction, so a user's events commit in seq order. pruned_through is the
-- newest seq removed by retention: a `since` below it must resync.
CREATE TABLE user_seqs (
  user_id        text PRIMARY KEY,
  last_seq       bigint NOT NULL DEFAULT 0,
  pruned_through bigint NOT NULL DEFAULT 0
);

CREATE TABLE user_events (
  user_id    text NOT NULL,
  seq        bigint NOT NULL,
  type       text NOT NULL,
  payload    jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (user_id, seq)
);
-- Serves retention.
CREATE INDEX user_events_created ON user_events (created_at);

-- Down Migration
DROP TABLE user_events;
DROP TABLE user_seqs;

-- Up Migration

CREATE TABLE blocks (
  id         uuid PRIMARY KEY,
  blocker_id text NOT NULL,
  blocked_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT blocks_pair_unique UNIQUE (blocker_id, blocked_id),
  CONSTRAINT blocks_not_self CHECK (blocker_id <> blocked_id)
);
-- Serves the newest-first keyset page of one blocker.
CREATE INDEX blocks_list ON blocks (blocker_id, created_at DESC, id DESC);
-- Serves "who blocks me" in status checks.
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);

-- Down Migration
DROP TABLE blocks;

-- Up Migration

-- How many times each pair's state has changed. Bumped (and so row-locked) in
-- the transaction of every block and unblock, so concurrent changes of one
-- pair take turns and their versions follow commit order. Replicas of blocks
-- (the messages service's) keep the highest version they have seen, so a late
-- or repeated change never undoes a newer one. Rows stay after an unblock.
CREATE TABLE pair_versions (
  blocker_id text NOT NULL,
  blocked_id text NOT NULL,
  version    bigint NOT NULL,
  PRIMARY KEY (blocker_id, blocked_id)
);
INSERT INTO pair_versions (blocker_id, blocked_id, version) SELECT blocker_id, blocked_id, 1 FROM blocks;

-- Down Migration
DROP TABLE pair_versions;

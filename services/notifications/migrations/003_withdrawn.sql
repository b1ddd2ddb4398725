-- Up Migration

-- A message deleted for everyone (SPEC 10): a notification of it not yet
-- delivered is withdrawn (never POSTed), and no stored notification keeps
-- its preview. withdrawn_at says why a pending row stopped; gave_up_at is set
-- too, so everything that skips finished rows skips it.
ALTER TABLE notifications ADD COLUMN withdrawn_at timestamptz;

-- Messages known to be deleted, so a message.created event redelivered after
-- the message.deleted (a nak'd batch coming round again) makes nothing.
CREATE TABLE deleted_messages (
  message_id text PRIMARY KEY,
  deleted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Down Migration
DROP TABLE deleted_messages;
ALTER TABLE notifications DROP COLUMN withdrawn_at;

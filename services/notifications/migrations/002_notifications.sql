-- Up Migration

-- One row per (message, receiver): a replayed message.created event finds the
-- row already there (INSERT … ON CONFLICT DO NOTHING) and makes no second one.
CREATE TABLE notifications (
  id               uuid PRIMARY KEY,
  receiver_id      text NOT NULL,
  sender_id        text NOT NULL,
  conversation_id  text NOT NULL,
  message_id       text NOT NULL,
  -- The webhook body exactly as POSTed, on every attempt.
  payload          jsonb NOT NULL,
  created_at       timestamptz NOT NULL,
  delivered_at     timestamptz,
  -- While an attempt is in flight this holds its lease: a worker that dies
  -- mid-POST leaves the row due again once the lease runs out.
  next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  attempts         integer NOT NULL DEFAULT 0,
  gave_up_at       timestamptz,
  CONSTRAINT notifications_message_receiver_key UNIQUE (message_id, receiver_id)
);

-- "Due for delivery": only pending rows are indexed, so the index is as small
-- as the backlog, and min(next_attempt_at) is one index probe.
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at)
  WHERE delivered_at IS NULL AND gave_up_at IS NULL;

CREATE TABLE delivery_attempts (
  notification_id  uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
  attempt          integer NOT NULL,
  at               timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- The HTTP status, or NULL when no response came (refused, timed out).
  status           integer,
  error            text,
  PRIMARY KEY (notification_id, attempt)
);

-- Down Migration
DROP TABLE delivery_attempts;
DROP TABLE notifications;

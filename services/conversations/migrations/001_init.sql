-- Up Migration

-- The users directory: refreshed from token claims on every authenticated request.
CREATE TABLE users (
  id           text PRIMARY KEY,
  username     text NOT NULL,
  -- lower(username) while this user holds the name; NULL once another user took it over.
  username_key text UNIQUE,
  display_name text,
  avatar_url   text,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per 1:1 pair; the ordered pair makes get-or-create race-free.
CREATE TABLE conversations (
  id         uuid PRIMARY KEY,
  user_low   text NOT NULL,
  user_high  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT conversations_pair_ordered CHECK (user_low < user_high),
  CONSTRAINT conversations_pair_unique UNIQUE (user_low, user_high)
);

-- Each participant's view of a conversation: the list projection. activity_at,
-- last_message and unread_count follow the messages service's events; version
-- is the newest conversation version applied, so older or repeated events are
-- ignored.
CREATE TABLE memberships (
  user_id         text NOT NULL,
  conversation_id uuid NOT NULL REFERENCES conversations (id),
  other_user_id   text NOT NULL,
  activity_at     timestamptz NOT NULL,
  last_message    jsonb,
  unread_count    integer NOT NULL DEFAULT 0,
  version         bigint NOT NULL DEFAULT 0,
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (user_id, conversation_id)
);

-- Serves the keyset page: WHERE user_id = $1 AND (activity_at, conversation_id) < (...) ORDER BY both DESC.
CREATE INDEX memberships_list ON memberships (user_id, activity_at DESC, conversation_id DESC);
CREATE INDEX memberships_conversation ON memberships (conversation_id);

-- Down Migration
DROP TABLE memberships;
DROP TABLE conversations;
DROP TABLE users;

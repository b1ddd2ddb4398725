-- Up Migration

-- This service's copy of each conversation's two participants (immutable for
-- 1:1, fetched once from the conversations service), and the row every send
-- and read of that conversation locks: that lock serialises them, so message
-- times, versions and outbox ids rise in commit order within a conversation.
CREATE TABLE conversations (
  id              uuid PRIMARY KEY,
  user_a          text NOT NULL,
  user_b          text NOT NULL,
  version         bigint NOT NULL DEFAULT 0,
  last_message_id uuid,
  last_message_at timestamptz
);

-- Per participant: read marker and unread counter, changed only in the
-- transaction of a send or a read.
CREATE TABLE participants (
  conversation_id uuid NOT NULL REFERENCES conversations (id),
  user_id         text NOT NULL,
  unread_count    integer NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
  last_read_id    uuid,
  last_read_at    timestamptz,
  PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_unread ON participants (user_id) WHERE unread_count > 0;

CREATE TABLE messages (
  id                uuid PRIMARY KEY,
  conversation_id   uuid NOT NULL REFERENCES conversations (id),
  sender_id         text NOT NULL,
  content           text NOT NULL,
  client_message_id text,
  created_at        timestamptz NOT NULL,
  read_at           timestamptz,
  -- Permanent idempotency: one message per (conversation, sender, clientMessageId), for ever.
  CONSTRAINT messages_client_message_id_unique UNIQUE (conversation_id, sender_id, client_message_id)
);
-- Serves the newest-first keyset page.
CREATE INDEX messages_page ON messages (conversation_id, created_at DESC, id DESC);
-- Serves marking as read and counting what is unread.
CREATE INDEX messages_unread ON messages (conversation_id, sender_id, created_at, id) WHERE read_at IS NULL;

-- Transactional outbox: written in the transaction of the change, published
-- to JetStream by the relay with Nats-Msg-Id = event_id.
CREATE TABLE outbox (
  id           bigserial PRIMARY KEY,
  event_id     uuid NOT NULL UNIQUE,
  subject      text NOT NULL,
  payload      jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Down Migration
DROP TABLE outbox;
DROP TABLE messages;
DROP TABLE participants;
DROP TABLE conversations;

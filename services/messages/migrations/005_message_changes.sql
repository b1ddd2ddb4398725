-- Up Migration

-- SPEC section 10: edits, deletes for everyone, reactions.

-- editedAt / deletedAt of the Message. A deleted message keeps its row as a
-- tombstone (content '', deleted_at set): its place in the conversation, its
-- id and its events stay valid, and nothing of what it said remains.
ALTER TABLE messages ADD COLUMN edited_at timestamptz, ADD COLUMN deleted_at timestamptz;

-- Unread counts and marking as read skip deleted messages: the partial index
-- that serves them now leaves them out too.
DROP INDEX messages_unread;
CREATE INDEX messages_unread ON messages (conversation_id, sender_id, created_at, id) WHERE read_at IS NULL AND deleted_at IS NULL;

-- One row per (message, user, emoji). `id` orders them: emoji by their first
-- reaction, users by when they reacted (SPEC 10's Reaction).
CREATE TABLE reactions (
  id         bigserial PRIMARY KEY,
  message_id uuid NOT NULL REFERENCES messages (id),
  user_id    text NOT NULL,
  emoji      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  UNIQUE (message_id, user_id, emoji)
);

-- The message an event of the user log or the outbox is about, so a delete
-- finds every stored copy of the content (and a replay renders the message
-- as it is now) without reading a user's whole log.
ALTER TABLE user_events ADD COLUMN message_id uuid;
CREATE INDEX user_events_message ON user_events (message_id) WHERE message_id IS NOT NULL;
ALTER TABLE outbox ADD COLUMN message_id uuid;
CREATE INDEX outbox_message ON outbox (message_id) WHERE message_id IS NOT NULL;
-- Every outbox event carries the conversation's lastMessage: a delete finds
-- the snapshots that hold the deleted message through this.
CREATE INDEX outbox_last_message ON outbox ((payload->'lastMessage'->>'id'));

-- A message's reactions as the Message DTO lists them.
CREATE FUNCTION message_reactions(p_message uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object('emoji', emoji, 'userIds', user_ids) ORDER BY first_id), '[]'::jsonb)
  FROM (SELECT emoji, min(id) AS first_id, jsonb_agg(user_id ORDER BY id) AS user_ids
        FROM reactions WHERE message_id = p_message GROUP BY emoji) r
$$;

-- The Message DTO exactly as the service renders it: ISO times in UTC with
-- milliseconds, cut rather than rounded, as JavaScript's Date is. `reactions`
-- may be given (a new message has none) to spare the lookup.
DROP FUNCTION message_json(messages);
CREATE FUNCTION message_json(m messages, p_reactions jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', m.id, 'conversationId', m.conversation_id, 'senderId', m.sender_id, 'content', m.content,
    'clientMessageId', m.client_message_id,
    'createdAt', to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'readAt', CASE WHEN m.read_at IS NULL THEN NULL ELSE to_char(m.read_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END,
    'editedAt', CASE WHEN m.edited_at IS NULL THEN NULL ELSE to_char(m.edited_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END,
    'deletedAt', CASE WHEN m.deleted_at IS NULL THEN NULL ELSE to_char(m.deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END,
    'reactions', CASE WHEN m.deleted_at IS NOT NULL THEN '[]'::jsonb ELSE coalesce(p_reactions, message_reactions(m.id)) END)
$$;

-- send_one as in 004, but recording which message each event is about, and
-- publishing message.created under message.created.<id> (contracts' subjects().events.messageEvent).
CREATE OR REPLACE FUNCTION send_one(it jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_conversation_id uuid := (it->>'conversationId')::uuid;
  v_sender text := it->>'sender';
  v_client_id text := it->>'clientMessageId';
  v_deadline timestamptz := (it->>'deadline')::timestamptz;
  conv conversations%ROWTYPE;
  other text;
  m messages%ROWTYPE;
  msg jsonb;
  ver bigint;
  unread jsonb;
  recipient_unread integer;
  recipient_total bigint;
  sender_seq bigint;
  recipient_seq bigint;
BEGIN
  SELECT * INTO conv FROM conversations WHERE id = v_conversation_id;
  IF NOT FOUND THEN RETURN jsonb_build_object('status', 'unknown'); END IF;
  IF v_sender <> conv.user_a AND v_sender <> conv.user_b THEN RETURN jsonb_build_object('status', 'not_found'); END IF;
  other := CASE WHEN conv.user_a = v_sender THEN conv.user_b ELSE conv.user_a END;
  IF v_client_id IS NOT NULL THEN
    SELECT * INTO m FROM messages WHERE conversation_id = v_conversation_id AND sender_id = v_sender AND client_message_id = v_client_id;
    IF FOUND THEN RETURN jsonb_build_object('status', 'existing', 'message', message_json(m)); END IF;
  END IF;
  IF EXISTS (SELECT 1 FROM block_replica WHERE blocked
             AND ((blocker_id = v_sender AND blocked_id = other) OR (blocker_id = other AND blocked_id = v_sender))) THEN
    RETURN jsonb_build_object('status', 'blocked');
  END IF;
  IF v_deadline IS NOT NULL AND clock_timestamp() > v_deadline THEN RETURN jsonb_build_object('status', 'expired'); END IF;

  -- Strictly after the conversation's last message, so (created_at, id) is the commit order even if clocks step back.
  INSERT INTO messages (id, conversation_id, sender_id, content, client_message_id, created_at)
  VALUES ((it->>'id')::uuid, v_conversation_id, v_sender, it->>'content', v_client_id,
          GREATEST(clock_timestamp(), conv.last_message_at + interval '1 microsecond'))
  ON CONFLICT ON CONSTRAINT messages_client_message_id_unique DO NOTHING
  RETURNING * INTO m;
  IF NOT FOUND THEN
    -- A concurrent send with this clientMessageId committed first (we waited on its lock).
    SELECT * INTO m FROM messages WHERE conversation_id = v_conversation_id AND sender_id = v_sender AND client_message_id = v_client_id;
    RETURN jsonb_build_object('status', 'existing', 'message', message_json(m));
  END IF;
  msg := message_json(m, '[]'::jsonb);

  UPDATE participants SET unread_count = unread_count + 1
  WHERE conversation_id = v_conversation_id AND user_id = other RETURNING unread_count INTO recipient_unread;
  UPDATE conversations SET last_message_id = m.id, last_message_at = m.created_at, version = version + 1
  WHERE id = v_conversation_id RETURNING version INTO ver;
  sender_seq := reserve_seqs(v_sender, 1);
  recipient_seq := reserve_seqs(other, 2);
  -- Read under the recipient's seq lock: includes every earlier committed change to their counts.
  -- One statement for both: the conversation's two rows, and the recipient's rows with something unread.
  SELECT jsonb_agg(jsonb_build_object('userId', user_id, 'count', unread_count) ORDER BY user_id) FILTER (WHERE conversation_id = v_conversation_id),
         coalesce(sum(unread_count) FILTER (WHERE user_id = other AND unread_count > 0), 0)
  INTO unread, recipient_total
  FROM participants
  WHERE conversation_id = v_conversation_id OR (user_id = other AND unread_count > 0);

  INSERT INTO user_events (user_id, seq, type, payload, message_id) VALUES
    (v_sender, sender_seq, 'message.new', jsonb_build_object('message', msg), m.id),
    (other, recipient_seq, 'message.new', jsonb_build_object('message', msg), m.id),
    (other, recipient_seq + 1, 'unread.updated',
     jsonb_build_object('total', recipient_total, 'conversationId', v_conversation_id, 'conversationUnread', recipient_unread), NULL);
  INSERT INTO outbox (event_id, subject, payload, trace_context, message_id)
  VALUES ((it->>'eventId')::uuid, 'message.created.' || m.id,
          jsonb_build_object('eventId', it->>'eventId', 'conversationId', v_conversation_id, 'version', ver,
                             'lastMessage', msg, 'unread', unread, 'message', msg),
          it->'trace', m.id);
  -- The events' parts, not the events: the caller rebuilds them (user-events.ts, sentEvents).
  RETURN jsonb_build_object('status', 'created', 'message', msg, 'senderId', v_sender, 'recipientId', other,
    'senderSeq', sender_seq, 'recipientSeq', recipient_seq, 'total', recipient_total, 'conversationUnread', recipient_unread);
END $$;


-- Down Migration
DROP INDEX outbox_last_message;
DROP INDEX outbox_message;
ALTER TABLE outbox DROP COLUMN message_id;
DROP INDEX user_events_message;
ALTER TABLE user_events DROP COLUMN message_id;
DROP TABLE reactions;
DROP INDEX messages_unread;
CREATE INDEX messages_unread ON messages (conversation_id, sender_id, created_at, id) WHERE read_at IS NULL;
ALTER TABLE messages DROP COLUMN edited_at, DROP COLUMN deleted_at;

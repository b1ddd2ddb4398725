-- Up Migration

-- send_message (004) answers the parts of its events rather than the events.
-- The whole of a send in one round trip and one transaction: membership,
-- idempotency, the block check, the message, the unread counter, the
-- conversation's version, both users' durable events and the outbox event.
-- Statuses: created | existing (this clientMessageId was used: the original)
-- | unknown (this service has not learnt the conversation yet) | not_found
-- | blocked | expired (the caller's deadline passed: nothing was written).
CREATE OR REPLACE FUNCTION send_message(
  p_id uuid, p_conversation_id uuid, p_sender text, p_content text, p_client_id text,
  p_event_id uuid, p_trace jsonb, p_deadline timestamptz
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
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
  SELECT * INTO conv FROM conversations WHERE id = p_conversation_id;
  IF NOT FOUND THEN RETURN jsonb_build_object('status', 'unknown'); END IF;
  IF p_sender <> conv.user_a AND p_sender <> conv.user_b THEN RETURN jsonb_build_object('status', 'not_found'); END IF;
  other := CASE WHEN conv.user_a = p_sender THEN conv.user_b ELSE conv.user_a END;
  IF p_client_id IS NOT NULL THEN
    SELECT * INTO m FROM messages WHERE conversation_id = p_conversation_id AND sender_id = p_sender AND client_message_id = p_client_id;
    IF FOUND THEN RETURN jsonb_build_object('status', 'existing', 'message', message_json(m)); END IF;
  END IF;

  PERFORM pg_advisory_xact_lock_shared(hashtext('chat.user-pair'), pair_lock_key(p_sender, other));
  IF EXISTS (SELECT 1 FROM block_replica WHERE blocked
             AND ((blocker_id = p_sender AND blocked_id = other) OR (blocker_id = other AND blocked_id = p_sender))) THEN
    RETURN jsonb_build_object('status', 'blocked');
  END IF;
  IF p_deadline IS NOT NULL AND clock_timestamp() > p_deadline THEN RETURN jsonb_build_object('status', 'expired'); END IF;

  -- Sends and reads of one conversation take turns from here on, so message
  -- times, versions and outbox ids rise in commit order within it.
  SELECT * INTO conv FROM conversations WHERE id = p_conversation_id FOR UPDATE;
  INSERT INTO messages (id, conversation_id, sender_id, content, client_message_id, created_at)
  VALUES (p_id, p_conversation_id, p_sender, p_content, p_client_id,
          GREATEST(clock_timestamp(), conv.last_message_at + interval '1 microsecond'))
  ON CONFLICT ON CONSTRAINT messages_client_message_id_unique DO NOTHING
  RETURNING * INTO m;
  IF NOT FOUND THEN
    -- A concurrent send with this clientMessageId committed first (we waited on its lock).
    SELECT * INTO m FROM messages WHERE conversation_id = p_conversation_id AND sender_id = p_sender AND client_message_id = p_client_id;
    RETURN jsonb_build_object('status', 'existing', 'message', message_json(m));
  END IF;
  msg := message_json(m);

  UPDATE participants SET unread_count = unread_count + 1
  WHERE conversation_id = p_conversation_id AND user_id = other RETURNING unread_count INTO recipient_unread;
  UPDATE conversations SET last_message_id = m.id, last_message_at = m.created_at, version = version + 1
  WHERE id = p_conversation_id RETURNING version INTO ver;

  -- Seq rows are locked in one global order (as EventsRepository.reserve does), so no two transactions wait in a cycle.
  IF p_sender COLLATE "C" < other COLLATE "C" THEN
    sender_seq := reserve_seqs(p_sender, 1);
    recipient_seq := reserve_seqs(other, 2);
  ELSE
    recipient_seq := reserve_seqs(other, 2);
    sender_seq := reserve_seqs(p_sender, 1);
  END IF;
  -- Read under the recipient's seq lock: includes every earlier committed change to their counts.
  SELECT coalesce(sum(unread_count), 0) INTO recipient_total FROM participants WHERE user_id = other AND unread_count > 0;
  SELECT jsonb_agg(jsonb_build_object('userId', user_id, 'count', unread_count) ORDER BY user_id) INTO unread
  FROM participants WHERE conversation_id = p_conversation_id;

  INSERT INTO user_events (user_id, seq, type, payload) VALUES
    (p_sender, sender_seq, 'message.new', jsonb_build_object('message', msg)),
    (other, recipient_seq, 'message.new', jsonb_build_object('message', msg)),
    (other, recipient_seq + 1, 'unread.updated',
     jsonb_build_object('total', recipient_total, 'conversationId', p_conversation_id, 'conversationUnread', recipient_unread));
  INSERT INTO outbox (event_id, subject, payload, trace_context)
  VALUES (p_event_id, 'message.created',
          jsonb_build_object('eventId', p_event_id, 'conversationId', p_conversation_id, 'version', ver,
                             'lastMessage', msg, 'unread', unread, 'message', msg),
          p_trace);

  -- Waiting for locks may have taken the caller past its deadline: then it has
  -- answered the client already, so nothing may commit behind its back.
  IF p_deadline IS NOT NULL AND clock_timestamp() > p_deadline THEN
    RAISE EXCEPTION 'send deadline passed' USING ERRCODE = 'P0001', HINT = 'chat:expired';
  END IF;
  -- The events' parts, not the events: the caller rebuilds them (user-events.ts, sentEvents), which
  -- keeps the reply a third of the size on the hot path.
  RETURN jsonb_build_object('status', 'created', 'message', msg, 'senderId', p_sender, 'recipientId', other,
    'senderSeq', sender_seq, 'recipientSeq', recipient_seq, 'total', recipient_total, 'conversationUnread', recipient_unread);
END $$;

-- Down Migration
-- The whole of a send in one round trip and one transaction: membership,
-- idempotency, the block check, the message, the unread counter, the
-- conversation's version, both users' durable events and the outbox event.
-- Statuses: created | existing (this clientMessageId was used: the original)
-- | unknown (this service has not learnt the conversation yet) | not_found
-- | blocked | expired (the caller's deadline passed: nothing was written).
CREATE OR REPLACE FUNCTION send_message(
  p_id uuid, p_conversation_id uuid, p_sender text, p_content text, p_client_id text,
  p_event_id uuid, p_trace jsonb, p_deadline timestamptz
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
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
  events jsonb;
BEGIN
  SELECT * INTO conv FROM conversations WHERE id = p_conversation_id;
  IF NOT FOUND THEN RETURN jsonb_build_object('status', 'unknown'); END IF;
  IF p_sender <> conv.user_a AND p_sender <> conv.user_b THEN RETURN jsonb_build_object('status', 'not_found'); END IF;
  other := CASE WHEN conv.user_a = p_sender THEN conv.user_b ELSE conv.user_a END;
  IF p_client_id IS NOT NULL THEN
    SELECT * INTO m FROM messages WHERE conversation_id = p_conversation_id AND sender_id = p_sender AND client_message_id = p_client_id;
    IF FOUND THEN RETURN jsonb_build_object('status', 'existing', 'message', message_json(m)); END IF;
  END IF;

  PERFORM pg_advisory_xact_lock_shared(hashtext('chat.user-pair'), pair_lock_key(p_sender, other));
  IF EXISTS (SELECT 1 FROM block_replica WHERE blocked
             AND ((blocker_id = p_sender AND blocked_id = other) OR (blocker_id = other AND blocked_id = p_sender))) THEN
    RETURN jsonb_build_object('status', 'blocked');
  END IF;
  IF p_deadline IS NOT NULL AND clock_timestamp() > p_deadline THEN RETURN jsonb_build_object('status', 'expired'); END IF;

  -- Sends and reads of one conversation take turns from here on, so message
  -- times, versions and outbox ids rise in commit order within it.
  SELECT * INTO conv FROM conversations WHERE id = p_conversation_id FOR UPDATE;
  INSERT INTO messages (id, conversation_id, sender_id, content, client_message_id, created_at)
  VALUES (p_id, p_conversation_id, p_sender, p_content, p_client_id,
          GREATEST(clock_timestamp(), conv.last_message_at + interval '1 microsecond'))
  ON CONFLICT ON CONSTRAINT messages_client_message_id_unique DO NOTHING
  RETURNING * INTO m;
  IF NOT FOUND THEN
    -- A concurrent send with this clientMessageId committed first (we waited on its lock).
    SELECT * INTO m FROM messages WHERE conversation_id = p_conversation_id AND sender_id = p_sender AND client_message_id = p_client_id;
    RETURN jsonb_build_object('status', 'existing', 'message', message_json(m));
  END IF;
  msg := message_json(m);

  UPDATE participants SET unread_count = unread_count + 1
  WHERE conversation_id = p_conversation_id AND user_id = other RETURNING unread_count INTO recipient_unread;
  UPDATE conversations SET last_message_id = m.id, last_message_at = m.created_at, version = version + 1
  WHERE id = p_conversation_id RETURNING version INTO ver;

  -- Seq rows are locked in one global order (as EventsRepository.reserve does), so no two transactions wait in a cycle.
  IF p_sender COLLATE "C" < other COLLATE "C" THEN
    sender_seq := reserve_seqs(p_sender, 1);
    recipient_seq := reserve_seqs(other, 2);
  ELSE
    recipient_seq := reserve_seqs(other, 2);
    sender_seq := reserve_seqs(p_sender, 1);
  END IF;
  -- Read under the recipient's seq lock: includes every earlier committed change to their counts.
  SELECT coalesce(sum(unread_count), 0) INTO recipient_total FROM participants WHERE user_id = other AND unread_count > 0;
  SELECT jsonb_agg(jsonb_build_object('userId', user_id, 'count', unread_count) ORDER BY user_id) INTO unread
  FROM participants WHERE conversation_id = p_conversation_id;

  events := jsonb_build_array(
    jsonb_build_object('userId', p_sender, 'seq', sender_seq, 'type', 'message.new', 'payload', jsonb_build_object('message', msg)),
    jsonb_build_object('userId', other, 'seq', recipient_seq, 'type', 'message.new', 'payload', jsonb_build_object('message', msg)),
    jsonb_build_object('userId', other, 'seq', recipient_seq + 1, 'type', 'unread.updated', 'payload',
      jsonb_build_object('total', recipient_total, 'conversationId', p_conversation_id, 'conversationUnread', recipient_unread)));
  INSERT INTO user_events (user_id, seq, type, payload)
  SELECT e->>'userId', (e->>'seq')::bigint, e->>'type', e->'payload' FROM jsonb_array_elements(events) AS e;
  INSERT INTO outbox (event_id, subject, payload, trace_context)
  VALUES (p_event_id, 'message.created',
          jsonb_build_object('eventId', p_event_id, 'conversationId', p_conversation_id, 'version', ver,
                             'lastMessage', msg, 'unread', unread, 'message', msg),
          p_trace);

  -- Waiting for locks may have taken the caller past its deadline: then it has
  -- answered the client already, so nothing may commit behind its back.
  IF p_deadline IS NOT NULL AND clock_timestamp() > p_deadline THEN
    RAISE EXCEPTION 'send deadline passed' USING ERRCODE = 'P0001', HINT = 'chat:expired';
  END IF;
  RETURN jsonb_build_object('status', 'created', 'message', msg, 'events', events);
END $$;


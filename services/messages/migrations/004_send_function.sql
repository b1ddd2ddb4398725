-- Up Migration

-- This service's copy of who blocks whom, so a send checks blocks without a
-- network request. The blocks service owns blocks; it pushes every change
-- here (apply_block) before it answers, and the durable block events repair
-- anything a push missed. `version` counts the pair's changes in the blocks
-- service, so a late or repeated event never undoes a newer change, and a
-- removal stays as a row with blocked = false for the same reason.
CREATE TABLE block_replica (
  blocker_id text NOT NULL,
  blocked_id text NOT NULL,
  blocked    boolean NOT NULL,
  version    bigint NOT NULL,
  PRIMARY KEY (blocker_id, blocked_id)
);

-- When a replica was first filled from its owner's snapshot; absent until then.
CREATE TABLE replica_sync (
  name      text PRIMARY KEY,
  synced_at timestamptz NOT NULL
);

-- The advisory lock key of a pair of users, whichever order they come in.
-- A send holds it shared from its block check to its commit; apply_block takes
-- it exclusively, so a block is applied only after every send that passed its
-- check has committed, and every send checking after sees the block.
CREATE FUNCTION pair_lock_key(a text, b text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtext(jsonb_build_array(least(a, b), greatest(a, b))::text) $$;

CREATE FUNCTION apply_block(p_blocker text, p_blocked text, p_is_blocked boolean, p_version bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('chat.user-pair'), pair_lock_key(p_blocker, p_blocked));
  INSERT INTO block_replica (blocker_id, blocked_id, blocked, version) VALUES (p_blocker, p_blocked, p_is_blocked, p_version)
  ON CONFLICT (blocker_id, blocked_id) DO UPDATE SET blocked = EXCLUDED.blocked, version = EXCLUDED.version
  WHERE block_replica.version < EXCLUDED.version;
  RETURN FOUND;
END $$;

-- The Message DTO exactly as the service renders it (toMessage): ISO times in
-- UTC with milliseconds, cut rather than rounded, as JavaScript's Date is.
CREATE FUNCTION message_json(m messages) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', m.id, 'conversationId', m.conversation_id, 'senderId', m.sender_id, 'content', m.content,
    'clientMessageId', m.client_message_id,
    'createdAt', to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'readAt', CASE WHEN m.read_at IS NULL THEN NULL ELSE to_char(m.read_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END)
$$;

-- Reserves n seqs of a user's event log and returns the first; the user_seqs
-- row stays locked to the end of the transaction.
CREATE FUNCTION reserve_seqs(p_user text, n integer) RETURNS bigint
LANGUAGE sql AS $$
  INSERT INTO user_seqs (user_id, last_seq) VALUES (p_user, n)
  ON CONFLICT (user_id) DO UPDATE SET last_seq = user_seqs.last_seq + EXCLUDED.last_seq
  RETURNING last_seq - n + 1
$$;

-- Sends in batches (group commit): the messages service gathers the sends
-- that arrive together and makes one call of them, one transaction and one
-- commit, instead of one each; a lone send is a batch of one.

-- One send: membership, idempotency, the block check, the message, the
-- recipient's unread counter, the conversation's version, both users' durable
-- events and the outbox event. For a caller that already holds the pair's
-- advisory lock, the conversation's row lock and both users' seq row locks
-- (send_messages takes them all first, in the global order). Statuses:
-- created | existing (this clientMessageId was used: the original) | unknown
-- (this service has not learnt the conversation yet) | not_found | blocked |
-- expired (the caller's deadline passed: nothing was written).
-- `it`: { id, conversationId, sender, content, clientMessageId, eventId, trace, deadline }.
CREATE FUNCTION send_one(it jsonb) RETURNS jsonb
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
  msg := message_json(m);

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

  INSERT INTO user_events (user_id, seq, type, payload) VALUES
    (v_sender, sender_seq, 'message.new', jsonb_build_object('message', msg)),
    (other, recipient_seq, 'message.new', jsonb_build_object('message', msg)),
    (other, recipient_seq + 1, 'unread.updated',
     jsonb_build_object('total', recipient_total, 'conversationId', v_conversation_id, 'conversationUnread', recipient_unread));
  INSERT INTO outbox (event_id, subject, payload, trace_context)
  VALUES ((it->>'eventId')::uuid, 'message.created',
          jsonb_build_object('eventId', it->>'eventId', 'conversationId', v_conversation_id, 'version', ver,
                             'lastMessage', msg, 'unread', unread, 'message', msg),
          it->'trace');
  -- The events' parts, not the events: the caller rebuilds them (user-events.ts, sentEvents).
  RETURN jsonb_build_object('status', 'created', 'message', msg, 'senderId', v_sender, 'recipientId', other,
    'senderSeq', sender_seq, 'recipientSeq', recipient_seq, 'total', recipient_total, 'conversationUnread', recipient_unread);
END $$;

-- A batch of sends in one transaction; answers one result per item, in order
-- (statuses as send_one's). Every lock the batch needs is taken first, each
-- kind in one global order: the user pairs' advisory locks (by key), then the
-- conversations' rows (by id), then the users' seq rows (by id, byte order). A single read
-- takes a conversation row then seq rows, and applying a block takes only a
-- pair lock, so no two transactions of this schema wait on each other in a
-- cycle. Raises (everything rolled back) when a stored item's deadline passed
-- by the end: the caller then retries each item alone, with its own deadline.
CREATE FUNCTION send_messages(p_items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  k integer;
  u text;
  ids uuid[];
  users text[];
  it jsonb;
  r jsonb;
  results jsonb := '[]'::jsonb;
  earliest timestamptz;
BEGIN
  IF jsonb_array_length(p_items) = 1 THEN
    -- The common case when the system is not busy: the same locks, in the same order, in fewer statements.
    it := p_items->0;
    SELECT pair_lock_key(c.user_a, c.user_b), ARRAY[c.user_a, c.user_b] INTO k, users
    FROM conversations c WHERE c.id = (it->>'conversationId')::uuid;
    IF k IS NOT NULL THEN
      PERFORM pg_advisory_xact_lock_shared(hashtext('chat.user-pair'), k);
      PERFORM 1 FROM conversations WHERE id = (it->>'conversationId')::uuid FOR UPDATE;
      FOR u IN SELECT x FROM unnest(users) AS x ORDER BY x COLLATE "C" LOOP
        PERFORM reserve_seqs(u, 0);
      END LOOP;
    END IF;
    r := send_one(it);
    IF r->>'status' = 'created' AND (it->>'deadline')::timestamptz < clock_timestamp() THEN
      RAISE EXCEPTION 'send deadline passed' USING ERRCODE = 'P0001', HINT = 'chat:expired';
    END IF;
    RETURN jsonb_build_array(r);
  END IF;

  -- Looked up by primary key (= ANY of an array), never joined: a join let
  -- the planner scan every conversation for each batch.
  ids := ARRAY(SELECT DISTINCT (e.value->>'conversationId')::uuid FROM jsonb_array_elements(p_items) AS e ORDER BY 1);
  FOR k IN SELECT DISTINCT pair_lock_key(c.user_a, c.user_b) FROM conversations c WHERE c.id = ANY(ids) ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock_shared(hashtext('chat.user-pair'), k);
  END LOOP;
  PERFORM 1 FROM conversations WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
  users := ARRAY(SELECT DISTINCT v.u FROM conversations c CROSS JOIN LATERAL (VALUES (c.user_a), (c.user_b)) AS v(u) WHERE c.id = ANY(ids));
  -- One at a time, in order: reserving 0 creates a new user's row or locks an
  -- existing one, so new and existing rows alike are locked in the one order
  -- (creating them later, item by item, could cross another batch doing the same).
  FOR u IN SELECT x FROM unnest(users) AS x ORDER BY x COLLATE "C" LOOP
    PERFORM reserve_seqs(u, 0);
  END LOOP;

  FOR it IN SELECT value FROM jsonb_array_elements(p_items) LOOP
    r := send_one(it);
    results := results || jsonb_build_array(r);
    IF r->>'status' = 'created' THEN
      earliest := least(earliest, (it->>'deadline')::timestamptz);
    END IF;
  END LOOP;
  -- Waiting for locks may have taken a send past its deadline: its caller has
  -- answered the client already, so nothing may commit behind its back.
  IF earliest < clock_timestamp() THEN
    RAISE EXCEPTION 'send deadline passed' USING ERRCODE = 'P0001', HINT = 'chat:expired';
  END IF;
  RETURN results;
END $$;

-- Down Migration
DROP FUNCTION send_messages(jsonb);
DROP FUNCTION send_one(jsonb);
DROP FUNCTION reserve_seqs(text, integer);
DROP FUNCTION message_json(messages);
DROP FUNCTION apply_block(text, text, boolean, bigint);
DROP FUNCTION pair_lock_key(text, text);
DROP TABLE replica_sync;
DROP TABLE block_replica;

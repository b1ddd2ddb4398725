import type { Message } from '@chat/contracts';
import { pgDriver, type Cursor, type Queryable } from '@chat/platform';
import type { UserEvent } from './events.repository';
import { sentEvents } from './user-events';

/** One send as send_messages takes it. */
export interface SendItem {
  id: string;
  conversationId: string;
  sender: string;
  content: string;
  clientMessageId: string | null;
  eventId: string;
  trace: Record<string, string> | null;
  /** ISO time after which the caller no longer waits; null: none. */
  deadline: string | null;
}

/** A batch was rolled back because lock waits took one of its stored sends past its deadline. */
export class SendDeadlineError extends Error {
  override name = 'SendDeadlineError';
}

/** What send_messages (migration 006) answers per item. */
export type SendResult =
  | { status: 'created'; message: Message; events: UserEvent[] }
  | { status: 'existing'; message: Message }
  | { status: 'unknown' | 'not_found' | 'blocked' | 'expired' };

/** What send_messages answers for a stored send: the message and its events' parts (sentEvents rebuilds them). */
export interface SentParts {
  message: Message;
  senderId: string;
  recipientId: string;
  senderSeq: number;
  recipientSeq: number;
  total: number;
  conversationUnread: number;
}

type SendReply = ({ status: 'created' } & SentParts) | Exclude<SendResult, { status: 'created' }>;

/** A message as the repository reads it: the DTO (rendered by message_json in SQL, the one renderer) and its keyset position. */
export interface MessageRow {
  id: string;
  sender_id: string;
  created_key: string;
  deleted: boolean;
  json: Message;
  [k: string]: unknown;
}

export interface ConversationRow {
  id: string;
  user_a: string;
  user_b: string;
  version: string;
  last_message_id: string | null;
  [k: string]: unknown;
}

export const toMessage = (r: MessageRow): Message => r.json;

const COLUMNS = 'm.id, m.sender_id, m.created_at::text AS created_key, m.deleted_at IS NOT NULL AS deleted, message_json(m) AS json';

/** A search hit: the message and the other participant of its conversation, for the caller. */
export interface SearchRow extends MessageRow {
  participant_id: string;
}

/**
 * The caller's messages matching `words`, newest first (migration 006 has the
 * matching rule and the index). The tsquery asks for the caller's key only,
 * so the GIN scan yields just their candidates; being the row's sender or
 * recipient is then checked exactly (two users may share a key). $2 narrows
 * to one conversation; $4, $5 are the keyset cursor. Only the page's ids go
 * through the sort, and only its messages are rendered. Exported for the
 * search benchmark's EXPLAIN.
 */
export const SEARCH_SQL = `
  WITH hits AS (
    SELECT m.id FROM messages m
    WHERE m.search_vector @@ search_query($1, $3::text[])
      AND (m.sender_id = $1 OR m.recipient_id = $1)
      -- Every conversation when $2 is null, else that one. A boolean test rather than "=", which
      -- the planner could answer from messages_page, walking a long conversation row by row.
      AND (m.conversation_id = $2::uuid) IS NOT FALSE
      AND m.deleted_at IS NULL
      AND ($4::timestamptz IS NULL OR (m.created_at, m.id) < ($4::timestamptz, $5::uuid))
    ORDER BY m.created_at DESC, m.id DESC
    LIMIT $6
  )
  SELECT ${COLUMNS}, CASE WHEN m.sender_id = $1 THEN m.recipient_id ELSE m.sender_id END AS participant_id
  FROM hits h JOIN messages m ON m.id = h.id
  ORDER BY m.created_at DESC, m.id DESC`;

export interface SearchArgs {
  actor: string;
  conversationId: string | undefined;
  words: readonly string[];
  before: Cursor | undefined;
  limit: number;
}

export const searchParams = (a: SearchArgs): unknown[] => [a.actor, a.conversationId ?? null, a.words, a.before?.at ?? null, a.before?.id ?? null, a.limit];

export class MessagesRepository {
  constructor(private readonly db: Queryable) {}

  /**
   * Sends in one call, one transaction and one commit (send_messages,
   * migration 006): one result per item, in order. With no network call
   * inside, every lock is held only for the statement's own time. Throws
   * SendDeadlineError (everything rolled back) when a stored item's deadline
   * passed while the batch waited for locks.
   */
  async sendMany(items: readonly SendItem[]): Promise<SendResult[]> {
    let replies: SendReply[];
    try {
      const { rows } = await this.db.query<{ r: SendReply[] }>('SELECT send_messages($1::jsonb) AS r', [JSON.stringify(items)], { prepare: 'send_messages' });
      replies = rows[0]!.r;
    } catch (err) {
      if (err instanceof pgDriver().DatabaseError && err.hint === 'chat:expired') throw new SendDeadlineError();
      throw err;
    }
    return replies.map((r) => (r.status === 'created' ? { status: 'created', message: r.message, events: sentEvents(r) } : r));
  }

  /** Whether either user blocks the other, from this service's replica of blocks. */
  async blockedBetween(a: string, b: string): Promise<boolean> {
    const { rows } = await this.db.query(
      'SELECT 1 FROM block_replica WHERE blocked AND ((blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1))',
      [a, b],
    );
    return rows.length > 0;
  }

  /** Applies one pair's state unless a newer version is there; true when it changed the replica. */
  async applyBlock(c: { blockerId: string; blockedId: string; blocked: boolean; version: number }): Promise<boolean> {
    const { rows } = await this.db.query<{ applied: boolean }>('SELECT apply_block($1, $2, $3, $4) AS applied', [c.blockerId, c.blockedId, c.blocked, c.version]);
    return rows[0]!.applied;
  }

  async isReplicaSynced(name: string): Promise<boolean> {
    const { rows } = await this.db.query('SELECT 1 FROM replica_sync WHERE name = $1', [name]);
    return rows.length > 0;
  }

  async markReplicaSynced(name: string): Promise<void> {
    await this.db.query('INSERT INTO replica_sync (name, synced_at) VALUES ($1, clock_timestamp()) ON CONFLICT (name) DO NOTHING', [name]);
  }

  async findConversation(id: string): Promise<ConversationRow | undefined> {
    const { rows } = await this.db.query<ConversationRow>('SELECT * FROM conversations WHERE id = $1', [id]);
    return rows[0];
  }

  /** Records a conversation learnt from the conversations service; concurrent learners converge. */
  async insertConversation(id: string, a: string, b: string): Promise<void> {
    await this.db.query(
      `WITH c AS (INSERT INTO conversations (id, user_a, user_b) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING id)
       INSERT INTO participants (conversation_id, user_id) SELECT id, u FROM c, unnest(ARRAY[$2, $3]) AS u`,
      [id, a, b],
    );
  }

  /** Many conversations learnt at once (from conversation.created events): one statement. */
  async insertConversations(list: ReadonlyArray<{ id: string; userIds: readonly [string, string] }>): Promise<void> {
    if (list.length === 0) return;
    await this.db.query(
      `WITH c AS (
         INSERT INTO conversations (id, user_a, user_b)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) ON CONFLICT (id) DO NOTHING RETURNING id, user_a, user_b)
       INSERT INTO participants (conversation_id, user_id) SELECT c.id, u FROM c CROSS JOIN LATERAL (VALUES (c.user_a), (c.user_b)) AS v(u)`,
      [list.map((c) => c.id), list.map((c) => c.userIds[0]), list.map((c) => c.userIds[1])],
    );
  }

  /** Locks the conversation for the rest of the transaction: sends and reads of one conversation take turns. */
  async lockConversation(id: string): Promise<ConversationRow> {
    const { rows } = await this.db.query<ConversationRow>('SELECT * FROM conversations WHERE id = $1 FOR UPDATE', [id]);
    return rows[0]!;
  }

  async bumpVersion(conversationId: string): Promise<number> {
    const { rows } = await this.db.query<{ version: string }>('UPDATE conversations SET version = version + 1 WHERE id = $1 RETURNING version', [conversationId]);
    return Number(rows[0]!.version);
  }

  async unreadCounts(conversationId: string): Promise<Array<{ userId: string; count: number }>> {
    const { rows } = await this.db.query<{ user_id: string; unread_count: number }>(
      'SELECT user_id, unread_count FROM participants WHERE conversation_id = $1 ORDER BY user_id',
      [conversationId],
    );
    return rows.map((r) => ({ userId: r.user_id, count: r.unread_count }));
  }

  /** True when `target` lies past the reader's marker: the marker only moves forward. */
  async isPastReadMarker(conversationId: string, readerId: string, target: Cursor): Promise<boolean> {
    const { rows } = await this.db.query<{ past: boolean }>(
      `SELECT (p.last_read_id IS NULL OR m.id IS NULL OR ($3::timestamptz, $4::uuid) > (m.created_at, m.id)) AS past
       FROM participants p LEFT JOIN messages m ON m.id = p.last_read_id
       WHERE p.conversation_id = $1 AND p.user_id = $2`,
      [conversationId, readerId, target.at, target.id],
    );
    return rows[0]?.past ?? false;
  }

  async findInConversation(conversationId: string, messageId: string): Promise<MessageRow | undefined> {
    const { rows } = await this.db.query<MessageRow>(`SELECT ${COLUMNS} FROM messages m WHERE conversation_id = $1 AND id = $2`, [conversationId, messageId]);
    return rows[0];
  }

  async latest(conversationId: string): Promise<MessageRow | undefined> {
    const { rows } = await this.db.query<MessageRow>(
      `SELECT ${COLUMNS} FROM messages m WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
      [conversationId],
    );
    return rows[0];
  }

  /** Marks the other user's unread messages up to and including `upTo`; returns how many. */
  async markRead(conversationId: string, readerId: string, upTo: Cursor): Promise<{ count: number; readAt: Date | null }> {
    const { rows } = await this.db.query<{ count: string; read_at: Date | null }>(
      `WITH marked AS (
         UPDATE messages SET read_at = clock_timestamp()
         WHERE conversation_id = $1 AND sender_id <> $2 AND read_at IS NULL AND deleted_at IS NULL
           AND (created_at, id) <= ($3::timestamptz, $4::uuid)
         RETURNING read_at)
       SELECT count(*) AS count, max(read_at) AS read_at FROM marked`,
      [conversationId, readerId, upTo.at, upTo.id],
    );
    return { count: Number(rows[0]!.count), readAt: rows[0]!.read_at };
  }

  /** Recounts from the messages themselves, so the counter cannot drift. */
  async setReadState(conversationId: string, readerId: string, lastReadId: string): Promise<number> {
    const { rows } = await this.db.query<{ unread_count: number }>(
      `UPDATE participants SET last_read_id = $3, last_read_at = clock_timestamp(),
         unread_count = (SELECT count(*) FROM messages WHERE conversation_id = $1 AND sender_id <> $2 AND read_at IS NULL AND deleted_at IS NULL)
       WHERE conversation_id = $1 AND user_id = $2 RETURNING unread_count`,
      [conversationId, readerId, lastReadId],
    );
    return rows[0]!.unread_count;
  }

  async page(conversationId: string, before: Cursor | undefined, limit: number): Promise<MessageRow[]> {
    const { rows } = before
      ? await this.db.query<MessageRow>(
          `SELECT ${COLUMNS} FROM messages m WHERE conversation_id = $1 AND (created_at, id) < ($2::timestamptz, $3::uuid)
           ORDER BY created_at DESC, id DESC LIMIT $4`,
          [conversationId, before.at, before.id, limit],
        )
      : await this.db.query<MessageRow>(
          `SELECT ${COLUMNS} FROM messages m WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`,
          [conversationId, limit],
        );
    return rows;
  }

  async getWithParticipants(messageId: string): Promise<(MessageRow & { user_a: string; user_b: string }) | undefined> {
    const { rows } = await this.db.query<MessageRow & { user_a: string; user_b: string }>(
      `SELECT ${COLUMNS}, c.user_a, c.user_b FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1`,
      [messageId],
    );
    return rows[0];
  }

  /**
   * The user's unread totals and the seq they are current at, from one
   * statement (one snapshot): every change to a user's unread counts also
   * writes an unread.updated event, so seq versions the totals.
   */
  async unreadTotals(userId: string): Promise<{ total: number; conversations: number; seq: number }> {
    const { rows } = await this.db.query<{ total: string | null; conversations: string; seq: string | null }>(
      `SELECT sum(unread_count) AS total, count(*) AS conversations,
              (SELECT last_seq FROM user_seqs WHERE user_id = $1) AS seq
       FROM participants WHERE user_id = $1 AND unread_count > 0`,
      [userId],
    );
    return { total: Number(rows[0]?.total ?? 0), conversations: Number(rows[0]?.conversations ?? 0), seq: Number(rows[0]?.seq ?? 0) };
  }

  /** Users with something unread: the badge most worth having in the cache after a restart. */
  async usersWithUnread(limit: number): Promise<string[]> {
    const { rows } = await this.db.query<{ user_id: string }>(
      'SELECT DISTINCT user_id FROM participants WHERE unread_count > 0 LIMIT $1',
      [limit],
    );
    return rows.map((r) => r.user_id);
  }

  async search(args: SearchArgs): Promise<SearchRow[]> {
    const { rows } = await this.db.query<SearchRow>(SEARCH_SQL, searchParams(args), { prepare: 'search_messages' });
    return rows;
  }

  async unreadTotal(userId: string): Promise<number> {
    const { rows } = await this.db.query<{ total: string }>('SELECT coalesce(sum(unread_count), 0) AS total FROM participants WHERE user_id = $1', [userId]);
    return Number(rows[0]!.total);
  }


}

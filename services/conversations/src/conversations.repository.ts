import type { Queryable } from '@chat/platform';
import type { Cursor } from '@chat/platform';

export interface MembershipRow {
  conversation_id: string;
  activity_at: Date;
  activity_key: string;
  last_message: unknown;
  unread_count: number;
  created_at: Date;
  user_id: string;
  username: string;
  display_name: string | null;
  avatar_url: string | null;
  [k: string]: unknown;
}

const MEMBERSHIP_SELECT = `
  SELECT m.conversation_id, m.activity_at, m.activity_at::text AS activity_key, m.last_message, m.unread_count,
         c.created_at, u.id AS user_id, u.username, u.display_name, u.avatar_url
  FROM memberships m
  JOIN conversations c ON c.id = m.conversation_id
  JOIN users u ON u.id = m.other_user_id`;

export interface SnapshotUpdate {
  conversationId: string;
  version: number;
  lastMessage: unknown;
  lastMessageAt: string | null;
  unread: Array<{ userId: string; count: number }>;
}

export class ConversationsRepository {
  constructor(private readonly db: Queryable) {}

  /** Inserts the pair unless it exists; returns the row only when this call created it. */
  async insertPair(id: string, low: string, high: string): Promise<{ id: string; created_at: Date } | undefined> {
    const { rows } = await this.db.query<{ id: string; created_at: Date }>(
      `INSERT INTO conversations (id, user_low, user_high) VALUES ($1, $2, $3)
       ON CONFLICT ON CONSTRAINT conversations_pair_unique DO NOTHING
       RETURNING id, created_at`,
      [id, low, high],
    );
    return rows[0];
  }

  async findPair(low: string, high: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ id: string }>('SELECT id FROM conversations WHERE user_low = $1 AND user_high = $2', [low, high]);
    return rows[0]?.id;
  }

  async insertMemberships(conversationId: string, a: string, b: string, createdAt: Date): Promise<void> {
    await this.db.query(
      `INSERT INTO memberships (user_id, conversation_id, other_user_id, activity_at)
       VALUES ($2, $1, $3, $4), ($3, $1, $2, $4)`,
      [conversationId, a, b, createdAt],
    );
  }

  async participants(conversationId: string): Promise<[string, string] | undefined> {
    const { rows } = await this.db.query<{ user_low: string; user_high: string }>(
      'SELECT user_low, user_high FROM conversations WHERE id = $1',
      [conversationId],
    );
    return rows[0] ? [rows[0].user_low, rows[0].user_high] : undefined;
  }

  /** Everyone who shares a conversation with `userId` (one row per 1:1 conversation, so no duplicates). */
  /** The users whose lists changed most recently: the ones worth warming the cache for. */
  async recentlyActiveUsers(limit: number): Promise<string[]> {
    const { rows } = await this.db.query<{ user_id: string }>(
      'SELECT user_id FROM memberships GROUP BY user_id ORDER BY max(activity_at) DESC LIMIT $1',
      [limit],
    );
    return rows.map((r) => r.user_id);
  }

  async contacts(userId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ other_user_id: string }>('SELECT other_user_id FROM memberships WHERE user_id = $1', [userId]);
    return rows.map((r) => r.other_user_id);
  }

  /** Contacts in conversation-id order after `after`, by the primary key (user_id, conversation_id). */
  async contactsPage(userId: string, after: string | undefined, limit: number): Promise<Array<{ conversation_id: string; other_user_id: string }>> {
    const { rows } = await this.db.query<{ conversation_id: string; other_user_id: string }>(
      `SELECT conversation_id, other_user_id FROM memberships
       WHERE user_id = $1 AND ($2::uuid IS NULL OR conversation_id > $2::uuid)
       ORDER BY conversation_id LIMIT $3`,
      [userId, after ?? null, limit],
    );
    return rows;
  }

  async getForUser(userId: string, conversationId: string): Promise<MembershipRow | undefined> {
    const { rows } = await this.db.query<MembershipRow>(
      `${MEMBERSHIP_SELECT} WHERE m.user_id = $1 AND m.conversation_id = $2`,
      [userId, conversationId],
    );
    return rows[0];
  }

  /** One statement per page, whatever its size: the list's only SQL. */
  async listForUser(userId: string, after: Cursor | undefined, limit: number): Promise<MembershipRow[]> {
    const { rows } = after
      ? await this.db.query<MembershipRow>(
          `${MEMBERSHIP_SELECT}
           WHERE m.user_id = $1 AND (m.activity_at, m.conversation_id) < ($2::timestamptz, $3::uuid)
           ORDER BY m.activity_at DESC, m.conversation_id DESC LIMIT $4`,
          [userId, after.at, after.id, limit],
        )
      : await this.db.query<MembershipRow>(
          `${MEMBERSHIP_SELECT} WHERE m.user_id = $1 ORDER BY m.activity_at DESC, m.conversation_id DESC LIMIT $2`,
          [userId, limit],
        );
    return rows;
  }

  /** One snapshot: the same statement as a batch of one. */
  applySnapshot(s: SnapshotUpdate): Promise<string[]> {
    return this.applySnapshots([s]);
  }

  /**
   * Applies conversation snapshots to both memberships of each conversation,
   * in one statement whatever their number, unless a newer snapshot was
   * applied already (version guard): replays and reordering are harmless.
   * Of several snapshots of one conversation only the newest is sent, since
   * it holds the whole state and the older ones could only lose to it.
   * Returns the users whose rows changed.
   */
  async applySnapshots(snapshots: readonly SnapshotUpdate[]): Promise<string[]> {
    const newest = new Map<string, SnapshotUpdate>();
    for (const s of snapshots) {
      const seen = newest.get(s.conversationId);
      if (!seen || s.version > seen.version) newest.set(s.conversationId, s);
    }
    if (newest.size === 0) return [];
    // One row per membership to change, joined on the primary key: the plan is
    // an index lookup per row whatever the table's size (a join through the
    // conversation id let the planner scan every membership for each batch).
    // Every event lists both participants' unread counts, so each membership
    // of the conversation has its row.
    const rowsIn = [...newest.values()].flatMap((s) => s.unread.map((u) => ({ s, userId: u.userId, count: u.count })));
    if (rowsIn.length === 0) return [];
    // Replicas apply overlapping batches side by side: each takes its rows'
    // locks in one global order first (a sorted SELECT … FOR UPDATE), so they
    // wait for each other instead of deadlocking. An UPDATE … FROM alone
    // locks in whatever order its join produces (the chaos run saw deadlocks).
    const { rows } = await this.db.query<{ user_id: string }>(
      `WITH x AS (
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::jsonb[], $5::timestamptz[], $6::int[])
           AS x(user_id, conversation_id, version, last_message, last_message_at, count)
       ), locked AS MATERIALIZED (
         SELECT m.user_id, m.conversation_id FROM memberships m JOIN x ON m.user_id = x.user_id AND m.conversation_id = x.conversation_id
         WHERE m.version < x.version
         ORDER BY m.user_id, m.conversation_id
         FOR UPDATE OF m
       )
       UPDATE memberships AS m SET
         last_message = x.last_message,
         activity_at = CASE WHEN x.last_message_at IS NULL THEN m.activity_at ELSE GREATEST(m.activity_at, x.last_message_at) END,
         unread_count = x.count,
         version = x.version,
         updated_at = clock_timestamp()
       FROM x JOIN locked l ON l.user_id = x.user_id AND l.conversation_id = x.conversation_id
       WHERE m.user_id = x.user_id AND m.conversation_id = x.conversation_id AND m.version < x.version
       RETURNING m.user_id`,
      [
        rowsIn.map((r) => r.userId),
        rowsIn.map((r) => r.s.conversationId),
        rowsIn.map((r) => r.s.version),
        rowsIn.map((r) => (r.s.lastMessage === null ? null : JSON.stringify(r.s.lastMessage))),
        rowsIn.map((r) => r.s.lastMessageAt),
        rowsIn.map((r) => r.count),
      ],
    );
    return rows.map((r) => r.user_id);
  }
}

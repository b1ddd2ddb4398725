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

  /**
   * Applies a conversation snapshot to both memberships unless a newer one
   * was applied already (version guard): replays and reordering are harmless.
   */
  async applySnapshot(s: SnapshotUpdate): Promise<string[]> {
    const { rows } = await this.db.query<{ user_id: string }>(
      `UPDATE memberships AS m SET
         last_message = $3::jsonb,
         activity_at = CASE WHEN $4::timestamptz IS NULL THEN m.activity_at ELSE GREATEST(m.activity_at, $4::timestamptz) END,
         unread_count = COALESCE(u.count, m.unread_count),
         version = $2,
         updated_at = clock_timestamp()
       FROM (SELECT m2.user_id, x.count FROM memberships m2
             LEFT JOIN unnest($5::text[], $6::int[]) AS x(user_id, count) ON x.user_id = m2.user_id
             WHERE m2.conversation_id = $1) AS u
       WHERE m.conversation_id = $1 AND m.user_id = u.user_id AND m.version < $2
       RETURNING m.user_id`,
      [
        s.conversationId,
        s.version,
        s.lastMessage === null ? null : JSON.stringify(s.lastMessage),
        s.lastMessageAt,
        s.unread.map((u) => u.userId),
        s.unread.map((u) => u.count),
      ],
    );
    return rows.map((r) => r.user_id);
  }
}

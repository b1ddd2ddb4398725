import type { NotificationPreferences } from '@chat/contracts';
import type { Queryable } from '@chat/platform';

const DEFAULTS: NotificationPreferences = { enabled: true, mutedConversationIds: [] };

export class PreferencesRepository {
  constructor(private readonly db: Queryable) {}

  async get(userId: string): Promise<NotificationPreferences> {
    const { rows } = await this.db.query<{ enabled: boolean; muted_conversation_ids: string[] }>(
      'SELECT enabled, muted_conversation_ids FROM preferences WHERE user_id = $1',
      [userId],
    );
    const row = rows[0];
    return row ? { enabled: row.enabled, mutedConversationIds: row.muted_conversation_ids } : { ...DEFAULTS };
  }

  /** Preferences of many users in one statement; users who never set any get the defaults. */
  async getMany(userIds: readonly string[]): Promise<Map<string, NotificationPreferences>> {
    const found = new Map<string, NotificationPreferences>();
    if (userIds.length > 0) {
      const { rows } = await this.db.query<{ user_id: string; enabled: boolean; muted_conversation_ids: string[] }>(
        'SELECT user_id, enabled, muted_conversation_ids FROM preferences WHERE user_id = ANY($1::text[])',
        [[...new Set(userIds)]],
      );
      for (const r of rows) found.set(r.user_id, { enabled: r.enabled, mutedConversationIds: r.muted_conversation_ids });
    }
    for (const id of userIds) if (!found.has(id)) found.set(id, { ...DEFAULTS, mutedConversationIds: [] });
    return found;
  }

  async put(userId: string, p: NotificationPreferences): Promise<NotificationPreferences> {
    const muted = [...new Set(p.mutedConversationIds)];
    const { rows } = await this.db.query<{ enabled: boolean; muted_conversation_ids: string[] }>(
      `INSERT INTO preferences (user_id, enabled, muted_conversation_ids) VALUES ($1, $2, $3)
       ON CONFLICT (user_id) DO UPDATE SET enabled = EXCLUDED.enabled, muted_conversation_ids = EXCLUDED.muted_conversation_ids,
         updated_at = clock_timestamp()
       RETURNING enabled, muted_conversation_ids`,
      [userId, p.enabled, muted],
    );
    return { enabled: rows[0]!.enabled, mutedConversationIds: rows[0]!.muted_conversation_ids };
  }
}

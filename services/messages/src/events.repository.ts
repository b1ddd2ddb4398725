import type { DurableEvent, DurableEventType } from '@chat/contracts';
import type { Queryable } from '@chat/platform';

export interface PendingEvent {
  userId: string;
  type: DurableEventType;
  payload: Record<string, unknown>;
  /** The message a message.new or message.updated carries: a replay renders it as it is now. */
  messageId?: string;
}

/** An event of one user's log as stored: the payload is what the contract's DurableEventSchema types by `type`. */
export interface UserEvent extends PendingEvent {
  seq: number;
}

export class EventsRepository {
  constructor(private readonly db: Queryable) {}

  /**
   * Reserves `count` seqs for each user and returns the first of each. The
   * user_seqs rows stay locked until the transaction ends; users are locked
   * in id order, so two transactions never wait on each other in a cycle.
   */
  async reserve(counts: Map<string, number>): Promise<Map<string, number>> {
    const first = new Map<string, number>();
    for (const userId of [...counts.keys()].sort()) {
      const n = counts.get(userId)!;
      const { rows } = await this.db.query<{ last_seq: string }>(
        `INSERT INTO user_seqs (user_id, last_seq) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET last_seq = user_seqs.last_seq + EXCLUDED.last_seq
         RETURNING last_seq`,
        [userId, n],
      );
      first.set(userId, Number(rows[0]!.last_seq) - n + 1);
    }
    return first;
  }

  async insert(events: UserEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.db.query(
      `INSERT INTO user_events (user_id, seq, type, payload, message_id)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::jsonb[], $5::uuid[])`,
      [
        events.map((e) => e.userId),
        events.map((e) => e.seq),
        events.map((e) => e.type),
        events.map((e) => JSON.stringify(e.payload)),
        events.map((e) => e.messageId ?? null),
      ],
    );
  }

  async state(userId: string): Promise<{ lastSeq: number; prunedThrough: number }> {
    const { rows } = await this.db.query<{ last_seq: string; pruned_through: string }>(
      'SELECT last_seq, pruned_through FROM user_seqs WHERE user_id = $1',
      [userId],
    );
    return { lastSeq: Number(rows[0]?.last_seq ?? 0), prunedThrough: Number(rows[0]?.pruned_through ?? 0) };
  }

  async after(userId: string, since: number, limit: number): Promise<DurableEvent[]> {
    const { rows } = await this.db.query<{ seq: string; type: DurableEventType; payload: Record<string, unknown> }>(
      // A message's events replay it as it is now (edited, reacted to, or a tombstone), not as it was sent (SPEC 10).
      `SELECT e.seq, e.type,
              CASE WHEN e.message_id IS NULL THEN e.payload
                   ELSE coalesce(jsonb_set(e.payload, '{message}', (SELECT message_json(m) FROM messages m WHERE m.id = e.message_id)), e.payload) END AS payload
       FROM user_events e WHERE e.user_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3`,
      [userId, since, limit],
    );
    return rows.map((r) => ({ seq: Number(r.seq), type: r.type, payload: r.payload }) as DurableEvent);
  }

  /** Deletes events older than the retention and records, per user, the newest seq that went. */
  async prune(retentionDays: number): Promise<number> {
    const { rows } = await this.db.query<{ removed: string }>(
      `WITH gone AS (
         DELETE FROM user_events WHERE created_at < clock_timestamp() - make_interval(days => $1) RETURNING user_id, seq),
       newest AS (SELECT user_id, max(seq) AS seq, count(*) AS n FROM gone GROUP BY user_id),
       marked AS (
         UPDATE user_seqs s SET pruned_through = newest.seq FROM newest
         WHERE s.user_id = newest.user_id AND s.pruned_through < newest.seq)
       SELECT coalesce(sum(n), 0) AS removed FROM newest`,
      [retentionDays],
    );
    return Number(rows[0]?.removed ?? 0);
  }
}

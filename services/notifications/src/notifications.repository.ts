import type { Queryable } from '@chat/platform';

/** The webhook body (SPEC section 7), stored as is and POSTed unchanged on every attempt. */
export interface NotificationPayload {
  type: 'chat.message';
  notificationId: string;
  receiverId: string;
  senderId: string;
  senderUsername: string;
  conversationId: string;
  messageId: string;
  preview: string;
  createdAt: string;
}

export interface DueNotification {
  id: string;
  payload: NotificationPayload;
  /** Attempts made before this one. */
  attempts: number;
}

/** Rows still to deliver: not delivered, not given up. Matches the partial index notifications_due_idx. */
const PENDING = 'delivered_at IS NULL AND gave_up_at IS NULL';
const ms = (param: string) => `(${param}::float8 * interval '1 millisecond')`;

export class NotificationsRepository {
  constructor(private readonly db: Queryable) {}

  /** Stores the notification unless this receiver already has one for this message; true when stored. */
  async insert(p: NotificationPayload): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `INSERT INTO notifications (id, receiver_id, sender_id, conversation_id, message_id, payload, created_at)
       SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM deleted_messages WHERE message_id = $5)
       ON CONFLICT (message_id, receiver_id) DO NOTHING`,
      [p.notificationId, p.receiverId, p.senderId, p.conversationId, p.messageId, JSON.stringify(p), p.createdAt],
    );
    return rowCount === 1;
  }

  /**
   * Stores many notifications in one statement, each unless its receiver
   * already has one for its message (a repeat within the list included);
   * returns the ids of those stored.
   */
  async insertMany(ps: readonly NotificationPayload[]): Promise<Set<string>> {
    if (ps.length === 0) return new Set();
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO notifications (id, receiver_id, sender_id, conversation_id, message_id, payload, created_at)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::timestamptz[])
         AS n(id, receiver_id, sender_id, conversation_id, message_id, payload, created_at)
       WHERE NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.message_id = n.message_id)
       ON CONFLICT (message_id, receiver_id) DO NOTHING
       RETURNING id`,
      [
        ps.map((p) => p.notificationId),
        ps.map((p) => p.receiverId),
        ps.map((p) => p.senderId),
        ps.map((p) => p.conversationId),
        ps.map((p) => p.messageId),
        ps.map((p) => JSON.stringify(p)),
        ps.map((p) => p.createdAt),
      ],
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Takes up to `limit` due notifications and pushes their next_attempt_at
   * `leaseMs` ahead, in one statement. SKIP LOCKED lets replicas claim disjoint
   * rows at the same moment; the lease keeps a row away from every other worker
   * while its POST is in flight, without holding a transaction open over HTTP.
   */
  async claimDue(limit: number, leaseMs: number): Promise<DueNotification[]> {
    const { rows } = await this.db.query<{ id: string; payload: NotificationPayload; attempts: number }>(
      `UPDATE notifications n SET next_attempt_at = clock_timestamp() + ${ms('$2')}
       FROM (SELECT id FROM notifications WHERE ${PENDING} AND next_attempt_at <= clock_timestamp()
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
       WHERE n.id = due.id
       RETURNING n.id, n.payload, n.attempts`,
      [limit, leaseMs],
    );
    return rows;
  }

  /** Milliseconds until the earliest pending notification falls due (0 when one is due now); null when none is pending. */
  async msUntilNextDue(): Promise<number | null> {
    const { rows } = await this.db.query<{ ms: number | null }>(
      `SELECT GREATEST(0, EXTRACT(EPOCH FROM min(next_attempt_at) - clock_timestamp()) * 1000)::float8 AS ms
       FROM notifications WHERE ${PENDING}`,
    );
    return rows[0]?.ms ?? null;
  }

  /**
   * A message was deleted for everyone: its notifications not yet delivered
   * are withdrawn, every stored one loses its preview, and one made later
   * (its event redelivered) is never made. Returns how many were withdrawn.
   */
  async withdraw(messageIds: readonly string[]): Promise<number> {
    if (messageIds.length === 0) return 0;
    const { rows } = await this.db.query<{ withdrawn: string }>(
      `WITH known AS (
         INSERT INTO deleted_messages (message_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING),
       changed AS (
         UPDATE notifications SET payload = jsonb_set(payload, '{preview}', '""'),
           withdrawn_at = CASE WHEN ${PENDING} THEN clock_timestamp() ELSE withdrawn_at END,
           gave_up_at = CASE WHEN ${PENDING} THEN clock_timestamp() ELSE gave_up_at END
         WHERE message_id = ANY($1::text[])
         RETURNING withdrawn_at IS NOT NULL AND delivered_at IS NULL AS withdrawn)
       SELECT count(*) FILTER (WHERE withdrawn) AS withdrawn FROM changed`,
      [messageIds],
    );
    return Number(rows[0]!.withdrawn);
  }

  /** Counts an attempt that got a 2xx and marks the notification delivered; returns the attempt's number. */
  async recordDelivered(id: string): Promise<number> {
    const { rows } = await this.db.query<{ attempts: number }>(
      `UPDATE notifications SET attempts = attempts + 1, delivered_at = COALESCE(delivered_at, clock_timestamp())
       WHERE id = $1 RETURNING attempts`,
      [id],
    );
    return rows[0]!.attempts;
  }

  /**
   * Counts a failed attempt: the next one is due in `retryInMs`, unless the
   * notification is older than `giveUpAfterMs`, in which case it is given up.
   * Age is judged on the database clock, the clock created_at is compared with.
   */
  async recordFailed(id: string, retryInMs: number, giveUpAfterMs: number): Promise<{ attempt: number; gaveUp: boolean }> {
    const { rows } = await this.db.query<{ attempts: number; gave_up: boolean }>(
      `UPDATE notifications SET attempts = attempts + 1,
         next_attempt_at = clock_timestamp() + ${ms('$2')},
         gave_up_at = CASE WHEN delivered_at IS NULL AND gave_up_at IS NULL AND created_at <= clock_timestamp() - ${ms('$3')}
                           THEN clock_timestamp() ELSE gave_up_at END
       WHERE id = $1 RETURNING attempts, gave_up_at IS NOT NULL AS gave_up`,
      [id, retryInMs, giveUpAfterMs],
    );
    return { attempt: rows[0]!.attempts, gaveUp: rows[0]!.gave_up };
  }

  async addAttempt(id: string, attempt: number, status: number | null, error: string | null): Promise<void> {
    await this.db.query('INSERT INTO delivery_attempts (notification_id, attempt, status, error) VALUES ($1, $2, $3, $4)', [
      id,
      attempt,
      status,
      error,
    ]);
  }
}

import pg from 'pg';
import type { Phase, Send, Traffic, VirtualUser } from './traffic';

/**
 * After each fault, the clients' view against PostgreSQL's truth: every
 * acknowledged message stored once, delivered once to its recipient
 * (counting resumes), no seq gap or repeat on any socket, conversation lists
 * and unread totals equal to what the stored messages imply, at most one
 * notification per message and receiver.
 */
export interface PhaseResult {
  fault: string;
  sent: number;
  acked: number;
  /** Sends never acknowledged by the end of the check (still retried by their clients). */
  unacked: number;
  /** Sends refused for good (an error a client must not retry). */
  failed: number;
  /** Acked messages that reached their (online) recipient's socket. */
  delivered: number;
  /** Acked messages to an offline receiver that were notified, and those that never were. */
  notified: number;
  notificationsMissing: number;
  lost: number;
  doubled: number;
  gaps: number;
  repeats: number;
  /** Users whose conversation list or unread total still disagreed with the messages after the wait. */
  viewMismatches: number;
  rest: Phase['rest'];
  clientErrors: Record<string, number>;
  /** From the fault to the last error a client saw, in seconds (0: none seen). */
  recoveredS: number;
  /** Processes that exited on their own during the window. */
  crashes: string[];
  ackP50: number;
  ackP99: number;
  notes: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

export class Verifier {
  private readonly db: pg.Pool;

  constructor(databaseUrl: string) {
    this.db = new pg.Pool({ connectionString: databaseUrl, max: 3 });
    this.db.on('error', () => undefined); // the database restarting under a fault: the next query reconnects
  }

  /** A query that waits out a restarting database. */
  private async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.db.query<R>(sql, params)).rows;
      } catch (err) {
        if (attempt >= 60) throw err;
        await sleep(500);
      }
    }
  }

  async check(phase: Phase, traffic: Traffic, opts: { ackWaitMs?: number; deliveryWaitMs?: number } = {}): Promise<PhaseResult> {
    const notes: string[] = [];
    const sends = phase.sends;
    // 1. Every send of the phase answered (clients keep retrying those that were not).
    const ackDeadline = Date.now() + (opts.ackWaitMs ?? 60_000);
    while (sends.some((s) => !s.ackedAt && !s.failed) && Date.now() < ackDeadline) await sleep(100);
    const acked = sends.filter((s) => s.ackedAt);
    const failed = sends.filter((s) => s.failed);
    const unacked = sends.length - acked.length - failed.length;
    if (failed.length) notes.push(`refused for good: ${[...new Set(failed.map((s) => s.failed))].join(', ')}`);

    // 2. Stored once, under the id the ack named.
    let lost = 0;
    let doubled = phase.ackMismatches;
    const rows = await this.query<{ client_message_id: string; ids: string[] }>(
      'SELECT client_message_id, array_agg(id::text) AS ids FROM messages.messages WHERE client_message_id = ANY($1) GROUP BY client_message_id',
      [sends.map((s) => s.cmid)],
    );
    const stored = new Map(rows.map((r) => [r.client_message_id, r.ids]));
    for (const s of sends) {
      const ids = stored.get(s.cmid) ?? [];
      if (ids.length > 1) doubled += ids.length - 1;
      if (s.ackedAt && ids.length === 0) {
        lost++;
        notes.push(`acked but not stored: ${s.cmid}`);
      } else if (s.ackedAt && !ids.includes(s.messageId!)) {
        doubled++;
        notes.push(`acked as ${s.messageId} but stored as ${ids.join(',')}`);
      }
    }

    // 3. Delivered to the recipient: live, by the gateway's gap fill, or by a resume.
    const toOffline = acked.filter((s) => s.recipient.offline);
    const online = acked.filter((s) => !s.recipient.offline);
    const missing = () => online.filter((s) => !s.recipient.received.has(s.messageId!));
    const deliveryDeadline = Date.now() + (opts.deliveryWaitMs ?? 20_000);
    let resumed = false;
    while (missing().length > 0 && Date.now() < deliveryDeadline) {
      // A live delivery lost with its NATS node is seen at the recipient's next event or resume: after a while, resume.
      if (!resumed && Date.now() > deliveryDeadline - (opts.deliveryWaitMs ?? 20_000) / 2) {
        resumed = true;
        const who = new Set(missing().map((s) => s.recipient));
        notes.push(`${missing().length} message(s) reached ${who.size} recipient(s) only by a resume`);
        for (const u of who) u.resume();
      }
      await sleep(100);
    }
    const undelivered = missing();
    lost += undelivered.length;
    for (const s of undelivered.slice(0, 5)) notes.push(`never delivered: ${s.messageId} to ${s.recipient.id}`);
    let delivered = 0;
    for (const s of online) {
      const n = s.recipient.received.get(s.messageId!) ?? 0;
      if (n > 0) delivered++;
      if (n > 1) doubled += n - 1;
    }

    // 3b. A message to a receiver who has never connected is notified, once (the duplicates are counted below).
    const notifiedIds = async () =>
      new Set(
        (await this.query<{ message_id: string }>('SELECT DISTINCT message_id FROM notifications.notifications WHERE message_id = ANY($1)', [toOffline.map((s) => s.messageId)])).map(
          (r) => r.message_id,
        ),
      );
    let notified = await notifiedIds();
    const notifyDeadline = Date.now() + 20_000;
    while (notified.size < toOffline.length && Date.now() < notifyDeadline) {
      await sleep(250);
      notified = await notifiedIds();
    }
    const notificationsMissing = toOffline.length - notified.size;
    if (notificationsMissing) notes.push(`${notificationsMissing} message(s) to an offline receiver never notified`);

    // 4. Derived views equal the truth (they follow within a second; allow ten).
    const viewMismatches = await this.views(traffic, notes);

    // 5. At most one notification per message and receiver.
    const dupNotifications = await this.query<{ n: string }>(
      'SELECT count(*) AS n FROM (SELECT 1 FROM notifications.notifications GROUP BY message_id, receiver_id HAVING count(*) > 1) d',
    );
    const notificationDoubles = Number(dupNotifications[0]?.n ?? 0);
    if (notificationDoubles) notes.push(`${notificationDoubles} message(s) notified twice`);
    doubled += notificationDoubles;

    const latencies = phase.ackLatencies;
    return {
      fault: phase.name,
      sent: sends.length,
      acked: acked.length,
      unacked,
      failed: failed.length,
      delivered,
      notified: notified.size,
      notificationsMissing,
      lost,
      doubled,
      gaps: phase.gaps,
      repeats: phase.repeats,
      viewMismatches,
      rest: phase.rest,
      clientErrors: Object.fromEntries(phase.clientErrors),
      crashes: phase.crashes,
      recoveredS: phase.lastErrorAt && phase.faultAt ? Math.max(0, (phase.lastErrorAt - phase.faultAt) / 1000) : 0,
      ackP50: quantile(latencies, 0.5),
      ackP99: quantile(latencies, 0.99),
      notes,
    };
  }

  /** Users whose list row (unread count, last message) or unread total disagree with the stored messages, after waiting. */
  private async views(traffic: Traffic, notes: string[]): Promise<number> {
    const deadline = Date.now() + 10_000;
    let wrong: Array<{ user: VirtualUser; why: string }> = [];
    for (;;) {
      const truth = await this.query<{ conversation_id: string; receiver: string; unread: string; last_id: string }>(
        `SELECT p.conversation_id::text, p.user_id AS receiver,
                (SELECT count(*) FROM messages.messages x WHERE x.conversation_id = p.conversation_id AND x.sender_id <> p.user_id AND x.read_at IS NULL) AS unread,
                (SELECT x.id::text FROM messages.messages x WHERE x.conversation_id = p.conversation_id ORDER BY x.created_at DESC, x.id DESC LIMIT 1) AS last_id
         FROM messages.participants p WHERE p.conversation_id = ANY($1::uuid[])`,
        [[...new Set(traffic.users.map((u) => u.conversationId))]],
      );
      const byUser = new Map(truth.map((t) => [`${t.receiver}`, t]));
      wrong = [];
      await Promise.all(
        traffic.users.map(async (u) => {
          const t = byUser.get(u.id);
          const list = await traffic.rest('GET', '/conversations?limit=5', u, { uncounted: true }).catch(() => undefined);
          const total = await traffic.rest('GET', '/conversations/unread-count', u, { uncounted: true }).catch(() => undefined);
          const row = list?.data?.find((c: { id: string }) => c.id === u.conversationId);
          const unread = Number(t?.unread ?? 0);
          if (!row) wrong.push({ user: u, why: 'conversation missing from the list' });
          else if (row.unreadCount !== unread) wrong.push({ user: u, why: `list unread ${row.unreadCount}, messages imply ${unread}` });
          else if ((row.lastMessage?.id ?? null) !== (t?.last_id ?? null)) wrong.push({ user: u, why: `list last message ${row.lastMessage?.id}, newest stored ${t?.last_id}` });
          else if (total?.data?.total !== unread) wrong.push({ user: u, why: `unread total ${total?.data?.total}, messages imply ${unread}` });
        }),
      );
      if (wrong.length === 0 || Date.now() > deadline) break;
      await sleep(500);
    }
    for (const w of wrong.slice(0, 5)) notes.push(`view of ${w.user.id}: ${w.why}`);
    return wrong.length;
  }

  /** The whole run at once: every message any phase saw acknowledged, stored once and delivered once. */
  async whole(all: Send[]): Promise<{ lost: number; doubled: number }> {
    const acked = all.filter((s) => s.ackedAt);
    const rows = await this.query<{ client_message_id: string; n: string }>(
      'SELECT client_message_id, count(*) AS n FROM messages.messages WHERE client_message_id = ANY($1) GROUP BY client_message_id',
      [all.map((s) => s.cmid)],
    );
    const n = new Map(rows.map((r) => [r.client_message_id, Number(r.n)]));
    let lost = 0;
    let doubled = 0;
    for (const s of acked) {
      const stored = n.get(s.cmid) ?? 0;
      const seen = s.recipient.offline ? 1 : (s.recipient.received.get(s.messageId!) ?? 0);
      if (stored === 0 || seen === 0) lost++;
      if (stored > 1 || seen > 1) doubled++;
    }
    return { lost, doubled };
  }

  async close(): Promise<void> {
    await this.db.end();
  }
}

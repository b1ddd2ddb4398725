import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, createLogger, createMetrics, newId, type Database, type RunningService } from '@chat/platform';
import { NotificationsRepository, WebhookDelivery, createNotificationMetrics, retryDelayMs, type WebhookOptions } from '@chat/notifications';
import { startPresenceService } from '@chat/presence';
import { api, conversationPair, eventually, type Api } from './helpers/client';
import { attemptsOf, notificationBarrier, notificationsOf, openNotificationsDb, sendMessage } from './helpers/notifications';
import { startStack, type Stack } from './helpers/stack';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver';

// A stack without NOTIFICATION_WEBHOOK_URL: its notifications are only stored,
// and the workers below are the only ones ever POSTing them.
let stack: Stack;
let a: Api;
let db: pg.Client;
let pool: Database;
let hook: WebhookReceiver;
let presenceAgain: RunningService | undefined;
beforeAll(async () => {
  stack = await startStack({ NOTIFICATION_WEBHOOK_URL: '' });
  a = api(stack.baseUrl);
  db = await openNotificationsDb(stack);
  pool = createDatabase(stack.config.DATABASE_URL, 'notifications', { max: 4 });
  hook = await startWebhookReceiver();
});
afterAll(async () => {
  await hook?.close();
  await pool?.end();
  await db?.end();
  await presenceAgain?.stop();
  await stack?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('without NOTIFICATION_WEBHOOK_URL', () => {
  it('notifications are only stored, never attempted', async () => {
    const { alice, bob, conv } = await conversationPair(a);
    const message = await sendMessage(a, alice, conv, 'stored only');
    const [row] = await eventually(async () => {
      const rows = await notificationsOf(db, bob.id);
      expect(rows).toHaveLength(1);
      return rows;
    });
    expect(row.payload).toMatchObject({ type: 'chat.message', notificationId: row.id, messageId: message.id, senderUsername: alice.username, preview: 'stored only' });
    await notificationBarrier(a, db);
    await sleep(200);
    expect(await notificationsOf(db, bob.id)).toMatchObject([{ delivered_at: null, attempts: 0, gave_up_at: null }]);
    expect(await attemptsOf(db, row.id)).toEqual([]);
  });

  it('while presence does not answer nothing is stored; the event is redelivered and decided once it answers', async () => {
    const { alice, bob, conv } = await conversationPair(a);
    await stack.services.presence.stop();
    await sendMessage(a, alice, conv, 'is anyone there');
    await sleep(1000);
    expect(await notificationsOf(db, bob.id)).toHaveLength(0);
    presenceAgain = await startPresenceService(stack.config, createLogger('presence', stack.config.LOG_LEVEL));
    await eventually(async () => expect(await notificationsOf(db, bob.id)).toHaveLength(1), 15_000, 100);
  });
});

describe('the webhook delivery worker', () => {
  const receiver = () => `r-${randomBytes(5).toString('hex')}`;

  function worker(opts: Partial<WebhookOptions> = {}) {
    const metrics = createNotificationMetrics(createMetrics('notifications').registry);
    const options = { url: hook.url, timeoutMs: 2000, retryBaseMs: 50, retryMaxMs: 200, giveUpAfterMs: 60_000, ...opts };
    return { w: new WebhookDelivery(pool, options, metrics, createLogger('delivery', stack.config.LOG_LEVEL)), metrics };
  }

  /** Stores a notification for `receiverId` made `ageMs` ago; returns its id. */
  async function store(receiverId: string, ageMs = 0): Promise<string> {
    const id = newId();
    const createdAt = new Date(Date.now() - ageMs).toISOString();
    const p = { type: 'chat.message', notificationId: id, receiverId, senderId: 's', senderUsername: 'sender', conversationId: newId(), messageId: newId(), preview: 'hi', createdAt } as const;
    expect(await new NotificationsRepository(pool).insert(p)).toBe(true);
    return id;
  }
  const row = async (id: string) => (await db.query('SELECT * FROM notifications WHERE id = $1', [id])).rows[0];

  it('gives a notification up only once it is older than NOTIFICATION_GIVE_UP_AFTER_MS; a younger one is rescheduled', async () => {
    const r = receiver();
    hook.answers.set(r, () => 500);
    const [old, young] = [await store(r, 120_000), await store(r, 0)];
    const { w, metrics } = worker({ giveUpAfterMs: 60_000 });
    await w.deliverBatch();
    expect(await row(old)).toMatchObject({ attempts: 1, delivered_at: null, gave_up_at: expect.any(Date) });
    const y = await row(young);
    expect(y).toMatchObject({ attempts: 1, delivered_at: null, gave_up_at: null });
    expect(y.next_attempt_at.getTime() - Date.now()).toBeLessThan(300); // within the 200 ms cap, give or take clocks
    expect(await attemptsOf(db, old)).toMatchObject([{ attempt: 1, status: 500, error: null }]);
    const outcomes = Object.fromEntries((await metrics.deliveries.get()).values.map((v) => [v.labels.outcome, v.value]));
    expect(outcomes.gave_up).toBe(1);
    expect(outcomes.retry).toBeGreaterThanOrEqual(1);

    await sleep(250);
    hook.answers.set(r, () => 200);
    await w.deliverBatch();
    expect(await row(young)).toMatchObject({ attempts: 2, delivered_at: expect.any(Date) });
    expect((await row(old)).attempts).toBe(1);
    expect(hook.hooksFor(r).map((h) => h.body.notificationId)).toEqual([old, young, young]);
  });

  it('a webhook that does not answer within the timeout counts as a failed attempt with no status', async () => {
    const r = receiver();
    hook.answers.set(r, () => ({ status: 200, delayMs: 1000 }));
    const id = await store(r);
    await worker({ timeoutMs: 200 }).w.deliverBatch();
    expect(await attemptsOf(db, id)).toMatchObject([{ attempt: 1, status: null, error: 'timed out after 200 ms' }]);
    expect(await row(id)).toMatchObject({ attempts: 1, delivered_at: null, gave_up_at: null });
  });

  it('stopping lets the POST in flight finish and records its outcome', async () => {
    const r = receiver();
    hook.answers.set(r, () => ({ status: 204, delayMs: 400 }));
    const id = await store(r);
    const { w } = worker();
    w.start();
    await eventually(async () => expect(hook.arrivedFor(r)).toBe(1));
    await w.stop();
    expect(hook.hooksFor(r)).toHaveLength(1);
    expect(await row(id)).toMatchObject({ attempts: 1, delivered_at: expect.any(Date) });
    expect(await attemptsOf(db, id)).toMatchObject([{ attempt: 1, status: 204 }]);
  });

  it('two workers (replicas) share the due notifications: each is POSTed exactly once', async () => {
    const r = receiver();
    // Slow enough answers that each worker claims while the other's POSTs are in flight.
    hook.answers.set(r, () => ({ status: 200, delayMs: 100 }));
    const ids = new Set<string>();
    for (let i = 0; i < 40; i++) ids.add(await store(r));
    const workers = [worker().w, worker().w];
    for (const w of workers) w.start();
    try {
      await eventually(async () => expect(hook.hooksFor(r)).toHaveLength(40), 10_000);
      await sleep(300);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
    const posted = hook.hooksFor(r).map((h) => h.body.notificationId as string);
    expect(posted).toHaveLength(40);
    expect(new Set(posted)).toEqual(ids);
    const { rows } = await db.query('SELECT count(*)::int AS n FROM notifications WHERE receiver_id = $1 AND delivered_at IS NOT NULL AND attempts = 1', [r]);
    expect(rows[0].n).toBe(40);
  });

  it('backs off exponentially with full jitter: uniform below base * 2^(n-1), capped at the maximum', () => {
    const almostOne = () => 0.999_999;
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 50, 200, almostOne))).toEqual([49, 99, 199, 199, 199]);
    expect(retryDelayMs(1000, 1000, 60_000, almostOne)).toBe(59_999);
    expect(retryDelayMs(3, 50, 200, () => 0)).toBe(0);
  });
});

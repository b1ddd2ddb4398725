import pg from 'pg';
import { expect } from 'vitest';
import { conversationPair, eventually, type Api, type TestUser } from './client';
import type { Stack } from './stack';

/** A client on the stack's database, seeing the notifications service's schema. */
export async function openNotificationsDb(stack: Stack): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: stack.config.DATABASE_URL, options: '-c search_path=notifications' });
  await client.connect();
  return client;
}

export const notificationsOf = async (db: pg.Client, receiverId: string) =>
  (await db.query('SELECT * FROM notifications WHERE receiver_id = $1 ORDER BY created_at, id', [receiverId])).rows;

export const attemptsOf = async (db: pg.Client, notificationId: string) =>
  (await db.query('SELECT attempt, status, error, at FROM delivery_attempts WHERE notification_id = $1 ORDER BY attempt', [notificationId])).rows;

export async function sendMessage(a: Api, from: TestUser, conv: string, content: string): Promise<any> {
  const res = await a.post(`/conversations/${conv}/messages`, from.token, { content });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.data;
}

/**
 * One consumer handles the events in stream order, so once a message sent
 * after the one under test has made its notification, the earlier event has
 * been decided: what was not stored by then never will be.
 */
export async function notificationBarrier(a: Api, db: pg.Client): Promise<void> {
  const { alice, bob, conv } = await conversationPair(a);
  await sendMessage(a, alice, conv, 'barrier');
  await eventually(async () => expect(await notificationsOf(db, bob.id)).toHaveLength(1), 5000);
}

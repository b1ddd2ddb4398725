import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { PresenceSchema, idRecord, subjects } from '@chat/contracts';
import { BusClient } from '@chat/platform';
import { api as restClient, eventually, knownUser, type TestUser } from './helpers/client';
import { startNatsServer, type OwnNatsServer } from './helpers/nats-server';
import { startStack, type Stack } from './helpers/stack';
import { connect, type Frame, type WsClient } from './helpers/ws';

/**
 * A heartbeat listing every socket of a gateway grows with its load; past the
 * server's max_payload NATS refuses it and every user of that gateway expires.
 * This NATS server's max_payload is small enough that the sockets below make
 * one unchunked heartbeat several times too large.
 */
const MAX_PAYLOAD = 8192;
const USERS = 200;
// Short, so several cycles pass in seconds; long enough (a heartbeat every second) that a loaded machine does not expire a socket.
const TTL_MS = 3000;
const SWEEP_MS = 250;
const Presences = idRecord(PresenceSchema);

let nats: OwnNatsServer | undefined;
let stack: Stack | undefined;
let nc: NatsConnection | undefined;
let redis: Redis | undefined;
const sockets: WsClient[] = [];
/** Shares a conversation with every user, so it hears each one's user.online and user.offline. */
let watching: WsClient;
let watcher: TestUser;
let users: TestUser[] = [];

async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

beforeAll(async () => {
  nats = await startNatsServer({ maxPayload: MAX_PAYLOAD });
  stack = await startStack({ NATS_URL: nats.url, PRESENCE_TTL_MS: TTL_MS, PRESENCE_SWEEP_MS: SWEEP_MS });
  nc = await natsConnect({ servers: nats.url });
  redis = new Redis(stack.config.REDIS_URL);

  const api = restClient(stack.baseUrl);
  watcher = await knownUser(api, 'watcher');
  users = await inBatches(Array.from({ length: USERS }), 20, () => knownUser(api, 'hb'));
  await inBatches(users, 20, async (u) => expect((await api.get(`/conversations/with/${u.username}`, watcher.token)).status).toBe(201));
  const port = stack.gateway.port;
  watching = (await connect(port, { token: watcher.token })).client;
  sockets.push(watching);
  sockets.push(...(await inBatches(users, 50, async (u) => (await connect(port, { token: u.token })).client)));
  await eventually(async () => expect(about('user.online')).toHaveLength(USERS), 10_000);
}, 90_000);

afterAll(async () => {
  await Promise.all(sockets.splice(0).map((c) => c.close()));
  redis?.disconnect();
  await nc?.close();
  await stack?.stop();
  await nats?.stop();
});

/** The watcher's frames of a type about one of the users. */
function about(type: string): Frame[] {
  const ids = new Set(users.map((u) => u.id));
  return watching.frames.filter((f) => f.type === type && ids.has(f.payload?.userId));
}

/** The presence service's own record of each user's socket (one each): connection id and expiry. */
async function records(): Promise<Array<{ connectionId?: string; expiry?: number }>> {
  const pipeline = redis!.pipeline();
  for (const u of users) pipeline.zrange(`${stack!.config.REDIS_PREFIX}presence:conns:${u.id}`, 0, -1, 'WITHSCORES');
  return ((await pipeline.exec()) ?? []).map(([err, flat]) => {
    if (err) throw err;
    const [connectionId, expiry] = flat as string[];
    return { connectionId, expiry: expiry === undefined ? undefined : Number(expiry) };
  });
}

/** The users presence reports offline, asked in requests small enough for this server. */
async function offlineUsers(): Promise<string[]> {
  const bus = new BusClient(nc!, 3000);
  const batches: string[][] = [];
  for (let i = 0; i < users.length; i += 50) batches.push(users.slice(i, i + 50).map((u) => u.id));
  const answers = await Promise.all(batches.map((userIds) => bus.request(subjects(stack!.config.NATS_PREFIX).presence.query, { userIds }, Presences)));
  const presence = Object.assign({}, ...answers) as Record<string, { isOnline: boolean }>;
  return users.filter((u) => presence[u.id]?.isOnline !== true).map((u) => u.id);
}

describe('presence heartbeat on a NATS server with a small max_payload', () => {
  it('keeps every user of a busy gateway online through several heartbeat cycles, with no false user.offline', async () => {
    expect(nc!.info?.max_payload).toBe(MAX_PAYLOAD);
    const registered = await eventually(async () => {
      const all = await records();
      expect(all.every((r) => r.expiry !== undefined)).toBe(true);
      return all;
    }, 10_000);
    const unchunked = JSON.stringify({ connections: users.map((u, i) => ({ userId: u.id, connectionId: registered[i]!.connectionId })) });
    expect(Buffer.byteLength(unchunked)).toBeGreaterThan(2 * MAX_PAYLOAD);

    // Without working heartbeats every socket expires at its first expiry and is swept within SWEEP_MS. Wait
    // until each has been refreshed after that moment plus two sweeps, or until presence has lost one.
    const firstExpiry = Math.max(...registered.map((r) => r.expiry!));
    const outcome = await eventually(
      async () => {
        if (about('user.offline').length > 0) return 'user.offline sent';
        const now = await records();
        if (now.some((r) => r.expiry === undefined)) return 'a connection was dropped';
        expect(Math.min(...now.map((r) => r.expiry!))).toBeGreaterThanOrEqual(firstExpiry + TTL_MS + 2 * SWEEP_MS);
        return 'every connection refreshed';
      },
      4 * TTL_MS + 5000,
      50,
    );
    expect(outcome).toBe('every connection refreshed');
    expect(await offlineUsers()).toEqual([]);
    // And as a client sees it: the watcher's newest conversations show their participant online.
    const listed = (await restClient(stack!.baseUrl).get('/conversations?limit=10', watcher.token)).body.data as Array<{ participant: { isOnline: boolean } }>;
    expect(listed.map((c) => c.participant.isOnline)).toEqual(Array(10).fill(true));
    expect(about('user.offline')).toEqual([]);
  }, 60_000);

  it('announces every socket again, in bounded batches, when presence lost them all (Redis flushed)', async () => {
    const onlineBefore = about('user.online').length;
    const keys = await redis!.keys(`${stack!.config.REDIS_PREFIX}presence:*`);
    if (keys.length) await redis!.del(...keys);
    expect(await offlineUsers()).toHaveLength(USERS);

    // Each chunk of the next heartbeat comes back short; its sockets are announced again, and go online again.
    await eventually(async () => expect(await offlineUsers()).toEqual([]), 4 * TTL_MS + 5000, 100);
    await eventually(async () => expect(about('user.online')).toHaveLength(onlineBefore + USERS), 5000);
    expect(about('user.offline')).toEqual([]);
  }, 60_000);
});

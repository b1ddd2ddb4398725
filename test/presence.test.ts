import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjects, type Subjects } from '@chat/contracts';
import { createLogger, type RunningService } from '@chat/platform';
import { PresenceRepository, startPresenceService, sweepOnce } from '@chat/presence';
import { ISO_MS, eventually, knownUser, newUser, type TestUser } from './helpers/client';
import { useStack } from './helpers/stack';

const TTL_MS = 1500;
const SWEEP_MS = 200;
const ctx = useStack({ PRESENCE_TTL_MS: TTL_MS, PRESENCE_SWEEP_MS: SWEEP_MS });

let nc: NatsConnection;
let s: Subjects;
let secondReplica: RunningService;
beforeAll(async () => {
  const { config } = ctx.stack;
  nc = await connect({ servers: config.NATS_URL });
  s = subjects(config.NATS_PREFIX);
  // A second presence replica: requests are shared between the two and both sweep.
  secondReplica = await startPresenceService(config, createLogger('presence-2', config.LOG_LEVEL));
});
afterAll(async () => {
  await secondReplica?.stop();
  await nc?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const connId = () => `c-${randomBytes(4).toString('hex')}`;

/** One request on the bus as a gateway sends it; returns `data` of the `{ ok: true }` envelope. */
async function call(subject: string, body: unknown): Promise<any> {
  const reply = await nc.request(subject, JSON.stringify(body), { timeout: 3000 });
  const envelope = reply.json<any>();
  expect(envelope.ok, JSON.stringify(envelope)).toBe(true);
  return envelope.data;
}
const presenceConnect = (userId: string, connectionId: string) => call(s.presence.connect, { userId, connectionId });
const presenceDisconnect = (userId: string, connectionId: string) => call(s.presence.disconnect, { userId, connectionId });
const heartbeat = (connections: Array<{ userId: string; connectionId: string }>) => call(s.presence.heartbeat, { connections });

/** What `viewer` sees of `userId` through GET /presence. */
async function presenceOf(userId: string, viewer?: TestUser): Promise<{ isOnline: boolean; lastSeenAt: string | null }> {
  const res = await ctx.api.get(`/presence?userIds=${encodeURIComponent(userId)}`, (viewer ?? (await newUser('viewer'))).token);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data[userId];
}

/** Everything published to a user's delivery subject, as a gateway holding their sockets would receive it. */
async function inbox(userId: string) {
  const events: any[] = [];
  const sub = nc.subscribe(s.deliver(userId), {
    callback: (err, msg) => {
      if (!err) events.push(msg.json());
    },
  });
  await nc.flush();
  return { events, stop: () => sub.unsubscribe() };
}

async function converse(a: TestUser, b: TestUser) {
  const res = await ctx.api.get(`/conversations/with/${b.username}`, a.token);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
}

describe('presence through its subjects', () => {
  it('a first connection puts the user online, announced once', async () => {
    const viewer = await newUser('viewer');
    const user = await newUser('alice');
    const c1 = connId();
    expect(await presenceOf(user.id, viewer)).toEqual({ isOnline: false, lastSeenAt: null });
    expect(await presenceConnect(user.id, c1)).toEqual({ wentOnline: true });
    expect(await presenceOf(user.id, viewer)).toEqual({ isOnline: true, lastSeenAt: null });
    expect(await presenceConnect(user.id, c1)).toEqual({ wentOnline: false });
    expect(await presenceConnect(user.id, connId())).toEqual({ wentOnline: false });
  });

  it('stays online while one connection is left; the last disconnect puts it offline with lastSeenAt', async () => {
    const viewer = await newUser('viewer');
    const user = await newUser('alice');
    const [c1, c2] = [connId(), connId()];
    await presenceConnect(user.id, c1);
    await presenceConnect(user.id, c2);
    expect(await presenceDisconnect(user.id, c1)).toEqual({ wentOffline: false, lastSeenAt: null });
    expect(await presenceOf(user.id, viewer)).toEqual({ isOnline: true, lastSeenAt: null });
    const before = Date.now();
    const last = await presenceDisconnect(user.id, c2);
    expect(last.wentOffline).toBe(true);
    expect(last.lastSeenAt).toMatch(ISO_MS);
    expect(Date.parse(last.lastSeenAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(await presenceOf(user.id, viewer)).toEqual({ isOnline: false, lastSeenAt: last.lastSeenAt });
    // A repeated disconnect changes nothing and announces nothing.
    expect(await presenceDisconnect(user.id, c2)).toEqual({ wentOffline: false, lastSeenAt: null });
    // Back online: lastSeenAt stays the previous visit's until the next one ends.
    expect(await presenceConnect(user.id, c1)).toEqual({ wentOnline: true });
    expect(await presenceOf(user.id, viewer)).toEqual({ isOnline: true, lastSeenAt: last.lastSeenAt });
  });

  it('a connection nobody refreshes expires within TTL + sweep, and user.offline reaches a contact exactly once', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const bob = await knownUser(ctx.api, 'bob');
    await converse(alice, bob);
    const bobInbox = await inbox(bob.id);
    try {
      await presenceConnect(alice.id, connId());
      const connectedAt = Date.now();
      await eventually(async () => expect(bobInbox.events).toEqual([{ type: 'user.online', payload: { userId: alice.id } }]));
      const seen = await eventually(async () => {
        const p = await presenceOf(alice.id, bob);
        expect(p.isOnline).toBe(false);
        return p;
      }, TTL_MS + SWEEP_MS + 2000);
      expect(Date.now() - connectedAt).toBeLessThan(TTL_MS + SWEEP_MS + 1000);
      expect(seen.lastSeenAt).toMatch(ISO_MS);
      await eventually(async () => expect(bobInbox.events).toHaveLength(2), TTL_MS + SWEEP_MS + 2000);
      const offlineAfter = Date.now() - connectedAt;
      expect(offlineAfter).toBeGreaterThanOrEqual(TTL_MS - 100);
      expect(offlineAfter).toBeLessThan(TTL_MS + SWEEP_MS + 700);
      // Last seen when the connection was last refreshed: here, when it connected.
      expect(Math.abs(Date.parse(seen.lastSeenAt!) - connectedAt)).toBeLessThan(500);
      // Both replicas keep sweeping: still exactly one offline.
      await sleep(SWEEP_MS * 5);
      expect(bobInbox.events).toEqual([
        { type: 'user.online', payload: { userId: alice.id } },
        { type: 'user.offline', payload: { userId: alice.id, lastSeenAt: seen.lastSeenAt } },
      ]);
    } finally {
      bobInbox.stop();
    }
  });

  it('heartbeats keep a connection alive past its TTL, and never bring back one that is gone', async () => {
    const viewer = await newUser('viewer');
    const user = await newUser('alice');
    const live = { userId: user.id, connectionId: connId() };
    const gone = { userId: user.id, connectionId: connId() };
    const never = { userId: user.id, connectionId: connId() };
    await presenceConnect(live.userId, live.connectionId);
    await presenceConnect(gone.userId, gone.connectionId);
    await presenceDisconnect(gone.userId, gone.connectionId);
    const until = Date.now() + TTL_MS * 2.5;
    while (Date.now() < until) {
      expect(await heartbeat([live, gone, never])).toEqual({ refreshed: 1 });
      await sleep(TTL_MS / 3);
      expect((await presenceOf(user.id, viewer)).isOnline).toBe(true);
    }
    // Once disconnected, a late heartbeat that still lists it does not bring it back.
    await presenceDisconnect(live.userId, live.connectionId);
    expect(await heartbeat([live, gone, never])).toEqual({ refreshed: 0 });
    expect((await presenceOf(user.id, viewer)).isOnline).toBe(false);
  });
});

describe('user.online and user.offline', () => {
  it('reach a user who shares a conversation, and no one in a block with them or outside their conversations', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const bob = await knownUser(ctx.api, 'bob');
    const carol = await knownUser(ctx.api, 'carol'); // alice blocked carol
    const erin = await knownUser(ctx.api, 'erin'); // erin blocked alice
    const dave = await knownUser(ctx.api, 'dave'); // no conversation with alice
    for (const u of [bob, carol, erin]) await converse(alice, u);
    expect((await ctx.api.post('/blocks', alice.token, { username: carol.username })).status).toBe(201);
    expect((await ctx.api.post('/blocks', erin.token, { username: alice.username })).status).toBe(201);
    const inboxes = await Promise.all([bob, carol, erin, dave].map((u) => inbox(u.id)));
    const [bobInbox, ...others] = inboxes;
    try {
      const c = connId();
      await presenceConnect(alice.id, c);
      await eventually(async () => expect(bobInbox!.events).toEqual([{ type: 'user.online', payload: { userId: alice.id } }]));
      const { lastSeenAt } = await presenceDisconnect(alice.id, c);
      await eventually(async () =>
        expect(bobInbox!.events).toEqual([
          { type: 'user.online', payload: { userId: alice.id } },
          { type: 'user.offline', payload: { userId: alice.id, lastSeenAt } },
        ]),
      );
      await sleep(300);
      await nc.flush();
      for (const box of others) expect(box.events).toEqual([]);
    } finally {
      for (const box of inboxes) box.stop();
    }
  });
});

describe('the presence repository', () => {
  const clientsFor = (n: number) => {
    const { config } = ctx.stack;
    const prefix = `${config.REDIS_PREFIX}unit-${randomBytes(3).toString('hex')}:presence:`;
    return Array.from({ length: n }, () => new Redis(config.REDIS_URL, { keyPrefix: prefix }));
  };

  it('a heartbeat refreshes only connections that exist, and drops a dead gateway\'s expired ones', async () => {
    const [redis] = clientsFor(1) as [Redis];
    try {
      const repo = new PresenceRepository(redis, 1000);
      const t0 = Date.now();
      await repo.connect({ userId: 'u1', connectionId: 'on-dead-gateway' }, t0);
      await repo.connect({ userId: 'u1', connectionId: 'on-live-gateway' }, t0 + 500);
      const live = [{ userId: 'u1', connectionId: 'on-live-gateway' }, { userId: 'u1', connectionId: 'unknown' }];
      expect(await repo.heartbeat(live, t0 + 1200)).toBe(1);
      expect(await redis.zrange('conns:u1', 0, -1, 'WITHSCORES')).toEqual(['on-live-gateway', String(t0 + 2200)]);
      expect(await redis.zscore('index', 'u1')).toBe(String(t0 + 2200));
      expect((await repo.query(['u1'], t0 + 2100)).u1).toEqual({ isOnline: true, lastSeenAt: null });
    } finally {
      redis.disconnect();
    }
  });

  it('two concurrent sweeps announce each expired user offline exactly once', async () => {
    const clients = clientsFor(2);
    try {
      const [a, b] = clients.map((r) => new PresenceRepository(r, 1000)) as [PresenceRepository, PresenceRepository];
      for (let round = 0; round < 5; round++) {
        const t0 = Date.now() + round * 10_000;
        const expired = Array.from({ length: 60 }, (_, i) => `gone-${round}-${i}`);
        const stillHere = `here-${round}`;
        await Promise.all(expired.map((userId, i) => (i % 2 ? a : b).connect({ userId, connectionId: 'c1' }, t0)));
        await a.connect({ userId: expired[0]!, connectionId: 'c2' }, t0 + 10);
        await b.connect({ userId: stillHere, connectionId: 'old' }, t0);
        await b.connect({ userId: stillHere, connectionId: 'new' }, t0 + 900);

        // Expired but not yet swept: offline already, with the last-seen time the sweep will write.
        const lastRefresh = (ms: number) => new Date(ms).toISOString();
        expect(await b.query([expired[0]!, expired[1]!], t0 + 1500)).toEqual({
          [expired[0]!]: { isOnline: false, lastSeenAt: lastRefresh(t0 + 10) },
          [expired[1]!]: { isOnline: false, lastSeenAt: lastRefresh(t0) },
        });

        const announced: Array<[string, string]> = [];
        const onOffline = (userId: string, lastSeenAt: string) => announced.push([userId, lastSeenAt]);
        const counts = await Promise.all([sweepOnce(a, onOffline, t0 + 1500), sweepOnce(b, onOffline, t0 + 1500)]);
        expect(counts[0] + counts[1]).toBe(expired.length);
        expect(announced.sort()).toEqual(expired.map((u, i) => [u, lastRefresh(i === 0 ? t0 + 10 : t0)]).sort());
        expect(await a.query([expired[0]!, stillHere], t0 + 1500)).toEqual({
          [expired[0]!]: { isOnline: false, lastSeenAt: lastRefresh(t0 + 10) },
          [stillHere]: { isOnline: true, lastSeenAt: null },
        });
        // Nothing left to announce, however often either replica sweeps again.
        expect(await Promise.all([sweepOnce(a, onOffline, t0 + 1600), sweepOnce(b, onOffline, t0 + 1600)])).toEqual([0, 0]);
        const later: string[] = [];
        expect(await sweepOnce(b, (userId) => later.push(userId), t0 + 1901)).toBe(1);
        expect(later).toEqual([stillHere]); // its last connection ran out
      }
    } finally {
      for (const r of clients) r.disconnect();
    }
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '@chat/gateway';
import { createLogger } from '@chat/platform';
import { Redis } from 'ioredis';
import { conversationPair, eventually, TEST_SECRET } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect, type WsClient } from './helpers/ws';

// Short presence TTLs so a dead gateway's connections expire in seconds here; production's 45 s TTL + 5 s sweep keep it under 60 s.
const ctx = useStack({ PRESENCE_TTL_MS: 2000, PRESENCE_SWEEP_MS: 250 });
const ROOT = new URL('..', import.meta.url).pathname;
let gateway2: Awaited<ReturnType<typeof startGateway>>;
const port1 = () => ctx.stack.gateway.port;

beforeAll(async () => {
  gateway2 = await startGateway({ ...ctx.stack.config, PORT: 0 }, createLogger('gateway2', 'silent'));
});
afterAll(async () => {
  await gateway2?.stop();
});


const isPresence = (type: string, userId: string) => (f: { type: string; payload?: any }) => f.type === type && f.payload?.userId === userId;

describe('presence across gateway instances', () => {
  it('a user connecting on one gateway is announced online to a contact on another, and offline when the last socket closes', async () => {
    const { alice, bob } = await conversationPair(ctx.api);
    const { client: bobWs } = await connect(port1(), { token: bob.token });
    const { client: alice1 } = await connect(gateway2.port, { token: alice.token });
    await bobWs.next(isPresence('user.online', alice.id));

    const presence = await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token);
    expect(presence.body.data[alice.id].isOnline).toBe(true);
    const listed = (await ctx.api.get('/conversations', bob.token)).body.data[0];
    expect(listed.participant).toMatchObject({ id: alice.id, isOnline: true });

    // A second socket on the other gateway: still one user online, no second announcement.
    const { client: alice2 } = await connect(port1(), { token: alice.token });
    await alice1.close();
    await bobWs.none(isPresence('user.offline', alice.id), 500);
    await alice2.close();
    const offline = await bobWs.next(isPresence('user.offline', alice.id));
    expect(Date.parse(offline.payload.lastSeenAt)).toBeGreaterThan(Date.now() - 10_000);
    expect(bobWs.frames.filter((f) => isPresence('user.online', alice.id)(f))).toHaveLength(1);
    const after = await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token);
    expect(after.body.data[alice.id]).toEqual({ isOnline: false, lastSeenAt: offline.payload.lastSeenAt });
    await bobWs.close();
  });

  it('never announces presence across a block', async () => {
    const { alice, bob } = await conversationPair(ctx.api);
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(201);
    const { client: bobWs } = await connect(gateway2.port, { token: bob.token });
    const { client: aliceWs } = await connect(port1(), { token: alice.token });
    await bobWs.none(isPresence('user.online', alice.id), 800);
    await aliceWs.none(isPresence('user.online', bob.id), 10);
    await aliceWs.close();
    await bobWs.none(isPresence('user.offline', alice.id), 800);
    await bobWs.close();
  });
});

describe('presence lost in Redis', () => {
  it('is rebuilt from the gateways within a heartbeat', async () => {
    const { alice, bob } = await conversationPair(ctx.api);
    const { client: aliceWs } = await connect(gateway2.port, { token: alice.token });
    await eventually(async () => expect((await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).body.data[alice.id].isOnline).toBe(true));

    const redis = new Redis(ctx.stack.config.REDIS_URL);
    const keys = await redis.keys(`${ctx.stack.config.REDIS_PREFIX}presence:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    expect((await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).body.data[alice.id].isOnline).toBe(false);

    // Gateways refresh every PRESENCE_TTL_MS / 3 (here ~0.7 s).
    await eventually(async () => expect((await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).body.data[alice.id].isOnline).toBe(true), 3000);
    await aliceWs.close();
  });
});

describe('a gateway killed with SIGKILL', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('its users go offline for their contacts within the presence TTL, without any goodbye', async () => {
    const { alice, bob } = await conversationPair(ctx.api);
    const c = ctx.stack.config;
    child = spawn(process.execPath, ['--import', 'tsx', 'services/gateway/src/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, CONFIG_FILE: '/nonexistent', PORT: '0', NATS_URL: c.NATS_URL, NATS_PREFIX: c.NATS_PREFIX, JWT_SECRET: TEST_SECRET, PRESENCE_TTL_MS: '2000', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child!.stdout!.on('data', (d) => {
        out += String(d);
        const m = /"port":(\d+),"msg":"gateway ready"/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child!.once('exit', (code) => reject(new Error(`gateway exited early (${code})`)));
    });

    const { client: bobWs } = await connect(port1(), { token: bob.token });
    const { client: aliceWs } = await connect(port, { token: alice.token });
    await bobWs.next(isPresence('user.online', alice.id));

    const killedAt = Date.now();
    child.kill('SIGKILL');
    const offline: WsClient['frames'][number] = await bobWs.next(isPresence('user.offline', alice.id), 15_000);
    expect(Date.now() - killedAt).toBeLessThan(60_000);
    expect(offline.payload.lastSeenAt).toEqual(expect.any(String));
    await aliceWs.closed;
    await bobWs.close();
  }, 30_000);
});

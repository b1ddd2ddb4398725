import type { IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import pg from 'pg';
import { connect as natsConnect } from '@nats-io/transport-node';
import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { newUser, type TestUser } from './helpers/client';
import { extraGateway, useStack, type Stack } from './helpers/stack';
import { WsClient, wsUrl, type WsOptions } from './helpers/ws';

/** Small caps and rates for this file; each test speaks from its own address (TRUST_PROXY), so their budgets never meet. */
const PER_USER = 3;
const PER_IP = 5;
const UPGRADES = 10;
const TICKETS = 4;

let ips = 0;
/** A fresh documentation address (RFC 5737) per call. */
const freshIp = () => `198.51.100.${++ips}`;

type Upgrade = { status: number; body: any; headers: IncomingMessage['headers']; client?: WsClient };

/** Attempts an upgrade from `ip`; a 101 resolves with the open socket (the caller closes it), a refusal with its status, body and headers. */
function upgrade(port: number, ip: string, opts: Pick<WsOptions, 'token' | 'ticket' | 'since'> = {}): Promise<Upgrade> {
  const ws = new WebSocket(wsUrl(port, opts), { headers: { 'x-forwarded-for': ip } });
  const client = new WsClient(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ status: 101, body: null, headers: {}, client }));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text), headers: res.headers }));
    });
    ws.once('error', reject);
  });
}

async function opened(port: number, ip: string, user: TestUser): Promise<WsClient> {
  const r = await upgrade(port, ip, { token: user.token });
  expect(r.status, JSON.stringify(r.body)).toBe(101);
  await r.client!.nextOf('hello');
  return r.client!;
}

function expectRefused(r: Upgrade, what: RegExp): void {
  expect(r.status, JSON.stringify(r.body)).toBe(429);
  expect(r.body.error.code).toBe('RATE_LIMITED');
  expect(r.body.error.message).toMatch(what);
  expect(typeof r.body.error.requestId).toBe('string');
  const retryAfter = Number(r.headers['retry-after']);
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
}

/**
 * Retries an upgrade until it is accepted: a closed socket's slot is given
 * back asynchronously. Each attempt from a fresh address, so the retries
 * spend no single IP's upgrade budget.
 */
async function eventuallyOpened(port: number, user: TestUser, timeoutMs = 5000): Promise<WsClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await upgrade(port, freshIp(), { token: user.token });
    if (r.status === 101) return r.client!;
    if (Date.now() > deadline) throw new Error(`still refused: ${JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

const closeAll = (clients: WsClient[]) => Promise.all(clients.map((c) => c.close()));

describe('WebSocket bounds (issue 13, finding 2)', () => {
  const ctx = useStack({
    TRUST_PROXY: true,
    WS_MAX_CONNECTIONS_PER_USER: PER_USER,
    WS_MAX_CONNECTIONS_PER_IP: PER_IP,
    RATE_LIMIT_WS_UPGRADES_PER_MIN: UPGRADES,
    RATE_LIMIT_WS_TICKETS_PER_MIN: TICKETS,
  });
  const extras: Array<{ stop(): Promise<void> }> = [];
  afterAll(async () => {
    for (const g of extras) await g.stop().catch(() => undefined);
  });

  it('a replay stops when its socket goes: since=0 and an immediate close reads one or two pages, not the whole log', async () => {
    const EVENTS = 6000;
    const PAGE = 500; // the gateway's replay page
    const user = await newUser('replay');
    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL });
    await db.connect();
    try {
      // Thousands of real rows in the messages service's own log, as that many messages would leave.
      await db.query('INSERT INTO messages.user_seqs (user_id, last_seq) VALUES ($1, $2)', [user.id, EVENTS]);
      await db.query(
        `INSERT INTO messages.user_events (user_id, seq, type, payload)
         SELECT $1, s, 'unread.updated', jsonb_build_object('total', s, 'conversationId', 'c-' || s, 'conversationUnread', s)
         FROM generate_series(1, $2::int) AS s`,
        [user.id, EVENTS],
      );
    } finally {
      await db.end();
    }
    // Every page the gateway reads is one request on the events subject: a plain subscriber sees each one too.
    const nc = await natsConnect({ servers: ctx.stack.config.NATS_URL });
    let pages = 0;
    nc.subscribe(`${ctx.stack.config.NATS_PREFIX}.messages.events`, {
      callback: (_err, msg) => {
        const req = msg.json<{ actor: string; limit: number }>();
        if (req.actor === user.id && req.limit > 0) pages++;
      },
    });
    await nc.flush();
    try {
      // What a full replay costs, for comparison.
      const started = Date.now();
      const full = await upgrade(ctx.stack.gateway.port, freshIp(), { token: user.token, since: 0 });
      expect(full.status).toBe(101);
      const hello = await full.client!.nextOf('hello', 30_000);
      const fullMs = Date.now() - started;
      expect(hello.payload.replayed).toBe(EVENTS);
      expect(full.client!.durable()).toHaveLength(EVENTS);
      await full.client!.close();
      const fullPages = pages;
      expect(fullPages).toBe(EVENTS / PAGE);

      pages = 0;
      const ws = new WebSocket(wsUrl(ctx.stack.gateway.port, { token: user.token, since: 0 }), { headers: { 'x-forwarded-for': freshIp() } });
      ws.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => (ws.terminate(), resolve()));
        ws.once('unexpected-response', () => reject(new Error('upgrade refused')));
      });
      // Long enough for the whole replay to have run, had it gone on.
      await new Promise((r) => setTimeout(r, Math.max(2000, 3 * fullMs)));
      expect(pages).toBeGreaterThanOrEqual(1);
      expect(pages).toBeLessThanOrEqual(2);
      expect(pages).toBeLessThan(fullPages);
    } finally {
      await nc.close();
    }
  });

  it(`one user holds at most ${PER_USER} sockets across two gateway instances; past it 429 RATE_LIMITED with Retry-After, before the 101`, async () => {
    const second = await extraGateway(ctx.stack);
    extras.push(second);
    const alice = await newUser('capped');
    const bob = await newUser('other');
    const ip = freshIp();
    const open = [await opened(ctx.stack.gateway.port, ip, alice), await opened(ctx.stack.gateway.port, ip, alice), await opened(second.port, ip, alice)];
    try {
      for (const port of [ctx.stack.gateway.port, second.port]) expectRefused(await upgrade(port, ip, { token: alice.token }), /too many open WebSocket connections for this user/);
      // Someone else from the same address is not affected.
      open.push(await opened(second.port, ip, bob));
      // Closing one gives its slot back, on any instance.
      await open.shift()!.close();
      open.push(await eventuallyOpened(second.port, alice));
      expectRefused(await upgrade(ctx.stack.gateway.port, ip, { token: alice.token }), /too many open WebSocket connections for this user/);
    } finally {
      await closeAll(open);
    }
  });

  it(`one IP holds at most ${PER_IP} sockets, whoever's they are; another IP is not affected`, async () => {
    const ip = freshIp();
    const users = await Promise.all(Array.from({ length: PER_IP + 1 }, () => newUser('ip')));
    const open: WsClient[] = [];
    try {
      for (const u of users.slice(0, PER_IP)) open.push(await opened(ctx.stack.gateway.port, ip, u));
      expectRefused(await upgrade(ctx.stack.gateway.port, ip, { token: users[PER_IP]!.token }), /too many open WebSocket connections for this address/);
      open.push(await opened(ctx.stack.gateway.port, freshIp(), users[PER_IP]!));
    } finally {
      await closeAll(open);
    }
  });

  it(`upgrades are limited to ${UPGRADES} a minute per IP, counted before authentication; another IP is not affected`, async () => {
    const user = await newUser('upg');
    const ip = freshIp();
    // Attempts without a credential are refused (401) and still count: a flood need not authenticate to cost a handshake.
    for (let i = 0; i < UPGRADES; i++) expect((await upgrade(ctx.stack.gateway.port, ip)).status).toBe(401);
    expectRefused(await upgrade(ctx.stack.gateway.port, ip, { token: user.token }), /rate limit exceeded \(websocket upgrades\)/);
    const elsewhere = await opened(ctx.stack.gateway.port, freshIp(), user);
    await elsewhere.close();
  });

  it(`POST /ws-ticket is limited to ${TICKETS} a minute per IP, with Retry-After and RateLimit-* headers`, async () => {
    const user = await newUser('tix');
    const ip = freshIp();
    const post = (from: string) => ctx.api.call('POST', '/ws-ticket', { token: user.token, headers: { 'x-forwarded-for': from } });
    for (let i = 0; i < TICKETS; i++) {
      const r = await post(ip);
      expect(r.status).toBe(200);
      expect(r.headers.get('ratelimit-limit')).toBe(String(TICKETS));
      expect(r.headers.get('ratelimit-remaining')).toBe(String(TICKETS - 1 - i));
    }
    const refused = await post(ip);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get('ratelimit-limit')).toBe(String(TICKETS));
    expect(refused.headers.get('ratelimit-remaining')).toBe('0');
    expect(Number(refused.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
    expect((await post(freshIp())).status).toBe(200);
  });

  it('a slot lasts while the heartbeat refreshes it, and a crashed gateway\'s slots stop counting after their TTL', async () => {
    const TTL = 1500;
    // Its heartbeat (a third of the TTL) refreshes its entries; the entries expire TTL after the last refresh.
    const doomed = await extraGateway(ctx.stack, { PRESENCE_TTL_MS: TTL });
    extras.push(doomed);
    const carol = await newUser('crash');
    const ip = freshIp();
    const open: WsClient[] = [];
    for (let i = 0; i < PER_USER; i++) open.push(await opened(doomed.port, ip, carol));
    // Well past the TTL: still counted, because the heartbeat keeps the entries alive.
    await new Promise((r) => setTimeout(r, 2 * TTL));
    expectRefused(await upgrade(ctx.stack.gateway.port, ip, { token: carol.token }), /too many open WebSocket connections for this user/);
    // A crash, as far as Redis can tell: the gateway stops talking to it and never says its sockets are gone.
    doomed.redis.disconnect();
    await doomed.stop();
    await closeAll(open);
    const started = Date.now();
    const back = await eventuallyOpened(ctx.stack.gateway.port, carol, 4 * TTL);
    expect(Date.now() - started).toBeLessThan(4 * TTL);
    await back.close();
  });

  it('with Redis down, upgrades fail open with a warning and the in-memory cap still holds on the instance', async () => {
    let lines = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines += String(chunk);
        done();
      },
    });
    const stack: Stack = ctx.stack;
    const gateway = await extraGateway(stack, { REDIS_URL: 'redis://127.0.0.1:1', LOG_LEVEL: 'warn' }, sink);
    extras.push(gateway);
    const dave = await newUser('noredis');
    const ip = freshIp();
    const open: WsClient[] = [];
    try {
      for (let i = 0; i < PER_USER; i++) open.push(await opened(gateway.port, ip, dave));
      expectRefused(await upgrade(gateway.port, ip, { token: dave.token }), /too many open WebSocket connections for this user/);
      expect(lines).toMatch(/websocket caps: Redis does not answer/);
    } finally {
      await closeAll(open);
    }
  });
});

describe('the default WebSocket bounds', () => {
  const ctx = useStack();

  it('let a burst of 400 sockets of 400 users from one address in (an office NAT, the open-loop bench), all at once', async () => {
    const { ConfigSchema } = await import('@chat/platform');
    const defaults = ConfigSchema.parse({});
    const gw = await extraGateway(ctx.stack, {
      WS_MAX_CONNECTIONS_PER_USER: defaults.WS_MAX_CONNECTIONS_PER_USER,
      WS_MAX_CONNECTIONS_PER_IP: defaults.WS_MAX_CONNECTIONS_PER_IP,
      RATE_LIMIT_WS_UPGRADES_PER_MIN: defaults.RATE_LIMIT_WS_UPGRADES_PER_MIN,
    });
    const sockets: WsClient[] = [];
    try {
      const users = await Promise.all(Array.from({ length: 400 }, () => newUser('burst')));
      const opened = await Promise.all(
        users.map(
          (u) =>
            new Promise<WsClient | number>((resolve) => {
              const ws = new WebSocket(wsUrl(gw.port, { token: u.token }));
              ws.once('open', () => resolve(new WsClient(ws)));
              ws.once('unexpected-response', (_req, res: IncomingMessage) => resolve(res.statusCode ?? 0));
              ws.once('error', () => resolve(0));
            }),
        ),
      );
      for (const o of opened) if (typeof o !== 'number') sockets.push(o);
      expect(opened.filter((o) => typeof o === 'number')).toEqual([]);
    } finally {
      for (const s of sockets) s.ws.terminate();
      await gw.stop();
    }
  }, 60_000);
});

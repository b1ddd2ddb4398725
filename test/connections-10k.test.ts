import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { idRecord, PresenceSchema, subjects } from '@chat/contracts';
import { BusClient } from '@chat/platform';
import { eventually, signToken, TEST_SECRET } from './helpers/client';
import { freePort } from './helpers/processes';
import { startStack, UNLIMITED, type Stack } from './helpers/stack';
import { wsUrl } from './helpers/ws';

/**
 * One gateway holding 10,000 WebSockets of 10,000 users. The gateway runs as
 * its own process, so its resident memory is its own: the sockets' client
 * ends, and the other services, live in this test's process.
 */
const SOCKETS = 10_000;
const WARM_UP = 300;
const MAX_BYTES_PER_SOCKET = 15 * 1024;
/** Upgrades in flight at once. */
const OPENING = 100;
// Short enough that every socket needs the gateway's heartbeats (of all 10,000) to stay online during the test.
const TTL_MS = 10_000;
const SWEEP_MS = 1000;
const ROOT = new URL('..', import.meta.url).pathname;
const Presences = idRecord(PresenceSchema);

let stack: Stack | undefined;
let nc: NatsConnection | undefined;
let gateway: ChildProcess | undefined;
let gatewayExited: Promise<void> | undefined;
let gatewayOutput = '';
const clients: WebSocket[] = [];

/**
 * The gateway as production runs it, plus the inspector on a free local port:
 * only so the test can ask for a full garbage collection before reading RSS.
 */
async function startGatewayProcess(s: Stack): Promise<{ port: number; pid: number; inspector: string }> {
  const port = await freePort();
  const c = s.config;
  const child = spawn(process.execPath, ['--inspect=127.0.0.1:0', '--import', 'tsx', 'services/gateway/src/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      CONFIG_FILE: '/nonexistent',
      NODE_ENV: 'test',
      PORT: String(port),
      NATS_URL: c.NATS_URL,
      NATS_PREFIX: c.NATS_PREFIX,
      REDIS_URL: c.REDIS_URL,
      REDIS_PREFIX: c.REDIS_PREFIX,
      JWT_SECRET: TEST_SECRET,
      PRESENCE_TTL_MS: String(TTL_MS),
      LOG_LEVEL: 'warn',
      ...Object.fromEntries(Object.entries(UNLIMITED).map(([k, v]) => [k, String(v)])),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  gateway = child;
  gatewayExited = new Promise((resolve) => child.once('exit', () => resolve()));
  // A test worker that dies without its afterAll still takes the gateway with it.
  const orphanGuard = () => child.kill('SIGKILL');
  process.once('exit', orphanGuard);
  child.once('exit', () => process.off('exit', orphanGuard));
  // Only the tail, for a failure's message: a warning per socket must not grow this process.
  const keep = (d: Buffer) => (gatewayOutput = (gatewayOutput + String(d)).slice(-4000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}: ${gatewayOutput}`);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    },
    30_000,
    100,
  );
  const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(gatewayOutput)?.[1];
  if (!inspector) throw new Error(`the gateway did not say where its inspector listens: ${gatewayOutput}`);
  return { port, pid: child.pid!, inspector };
}

/**
 * A full collection in the gateway, through its inspector. What the sockets
 * hold is then measured, not however much garbage their upgrades left behind
 * since the last collection (which swings the figure by several KB a socket).
 */
async function collectGarbage(inspector: string): Promise<void> {
  const ws = new WebSocket(inspector, { perMessageDeflate: false });
  try {
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    for (const id of [1, 2]) {
      const answered = new Promise<void>((resolve) => ws.on('message', (data) => (JSON.parse(String(data)) as { id?: number }).id === id && resolve()));
      ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
      await answered;
    }
  } finally {
    ws.close();
  }
}

beforeAll(async () => {
  stack = await startStack({ PRESENCE_TTL_MS: TTL_MS, PRESENCE_SWEEP_MS: SWEEP_MS });
  nc = await natsConnect({ servers: stack.config.NATS_URL });
}, 60_000);

afterAll(async () => {
  if (gateway && gateway.exitCode === null && gateway.signalCode === null) {
    // SIGTERM: the gateway closes every socket and tells presence, as in production.
    gateway.kill('SIGTERM');
    const killer = setTimeout(() => gateway?.kill('SIGKILL'), 30_000);
    await gatewayExited;
    clearTimeout(killer);
  }
  await Promise.all(
    clients.splice(0).map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once('close', () => resolve());
          ws.terminate();
        }),
    ),
  );
  await nc?.close();
  await stack?.stop();
}, 120_000);

/** A socket open and greeted: resolves at its hello, the first frame the gateway sends. */
function openSocket(port: number, token: string, userId: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(port, { token }), { perMessageDeflate: false });
    clients.push(ws);
    ws.on('error', () => undefined); // after the hello, a reset shows up as the close
    const timer = setTimeout(() => reject(new Error('no hello within 30 s')), 30_000);
    ws.once('message', (data) => {
      clearTimeout(timer);
      const frame = JSON.parse(String(data)) as { type: string; payload?: { userId?: string } };
      if (frame.type === 'hello' && frame.payload?.userId === userId) resolve(ws);
      else reject(new Error(`expected hello for ${userId}, got ${String(data)}`));
    });
    ws.once('error', (err) => (clearTimeout(timer), reject(err)));
    ws.once('close', (code) => (clearTimeout(timer), reject(new Error(`closed with ${code} before hello`))));
  });
}

/** Opens one socket per user, OPENING at a time. */
async function openAll(port: number, users: ReadonlyArray<{ id: string; token: string }>): Promise<WebSocket[]> {
  const out: WebSocket[] = new Array(users.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: OPENING }, async () => {
      while (next < users.length) {
        const i = next++;
        out[i] = await openSocket(port, users[i]!.token, users[i]!.id);
      }
    }),
  );
  return out;
}

async function makeUsers(n: number, prefix: string) {
  return Promise.all(
    Array.from({ length: n }, async () => {
      // UUIDs as production's identity providers mint them: the heartbeat's size follows the ids' length.
      const id = randomUUID();
      return { id, token: await signToken({ sub: id, username: `${prefix}_${randomBytes(6).toString('hex')}` }, { expiresIn: '1h' }) };
    }),
  );
}

const rssBytes = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').at(-1)) : NaN;
}

/** How many of `ids` the presence service reports online, asked 200 at a time (its limit per request). */
async function onlineCount(bus: BusClient, prefix: string, ids: readonly string[]): Promise<number> {
  const batches: string[][] = [];
  for (let i = 0; i < ids.length; i += 200) batches.push(ids.slice(i, i + 200));
  const answers = await Promise.all(batches.map((userIds) => bus.request(subjects(prefix).presence.query, { userIds }, Presences, { timeoutMs: 10_000 })));
  let online = 0;
  for (const a of answers) for (const p of Object.values(a)) if (p.isOnline) online++;
  return online;
}

describe('one gateway process with 10,000 WebSockets', () => {
  it(`holds them at under ${MAX_BYTES_PER_SOCKET / 1024} KB of RSS each, every user online in presence`, async () => {
    const s = stack!;
    const bus = new BusClient(nc!, 10_000);
    const [warmUsers, users] = await Promise.all([makeUsers(WARM_UP, 'warm'), makeUsers(SOCKETS, 'c10k')]);
    const { port, pid, inspector } = await startGatewayProcess(s);

    // Warm up: the first sockets load and compile the upgrade and delivery code, which is not per-socket memory.
    const warm = await openAll(port, warmUsers);
    await Promise.all(warm.map((ws) => new Promise<void>((resolve) => (ws.once('close', () => resolve()), ws.close()))));
    await eventually(async () => expect(await metric(port, 'chat_ws_connections')).toBe(0), 10_000, 100);
    await eventually(async () => expect(await onlineCount(bus, s.config.NATS_PREFIX, warmUsers.map((u) => u.id))).toBe(0), 10_000, 200);
    await collectGarbage(inspector);
    const before = rssBytes(pid);
    const heapBefore = await metric(port, 'nodejs_heap_size_used_bytes');

    const started = Date.now();
    await openAll(port, users);
    const openedMs = Date.now() - started;
    expect(await metric(port, 'chat_ws_connections')).toBe(SOCKETS);

    // Online at a moment when the first sockets' connect is older than TTL + sweep: they are there thanks to heartbeats.
    const ids = users.map((u) => u.id);
    await eventually(
      async () => {
        expect(await onlineCount(bus, s.config.NATS_PREFIX, ids)).toBe(SOCKETS);
        expect(Date.now() - started).toBeGreaterThan(TTL_MS + SWEEP_MS);
      },
      TTL_MS + 30_000,
      500,
    );
    const onlineMs = Date.now() - started;

    const raw = rssBytes(pid);
    await collectGarbage(inspector);
    const after = rssBytes(pid);
    const heapAfter = await metric(port, 'nodejs_heap_size_used_bytes');
    const perSocket = (after - before) / SOCKETS;
    const kb = (b: number) => (b / 1024).toFixed(1);
    const mb = (b: number) => (b / 2 ** 20).toFixed(1);
    console.log(
      `gateway process, ${SOCKETS} sockets of ${SOCKETS} users (${cpus().length} CPUs, ${cpus()[0]?.model.trim()}): ` +
        `RSS ${mb(before)} → ${mb(after)} MiB = ${kb(perSocket)} KB per socket after a full GC; ` +
        `before that GC ${mb(raw)} MiB = ${kb((raw - before) / SOCKETS)} KB (the upgrades' garbage); ` +
        `JS heap in use ${mb(heapBefore)} → ${mb(heapAfter)} MiB = ${kb((heapAfter - heapBefore) / SOCKETS)} KB per socket; ` +
        `opened in ${(openedMs / 1000).toFixed(1)} s, all online in presence after ${(onlineMs / 1000).toFixed(1)} s`,
    );
    expect(perSocket).toBeLessThan(MAX_BYTES_PER_SOCKET);
  }, 240_000);
});
